//! Secrets at rest: Variable values and Connection passwords and extras are sealed before their
//! event is appended, so neither the log nor the read models ever hold one in clear (Airflow's
//! Fernet key, done with ChaCha20-Poly1305 and envelope encryption, see [`vault`]). The master
//! key lives outside the database: in Lite a file under `$LEOFLOW_HOME` (mode 0600), in Pro a
//! mounted secret. [`masking`] hides the secrets a task read from what it reports.
//!
//! ```
//! let key = leoflow_secrets::SecretKey::generate();
//! let ciphertext = key.encrypt("s3cret");
//! assert_ne!(ciphertext, "s3cret");
//! assert_eq!(key.decrypt(&ciphertext).unwrap(), "s3cret");
//! ```
#![warn(missing_docs)]

pub mod masking;
mod sealed;
#[cfg(feature = "vault")]
pub mod vault;

pub use sealed::Sealed;
#[cfg(feature = "vault")]
pub use vault::{MasterKeys, Vault, VaultError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, Generate, Key, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

/// Why a secret could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The stored key is not a key.
    #[error("the secret key is malformed: {0}")]
    BadKey(String),
    /// The ciphertext was made with another key, or was altered.
    #[error("a stored secret cannot be decrypted with this key (was the key replaced?)")]
    Undecryptable,
}

/// `N` bytes from the operating system's secure random source (passwords, signing keys).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    <[u8; N]>::generate()
}

/// A random password of `bytes` (at most 32) bytes of entropy, as URL-safe base64 (nothing to
/// escape in shells or URLs).
pub fn random_password(bytes: usize) -> String {
    let raw = random_bytes::<32>();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw[..bytes.min(32)])
}

/// Nonce length of ChaCha20-Poly1305.
const NONCE_LEN: usize = 12;

/// A 256-bit key encrypting secrets at rest.
#[derive(Clone)]
pub struct SecretKey(Key<ChaCha20Poly1305>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(Key::<ChaCha20Poly1305>::generate())
    }

    /// The key as stored: base64 of its 32 bytes.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0.as_slice())
    }

    /// Reads a key stored with [`SecretKey::to_base64`].
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|e| SecretError::BadKey(e.to_string()))?;
        let key = Key::<ChaCha20Poly1305>::try_from(bytes.as_slice())
            .map_err(|_| SecretError::BadKey(format!("{} bytes, not 32", bytes.len())))?;
        Ok(Self(key))
    }

    /// Encrypts `plaintext` under a fresh nonce: base64 of nonce ‖ ciphertext ‖ tag.
    pub fn encrypt(&self, plaintext: &str) -> String {
        let nonce = Nonce::generate();
        let sealed = ChaCha20Poly1305::new(&self.0)
            .encrypt(&nonce, plaintext.as_bytes())
            .expect("a password is far below ChaCha20-Poly1305's message limit");
        let mut stored = nonce.to_vec();
        stored.extend(sealed);
        BASE64.encode(stored)
    }

    /// Decrypts what [`SecretKey::encrypt`] made.
    pub fn decrypt(&self, stored: &str) -> Result<String, SecretError> {
        let bytes = BASE64
            .decode(stored)
            .map_err(|_| SecretError::Undecryptable)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Undecryptable);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| SecretError::Undecryptable)?;
        let plain = ChaCha20Poly1305::new(&self.0)
            .decrypt(&nonce, sealed)
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| SecretError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_each_encryption_differs() {
        let key = SecretKey::generate();
        let a = key.encrypt("pässword");
        let b = key.encrypt("pässword");
        assert_ne!(a, b, "a fresh nonce each time");
        assert_eq!(key.decrypt(&a).unwrap(), "pässword");
        assert_eq!(key.decrypt(&b).unwrap(), "pässword");
    }

    #[test]
    fn another_key_or_altered_text_is_refused() {
        let key = SecretKey::generate();
        let stored = key.encrypt("secret");
        assert!(matches!(
            SecretKey::generate().decrypt(&stored),
            Err(SecretError::Undecryptable)
        ));
        let mut bytes = BASE64.decode(&stored).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        assert!(key.decrypt(&BASE64.encode(bytes)).is_err());
        assert!(key.decrypt("not base64!").is_err());
        assert!(key.decrypt("").is_err());
    }

    #[test]
    fn random_passwords_differ_and_carry_their_entropy() {
        let (a, b) = (random_password(15), random_password(15));
        assert_ne!(a, b);
        assert_eq!(a.len(), 20);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn keys_survive_storage_and_bad_ones_are_named() {
        let key = SecretKey::generate();
        let again = SecretKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(again.decrypt(&key.encrypt("x")).unwrap(), "x");
        let short = SecretKey::from_base64(&BASE64.encode([1u8; 8])).unwrap_err();
        assert!(short.to_string().contains("8 bytes, not 32"), "{short}");
        assert!(SecretKey::from_base64("%%%").is_err());
    }
}
