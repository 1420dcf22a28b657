//! Envelope encryption: each secret (a Variable, a Connection) has its own data key; the data
//! keys are kept in Postgres (`secret_data_key`), each wrapped by the master key, which lives
//! outside the database. Deleting a secret deletes its data key in the same transaction as its
//! delete event, so the value can no longer be read from old events (crypto-shredding);
//! rotating the master key re-wraps the data keys and touches no event.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{Sealed, SecretError, SecretKey};

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Postgres failed.
    #[error("the secrets' data keys cannot be read: {0}")]
    Database(#[from] sqlx::Error),
    /// The data key is gone: the secret was deleted (and its old values shredded).
    #[error("its data key {0} was destroyed when the secret was deleted")]
    Shredded(Uuid),
    /// A data key is wrapped by a master key this process does not have.
    #[error(
        "data key {key_id} is wrapped by master key {master_id}, which this control plane does not have (was the key file replaced?)"
    )]
    UnknownMaster {
        /// The data key.
        key_id: Uuid,
        /// The master key's id.
        master_id: String,
    },
    /// Decryption failed.
    #[error(transparent)]
    Undecryptable(#[from] SecretError),
}

/// The master key, and during a rotation the one replacing it.
#[derive(Debug, Clone)]
pub struct MasterKeys {
    current: SecretKey,
    pending: Option<SecretKey>,
}

impl MasterKeys {
    /// Just `current`.
    pub fn new(current: SecretKey) -> Self {
        Self {
            current,
            pending: None,
        }
    }

    /// With a rotation to `pending` under way (some data keys may be wrapped by it already).
    pub fn rotating_to(mut self, pending: SecretKey) -> Self {
        self.pending = Some(pending);
        self
    }

    /// The key that wraps new data keys and opens `MasterKey`-sealed values.
    pub fn current(&self) -> &SecretKey {
        &self.current
    }

    /// The key a rotation moves to.
    pub fn pending(&self) -> Option<&SecretKey> {
        self.pending.as_ref()
    }

    fn by_id(&self, id: &str) -> Option<&SecretKey> {
        std::iter::once(&self.current)
            .chain(self.pending.as_ref())
            .find(|key| master_id(key) == id)
    }
}

/// A master key's public name: the first 8 bytes of its SHA-256, in hex.
pub fn master_id(key: &SecretKey) -> String {
    let digest = Sha256::digest(key.to_base64().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Seals and opens secrets with per-secret data keys.
#[derive(Debug, Clone)]
pub struct Vault {
    keys: MasterKeys,
    pool: PgPool,
}

impl Vault {
    /// A vault on `pool`'s `secret_data_key` table with `keys`.
    pub fn new(pool: PgPool, keys: MasterKeys) -> Self {
        Self { keys, pool }
    }

    /// Encrypts `plaintext` with the data key of `owner` (the secret's stream, such as
    /// `variable:db_password`), made on first use.
    pub async fn seal(&self, owner: &str, plaintext: &str) -> Result<Sealed, VaultError> {
        let (key_id, data_key) = self.data_key_of(owner).await?;
        Ok(Sealed::DataKey {
            key_id,
            ciphertext: data_key.encrypt(plaintext),
        })
    }

    /// The value of `sealed`.
    pub async fn open(&self, sealed: &Sealed) -> Result<String, VaultError> {
        Ok(self.open_all(&[sealed]).await?.remove(0))
    }

    /// The values of several sealed secrets, with one query for their data keys.
    pub async fn open_all(&self, sealed: &[&Sealed]) -> Result<Vec<String>, VaultError> {
        let ids: Vec<Uuid> = sealed.iter().filter_map(|s| s.key_id()).collect();
        let keys = self.data_keys(&ids).await?;
        sealed
            .iter()
            .map(|sealed| match sealed {
                Sealed::DataKey { key_id, ciphertext } => {
                    let key = keys.get(key_id).ok_or(VaultError::Shredded(*key_id))?;
                    Ok(key.decrypt(ciphertext)?)
                }
                Sealed::MasterKey { ciphertext } => Ok(self.keys.current.decrypt(ciphertext)?),
                Sealed::Clear { text } => Ok(text.clone()),
            })
            .collect()
    }

    async fn data_key_of(&self, owner: &str) -> Result<(Uuid, SecretKey), VaultError> {
        if let Some(found) = self.find_owned(owner).await? {
            return Ok(found);
        }
        let data_key = SecretKey::generate();
        // A concurrent first use may win the insert; either way the owner has one key.
        sqlx::query(
            "INSERT INTO secret_data_key (key_id, owner, wrapped, master_id) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (owner) DO NOTHING",
        )
        .bind(Uuid::new_v4())
        .bind(owner)
        .bind(self.keys.current.encrypt(&data_key.to_base64()))
        .bind(master_id(&self.keys.current))
        .execute(&self.pool)
        .await?;
        Ok(self
            .find_owned(owner)
            .await?
            .expect("the owner's data key was just stored"))
    }

    async fn find_owned(&self, owner: &str) -> Result<Option<(Uuid, SecretKey)>, VaultError> {
        let row: Option<(Uuid, String, String)> = sqlx::query_as(
            "SELECT key_id, wrapped, master_id FROM secret_data_key WHERE owner = $1",
        )
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(key_id, wrapped, master)| Ok((key_id, self.unwrap(key_id, &wrapped, &master)?)))
            .transpose()
    }

    async fn data_keys(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, SecretKey>, VaultError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
            "SELECT key_id, wrapped, master_id FROM secret_data_key WHERE key_id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(key_id, wrapped, master)| Ok((key_id, self.unwrap(key_id, &wrapped, &master)?)))
            .collect()
    }

    fn unwrap(&self, key_id: Uuid, wrapped: &str, master: &str) -> Result<SecretKey, VaultError> {
        let master_key = self
            .keys
            .by_id(master)
            .ok_or_else(|| VaultError::UnknownMaster {
                key_id,
                master_id: master.to_owned(),
            })?;
        Ok(SecretKey::from_base64(&master_key.decrypt(wrapped)?)?)
    }

    /// Re-wraps every data key with the pending master key, in one transaction that holds the
    /// table's lock (no data key is made meanwhile). Returns how many were re-wrapped. Values
    /// and events are untouched.
    pub async fn rewrap_all(&self) -> Result<usize, VaultError> {
        let pending = self
            .keys
            .pending
            .as_ref()
            .expect("rewrap_all needs a pending master key");
        let mut tx = self.pool.begin().await?;
        sqlx::query("LOCK TABLE secret_data_key IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let rows: Vec<(Uuid, String, String)> =
            sqlx::query_as("SELECT key_id, wrapped, master_id FROM secret_data_key")
                .fetch_all(&mut *tx)
                .await?;
        let pending_id = master_id(pending);
        for (key_id, wrapped, master) in &rows {
            let data_key = self.unwrap(*key_id, wrapped, master)?;
            sqlx::query(
                "UPDATE secret_data_key SET wrapped = $2, master_id = $3 WHERE key_id = $1",
            )
            .bind(key_id)
            .bind(pending.encrypt(&data_key.to_base64()))
            .bind(&pending_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(rows.len())
    }
}
