//! Connections (`/api/v2/connections`): the `connection` read model, kept by `ConnectionSet`
//! and `ConnectionDeleted`. The password and the extra are sealed with the Connection's data key
//! before its event is appended; a password is never returned; an extra is shown with its
//! sensitive keys masked, and what the edit form sends back masked keeps its stored value.
//! Each belongs to a tenant, shown as Airflow's `team_name`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use leoflow_events::Event;
use leoflow_events::catalog::{ConnectionDeleted, ConnectionSet, Sealed};
use leoflow_projector::read::connections::{self, ConnectionRow, columns};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::bulk::{BulkBody, BulkReport, bulk};
use super::entity::{
    Entity, Loc, Refusal, acting_tenant, create_one, delete_one, listed_tenant, present, read_one,
    team_of, update_mask, update_one, wants,
};
use super::redact::{MASK, merge, python_json, shown_extra};
use crate::auth::User;
use crate::body::Body;
use crate::error::{ApiError, ApiResult};
use crate::query::{Bind, Conditions, ParamFilters, Params};
use crate::read::page::read_page;
use crate::state::ApiState;

/// A Connection as a request works with it: password and extra opened.
#[derive(Debug, Clone)]
struct Connection {
    tenant: String,
    conn_id: String,
    conn_type: String,
    description: Option<String>,
    host: Option<String>,
    schema: Option<String>,
    login: Option<String>,
    password: Option<String>,
    port: Option<i32>,
    extra: Option<String>,
}

/// Airflow's `ConnectionResponse`.
#[derive(Debug, Serialize)]
pub struct ConnectionResponse {
    pub connection_id: String,
    pub conn_type: String,
    pub description: Option<String>,
    pub host: Option<String>,
    pub login: Option<String>,
    pub schema: Option<String>,
    pub port: Option<i32>,
    pub password: Option<&'static str>,
    pub extra: Option<String>,
    pub team_name: Option<String>,
}

/// Airflow's `ConnectionCollectionResponse`.
#[derive(Debug, Serialize)]
pub struct ConnectionCollection {
    pub connections: Vec<ConnectionResponse>,
    pub total_entries: i64,
}

/// Opens the sealed fields of `rows` (one query for all their data keys).
async fn opened(state: &ApiState, rows: Vec<ConnectionRow>) -> ApiResult<Vec<Connection>> {
    let sealed: Vec<&Sealed> = rows
        .iter()
        .flat_map(|r| r.password.iter().chain(&r.extra).map(|s| &s.0))
        .collect();
    let mut values = state.vault.open_all(&sealed).await?.into_iter();
    Ok(rows
        .into_iter()
        .map(|row| {
            let password = row.password.as_ref().and_then(|_| values.next());
            let extra = row.extra.as_ref().and_then(|_| values.next());
            Connection {
                tenant: row.tenant,
                conn_id: row.conn_id,
                conn_type: row.conn_type,
                description: row.description,
                host: row.host,
                schema: row.schema,
                login: row.login,
                password,
                port: row.port,
                extra,
            }
        })
        .collect())
}

impl Connection {
    /// Seals `value` with this Connection's data key.
    async fn seal(&self, state: &ApiState, value: Option<&str>) -> ApiResult<Option<Sealed>> {
        let owner = Connection::deleted_event(&self.tenant, &self.conn_id).stream();
        match value {
            Some(value) => Ok(Some(state.vault.seal(&owner, value).await?)),
            None => Ok(None),
        }
    }

    /// `ConnectionResponse`: a password reads `***` (as Airflow redacts it), never its value.
    fn response(&self) -> ConnectionResponse {
        ConnectionResponse {
            connection_id: self.conn_id.clone(),
            conn_type: self.conn_type.clone(),
            description: self.description.clone(),
            host: self.host.clone(),
            login: self.login.clone(),
            schema: self.schema.clone(),
            port: self.port,
            password: self.password.as_ref().map(|_| MASK),
            extra: shown_extra(self.extra.as_deref()),
            team_name: team_of(&self.tenant),
        }
    }
}

/// Airflow's `ConnectionBody`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionBody {
    connection_id: String,
    conn_type: String,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    host: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    login: Option<Option<String>>,
    #[serde(default, alias = "schema_", deserialize_with = "present")]
    schema: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    port: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present")]
    password: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    extra: Option<Option<String>>,
    #[serde(default)]
    team_name: Option<String>,
}

impl ConnectionBody {
    /// The extra to store: `""` means `{}`, as in Airflow.
    fn extra(&self) -> Option<String> {
        self.extra
            .clone()
            .flatten()
            .map(|e| if e.is_empty() { "{}".to_owned() } else { e })
    }
}

/// Airflow's `connection_id` pattern, `^[\w.-]+$`.
fn valid_connection_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A new extra merged into the stored one: keys sent back masked keep their stored values.
fn merged_extra(new: &str, old: &str) -> String {
    match (
        serde_json::from_str::<Value>(new),
        serde_json::from_str::<Value>(old),
    ) {
        (Ok(new_value), Ok(old_value)) => {
            python_json(&merge(&new_value, &old_value, None, 0, false))
        }
        _ => new.to_owned(),
    }
}

impl Entity for Connection {
    type Body = ConnectionBody;
    const LABEL: &'static str = "The Connection with connection_id";
    const PLURAL: &'static str = "connections";
    const KEYS: &'static str = "connection_ids";

    fn key(&self) -> &str {
        &self.conn_id
    }

    fn body_key(body: &ConnectionBody) -> &str {
        &body.connection_id
    }

    fn validate(body: &ConnectionBody, loc: &Loc) -> ApiResult<()> {
        loc.check_key("connection_id", &body.connection_id, 200)?;
        if !valid_connection_id(&body.connection_id) {
            return Err(loc.invalid(
                "connection_id",
                "string_pattern_mismatch",
                "String should match pattern '^[\\w.-]+$'",
                json!(body.connection_id),
            ));
        }
        if let Some(extra) = body.extra().filter(|e| !e.is_empty()) {
            let message = match serde_json::from_str::<Value>(&extra) {
                Ok(Value::Object(_)) => None,
                Ok(_) => Some(
                    "Value error, The `extra` field must be a valid JSON object (e.g., {'key': 'value'})",
                ),
                Err(_) => Some(
                    "Value error, The `extra` field must be a valid JSON object (e.g., {'key': 'value'}), \
                     but encountered non-JSON in `extra` field",
                ),
            };
            if let Some(message) = message {
                return Err(loc.invalid("extra", "value_error", message, json!(extra)));
            }
        }
        loc.check_team(&body.team_name)
    }

    fn body_team(body: &ConnectionBody) -> Option<&str> {
        body.team_name.as_deref()
    }

    async fn load(state: &ApiState, tenant: &str, keys: &[String]) -> ApiResult<Vec<Self>> {
        let rows = connections::by_ids(state.store.pool(), tenant, keys).await?;
        opened(state, rows).await
    }

    fn create(_state: &ApiState, tenant: &str, body: &ConnectionBody) -> Self {
        Connection {
            tenant: tenant.to_owned(),
            conn_id: body.connection_id.clone(),
            conn_type: body.conn_type.clone(),
            description: body.description.clone().flatten(),
            host: body.host.clone().flatten(),
            schema: body.schema.clone().flatten(),
            login: body.login.clone().flatten(),
            password: body.password.clone().flatten(),
            port: body.port.flatten(),
            extra: body.extra(),
        }
    }

    fn update(
        &self,
        _state: &ApiState,
        body: &ConnectionBody,
        mask: Option<&[String]>,
    ) -> Result<Self, Refusal> {
        let mut connection = self.clone();
        if wants(mask, "conn_type") {
            connection.conn_type = body.conn_type.clone();
        }
        for (field, given, stored) in [
            (
                "description",
                &body.description,
                &mut connection.description,
            ),
            ("host", &body.host, &mut connection.host),
            ("login", &body.login, &mut connection.login),
            ("schema", &body.schema, &mut connection.schema),
        ] {
            if let Some(value) = given
                && wants(mask, field)
            {
                *stored = value.clone();
            }
        }
        if let Some(port) = body.port
            && wants(mask, "port")
        {
            connection.port = port;
        }
        // As in Airflow, a mask naming `password` or `extra` sets it even when the body leaves
        // it out (to nothing, then).
        let named = |given: bool, field: &str| match mask {
            None => given,
            Some(mask) => mask.iter().any(|f| f.trim() == field),
        };
        if named(body.password.is_some(), "password") {
            connection.password = match body.password.clone().flatten() {
                None => None,
                Some(password) if password == MASK => self.password.clone(),
                Some(password) => Some(password),
            };
        }
        if named(body.extra.is_some(), "extra") {
            connection.extra = match (body.extra(), &self.extra) {
                (Some(new), Some(old)) => Some(merged_extra(&new, old)),
                (new, _) => new,
            };
        }
        Ok(connection)
    }

    async fn set_event(&self, state: &ApiState) -> ApiResult<Event> {
        Ok(ConnectionSet {
            conn_id: self.conn_id.clone(),
            conn_type: self.conn_type.clone(),
            description: self.description.clone(),
            host: self.host.clone(),
            schema: self.schema.clone(),
            login: self.login.clone(),
            password: self.seal(state, self.password.as_deref()).await?,
            port: self.port,
            extra: self.seal(state, self.extra.as_deref()).await?,
            tenant: self.tenant.clone(),
        }
        .into())
    }

    fn deleted_event(tenant: &str, key: &str) -> Event {
        ConnectionDeleted {
            conn_id: key.to_owned(),
            tenant: tenant.to_owned(),
        }
        .into()
    }
}

/// `GET /api/v2/connections`.
pub async fn get_connections(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    params: Params,
) -> ApiResult<Json<ConnectionCollection>> {
    let page = params.page()?;
    let mut conditions = Conditions::new();
    if let Some(tenant) = listed_tenant(&user, &params)? {
        conditions.eq(columns::TENANT, Bind::Text(tenant));
    }
    conditions.patterns(&params, "connection_id", columns::CONN_ID);
    let order = params.order_by(
        &[
            ("conn_id", columns::CONN_ID),
            ("connection_id", columns::CONN_ID),
            ("conn_type", columns::CONN_TYPE),
            ("description", columns::DESCRIPTION),
            ("host", columns::HOST),
            ("port", columns::PORT),
            ("id", columns::CONN_ID),
            ("team_name", columns::TEAM_NAME),
        ],
        "id",
        columns::UNIQUE,
    )?;
    let pool = state.store.pool();
    let listed = read_page(page, |w| connections::page(pool, &conditions, &order, w)).await?;
    let total = listed.total;
    let rows: Vec<ConnectionRow> = listed.rows;
    let connections = opened(&state, rows).await?;
    Ok(Json(ConnectionCollection {
        connections: connections.iter().map(Connection::response).collect(),
        total_entries: total,
    }))
}

/// `GET /api/v2/connections/{connection_id}`.
pub async fn get_connection(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(conn_id): Path<String>,
    params: Params,
) -> ApiResult<Json<ConnectionResponse>> {
    let tenant = acting_tenant(&user, &params, None)?;
    let connection = read_one::<Connection>(&state, &tenant, &conn_id).await?;
    Ok(Json(connection.response()))
}

/// `POST /api/v2/connections`: the password and extra are sealed before its event is appended.
pub async fn post_connection(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    params: Params,
    Body(body): Body<ConnectionBody>,
) -> ApiResult<Response> {
    Connection::validate(&body, &Loc::body())?;
    let tenant = acting_tenant(&user, &params, Connection::body_team(&body))?;
    let connection = create_one::<Connection>(&state, &user, &tenant, &body).await?;
    Ok((StatusCode::CREATED, Json(connection.response())).into_response())
}

/// `PATCH /api/v2/connections/{connection_id}`: a password or extra key sent back as `***`
/// keeps its stored value, so the UI's edit form can save what it was shown.
pub async fn patch_connection(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(conn_id): Path<String>,
    params: Params,
    Body(body): Body<ConnectionBody>,
) -> ApiResult<Json<ConnectionResponse>> {
    Connection::validate(&body, &Loc::body())?;
    let mask = update_mask(&params)?;
    if body.connection_id != conn_id {
        return Err(ApiError::bad_request(
            "The connection_id in the request body does not match the URL parameter",
        ));
    }
    let tenant = acting_tenant(&user, &params, Connection::body_team(&body))?;
    let connection = update_one::<Connection>(&state, &user, &tenant, &conn_id, |connection| {
        connection.update(&state, &body, mask.as_deref())
    })
    .await?;
    Ok(Json(connection.response()))
}

/// `DELETE /api/v2/connections/{connection_id}`.
pub async fn delete_connection(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(conn_id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let tenant = acting_tenant(&user, &params, None)?;
    delete_one::<Connection>(&state, &user, &tenant, &conn_id).await
}

/// `PATCH /api/v2/connections`: bulk create, update and delete.
pub async fn bulk_connections(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    params: Params,
    Body(body): Body<BulkBody<ConnectionBody>>,
) -> ApiResult<Json<BulkReport>> {
    bulk::<Connection>(&state, &user, &params, body).await
}

/// `POST /api/v2/connections/test` and `POST /api/v2/connections/defaults`, both refused with
/// the 403 Airflow answers when `test_connection` is disabled. They are routed through
/// `/connections/{connection_id}` because, as in FastAPI, `GET /connections/test` must still
/// read a Connection named `test`.
pub async fn post_connection_action(
    Path(action): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    match action.as_str() {
        "test" => {
            let body: ConnectionBody = crate::body::parse(&body)?;
            Connection::validate(&body, &Loc::body())?;
            Err(ApiError::detail(
                StatusCode::FORBIDDEN,
                "Testing connections is disabled: Leoflow's API server runs no provider hooks. \
                 Test a connection by running a task that uses it.",
            ))
        }
        "defaults" => Err(ApiError::detail(
            StatusCode::FORBIDDEN,
            "Leoflow does not create Airflow's default connections; create the ones you need \
             with POST /api/v2/connections",
        )),
        _ => Err(ApiError::detail(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_values_sent_back_keep_the_stored_ones() {
        let merged = merged_extra(
            r#"{"token": "***", "region": "eu", "added": 1}"#,
            r#"{"token": "real", "region": "us"}"#,
        );
        assert_eq!(merged, r#"{"added": 1, "region": "eu", "token": "real"}"#);
        // A non-sensitive key keeps what was sent, even `***`.
        assert_eq!(
            merge(&json!({"a": "***"}), &json!({"a": "b"}), None, 0, false),
            json!({"a": "***"})
        );
    }

    #[test]
    fn connection_ids_follow_airflows_pattern() {
        assert!(valid_connection_id("my_db.prod-1"));
        assert!(!valid_connection_id("my db"));
        assert!(!valid_connection_id("a/b"));
    }
}
