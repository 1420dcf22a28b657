//! JSON request bodies, refused the way FastAPI refuses them: a 422 whose `loc` names the
//! field (`["body", "conf"]`), `missing` / `extra_forbidden` / `json_invalid` as pydantic's
//! error types. The body is parsed whatever its content type says, as FastAPI does.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::ApiError;

/// A JSON body deserialized into `T` (whose structs should `deny_unknown_fields`).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state).await.map_err(|e| {
            ApiError::detail(
                e.status(),
                format!("the request body could not be read: {e}"),
            )
        })?;
        parse(&bytes).map(Body)
    }
}

/// Parses a body; the error is the 422 FastAPI would give.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            &["body"],
            "missing",
            "Field required",
            Value::Null,
        ));
    }
    let raw: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::invalid(
            &["body", &e.column().to_string()],
            "json_invalid",
            format!("JSON decode error: {e}"),
            json!({}),
        )
    })?;
    if let Some(path) = nul_at(&raw, &mut vec!["body".to_owned()]) {
        let loc: Vec<&str> = path.iter().map(String::as_str).collect();
        return Err(ApiError::invalid(
            &loc,
            "string_type",
            "NUL characters are not allowed",
            Value::Null,
        ));
    }
    serde_path_to_error::deserialize::<_, T>(&raw).map_err(|error| {
        let mut loc: Vec<String> = vec!["body".into()];
        loc.extend(
            error
                .path()
                .iter()
                .map(|segment| segment.to_string())
                .filter(|s| s != "?" && !s.is_empty()),
        );
        let message = error.inner().to_string();
        // The path already ends at an unknown field; a missing one is not in it yet.
        let mut name = |field: String| {
            if loc.last() != Some(&field) {
                loc.push(field);
            }
        };
        let (kind, msg) = if let Some(field) = between_backticks(&message, "missing field") {
            name(field);
            ("missing", "Field required".to_owned())
        } else if let Some(field) = between_backticks(&message, "unknown field") {
            name(field);
            (
                "extra_forbidden",
                "Extra inputs are not permitted".to_owned(),
            )
        } else {
            ("value_error", message.clone())
        };
        let input = locate(&raw, &loc[1..]).cloned().unwrap_or(Value::Null);
        let loc: Vec<&str> = loc.iter().map(String::as_str).collect();
        ApiError::invalid(&loc, kind, msg, input)
    })
}

/// Where a NUL character hides in `value` (Postgres text cannot store one), as a `loc`.
fn nul_at(value: &Value, path: &mut Vec<String>) -> Option<Vec<String>> {
    match value {
        Value::String(s) if s.contains('\0') => Some(path.clone()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            path.push(i.to_string());
            let found = nul_at(v, path);
            path.pop();
            found
        }),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            path.push(k.clone());
            let found = if k.contains('\0') {
                Some(path.clone())
            } else {
                nul_at(v, path)
            };
            path.pop();
            found
        }),
        _ => None,
    }
}

/// The name in backticks after `prefix` in a serde message (`missing field `key``).
fn between_backticks(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?.trim_start();
    let rest = rest.strip_prefix('`')?;
    Some(rest[..rest.find('`')?].to_owned())
}

fn locate<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, segment| match v {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Variable {
        key: String,
        value: String,
        description: Option<String>,
    }

    fn detail(bytes: &str) -> Value {
        let error = parse::<Variable>(bytes.as_bytes()).unwrap_err();
        assert_eq!(error.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        let body = axum::response::IntoResponse::into_response(error);
        let bytes =
            futures_util::FutureExt::now_or_never(axum::body::to_bytes(body.into_body(), 1 << 20))
                .unwrap()
                .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()["detail"][0].clone()
    }

    #[test]
    fn each_refusal_names_its_field() {
        let missing = detail(r#"{"key": "k"}"#);
        assert_eq!(missing["type"], "missing");
        assert_eq!(missing["loc"], json!(["body", "value"]));
        let extra = detail(r#"{"key": "k", "value": "v", "colour": 1}"#);
        assert_eq!(extra["type"], "extra_forbidden");
        assert_eq!(extra["loc"], json!(["body", "colour"]));
        let wrong = detail(r#"{"key": 5, "value": "v"}"#);
        assert_eq!(wrong["loc"], json!(["body", "key"]));
        assert_eq!(wrong["input"], json!(5));
        assert_eq!(detail("{not json")["type"], "json_invalid");
        let nul = detail(r#"{"key": "a\u0000b", "value": "v"}"#);
        assert_eq!(
            (nul["type"].as_str(), &nul["loc"]),
            (Some("string_type"), &json!(["body", "key"]))
        );
        assert_eq!(detail("")["type"], "missing");
    }
}
