//! Credentials: the one admin (only an argon2 hash of the password is kept), the key that
//! signs session tokens, and the master key of secrets at rest (it wraps each Variable's and
//! Connection's data key; stored as `connection_key`, its name before data keys existed).
//!
//! Lite keeps them in one JSON file under `$LEOFLOW_HOME`, mode 0600, written atomically.
//! `leoflow server` replicas share the two keys from a [`SharedKeys`] file (a Kubernetes
//! Secret) and take the admin's password from a file of its own.

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
        master_keys(&self.connection_key, self.pending_connection_key.as_ref())
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

    /// The admin with `password` over keys shared by server replicas.
    pub fn with_shared_keys(password: &str, keys: SharedKeys) -> Self {
        Self {
            admin_username: ADMIN.to_owned(),
            admin_password_hash: hash_password(password),
            token_signing_key: keys.token_signing_key,
            connection_key: keys.master_key,
            pending_connection_key: keys.pending_master_key,
        }
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
        std::fs::create_dir_all(home).map_err(|source| CredentialsError::Io {
            path: home.to_owned(),
            source,
        })?;
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
        let path = Self::path(home);
        write_private(&path, &text).map_err(|source| CredentialsError::Io { path, source })
    }
}

/// The master key, rotating to `pending` while a rotation is under way.
fn master_keys(current: &SecretKey, pending: Option<&SecretKey>) -> MasterKeys {
    let keys = MasterKeys::new(current.clone());
    match pending {
        Some(pending) => keys.rotating_to(pending.clone()),
        None => keys,
    }
}

/// Writes `text` to `path` readable by its owner only, replacing the file atomically.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)?;
        // The mode above only applies to a new file.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&partial, path)
}

/// The keys `leoflow server` replicas share: every replica signs and checks the same session
/// tokens and opens the same secrets. Made by `leoflow server keys generate`.
#[derive(Debug, Clone)]
pub struct SharedKeys {
    /// Signs and checks session tokens (HS512).
    pub token_signing_key: Vec<u8>,
    /// The master key of secrets at rest.
    pub master_key: SecretKey,
    /// The master key a rotation under way moves to.
    pub pending_master_key: Option<SecretKey>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKeys {
    token_signing_key: String,
    master_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_master_key: Option<String>,
}

/// Why a keys file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// Reading or writing it failed.
    #[error("keys file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Others than its owner may read or change it.
    #[error(
        "keys file {path} has mode {mode:04o}: others may read it. `chmod 600 {path}` (in \
         Kubernetes, mount the Secret with defaultMode 0400)"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It is not what `leoflow server keys generate` writes.
    #[error(
        "keys file {path} is unusable ({reason}); make one with `leoflow server keys generate -o FILE`"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file to write exists already.
    #[error(
        "{0} exists: replacing its keys would end every session and make every secret \
         unreadable; write elsewhere or remove it first"
    )]
    Exists(PathBuf),
}

impl SharedKeys {
    /// New random keys.
    pub fn generate() -> Self {
        Self {
            token_signing_key: random_bytes::<64>().to_vec(),
            master_key: SecretKey::generate(),
            pending_master_key: None,
        }
    }

    /// The master keys for a [`leoflow_secrets::Vault`] (with the pending one during a rotation).
    pub fn master_keys(&self) -> MasterKeys {
        master_keys(&self.master_key, self.pending_master_key.as_ref())
    }

    /// Writes them to a new file `path` (mode 0600); an existing file is never replaced.
    pub fn write_new(&self, path: &Path) -> Result<(), KeysError> {
        if path.exists() {
            return Err(KeysError::Exists(path.to_owned()));
        }
        let stored = StoredKeys {
            token_signing_key: BASE64.encode(&self.token_signing_key),
            master_key: self.master_key.to_base64(),
            pending_master_key: self.pending_master_key.as_ref().map(SecretKey::to_base64),
        };
        let text = serde_json::to_string_pretty(&stored).expect("plain data") + "\n";
        write_private(path, &text).map_err(|source| KeysError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads them from `path`, refusing a file others may read.
    pub fn load(path: &Path) -> Result<Self, KeysError> {
        let io = |source| KeysError::Io {
            path: path.to_owned(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        // A Secret mounted with an fsGroup is group-readable (0440): that group is the pod's.
        if mode & 0o007 != 0 || mode & 0o020 != 0 {
            return Err(KeysError::Exposed {
                path: path.to_owned(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let corrupt = |reason: String| KeysError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let stored: StoredKeys = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        let token_signing_key = BASE64
            .decode(&stored.token_signing_key)
            .map_err(|e| corrupt(format!("token_signing_key: {e}")))?;
        if token_signing_key.len() < 32 {
            return Err(corrupt("token_signing_key is shorter than 32 bytes".into()));
        }
        let master_key = SecretKey::from_base64(&stored.master_key)
            .map_err(|e| corrupt(format!("master_key: {e}")))?;
        let pending_master_key = stored
            .pending_master_key
            .as_deref()
            .map(SecretKey::from_base64)
            .transpose()
            .map_err(|e| corrupt(format!("pending_master_key: {e}")))?;
        Ok(Self {
            token_signing_key,
            master_key,
            pending_master_key,
        })
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
    fn shared_keys_round_trip_refuse_exposure_and_are_never_overwritten() {
        let dir = home();
        let path = dir.join("keys.json");
        let keys = SharedKeys::generate();
        keys.write_new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = SharedKeys::load(&path).unwrap();
        assert_eq!(loaded.token_signing_key, keys.token_signing_key);
        assert_eq!(loaded.master_key.to_base64(), keys.master_key.to_base64());
        let again = SharedKeys::generate().write_new(&path).unwrap_err();
        assert!(matches!(again, KeysError::Exists(_)), "{again}");
        assert_eq!(
            SharedKeys::load(&path).unwrap().token_signing_key,
            keys.token_signing_key,
            "the existing file is kept"
        );
        // Group-readable is a mounted Secret with an fsGroup; world-readable is refused.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
        SharedKeys::load(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let exposed = SharedKeys::load(&path).unwrap_err();
        assert!(exposed.to_string().contains("chmod 600"), "{exposed}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            &path,
            "{\"token_signing_key\": \"c2hvcnQ=\", \"master_key\": \"\"}",
        )
        .unwrap();
        let corrupt = SharedKeys::load(&path).unwrap_err();
        assert!(corrupt.to_string().contains("keys generate"), "{corrupt}");
        let credentials = Credentials::with_shared_keys("s3cret-password", keys.clone());
        assert!(credentials.check(ADMIN, "s3cret-password"));
        assert_eq!(credentials.token_signing_key, keys.token_signing_key);
        std::fs::remove_dir_all(dir).unwrap();
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
