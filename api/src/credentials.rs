//! Lite's local credentials: the one admin (only an argon2 hash of the password is kept), the
//! key that signs session tokens, and the master key of secrets at rest (it wraps each
//! Variable's and Connection's data key; stored as `connection_key`, its name before data keys
//! existed). One JSON file under `$LEOFLOW_HOME`, mode 0600, written atomically.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use leoflow_secrets::{MasterKeys, SecretKey, random_bytes, random_password};
use serde::{Deserialize, Serialize};

/// The admin's user name in Lite.
pub const ADMIN: &str = "admin";

/// Why the credentials file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Reading or writing it failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// It is not what Leoflow wrote.
    #[error(
        "{path} is corrupt ({reason}); move it away and run `leoflow setup` (or `leoflow lite reset-password`) to make new credentials"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// It does not exist yet.
    #[error("no credentials at {0}: run `leoflow setup` first")]
    Missing(PathBuf),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    admin_username: String,
    admin_password_hash: String,
    token_signing_key: String,
    connection_key: String,
    /// The master key a `leoflow secrets rotate-key` that has not finished is moving to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_connection_key: Option<String>,
}

/// The loaded credentials.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The admin's name.
    pub admin_username: String,
    admin_password_hash: String,
    /// Signs and checks session tokens (HS512).
    pub token_signing_key: Vec<u8>,
    /// The master key of secrets at rest.
    pub connection_key: SecretKey,
    /// The master key a rotation under way moves to.
    pub pending_connection_key: Option<SecretKey>,
}

impl Credentials {
    /// Where they live in a Leoflow home.
    pub fn path(home: &Path) -> PathBuf {
        home.join("credentials.json")
    }

    /// New credentials for the admin with `password`.
    pub fn new(password: &str) -> Self {
        Self {
            admin_username: ADMIN.to_owned(),
            admin_password_hash: hash_password(password),
            token_signing_key: random_bytes::<64>().to_vec(),
            connection_key: SecretKey::generate(),
            pending_connection_key: None,
        }
    }

    /// The master keys for a [`leoflow_secrets::Vault`] (with the pending one during a rotation).
    pub fn master_keys(&self) -> MasterKeys {
        let keys = MasterKeys::new(self.connection_key.clone());
        match &self.pending_connection_key {
            Some(pending) => keys.rotating_to(pending.clone()),
            None => keys,
        }
    }

    /// Whether `password` is the admin's (constant-time in the hash comparison).
    pub fn check(&self, username: &str, password: &str) -> bool {
        let Ok(hash) = PasswordHash::new(&self.admin_password_hash) else {
            return false;
        };
        let password_ok = Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok();
        password_ok && username == self.admin_username
    }

    /// Replaces the admin's password (the keys stay: sessions signed before remain valid until
    /// they expire, Connection passwords stay readable).
    pub fn set_password(&mut self, password: &str) {
        self.admin_password_hash = hash_password(password);
    }

    /// Takes the admin (name and password) of `other`, keeping this one's keys.
    pub(crate) fn take_password_from(&mut self, other: Credentials) {
        self.admin_username = other.admin_username;
        self.admin_password_hash = other.admin_password_hash;
    }

    /// Reads them from `home`.
    pub fn load(home: &Path) -> Result<Self, CredentialsError> {
        let path = Self::path(home);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CredentialsError::Missing(path));
            }
            Err(source) => return Err(CredentialsError::Io { path, source }),
        };
        let corrupt = |reason: String| CredentialsError::Corrupt {
            path: path.clone(),
            reason,
        };
        let stored: Stored = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        PasswordHash::new(&stored.admin_password_hash)
            .map_err(|e| corrupt(format!("password hash: {e}")))?;
        let token_signing_key = BASE64
            .decode(&stored.token_signing_key)
            .map_err(|e| corrupt(format!("token signing key: {e}")))?;
        if token_signing_key.len() < 32 {
            return Err(corrupt("token signing key shorter than 32 bytes".into()));
        }
        let connection_key = SecretKey::from_base64(&stored.connection_key)
            .map_err(|e| corrupt(format!("connection key: {e}")))?;
        let pending_connection_key = stored
            .pending_connection_key
            .as_deref()
            .map(SecretKey::from_base64)
            .transpose()
            .map_err(|e| corrupt(format!("pending connection key: {e}")))?;
        Ok(Self {
            admin_username: stored.admin_username,
            admin_password_hash: stored.admin_password_hash,
            token_signing_key,
            connection_key,
            pending_connection_key,
        })
    }

    /// Writes them to `home` (mode 0600, replacing the file atomically).
    pub fn save(&self, home: &Path) -> Result<(), CredentialsError> {
        let path = Self::path(home);
        let io = |source| CredentialsError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(home).map_err(io)?;
        let stored = Stored {
            admin_username: self.admin_username.clone(),
            admin_password_hash: self.admin_password_hash.clone(),
            token_signing_key: BASE64.encode(&self.token_signing_key),
            connection_key: self.connection_key.to_base64(),
            pending_connection_key: self
                .pending_connection_key
                .as_ref()
                .map(SecretKey::to_base64),
        };
        let text = serde_json::to_string_pretty(&stored).expect("plain data");
        let partial = path.with_extension("json.partial");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .map_err(io)?;
        // The mode above only applies to a new file.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&partial, &path).map_err(io)
    }
}

/// A generated admin password: 20 URL-safe characters, 120 bits.
pub fn generate_password() -> String {
    random_password(15)
}

fn hash_password(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 hashes any password")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("leoflow-creds-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn saved_credentials_load_back_keep_only_a_hash_and_are_private() {
        let home = home();
        let password = generate_password();
        Credentials::new(&password).save(&home).unwrap();
        let text = std::fs::read_to_string(Credentials::path(&home)).unwrap();
        assert!(!text.contains(&password), "the password is never stored");
        assert!(text.contains("$argon2id$"));
        let mode = std::fs::metadata(Credentials::path(&home))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = Credentials::load(&home).unwrap();
        assert!(loaded.check("admin", &password));
        assert!(!loaded.check("admin", "wrong"));
        assert!(!loaded.check("root", &password));
        std::fs::remove_dir_all(home).unwrap();
    }

    #[test]
    fn a_missing_or_corrupt_file_says_what_to_do() {
        let home = home();
        let missing = Credentials::load(&home).unwrap_err();
        assert!(missing.to_string().contains("leoflow setup"), "{missing}");
        std::fs::write(Credentials::path(&home), "{\"admin_username\": 1").unwrap();
        let corrupt = Credentials::load(&home).unwrap_err();
        assert!(
            matches!(corrupt, CredentialsError::Corrupt { .. }),
            "{corrupt}"
        );
        assert!(corrupt.to_string().contains("reset-password"));
        std::fs::remove_dir_all(home).unwrap();
    }
}
