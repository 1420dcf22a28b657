//! Attempt tokens are secrets: the log keeps their SHA-256 digest, never the token, so
//! nothing that reads the log (`events tail`, the audit log, a backup) can act as an agent.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Whether `a` and `b` are equal, in time that does not depend on where they differ (for
/// comparing secrets' digests).
pub fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The SHA-256 of an attempt token's 16 bytes, as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttemptDigest(String);

impl AttemptDigest {
    /// The digest of `token`.
    pub fn of(token: &Uuid) -> Self {
        let digest = Sha256::digest(token.as_bytes());
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Whether `token` is the one this is the digest of, in time that does not depend on
    /// where the digests differ.
    pub fn matches(&self, token: &Uuid) -> bool {
        equal_in_constant_time(self.0.as_bytes(), Self::of(token).0.as_bytes())
    }

    /// A digest written as [`AttemptDigest::as_str`] gives it (64 lowercase hex digits).
    pub fn parse(hex: &str) -> Option<Self> {
        let valid = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| Self(hex.to_owned()))
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AttemptDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_matches_its_token_only_and_hides_it() {
        let token = Uuid::new_v4();
        let digest = AttemptDigest::of(&token);
        assert!(digest.matches(&token));
        assert!(!digest.matches(&Uuid::new_v4()));
        assert_eq!(digest.as_str().len(), 64);
        assert!(!digest.as_str().contains(&token.simple().to_string()));
        assert_eq!(digest, AttemptDigest::of(&token), "stable");
        assert_eq!(AttemptDigest::parse(digest.as_str()), Some(digest.clone()));
        assert_eq!(AttemptDigest::parse(&digest.as_str()[1..]), None);
        assert_eq!(AttemptDigest::parse(&digest.as_str().to_uppercase()), None);
    }
}
