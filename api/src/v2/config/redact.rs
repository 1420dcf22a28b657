//! Masking, as Airflow's secrets masker does it: what a response may show of a Variable's value,
//! a Connection's extra or an event's payload, and the Python-style JSON Airflow shows it in.

use std::io;

use serde::Serialize;
use serde_json::{Value, json};

pub(crate) use leoflow_secrets::masking::{MASK, is_sensitive};

/// How deep the masker walks before it masks everything under a sensitive name.
const MAX_DEPTH: usize = 5;

/// Airflow's `redact(value)`: objects are walked key by key and everything under a sensitive
/// key is masked (its strings become `***`, at any depth).
pub(crate) fn redact(value: &Value) -> Value {
    redact_at(value, None, 0)
}

fn redact_at(value: &Value, name: Option<&str>, depth: usize) -> Value {
    if name.is_some_and(is_sensitive) {
        return redact_all(value, depth);
    }
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), redact_at(v, Some(k), depth + 1)))
                .collect(),
        ),
        Value::Array(items) if depth <= MAX_DEPTH => Value::Array(
            items
                .iter()
                .map(|v| redact_at(v, None, depth + 1))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn redact_all(value: &Value, depth: usize) -> Value {
    match value {
        _ if depth > MAX_DEPTH => json!(MASK),
        Value::String(_) => json!(MASK),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), redact_all(v, depth + 1)))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| redact_all(v, depth + 1)).collect())
        }
        other => other.clone(),
    }
}

/// Airflow's `merge(new, old)`: a value sent back masked (`***`) under a sensitive name keeps
/// the old value; everything else is taken from `new`.
pub(super) fn merge(
    new: &Value,
    old: &Value,
    name: Option<&str>,
    depth: usize,
    sensitive: bool,
) -> Value {
    let masked = new.as_str() == Some(MASK);
    if depth > MAX_DEPTH {
        return if masked { old.clone() } else { new.clone() };
    }
    let sensitive = sensitive || name.is_some_and(is_sensitive);
    match (new, old) {
        (Value::Object(new_map), Value::Object(old_map)) => Value::Object(
            new_map
                .iter()
                .map(|(k, v)| {
                    let merged = match old_map.get(k) {
                        Some(o) => {
                            let child = (!sensitive).then_some(k.as_str());
                            merge(v, o, child, depth + 1, sensitive)
                        }
                        None => v.clone(),
                    };
                    (k.clone(), merged)
                })
                .collect(),
        ),
        (Value::Array(new_items), Value::Array(old_items)) => Value::Array(
            new_items
                .iter()
                .enumerate()
                .map(|(i, v)| match old_items.get(i) {
                    Some(o) if sensitive && v.as_str() == Some(MASK) => o.clone(),
                    Some(o) => merge(v, o, None, depth + 1, sensitive),
                    None => v.clone(),
                })
                .collect(),
        ),
        _ if sensitive && masked => old.clone(),
        _ => new.clone(),
    }
}

/// Python's `json.dumps(value)`: `", "` and `": "` separators, non-ASCII escaped as `\uXXXX`.
/// Airflow's API returns JSON it re-serialized in this form (masked values, audit extras).
pub(crate) fn python_json(value: &Value) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value
        .serialize(&mut serializer)
        .expect("a JSON value serializes");
    String::from_utf8(out).expect("escaped JSON is ASCII")
}

struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// A Variable's value as `VariableResponse` shows it: `***` when its key is sensitive (whatever
/// the value; Airflow itself leaves JSON scalars of sensitive keys readable), JSON re-serialized
/// with its sensitive keys masked, any other text as it is.
pub(crate) fn shown_value(key: &str, value: &str) -> String {
    if is_sensitive(key) {
        return MASK.to_owned();
    }
    match serde_json::from_str::<Value>(value) {
        Ok(parsed) => python_json(&redact(&parsed)),
        Err(_) => value.to_owned(),
    }
}

/// A Connection's extra as `ConnectionResponse` shows it: its JSON with sensitive keys masked.
/// An extra that is not JSON is not shown at all, so nothing unmasked leaks.
pub(crate) fn shown_extra(extra: Option<&str>) -> Option<String> {
    match extra {
        None | Some("") => extra.map(str::to_owned),
        Some(text) => serde_json::from_str::<Value>(text)
            .ok()
            .map(|parsed| python_json(&redact(&parsed))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_masks_under_sensitive_keys_at_any_depth() {
        let value = json!({
            "user": "u",
            "password": "p",
            "nested": {"api_key": {"a": "x", "n": 3}, "list": [{"token": "t"}, "plain"]},
        });
        assert_eq!(
            redact(&value),
            json!({
                "user": "u",
                "password": "***",
                "nested": {"api_key": {"a": "***", "n": 3}, "list": [{"token": "***"}, "plain"]},
            })
        );
    }

    #[test]
    fn values_are_shown_as_airflow_shows_them() {
        assert_eq!(shown_value("greeting", "hello"), "hello");
        assert_eq!(shown_value("db_password", "hunter2"), "***");
        assert_eq!(shown_value("db_password", "12345"), "***");
        assert_eq!(
            shown_value("config", "{\"a\":1,\"secret\":\"s\",\"é\":[1,2.5]}"),
            r#"{"a": 1, "secret": "***", "\u00e9": [1, 2.5]}"#
        );
        assert_eq!(shown_extra(Some("not json")), None);
        assert_eq!(shown_extra(Some("")), Some(String::new()));
    }
}
