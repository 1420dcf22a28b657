//! Variables (`/api/v2/variables`): the `variable` read model, kept by `VariableSet` and
//! `VariableDeleted`; values are sealed with the Variable's data key before its event is
//! appended, and those under sensitive keys are shown masked. Each belongs to a tenant, shown
//! as Airflow's `team_name`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use leoflow_events::Event;
use leoflow_events::catalog::{Sealed, VariableDeleted, VariableSet};
use leoflow_projector::read::variables::{self, VariableRow, columns};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bulk::{BulkBody, BulkReport, bulk};
use super::entity::{
    Entity, Loc, Refusal, acting_tenant, create_one, delete_one, listed_tenant, present, read_one,
    team_of, update_mask, update_one, wants,
};
use super::redact::shown_value;
use crate::auth::User;
use crate::body::Body;
use crate::error::{ApiError, ApiResult};
use crate::query::{Bind, Conditions, ParamFilters, Params};
use crate::read::page::read_page;
use crate::state::ApiState;

/// A Variable as a request works with it: its value opened.
#[derive(Debug, Clone)]
struct Variable {
    tenant: String,
    key: String,
    val: String,
    description: Option<String>,
}

/// Opens the values of `rows` (one query for all their data keys).
async fn opened(state: &ApiState, rows: Vec<VariableRow>) -> ApiResult<Vec<Variable>> {
    let sealed: Vec<&Sealed> = rows.iter().map(|r| &r.val.0).collect();
    let values = state.vault.open_all(&sealed).await?;
    Ok(rows
        .into_iter()
        .zip(values)
        .map(|(row, val)| Variable {
            tenant: row.tenant,
            key: row.key,
            val,
            description: row.description,
        })
        .collect())
}

/// Airflow's `VariableResponse`.
#[derive(Debug, Serialize)]
pub struct VariableResponse {
    pub key: String,
    pub value: String,
    pub description: Option<String>,
    pub is_encrypted: bool,
    pub team_name: Option<String>,
}

/// Airflow's `VariableCollectionResponse`.
#[derive(Debug, Serialize)]
pub struct VariableCollection {
    pub variables: Vec<VariableResponse>,
    pub total_entries: i64,
}

impl Variable {
    /// `VariableResponse`: the value is encrypted at rest (sealed), as `is_encrypted` says.
    fn response(&self) -> VariableResponse {
        VariableResponse {
            key: self.key.clone(),
            value: shown_value(&self.key, &self.val),
            description: self.description.clone(),
            is_encrypted: true,
            team_name: team_of(&self.tenant),
        }
    }
}

/// Airflow's `VariableBody`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableBody {
    key: String,
    value: Value,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default)]
    team_name: Option<String>,
}

/// What a Variable stores for a JSON `value`: a string as it is, anything else as its JSON
/// text (objects and lists indented, as Airflow's bulk create stores them).
fn stored_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Object(_) | Value::Array(_) => {
            serde_json::to_string_pretty(value).expect("a JSON value serializes")
        }
        other => other.to_string(),
    }
}

impl Entity for Variable {
    type Body = VariableBody;
    const LABEL: &'static str = "The Variable with key";
    const PLURAL: &'static str = "variables";
    const KEYS: &'static str = "keys";

    fn key(&self) -> &str {
        &self.key
    }

    fn body_key(body: &VariableBody) -> &str {
        &body.key
    }

    fn validate(body: &VariableBody, loc: &Loc) -> ApiResult<()> {
        loc.check_key("key", &body.key, 250)?;
        loc.check_team(&body.team_name)
    }

    fn body_team(body: &VariableBody) -> Option<&str> {
        body.team_name.as_deref()
    }

    async fn load(state: &ApiState, tenant: &str, keys: &[String]) -> ApiResult<Vec<Self>> {
        let rows = variables::by_keys(state.store.pool(), tenant, keys).await?;
        opened(state, rows).await
    }

    fn create(_state: &ApiState, tenant: &str, body: &VariableBody) -> Self {
        Variable {
            tenant: tenant.to_owned(),
            key: body.key.clone(),
            val: stored_value(&body.value),
            description: body.description.clone().flatten(),
        }
    }

    fn update(
        &self,
        _state: &ApiState,
        body: &VariableBody,
        mask: Option<&[String]>,
    ) -> Result<Self, Refusal> {
        if mask.is_some_and(|m| m.iter().any(|f| f.trim() == "key")) {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "Update not allowed: the following fields are immutable and cannot be modified: {'key'}",
            ));
        }
        let mut variable = self.clone();
        if wants(mask, "value") {
            variable.val = stored_value(&body.value);
        }
        if wants(mask, "description")
            && let Some(description) = &body.description
        {
            variable.description = description.clone();
        }
        Ok(variable)
    }

    async fn set_event(&self, state: &ApiState) -> ApiResult<Event> {
        let owner = Self::deleted_event(&self.tenant, &self.key).stream();
        Ok(VariableSet {
            key: self.key.clone(),
            value: state.vault.seal(&owner, &self.val).await?,
            description: self.description.clone(),
            tenant: self.tenant.clone(),
        }
        .into())
    }

    fn deleted_event(tenant: &str, key: &str) -> Event {
        VariableDeleted {
            key: key.to_owned(),
            tenant: tenant.to_owned(),
        }
        .into()
    }
}

/// `GET /api/v2/variables`.
pub async fn get_variables(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    params: Params,
) -> ApiResult<Json<VariableCollection>> {
    let page = params.page()?;
    let mut conditions = Conditions::new();
    if let Some(tenant) = listed_tenant(&user, &params)? {
        conditions.eq(columns::TENANT, Bind::Text(tenant));
    }
    conditions.patterns(&params, "variable_key", columns::KEY);
    // Airflow's `id` is the insertion order of its rows; Leoflow's rows are keyed by `key`.
    let order = params.order_by(
        &[
            ("key", columns::KEY),
            ("id", columns::KEY),
            ("_val", columns::VAL),
            ("description", columns::DESCRIPTION),
            ("is_encrypted", columns::IS_ENCRYPTED),
            ("team_name", columns::TEAM_NAME),
        ],
        "id",
        columns::UNIQUE,
    )?;
    let pool = state.store.pool();
    let listed = read_page(page, |w| variables::page(pool, &conditions, &order, w)).await?;
    let total = listed.total;
    let rows: Vec<VariableRow> = listed.rows;
    let variables = opened(&state, rows).await?;
    Ok(Json(VariableCollection {
        variables: variables.iter().map(Variable::response).collect(),
        total_entries: total,
    }))
}

/// `GET /api/v2/variables/{variable_key}`.
pub async fn get_variable(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(key): Path<String>,
    params: Params,
) -> ApiResult<Json<VariableResponse>> {
    let tenant = acting_tenant(&user, &params, None)?;
    let variable = read_one::<Variable>(&state, &tenant, &key).await?;
    Ok(Json(variable.response()))
}

/// `POST /api/v2/variables`.
pub async fn post_variable(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    params: Params,
    Body(body): Body<VariableBody>,
) -> ApiResult<Response> {
    Variable::validate(&body, &Loc::body())?;
    let tenant = acting_tenant(&user, &params, Variable::body_team(&body))?;
    let variable = create_one::<Variable>(&state, &user, &tenant, &body).await?;
    Ok((StatusCode::CREATED, Json(variable.response())).into_response())
}

/// `PATCH /api/v2/variables/{variable_key}` (`update_mask` limits the fields that change).
pub async fn patch_variable(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(key): Path<String>,
    params: Params,
    Body(body): Body<VariableBody>,
) -> ApiResult<Json<VariableResponse>> {
    Variable::validate(&body, &Loc::body())?;
    let mask = update_mask(&params)?;
    if body.key != key {
        return Err(ApiError::bad_request(
            "Invalid body, key from request body doesn't match uri parameter",
        ));
    }
    let tenant = acting_tenant(&user, &params, Variable::body_team(&body))?;
    let variable = update_one::<Variable>(&state, &user, &tenant, &key, |variable| {
        variable.update(&state, &body, mask.as_deref())
    })
    .await?;
    Ok(Json(variable.response()))
}

/// `DELETE /api/v2/variables/{variable_key}`.
pub async fn delete_variable(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(key): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let tenant = acting_tenant(&user, &params, None)?;
    delete_one::<Variable>(&state, &user, &tenant, &key).await
}

/// `PATCH /api/v2/variables`: bulk create, update and delete.
pub async fn bulk_variables(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    params: Params,
    Body(body): Body<BulkBody<VariableBody>>,
) -> ApiResult<Json<BulkReport>> {
    bulk::<Variable>(&state, &user, &params, body).await
}
