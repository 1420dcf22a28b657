//! Query parameters as Airflow's API takes them — repeated keys for lists (`state=a&state=b`),
//! `limit`/`offset` or an opaque `cursor`, `order_by` with a `-` for descending, range filters
//! (`run_after_gte`…), `…_pattern` LIKE filters with `|` for OR — and the SQL they become.
//! Every malformed value is a 422 naming the parameter; column names in SQL only ever come
//! from the handlers' allow-lists, values only ever travel as binds.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::error::{ApiError, ApiResult};

/// Airflow's `fallback_page_limit`: the page size when none is asked for.
pub const DEFAULT_LIMIT: i64 = 50;
/// Airflow's `maximum_page_limit`: larger limits are lowered to it.
pub const MAXIMUM_LIMIT: i64 = 100;
/// Longest value accepted for a single query parameter.
const MAX_VALUE_LEN: usize = 4096;

/// The request's query parameters, in order, repeated keys kept.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        Params::parse(query)
    }
}

fn invalid(name: &str, kind: &str, message: impl Into<String>, input: &str) -> ApiError {
    ApiError::invalid(&["query", name], kind, message, json!(input))
}

impl Params {
    /// Parses a query string.
    pub fn parse(query: &str) -> ApiResult<Self> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Self::from_pairs(pairs)
    }

    /// Parameters as name–value pairs, checked as a query string's are.
    fn from_pairs(pairs: Vec<(String, String)>) -> ApiResult<Self> {
        // Postgres text cannot hold NUL: refused here rather than failing in the database.
        if let Some((name, value)) = pairs
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(invalid(
                name,
                "string_type",
                "NUL characters are not allowed",
                &value.replace('\0', "\\0"),
            ));
        }
        if let Some((name, value)) = pairs
            .iter()
            .find(|(_, v)| v.chars().nth(MAX_VALUE_LEN).is_some())
        {
            // The start of the value, cut at a character (a byte index could fall inside one).
            let start: String = value.chars().take(64).collect();
            return Err(invalid(
                name,
                "string_too_long",
                format!("String should have at most {MAX_VALUE_LEN} characters"),
                &start,
            ));
        }
        Ok(Self { pairs })
    }

    /// The last value of `name`.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order (a list parameter).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The values of list parameter `name` (repeated, or comma-separated), each one of
    /// `allowed` when given (a 422 naming the parameter otherwise; `none` is always allowed).
    pub fn list(&self, name: &str, allowed: Option<&[&str]>) -> ApiResult<Vec<String>> {
        let values: Vec<String> = self
            .all(name)
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        if let Some(allowed) = allowed
            && let Some(bad) = values
                .iter()
                .find(|v| !allowed.contains(&v.as_str()) && *v != "none")
        {
            return Err(invalid(
                name,
                "enum",
                format!("Input should be {}", quoted_list(allowed)),
                bad,
            ));
        }
        Ok(values)
    }

    /// An integer parameter.
    pub fn int(&self, name: &str) -> ApiResult<Option<i64>> {
        self.str(name)
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    invalid(
                        name,
                        "int_parsing",
                        "Input should be a valid integer, unable to parse string as an integer",
                        v,
                    )
                })
            })
            .transpose()
    }

    /// A number parameter.
    pub fn float(&self, name: &str) -> ApiResult<Option<f64>> {
        self.str(name)
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| {
                        invalid(
                            name,
                            "float_parsing",
                            "Input should be a valid number, unable to parse string as a number",
                            v,
                        )
                    })
            })
            .transpose()
    }

    /// A boolean parameter, spelled as pydantic accepts them.
    pub fn bool(&self, name: &str) -> ApiResult<Option<bool>> {
        self.str(name)
            .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" | "t" | "y" => Ok(true),
                "false" | "0" | "no" | "off" | "f" | "n" => Ok(false),
                _ => Err(invalid(
                    name,
                    "bool_parsing",
                    "Input should be a valid boolean, unable to interpret input",
                    v,
                )),
            })
            .transpose()
    }

    /// A date-time parameter (ISO 8601 with an offset; a bare date means its midnight UTC).
    pub fn datetime(&self, name: &str) -> ApiResult<Option<DateTime<Utc>>> {
        self.str(name)
            .filter(|v| !v.is_empty())
            .map(|v| {
                parse_datetime(v).ok_or_else(|| {
                    invalid(
                        name,
                        "datetime_from_date_parsing",
                        "Input should be a valid datetime or date",
                        v,
                    )
                })
            })
            .transpose()
    }

    /// `limit` (default 50, lowered to 100) and `offset`, or `cursor` when given.
    pub fn page(&self) -> ApiResult<Page> {
        let limit = self.int("limit")?.unwrap_or(DEFAULT_LIMIT);
        if limit < 0 {
            return Err(invalid(
                "limit",
                "greater_than_equal",
                "Input should be greater than or equal to 0",
                self.str("limit").unwrap_or(""),
            ));
        }
        let mut offset = self.int("offset")?.unwrap_or(0);
        if offset < 0 {
            return Err(invalid(
                "offset",
                "greater_than_equal",
                "Input should be greater than or equal to 0",
                self.str("offset").unwrap_or(""),
            ));
        }
        let cursor = self.str("cursor");
        if let Some(cursor) = cursor {
            offset = decode_cursor(cursor).ok_or_else(|| {
                invalid(
                    "cursor",
                    "value_error",
                    "Invalid cursor: pass the empty string for the first page, then next_cursor",
                    cursor,
                )
            })?;
        }
        Ok(Page {
            limit: limit.min(MAXIMUM_LIMIT),
            offset,
            cursor: cursor.is_some(),
        })
    }

    /// `order_by` (repeatable, `-` for descending) over `allowed` (API name → SQL expression),
    /// as an `ORDER BY` list; `default` when none is given. `tiebreak` always ends the list so
    /// pages are stable.
    pub fn order_by(
        &self,
        allowed: &[(&str, &str)],
        default: &str,
        tiebreak: &str,
    ) -> ApiResult<String> {
        let mut asked: Vec<&str> = self
            .all("order_by")
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if asked.is_empty() {
            asked.push(default);
        }
        let mut clauses = Vec::new();
        for item in asked {
            let (name, descending) = match item.strip_prefix('-') {
                Some(name) => (name, true),
                None => (item, false),
            };
            let Some((_, expression)) = allowed.iter().find(|(n, _)| *n == name) else {
                let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
                return Err(invalid(
                    "order_by",
                    "value_error",
                    format!(
                        "Ordering with '{name}' is disallowed or the attribute does not exist on \
                         the model; allowed: {}",
                        names.join(", ")
                    ),
                    item,
                ));
            };
            let direction = if descending { "DESC" } else { "ASC" };
            // Airflow sorts NULLs last ascending, first descending (Postgres' default).
            clauses.push(format!("{expression} {direction}"));
        }
        clauses.push(tiebreak.to_owned());
        Ok(clauses.join(", "))
    }
}

/// An integer path segment, or the 422 FastAPI gives for one that is not.
pub fn path_int(name: &str, value: &str) -> ApiResult<i32> {
    path_number(name, value)
}

/// A 64-bit integer path segment (an asset's id), or FastAPI's 422.
pub fn path_i64(name: &str, value: &str) -> ApiResult<i64> {
    path_number(name, value)
}

fn path_number<T: std::str::FromStr>(name: &str, value: &str) -> ApiResult<T> {
    value.parse().map_err(|_| {
        ApiError::invalid(
            &["path", name],
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
            json!(value),
        )
    })
}

/// Parses Airflow's date-time inputs.
pub fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    // A space instead of the `T`, or a `+` that arrived as a space in a query string.
    let repaired = text.replacen(' ', "T", 1);
    if let Ok(t) = DateTime::parse_from_rfc3339(&repaired) {
        return Some(t.with_timezone(&Utc));
    }
    if let Some((head, tail)) = text.rsplit_once(' ')
        && let Ok(t) = DateTime::parse_from_rfc3339(&format!("{head}+{tail}"))
    {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(&repaired, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// List parameters a request body names field by field (the `POST …/list` routes): the
/// filters then read them as they read a query string, with no detour through URL encoding.
#[derive(Debug, Default)]
pub struct BodyParams {
    pairs: Vec<(String, String)>,
}

impl BodyParams {
    /// Adds a value of parameter `name` (repeated for a list).
    pub fn append_pair(&mut self, name: &str, value: &str) -> &mut Self {
        self.pairs.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The parameters, checked as a query string's are.
    pub fn finish(self) -> ApiResult<Params> {
        Params::from_pairs(self.pairs)
    }
}

/// A page of a list: offset paging, or the cursor Airflow's UI passes (opaque to it).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Rows at most.
    pub limit: i64,
    /// Rows skipped.
    pub offset: i64,
    /// Whether the client pages by cursor (then it gets `next_cursor` / `previous_cursor`).
    pub cursor: bool,
}

impl Page {
    /// `(next_cursor, previous_cursor)` after a page of `returned` rows out of `total`.
    pub fn cursors(&self, total: i64, returned: usize) -> (Option<String>, Option<String>) {
        if !self.cursor {
            return (None, None);
        }
        let next = (self.offset + (returned as i64) < total)
            .then(|| encode_cursor(self.offset + returned as i64));
        let previous = (self.offset > 0).then(|| encode_cursor((self.offset - self.limit).max(0)));
        (next, previous)
    }
}

fn encode_cursor(offset: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("o:{offset}"))
}

fn decode_cursor(cursor: &str) -> Option<i64> {
    if cursor.is_empty() {
        return Some(0);
    }
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    text.strip_prefix("o:")?.parse().ok().filter(|o| *o >= 0)
}

pub use leoflow_projector::read::filter::{Bind, Comparison, Conditions};

/// Conditions from Airflow's filter parameters: ranges, lists and patterns, each value checked
/// (a 422 naming the parameter) before it becomes a bind.
pub trait ParamFilters {
    /// Range filters `<name>_gte`, `_gt`, `_lte`, `_lt` on a date-time column.
    fn time_range(&mut self, params: &Params, name: &str, column: &str) -> ApiResult<&mut Self>;

    /// Range filters on a number column.
    fn number_range(&mut self, params: &Params, name: &str, column: &str) -> ApiResult<&mut Self>;

    /// `column` is one of the values of list parameter `name` (none given: no filter). With
    /// `allowed`, each value must be one of them (a 422 otherwise); the value `none` matches a
    /// NULL column, as in Airflow's task-instance state filter.
    fn any_of(
        &mut self,
        params: &Params,
        name: &str,
        column: &str,
        allowed: Option<&[&str]>,
    ) -> ApiResult<&mut Self>;

    /// Airflow's `…_pattern`: a case-insensitive substring search (`ILIKE '%term%'`, so the
    /// term may hold LIKE wildcards of its own; `~` matches everything), `|` separating
    /// alternatives; and `…_prefix_pattern`: a case-sensitive prefix.
    fn patterns(&mut self, params: &Params, name: &str, column: &str) -> &mut Self;
}

impl ParamFilters for Conditions {
    fn time_range(&mut self, params: &Params, name: &str, column: &str) -> ApiResult<&mut Self> {
        range(self, name, column, |key| {
            Ok(params.datetime(key)?.map(Bind::Time))
        })
    }

    fn number_range(&mut self, params: &Params, name: &str, column: &str) -> ApiResult<&mut Self> {
        range(self, name, column, |key| {
            Ok(params.float(key)?.map(Bind::Float))
        })
    }

    fn any_of(
        &mut self,
        params: &Params,
        name: &str,
        column: &str,
        allowed: Option<&[&str]>,
    ) -> ApiResult<&mut Self> {
        let values = params.list(name, allowed)?;
        let or_null = values.iter().any(|v| v == "none" || v == "null");
        let values = values
            .into_iter()
            .filter(|v| v != "none" && v != "null")
            .collect();
        Ok(self.one_of(column, values, or_null))
    }

    fn patterns(&mut self, params: &Params, name: &str, column: &str) -> &mut Self {
        if let Some(pattern) = params
            .str(&format!("{name}_pattern"))
            .filter(|p| !p.is_empty())
        {
            let alternatives = split_alternatives(pattern)
                .into_iter()
                .map(|term| {
                    if term == "~" {
                        "%".to_owned()
                    } else {
                        format!("%{term}%")
                    }
                })
                .collect();
            self.ilike_any(column, alternatives);
        }
        if let Some(prefix) = params
            .str(&format!("{name}_prefix_pattern"))
            .filter(|p| !p.is_empty())
        {
            let prefixes = split_alternatives(prefix)
                .into_iter()
                .map(|p| format!("{}%", escape_like(&p)))
                .collect();
            self.like_any(column, prefixes);
        }
        self
    }
}

/// The four range filters of `name` on `column`, each value read by `read`.
fn range<'c>(
    conditions: &'c mut Conditions,
    name: &str,
    column: &str,
    read: impl Fn(&str) -> ApiResult<Option<Bind>>,
) -> ApiResult<&'c mut Conditions> {
    for (suffix, op) in [
        ("gte", Comparison::AtLeast),
        ("gt", Comparison::Above),
        ("lte", Comparison::AtMost),
        ("lt", Comparison::Below),
    ] {
        if let Some(value) = read(&format!("{name}_{suffix}"))? {
            conditions.compare(column, op, value);
        }
    }
    Ok(conditions)
}

fn split_alternatives(pattern: &str) -> Vec<String> {
    pattern
        .split('|')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Escapes LIKE's wildcards so a prefix matches literally.
fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn quoted_list(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_value_of_multibyte_characters_is_refused_not_a_panic() {
        let value = format!("{}{}", "a".repeat(63), "é".repeat(MAX_VALUE_LEN));
        let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
        let error = Params::parse(&format!("dag_id_pattern={encoded}")).unwrap_err();
        assert_eq!(error.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        // At the limit in characters (twice as many bytes) it is accepted.
        let fits = "é".repeat(MAX_VALUE_LEN);
        let encoded: String = form_urlencoded::byte_serialize(fits.as_bytes()).collect();
        assert!(Params::parse(&format!("x={encoded}")).is_ok());
    }

    #[test]
    fn lists_pages_and_bad_values() {
        let p = Params::parse("state=success&state=failed&limit=500&offset=3&x=%2B1").unwrap();
        assert_eq!(p.all("state"), ["success", "failed"]);
        assert_eq!(p.str("x"), Some("+1"));
        let page = p.page().unwrap();
        assert_eq!((page.limit, page.offset, page.cursor), (100, 3, false));
        let error = Params::parse("limit=abc").unwrap().page().unwrap_err();
        assert_eq!(error.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        assert!(Params::parse("offset=-1").unwrap().page().is_err());
        assert!(
            Params::parse("is_paused=maybe")
                .unwrap()
                .bool("is_paused")
                .is_err()
        );
        assert_eq!(
            Params::parse("is_paused=true")
                .unwrap()
                .bool("is_paused")
                .unwrap(),
            Some(true)
        );
    }

    #[test]
    fn cursors_walk_pages_and_garbage_is_refused() {
        let first = Params::parse("cursor=&limit=2").unwrap().page().unwrap();
        assert_eq!(first.offset, 0);
        let (next, previous) = first.cursors(5, 2);
        assert!(previous.is_none());
        let second = Params::parse(&format!("cursor={}&limit=2", next.unwrap()))
            .unwrap()
            .page()
            .unwrap();
        assert_eq!(second.offset, 2);
        assert!(second.cursors(5, 2).1.is_some());
        assert!(Params::parse("cursor=%27%3B+drop").unwrap().page().is_err());
    }

    #[test]
    fn order_by_takes_only_allowed_names() {
        let allowed = [("run_after", "r.run_after"), ("id", "r.id")];
        let p = Params::parse("order_by=-run_after").unwrap();
        assert_eq!(
            p.order_by(&allowed, "id", "r.id").unwrap(),
            "r.run_after DESC, r.id"
        );
        let bad = Params::parse("order_by=run_after;drop table x").unwrap();
        assert!(bad.order_by(&allowed, "id", "r.id").is_err());
        assert_eq!(
            Params::parse("")
                .unwrap()
                .order_by(&allowed, "-id", "r.id")
                .unwrap(),
            "r.id DESC, r.id"
        );
    }

    #[test]
    fn datetimes_in_the_shapes_clients_send() {
        for text in [
            "2026-11-23T10:14:50.352584+00:00",
            "2026-11-23T10:14:50.352584Z",
            "2026-11-23T10:14:50.352584 00:00",
            "2026-11-23 10:14:50.352584+00:00",
        ] {
            let t = parse_datetime(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(t.timestamp(), 1795428890, "{text}");
        }
        assert_eq!(
            parse_datetime("2026-11-23").unwrap().timestamp(),
            1795392000
        );
        assert!(parse_datetime("yesterday").is_none());
    }

    #[test]
    fn conditions_bind_values_and_never_splice_them() {
        let params = Params::parse(
            "state=success&state=none&dag_id_pattern=a%25|b&run_after_gte=2026-01-01",
        )
        .unwrap();
        let mut c = Conditions::new();
        c.any_of(&params, "state", "t.state", None).unwrap();
        c.patterns(&params, "dag_id", "t.dag_id");
        c.time_range(&params, "run_after", "t.run_after").unwrap();
        assert_eq!(
            c.sql_after("SELECT 1 FROM t"),
            "SELECT 1 FROM t WHERE (t.state = ANY($1) OR t.state IS NULL) AND t.dag_id ILIKE ANY($2) AND t.run_after >= $3"
        );
        assert!(c.mentions("t.dag_id") && !c.mentions("r."));
        let bad = Params::parse("state=nonsense").unwrap();
        assert!(
            Conditions::new()
                .any_of(&bad, "state", "t.state", Some(&["success", "failed"]))
                .is_err()
        );
    }
}
