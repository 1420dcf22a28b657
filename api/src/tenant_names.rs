//! DAG names at the API's edge, for callers of one tenant other than the default.
//!
//! DAG ids repeat across tenants, so the log and the read models key a DAG of tenant `acme` as
//! `acme:etl` ([`leoflow_events::dag_key`]). A caller of `acme` knows it as `etl`, as its file
//! does. This layer translates between the two, before routing and after the handler, so no
//! handler knows about it:
//!
//! - **In:** the `{dag_id}` segment of a path, the `dag_id`, `dag_ids` and `source_dag_id`
//!   query parameters (a dependency graph's `node_id=dag:…`, the event feed's `stream=run:…`),
//!   and the same fields of a JSON body become keys. A key that is another tenant's (`other:etl`) becomes `acme:other:etl`,
//!   which names nothing.
//! - **Out:** the same fields of a JSON response, DAG nodes of a graph, events' streams, and
//!   the errors' `detail` become names again. The event feed (newline-delimited JSON, followed)
//!   does this itself, line by line, with [`named`].
//!
//! Fields holding a user's own data (a run's `conf`, an XCom's or Variable's `value`, `extra`,
//! `params`, rendered fields, a trigger's `kwargs`, log `content`) are left alone: a `dag_id`
//! key in a run's conf is the user's.
//!
//! The default tenant's keys are its names, and platform admins see keys (`acme:etl`, valid in
//! paths): neither is translated. `dag_id_pattern` searches match keys by substring, which
//! within one tenant matches what a name would.

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use leoflow_events::catalog::DAG_STREAM_KINDS;
use serde_json::Value;

use crate::auth::{Authenticated, presented_user};
use crate::error::ApiError;
use crate::permissions::route_of;
use crate::state::ApiState;

/// Query parameters and JSON fields that name DAGs.
const DAG_FIELDS: [&str; 3] = ["dag_id", "dag_ids", "source_dag_id"];

/// Response fields that show a DAG's key (its display name is its key).
const SHOWN_FIELDS: [&str; 5] = [
    "dag_id",
    "dag_ids",
    "source_dag_id",
    "dag_display_name",
    "input",
];

/// Fields holding a user's own data: never translated.
const USER_DATA: [&str; 10] = [
    "conf",
    "value",
    "extra",
    "params",
    "params_input",
    "rendered_fields",
    "kwargs",
    "content",
    "chosen_options",
    "default_args",
];

/// Leoflow's own routes about one DAG: `/leoflow/api/dags/{dag_id}/…`.
const OWN_DAG_ROUTES: &str = "/leoflow/api/dags/";

/// The largest JSON body translated (a larger one passes as it is, and names no DAG the
/// handler will find).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Middleware (before routing): translates names and keys for a caller of one tenant other
/// than the default; anyone else's request passes untouched. The user found is handed on to
/// [`crate::auth::require_user`].
pub(crate) async fn translate(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    if !names_dags(request.uri().path()) {
        return next.run(request).await;
    }
    let Some(user) = presented_user(&state, request.headers()).await else {
        return next.run(request).await;
    };
    let prefix = user.dag_key_prefix();
    request.extensions_mut().insert(Authenticated(user));
    let Some(prefix) = prefix else {
        return next.run(request).await;
    };
    let request = match to_keys(request, &prefix).await {
        Ok(request) => request,
        Err(refusal) => return refusal.into_response(),
    };
    to_names(next.run(request).await, &prefix).await
}

/// Whether a path may name DAGs: the API's, the UI's and Leoflow's own (not a push, whose
/// document names DAGs as their files do).
fn names_dags(path: &str) -> bool {
    path.starts_with("/api/v2/")
        || path.starts_with("/ui/")
        || path.starts_with(OWN_DAG_ROUTES)
        || path == crate::event_log::FEED_PATH
        || path == crate::event_log::REPLAY_PATH
}

/// `value` (a recorded event, say) as a caller of the tenant whose keys start with `prefix`
/// sees it: DAG names, streams named by them.
pub(crate) fn named(value: &mut Value, prefix: &str) {
    walk(value, &mut |field, v| to_name(field, v, prefix));
}

/// The request with the DAGs it names keyed in the tenant.
async fn to_keys(request: Request, prefix: &str) -> Result<Request, ApiError> {
    let (mut parts, body) = request.into_parts();
    let path = keyed_path(parts.method.as_str(), parts.uri.path(), prefix);
    let query = parts.uri.query().map(|query| keyed_query(query, prefix));
    let path_and_query = match &query {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut uri = parts.uri.clone().into_parts();
    uri.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|_| ApiError::bad_request("the request's path is not a valid URI"))?,
    );
    parts.uri = Uri::from_parts(uri).map_err(|_| ApiError::bad_request("invalid URI"))?;
    if !is_json(parts.headers.get(header::CONTENT_TYPE)) {
        return Ok(Request::from_parts(parts, body));
    }
    let bytes = to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::bad_request("the request's body could not be read"))?;
    let bytes = rewrite_json(bytes, |value| {
        walk(value, &mut |field, v| to_key(field, v, prefix))
    });
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The response with the DAG keys it shows turned into names.
async fn to_names(response: Response, prefix: &str) -> Response {
    if !is_json(response.headers().get(header::CONTENT_TYPE)) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        return ApiError::internal("the response could not be read").into_response();
    };
    // Most responses show no key of the tenant: those pass as they are.
    if !contains(&bytes, prefix.as_bytes()) {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let bytes = rewrite_json(bytes, |value| named(value, prefix));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// `bytes` with `change` applied when they are JSON; as they are otherwise (the handler
/// reports what is wrong with them).
fn rewrite_json(bytes: Bytes, change: impl FnOnce(&mut Value)) -> Bytes {
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return bytes;
    };
    change(&mut value);
    serde_json::to_vec(&value).map_or(bytes, Bytes::from)
}

/// Calls `visit` with each field of each object in `value` (and its name), not descending into
/// a user's own data.
fn walk(value: &mut Value, visit: &mut impl FnMut(&str, &mut Value)) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|item| walk(item, visit)),
        Value::Object(fields) => {
            let is_dag_node = fields.get("type").and_then(Value::as_str) == Some("dag");
            for (name, field) in fields.iter_mut() {
                if USER_DATA.contains(&name.as_str()) {
                    continue;
                }
                // A graph's DAG node is labelled with its DAG's key.
                let name = if is_dag_node && name == "label" {
                    "dag_id"
                } else {
                    name.as_str()
                };
                visit(name, field);
                walk(field, visit);
            }
        }
        _ => {}
    }
}

/// A field of a request, keyed.
fn to_key(field: &str, value: &mut Value, prefix: &str) {
    if !DAG_FIELDS.contains(&field) {
        return;
    }
    each_string(value, |name| Some(keyed(name, prefix)));
}

/// A field of a response, named.
fn to_name(field: &str, value: &mut Value, prefix: &str) {
    match field {
        // An event's stream (`run:acme:etl/…` is `run:etl/…` to acme), a dependency graph's DAG
        // nodes (`dag:acme:etl`) and the edges between them.
        "stream" | "resource" | "id" | "source_id" | "target_id" => {
            each_string(value, |stream| {
                let (kind, key) = dag_stream(stream)?;
                key.strip_prefix(prefix)
                    .map(|name| format!("{kind}:{name}"))
            });
        }
        // What an error says names keys where the caller used names.
        "detail" | "msg" => each_string(value, |text| {
            text.contains(prefix).then(|| text.replace(prefix, ""))
        }),
        field if SHOWN_FIELDS.contains(&field) => {
            each_string(value, |key| key.strip_prefix(prefix).map(str::to_owned));
        }
        _ => {}
    }
}

/// Replaces `value` (a string, or each string of an array) by what `change` makes of it, when
/// it makes something.
fn each_string(value: &mut Value, change: impl Fn(&str) -> Option<String> + Copy) {
    match value {
        Value::String(text) => {
            if let Some(changed) = change(text) {
                *text = changed;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| each_string(item, change)),
        _ => {}
    }
}

/// The kind and DAG key of a stream named after a DAG (`run:acme:etl/r1`: `run`,
/// `acme:etl/r1`), or of a graph's DAG node (`dag:acme:etl`).
fn dag_stream(stream: &str) -> Option<(&str, &str)> {
    stream
        .split_once(':')
        .filter(|(kind, _)| DAG_STREAM_KINDS.contains(kind))
}

/// `name`'s key in the tenant; `~` (every DAG) stays.
fn keyed(name: &str, prefix: &str) -> String {
    if name == "~" || name.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}{name}")
    }
}

/// `path` with its `{dag_id}` segment keyed.
fn keyed_path(method: &str, path: &str, prefix: &str) -> String {
    let at = if let Some(rest) = path.strip_prefix(OWN_DAG_ROUTES) {
        (!rest.is_empty()).then_some(OWN_DAG_ROUTES.matches('/').count())
    } else {
        route_of(method, path)
            .and_then(|(template, _)| template.split('/').position(|part| part == "{dag_id}"))
    };
    let Some(at) = at else {
        return path.to_owned();
    };
    path.split('/')
        .enumerate()
        .map(|(i, segment)| {
            if i == at {
                keyed(segment, prefix)
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `query` with the DAGs it names keyed (a comma-separated `dag_ids` part by part).
fn keyed_query(query: &str, prefix: &str) -> String {
    let mut keyed_pairs = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = match name.as_ref() {
            "dag_ids" => value
                .split(',')
                .map(|part| keyed(part.trim(), prefix))
                .collect::<Vec<_>>()
                .join(","),
            name if DAG_FIELDS.contains(&name) => keyed(&value, prefix),
            "node_id" | "stream" => match dag_stream(&value) {
                Some((kind, name)) => format!("{kind}:{}", keyed(name, prefix)),
                None => value.into_owned(),
            },
            _ => value.into_owned(),
        };
        keyed_pairs.append_pair(&name, &value);
    }
    keyed_pairs.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_key_the_dag_segment_of_airflow_s_and_leoflow_s_routes() {
        let key = |method, path| keyed_path(method, path, "acme:");
        assert_eq!(key("GET", "/api/v2/dags/etl"), "/api/v2/dags/acme:etl");
        assert_eq!(
            key("GET", "/api/v2/dags/etl/dagRuns/r1/taskInstances/t"),
            "/api/v2/dags/acme:etl/dagRuns/r1/taskInstances/t"
        );
        assert_eq!(
            key("GET", "/api/v2/dags/~/dagRuns"),
            "/api/v2/dags/~/dagRuns"
        );
        assert_eq!(key("GET", "/ui/grid/runs/etl"), "/ui/grid/runs/acme:etl");
        assert_eq!(
            key("POST", "/leoflow/api/dags/etl/rollback"),
            "/leoflow/api/dags/acme:etl/rollback"
        );
        assert_eq!(key("GET", "/api/v2/pools/etl"), "/api/v2/pools/etl");
    }

    #[test]
    fn queries_key_dag_parameters_only() {
        assert_eq!(
            keyed_query("dag_ids=a,b&dag_id=c&limit=5&node_id=dag:d", "acme:"),
            "dag_ids=acme%3Aa%2Cacme%3Ab&dag_id=acme%3Ac&limit=5&node_id=dag%3Aacme%3Ad"
        );
        assert_eq!(
            keyed_query("node_id=asset:1&dag_id_pattern=et", "acme:"),
            "node_id=asset%3A1&dag_id_pattern=et"
        );
    }

    #[test]
    fn bodies_key_dag_fields_but_not_a_user_s_data() {
        let mut body = json!({
            "dag_ids": ["a", "b"],
            "entities": [{"dag_id": "c", "task_id": "t"}],
            "conf": {"dag_id": "mine"},
        });
        walk(&mut body, &mut |field, v| to_key(field, v, "acme:"));
        assert_eq!(
            body,
            json!({
                "dag_ids": ["acme:a", "acme:b"],
                "entities": [{"dag_id": "acme:c", "task_id": "t"}],
                "conf": {"dag_id": "mine"},
            })
        );
    }

    #[test]
    fn responses_show_names() {
        let mut body = json!({
            "dags": [{"dag_id": "acme:etl", "dag_display_name": "acme:etl", "owners": ["acme:x"]}],
            "nodes": [
                {"id": "dag:acme:etl", "label": "acme:etl", "type": "dag"},
                {"id": "asset:1", "label": "acme:etl", "type": "asset"},
            ],
            "edges": [{"source_id": "asset:1", "target_id": "dag:acme:etl"}],
            "value": {"dag_id": "acme:kept"},
            "detail": "The Dag with ID: `acme:etl` was not found",
        });
        walk(&mut body, &mut |field, v| to_name(field, v, "acme:"));
        assert_eq!(
            body,
            json!({
                "dags": [{"dag_id": "etl", "dag_display_name": "etl", "owners": ["acme:x"]}],
                "nodes": [
                    {"id": "dag:etl", "label": "etl", "type": "dag"},
                    {"id": "asset:1", "label": "acme:etl", "type": "asset"},
                ],
                "edges": [{"source_id": "asset:1", "target_id": "dag:etl"}],
                "value": {"dag_id": "acme:kept"},
                "detail": "The Dag with ID: `etl` was not found",
            })
        );
    }
}
