//! Airflow's audit log (`/api/v2/eventLogs`), served from Leoflow's event log itself: every
//! event is an entry. Its position is the id, its type the event, its actor the owner; the DAG,
//! run, task, map index and try it concerns come from its payload (top level, or `ti` for task
//! events), and the payload itself, secrets masked, is the `extra`, with what the event's
//! metadata records of its actor besides the subject (display name, tenant, client address,
//! credential id) under `actor`.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use leoflow_events::Metadata;
use leoflow_projector::read::audit_log::{self, EventLogRow, columns};
use serde::Serialize;
use serde_json::{Value, json};

use crate::auth::User;
use crate::dag_access::DagScope;
use crate::error::{ApiError, ApiResult};
use crate::query::{Bind, Comparison, Conditions, ParamFilters, Params};
use crate::read::page::read_page;
use crate::state::ApiState;
use crate::v2::config::redact::{MASK, python_json, redact};

/// Airflow's `EventLogResponse`.
#[derive(Debug, Serialize)]
pub struct EventLogResponse {
    pub event_log_id: i64,
    pub when: DateTime<Utc>,
    pub dag_id: Option<String>,
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    pub map_index: Option<i32>,
    pub try_number: Option<i32>,
    pub event: String,
    pub logical_date: Option<DateTime<Utc>>,
    pub owner: Option<String>,
    pub extra: String,
    pub dag_display_name: Option<String>,
    pub task_display_name: Option<String>,
}

/// Airflow's `EventLogCollectionResponse`.
#[derive(Debug, Serialize)]
pub struct EventLogCollection {
    pub event_logs: Vec<EventLogResponse>,
    pub total_entries: i64,
}

impl EventLogResponse {
    /// `row` as a caller of a tenant whose DAG keys start with `prefix` sees it: the payload
    /// in `extra` names the DAGs by their ids, as the API's edge does for the other fields
    /// (`tenant_names`), which do not reach into `extra`'s text.
    fn shown_to(row: &EventLogRow, prefix: Option<&str>) -> Self {
        let mut payload = shown_payload(row);
        if let Some(prefix) = prefix {
            crate::tenant_names::named(&mut payload, prefix);
        }
        Self::with_payload(row, &payload)
    }

    fn with_payload(row: &EventLogRow, payload: &Value) -> Self {
        EventLogResponse {
            event_log_id: row.position,
            when: row.recorded_at,
            dag_id: row.dag_id.clone(),
            task_id: row.task_id.clone(),
            run_id: row.run_id.clone(),
            map_index: row.map_index,
            try_number: row.try_number,
            event: row.event.clone(),
            logical_date: row.logical_date,
            owner: row.owner.clone(),
            extra: extra(&row.event, payload, &row.metadata),
            dag_display_name: row.dag_id.clone(),
            task_display_name: row.task_id.clone(),
        }
    }
}

/// The payload of `row` in the current schema (see `RecordedEvent::shown`).
fn shown_payload(row: &EventLogRow) -> Value {
    leoflow_events::Event::decode(&row.event, row.schema_version, row.payload.clone())
        .map(|event| event.payload())
        .unwrap_or_else(|_| row.payload.clone())
}

/// The payload as Airflow's audit extras read: JSON as Python prints it, with what Airflow's
/// action logging masks masked (values under sensitive names), and the actor's details under
/// `actor` when the metadata records any. Sealed secrets — a Variable's value, a Connection's
/// password and extra — read `***`: the audit log never opens them (and cannot, once a deleted
/// secret's data key is gone).
fn extra(event: &str, payload: &Value, metadata: &Metadata) -> String {
    let mut masked = redact(payload);
    if matches!(event, "VariableSet" | "ConnectionSet") {
        for field in ["value", "password", "extra"] {
            if payload[field].is_object() {
                masked[field] = json!(MASK);
            }
        }
    }
    if let (Value::Object(fields), Some(actor)) = (&mut masked, actor_details(metadata)) {
        // No payload has an `actor` field; should one ever, it is the event's to show.
        fields.entry("actor").or_insert(actor);
    }
    python_json(&masked)
}

/// What the metadata records of the actor besides the subject (which is the `owner`), the
/// fields it does not know left out; `None` when it knows nothing more (Leoflow's own
/// components, events recorded before these fields existed).
fn actor_details(metadata: &Metadata) -> Option<Value> {
    let details = ActorDetails {
        display_name: metadata.display_name.as_deref(),
        tenant: metadata.tenant.as_deref(),
        client: metadata.client,
        token_id: metadata.token_id.as_deref(),
    };
    let value = serde_json::to_value(details).expect("plain fields serialize");
    (value != json!({})).then_some(value)
}

/// The actor's details in an audit-log entry's `extra`.
#[derive(Serialize)]
struct ActorDetails<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<std::net::IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_id: Option<&'a str>,
}

/// The filters of `GET /eventLogs`.
fn conditions(params: &Params) -> ApiResult<Conditions> {
    let mut c = Conditions::new();
    for (name, column) in [
        ("dag_id", columns::DAG_ID),
        ("task_id", columns::TASK_ID),
        ("run_id", columns::RUN_ID),
        ("owner", columns::OWNER),
        ("event", columns::EVENT),
    ] {
        if let Some(value) = params.str(name).filter(|v| !v.is_empty()) {
            c.eq(column, Bind::Text(value.to_owned()));
        }
        c.patterns(params, name, column);
    }
    if let Some(map_index) = params.int("map_index")? {
        audit_log::map_index_is(&mut c, map_index);
    }
    if let Some(try_number) = params.int("try_number")? {
        audit_log::try_number_is(&mut c, try_number);
    }
    c.one_of(columns::EVENT, params.list("included_events", None)?, false);
    let excluded = params.list("excluded_events", None)?;
    if !excluded.is_empty() {
        audit_log::event_not_in(&mut c, excluded);
    }
    if let Some(before) = params.datetime("before")? {
        c.compare(columns::RECORDED_AT, Comparison::Below, Bind::Time(before));
    }
    if let Some(after) = params.datetime("after")? {
        c.compare(columns::RECORDED_AT, Comparison::Above, Bind::Time(after));
    }
    Ok(c)
}

/// `GET /api/v2/eventLogs`.
pub async fn get_event_logs(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    scope: DagScope,
    params: Params,
) -> ApiResult<Json<EventLogCollection>> {
    let page = params.page()?;
    let mut conditions = conditions(&params)?;
    if let Some(tenant) = &scope.tenant {
        audit_log::within_tenant(&mut conditions, tenant);
    }
    // `recorded_at` is read under the log lock that assigns positions, so position order is
    // time order: sorting by time walks the primary key instead of sorting the log.
    let order = params.order_by(
        &[
            ("id", columns::POSITION),
            ("event_log_id", columns::POSITION),
            ("dttm", columns::POSITION),
            ("when", columns::POSITION),
            ("dag_id", columns::DAG_ID),
            ("task_id", columns::TASK_ID),
            ("run_id", columns::RUN_ID),
            ("event", columns::EVENT),
            ("logical_date", columns::LOGICAL_DATE),
            ("owner", columns::OWNER),
            ("extra", columns::PAYLOAD_TEXT),
        ],
        "id",
        columns::POSITION,
    )?;
    let pool = state.store.pool();
    let listed = read_page(page, |w| audit_log::page(pool, &conditions, &order, w)).await?;
    let prefix = user.dag_key_prefix();
    Ok(Json(EventLogCollection {
        event_logs: listed
            .rows
            .iter()
            .map(|row| EventLogResponse::shown_to(row, prefix.as_deref()))
            .collect(),
        total_entries: listed.total,
    }))
}

/// `GET /api/v2/eventLogs/{event_log_id}`.
pub async fn get_event_log(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    scope: DagScope,
) -> ApiResult<Json<EventLogResponse>> {
    let position: i64 = id.parse().map_err(|_| {
        ApiError::invalid(
            &["path", "event_log_id"],
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
            json!(id),
        )
    })?;
    let not_found =
        || ApiError::not_found(format!("The Event Log with id: `{position}` not found"));
    let row = audit_log::by_position(state.store.pool(), position)
        .await?
        .ok_or_else(not_found)?;
    if !visible(&state, &scope, &row).await? {
        return Err(not_found());
    }
    let prefix = user.dag_key_prefix();
    Ok(Json(EventLogResponse::shown_to(&row, prefix.as_deref())))
}

/// Whether a caller of `scope` may see `row`: another tenant's entries do not exist for them.
async fn visible(state: &ApiState, scope: &DagScope, row: &EventLogRow) -> ApiResult<bool> {
    let Some(tenant) = &scope.tenant else {
        return Ok(true);
    };
    Ok(match &row.dag_id {
        Some(dag_id) => leoflow_projector::read::dags::owner(state.store.pool(), dag_id)
            .await?
            .is_some_and(|owner| owner.tenant == *tenant),
        None => row.metadata.tenant.as_deref() == Some(tenant.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extras_mask_what_airflow_masks() {
        let sealed = json!({"form": "data_key", "key_id": "k", "ciphertext": "c2VjcmV0"});
        let connection = json!({
            "conn_id": "db", "password": sealed, "extra": sealed, "host": "h",
        });
        let by_name = Metadata::actor("admin");
        assert_eq!(
            extra("ConnectionSet", &connection, &by_name),
            r#"{"conn_id": "db", "extra": "***", "host": "h", "password": "***"}"#
        );
        let variable = json!({"key": "greeting", "value": sealed, "description": null});
        assert_eq!(
            extra("VariableSet", &variable, &by_name),
            r#"{"description": null, "key": "greeting", "value": "***"}"#
        );
        let pool = json!({"name": "p", "slots": 3, "description": "token bucket"});
        assert!(extra("PoolSet", &pool, &by_name).contains(r#""description": "token bucket""#));
    }

    #[test]
    fn extras_carry_the_actor_but_never_a_secret() {
        let metadata = Metadata::from(&leoflow_events::Actor {
            subject: "token:4f2a9c".into(),
            display_name: "deploy bot".into(),
            tenant: Some("acme".into()),
            client: Some("127.0.0.1".parse().unwrap()),
            token_id: Some("4f2a9c".into()),
        });
        let sealed = json!({"form": "data_key", "key_id": "k", "ciphertext": "c2VjcmV0"});
        let variable = json!({"key": "greeting", "value": sealed, "description": null});
        assert_eq!(
            extra("VariableSet", &variable, &metadata),
            r#"{"actor": {"client": "127.0.0.1", "display_name": "deploy bot", "tenant": "acme", "token_id": "4f2a9c"}, "description": null, "key": "greeting", "value": "***"}"#
        );
    }
}
