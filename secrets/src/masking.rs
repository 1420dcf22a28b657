//! What Airflow's secrets masker hides, and the masker that hides it in task output: the values
//! a task read of sensitive Variables and the passwords (and sensitive extra fields) of the
//! Connections it read are replaced by `***` in its log lines and rendered fields.

use std::borrow::Cow;

use serde_json::Value;

/// Airflow 3.2's `DEFAULT_SENSITIVE_FIELDS`: a value whose name contains one of these is hidden.
pub const SENSITIVE_NAMES: [&str; 22] = [
    "access_key",
    "access_token",
    "api_key",
    "apikey",
    "auth_header",
    "authorization",
    "bearer",
    "connection_string",
    "dsn",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "proxy",
    "proxy_password",
    "proxies",
    "secret",
    "service_account",
    "service_key",
    "token",
    "keyfile_dict",
    "webhook_url",
];

/// What Airflow shows instead of a secret.
pub const MASK: &str = "***";

/// Secrets shorter than this are not masked: masking every `1` or `ab` in a log would hide more
/// than it protects (Airflow's `min_length_masked_secret`, 5 by default).
pub const MIN_MASKED_LENGTH: usize = 5;

/// Whether Airflow hides the value of `name` (a Variable key, a key of a Connection's extra).
pub fn is_sensitive(name: &str) -> bool {
    let name = name.trim().to_lowercase();
    SENSITIVE_NAMES.iter().any(|s| name.contains(s))
}

/// The secrets one task attempt has read, to be hidden from everything it reports.
#[derive(Debug, Default, Clone)]
pub struct Masker {
    /// Longest first, so a secret containing another is masked whole.
    secrets: Vec<String>,
}

impl Masker {
    /// Hides `secret` from now on (too short ones are ignored, see [`MIN_MASKED_LENGTH`]).
    pub fn add(&mut self, secret: &str) {
        if secret.chars().count() < MIN_MASKED_LENGTH || self.secrets.iter().any(|s| s == secret) {
            return;
        }
        self.secrets.push(secret.to_owned());
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Learns what a Variable read reveals: its whole value when its key is sensitive, else
    /// the values under sensitive keys of a JSON value.
    pub fn add_variable(&mut self, key: &str, value: &str) {
        if is_sensitive(key) {
            self.add(value);
        } else if let Ok(parsed) = serde_json::from_str::<Value>(value) {
            self.add_sensitive_fields(&parsed, false);
        }
    }

    /// Learns what a Connection read reveals: its password and the sensitive fields of its
    /// extra.
    pub fn add_connection(&mut self, password: Option<&str>, extra: Option<&str>) {
        if let Some(password) = password {
            self.add(password);
        }
        if let Some(parsed) = extra.and_then(|e| serde_json::from_str::<Value>(e).ok()) {
            self.add_sensitive_fields(&parsed, false);
        }
    }

    fn add_sensitive_fields(&mut self, value: &Value, under_sensitive: bool) {
        match value {
            Value::String(text) if under_sensitive => self.add(text),
            Value::Object(map) => {
                for (name, item) in map {
                    self.add_sensitive_fields(item, under_sensitive || is_sensitive(name));
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.add_sensitive_fields(item, under_sensitive);
                }
            }
            _ => {}
        }
    }

    /// `text` with every known secret replaced by `***`.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut masked = Cow::Borrowed(text);
        for secret in &self.secrets {
            if masked.contains(secret.as_str()) {
                masked = Cow::Owned(masked.replace(secret.as_str(), MASK));
            }
        }
        masked
    }

    /// A JSON value with every known secret masked in its strings (rendered template fields).
    pub fn mask_json(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.mask(text).into_owned()),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.mask_json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.mask_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sensitive_names_are_found_inside_longer_ones() {
        assert!(is_sensitive("DB_PASSWORD"));
        assert!(is_sensitive(" github_token "));
        assert!(is_sensitive("aws_secret_access_key"));
        assert!(!is_sensitive("greeting"));
    }

    #[test]
    fn secrets_read_by_a_task_are_masked_and_others_are_not() {
        let mut masker = Masker::default();
        masker.add_variable("db_password", "hunter22");
        masker.add_variable("greeting", "hello world");
        masker.add_variable(
            "config",
            r#"{"api_key": "k-123456", "region": "eu-west-1"}"#,
        );
        masker.add_connection(Some("pg-s3cret"), Some(r#"{"token": "tok-98765", "n": 1}"#));
        masker.add_connection(Some("abc"), None);
        let line = "hunter22 hello world k-123456 eu-west-1 pg-s3cret tok-98765 abc";
        assert_eq!(
            masker.mask(line),
            "*** hello world *** eu-west-1 *** *** abc"
        );
        assert!(matches!(masker.mask("nothing here"), Cow::Borrowed(_)));
        assert_eq!(
            masker.mask_json(&json!({"cmd": ["echo hunter22"], "n": 3})),
            json!({"cmd": ["echo ***"], "n": 3})
        );
    }

    #[test]
    fn a_secret_containing_another_is_masked_whole() {
        let mut masker = Masker::default();
        masker.add("secret");
        masker.add("secret-and-more");
        assert_eq!(masker.mask("x secret-and-more y secret"), "x *** y ***");
    }
}
