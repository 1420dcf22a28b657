//! The form a secret takes in the event log and the read models.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A secret value as it is stored: never in clear since data keys exist, except what older
/// Leoflow versions wrote (kept readable, named by their form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "form", rename_all = "snake_case")]
pub enum Sealed {
    /// Encrypted with the secret's own data key (row `key_id` of `secret_data_key`, wrapped
    /// by the master key). Deleting the secret destroys the data key, and with it every copy
    /// of the value in old events (crypto-shredding).
    DataKey {
        /// The data key.
        key_id: Uuid,
        /// base64 of nonce ‖ ciphertext ‖ tag.
        ciphertext: String,
    },
    /// Encrypted with the master key itself: Connection passwords written before data keys
    /// (`ConnectionSet` v1). Readable until the master key is rotated, which refuses to run
    /// while such a value is current.
    MasterKey {
        /// base64 of nonce ‖ ciphertext ‖ tag.
        ciphertext: String,
    },
    /// In clear: Variable values and Connection extras written before data keys (v1 events).
    Clear {
        /// The value.
        text: String,
    },
}

/// An empty clear value: what a read-model row type's `Default` (which lists its columns) holds.
impl Default for Sealed {
    fn default() -> Self {
        Sealed::Clear {
            text: String::new(),
        }
    }
}

impl Sealed {
    /// A value in clear (what tests and v1 events hold).
    pub fn clear(text: impl Into<String>) -> Self {
        Sealed::Clear { text: text.into() }
    }

    /// The data key it is sealed with, if any.
    pub fn key_id(&self) -> Option<Uuid> {
        match self {
            Sealed::DataKey { key_id, .. } => Some(*key_id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn forms_are_tagged_as_stored() {
        let key_id = Uuid::nil();
        let sealed = Sealed::DataKey {
            key_id,
            ciphertext: "c".into(),
        };
        assert_eq!(
            serde_json::to_value(&sealed).unwrap(),
            json!({"form": "data_key", "key_id": key_id, "ciphertext": "c"})
        );
        let clear: Sealed = serde_json::from_value(json!({"form": "clear", "text": "t"})).unwrap();
        assert_eq!(clear, Sealed::Clear { text: "t".into() });
        assert_eq!(clear.key_id(), None);
    }
}
