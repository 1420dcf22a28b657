//! Pools (`/api/v2/pools`): the `slot_pool` read model, kept by `PoolSet` and `PoolDeleted`,
//! with the slots task instances hold now. `default_pool` always exists (until its first
//! `PoolSet` it has the scheduler's default slots), cannot be deleted, and takes only `slots`
//! and `include_deferred` changes. Each tenant has its pools, `default_pool` among them, shown
//! with Airflow's `team_name`; a task instance holds slots in its DAG's tenant's pools.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use leoflow_core::run::TiState;
use leoflow_events::Event;
use leoflow_events::catalog::{PoolDeleted, PoolSet};
use leoflow_projector::read::pools::{self, DefaultPool, PoolRow, columns};
use leoflow_scheduler::control::{DEFAULT_POOL, DEFAULT_POOL_SLOTS};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::bulk::{BulkBody, BulkReport, bulk};
use super::entity::{
    Entity, Loc, Refusal, acting_tenant, create_one, delete_one, listed_tenant, present, read_one,
    team_of, update_mask, update_one, wants,
};
use crate::auth::User;
use crate::body::Body;
use crate::error::{ApiError, ApiResult};
use crate::query::{Conditions, ParamFilters, Params};
use crate::read::page::read_page;
use crate::state::ApiState;

/// Airflow's state of a task instance waiting on a trigger, which holds its pool slot with
/// `include_deferred` (Leoflow never defers a task, so it counts none).
const DEFERRED: &str = "deferred";

/// `default_pool` as the scheduler defines it (it has [`DEFAULT_POOL_SLOTS`] until its first
/// `PoolSet`).
const DEFAULT: DefaultPool = DefaultPool {
    name: DEFAULT_POOL,
    slots: DEFAULT_POOL_SLOTS,
};

/// A pool as a request works with it: a `slot_pool` row, or `default_pool` before any
/// `PoolSet` for it.
#[derive(Debug, Clone)]
struct Pool {
    tenant: String,
    name: String,
    slots: i32,
    description: Option<String>,
    include_deferred: bool,
}

impl From<PoolRow> for Pool {
    fn from(row: PoolRow) -> Self {
        Pool {
            tenant: row.tenant,
            name: row.name,
            slots: row.slots,
            description: row.description,
            include_deferred: row.include_deferred,
        }
    }
}

/// Slots held by a pool's task instances, by state.
#[derive(Debug, Default, Clone, Copy)]
struct SlotUse {
    running: i64,
    queued: i64,
    scheduled: i64,
    deferred: i64,
}

/// Airflow's `PoolResponse`.
#[derive(Debug, Serialize)]
pub struct PoolResponse {
    pub name: String,
    pub slots: i32,
    pub description: Option<String>,
    pub include_deferred: bool,
    pub occupied_slots: i64,
    pub running_slots: i64,
    pub queued_slots: i64,
    pub scheduled_slots: i64,
    pub open_slots: i64,
    pub deferred_slots: i64,
    pub team_name: Option<String>,
}

/// Airflow's `PoolCollectionResponse`.
#[derive(Debug, Serialize)]
pub struct PoolCollection {
    pub pools: Vec<PoolResponse>,
    pub total_entries: i64,
}

impl Pool {
    /// `PoolResponse`, with Airflow's slot statistics: running and queued tasks (deferred ones
    /// too with `include_deferred`) occupy slots; `-1` slots is unlimited, so `-1` open.
    fn response(&self, used: SlotUse) -> PoolResponse {
        let occupied = used.running
            + used.queued
            + if self.include_deferred {
                used.deferred
            } else {
                0
            };
        let open = if self.slots == -1 {
            -1
        } else {
            i64::from(self.slots) - occupied
        };
        PoolResponse {
            name: self.name.clone(),
            slots: self.slots,
            description: self.description.clone(),
            include_deferred: self.include_deferred,
            occupied_slots: occupied,
            running_slots: used.running,
            queued_slots: used.queued,
            scheduled_slots: used.scheduled,
            open_slots: open,
            deferred_slots: used.deferred,
            team_name: team_of(&self.tenant),
        }
    }

    /// Applies a patch's fields (those in `mask`, if given). `default_pool` takes only `slots`
    /// and `include_deferred`, and only when the mask says so, as in Airflow.
    fn apply(&self, changes: &PoolChanges, mask: Option<&[String]>) -> Result<Self, Refusal> {
        if self.name == DEFAULT_POOL
            && !mask.is_some_and(|m| {
                m.iter()
                    .all(|f| matches!(f.trim(), "slots" | "include_deferred"))
            })
        {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "Only slots and included_deferred can be modified on Default Pool",
            ));
        }
        let mut pool = self.clone();
        if let Some(slots) = changes.slots
            && wants(mask, "slots")
        {
            pool.slots = slots;
        }
        if let Some(description) = &changes.description
            && wants(mask, "description")
        {
            pool.description = description.clone();
        }
        if let Some(include_deferred) = changes.include_deferred
            && wants(mask, "include_deferred")
        {
            pool.include_deferred = include_deferred;
        }
        Ok(pool)
    }
}

/// The fields a pool patch gives (`None`: left out).
#[derive(Debug)]
struct PoolChanges {
    slots: Option<i32>,
    description: Option<Option<String>>,
    include_deferred: Option<bool>,
}

/// Slots at least -1 (unlimited).
fn check_slots(loc: &Loc, slots: i32) -> ApiResult<()> {
    if slots < -1 {
        return Err(loc.invalid(
            "slots",
            "greater_than_equal",
            "Input should be greater than or equal to -1",
            json!(slots),
        ));
    }
    Ok(())
}

/// Airflow's `PoolBody`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolBody {
    #[serde(alias = "pool")]
    name: String,
    slots: i32,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default)]
    include_deferred: Option<bool>,
    #[serde(default)]
    team_name: Option<String>,
}

impl PoolBody {
    fn changes(&self) -> PoolChanges {
        PoolChanges {
            slots: Some(self.slots),
            description: self.description.clone(),
            include_deferred: self.include_deferred,
        }
    }
}

/// Airflow's `PoolPatchBody`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolPatchBody {
    #[serde(default, alias = "name")]
    pool: Option<String>,
    #[serde(default, deserialize_with = "present")]
    slots: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    include_deferred: Option<Option<bool>>,
    #[serde(default)]
    team_name: Option<String>,
}

impl PoolPatchBody {
    /// Refuses what a pool cannot be: slots below -1, no slots, no `include_deferred`.
    fn changes(&self) -> ApiResult<PoolChanges> {
        let loc = Loc::body();
        loc.check_team(&self.team_name)?;
        let slots = match self.slots {
            Some(None) => {
                return Err(loc.invalid(
                    "slots",
                    "int_type",
                    "Input should be a valid integer",
                    Value::Null,
                ));
            }
            Some(Some(slots)) => {
                check_slots(&loc, slots)?;
                Some(slots)
            }
            None => None,
        };
        let include_deferred = match self.include_deferred {
            Some(None) => {
                return Err(loc.invalid(
                    "include_deferred",
                    "bool_type",
                    "Input should be a valid boolean",
                    Value::Null,
                ));
            }
            other => other.flatten(),
        };
        Ok(PoolChanges {
            slots,
            description: self.description.clone(),
            include_deferred,
        })
    }
}

impl Entity for Pool {
    type Body = PoolBody;
    const LABEL: &'static str = "The Pool with name";
    const PLURAL: &'static str = "pools";
    const KEYS: &'static str = "pool names";

    fn key(&self) -> &str {
        &self.name
    }

    fn body_key(body: &PoolBody) -> &str {
        &body.name
    }

    fn validate(body: &PoolBody, loc: &Loc) -> ApiResult<()> {
        loc.check_key("name", &body.name, 256)?;
        check_slots(loc, body.slots)?;
        loc.check_team(&body.team_name)
    }

    fn body_team(body: &PoolBody) -> Option<&str> {
        body.team_name.as_deref()
    }

    async fn load(state: &ApiState, tenant: &str, keys: &[String]) -> ApiResult<Vec<Self>> {
        let rows = pools::by_names(state.store.pool(), DEFAULT, tenant, keys).await?;
        Ok(rows.into_iter().map(Pool::from).collect())
    }

    fn create(_state: &ApiState, tenant: &str, body: &PoolBody) -> Self {
        Pool {
            tenant: tenant.to_owned(),
            name: body.name.clone(),
            slots: body.slots,
            description: body.description.clone().flatten(),
            include_deferred: body.include_deferred.unwrap_or(false),
        }
    }

    fn update(
        &self,
        _state: &ApiState,
        body: &PoolBody,
        mask: Option<&[String]>,
    ) -> Result<Self, Refusal> {
        self.apply(&body.changes(), mask)
    }

    fn check_delete(key: &str) -> Result<(), Refusal> {
        if key == DEFAULT_POOL {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "Default Pool can't be deleted",
            ));
        }
        Ok(())
    }

    async fn set_event(&self, _state: &ApiState) -> ApiResult<Event> {
        Ok(PoolSet {
            name: self.name.clone(),
            slots: self.slots,
            description: self.description.clone(),
            include_deferred: self.include_deferred,
            tenant: self.tenant.clone(),
        }
        .into())
    }

    fn deleted_event(tenant: &str, key: &str) -> Event {
        PoolDeleted {
            name: key.to_owned(),
            tenant: tenant.to_owned(),
        }
        .into()
    }
}

/// `PoolResponse`s of `pools`, with the slots their task instances hold now.
async fn pool_responses(state: &ApiState, pools: &[Pool]) -> ApiResult<Vec<PoolResponse>> {
    let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
    // A scheduled task instance holds no slot yet; Leoflow learns its pool when it is queued,
    // so scheduled slots count those whose pool is already known (retries, cleared tries).
    let states: Vec<&str> = [TiState::Running, TiState::Queued, TiState::Scheduled]
        .map(|s| s.airflow_name())
        .into_iter()
        .chain([DEFERRED])
        .collect();
    // One tenant's pools (as every request but a list across tenants shows) count only the
    // task instances of that tenant's DAGs.
    let tenant = pools.first().map(|p| p.tenant.as_str());
    let one_tenant = tenant.filter(|t| pools.iter().all(|p| p.tenant == *t));
    let rows = pools::slots_held(state.store.pool(), one_tenant, &names, &states).await?;
    let mut used: HashMap<(String, String), SlotUse> = HashMap::new();
    for pools::SlotsHeld {
        tenant,
        pool,
        state: task_state,
        slots,
    } in rows
    {
        let entry = used.entry((tenant, pool)).or_default();
        let holds = |s: TiState| task_state == s.airflow_name();
        if holds(TiState::Running) {
            entry.running = slots;
        } else if holds(TiState::Queued) {
            entry.queued = slots;
        } else if holds(TiState::Scheduled) {
            entry.scheduled = slots;
        } else {
            entry.deferred = slots;
        }
    }
    Ok(pools
        .iter()
        .map(|p| {
            let key = (p.tenant.clone(), p.name.clone());
            p.response(used.get(&key).copied().unwrap_or_default())
        })
        .collect())
}

/// The open slots of `tenant`'s pool `name` now (unlimited as `i64::MAX`; none for a pool that
/// does not exist), as the pools page shows them.
pub(crate) async fn open_slots(state: &ApiState, tenant: &str, name: &str) -> ApiResult<i64> {
    let pools = Pool::load(state, tenant, &[name.to_owned()]).await?;
    let shown = pool_responses(state, &pools).await?;
    Ok(match shown.first().map(|p| p.open_slots) {
        Some(-1) => i64::MAX,
        Some(open) => open,
        None => 0,
    })
}

/// `GET /api/v2/pools`.
pub async fn get_pools(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    params: Params,
) -> ApiResult<Json<PoolCollection>> {
    let page = params.page()?;
    let tenant = listed_tenant(&user, &params)?;
    let mut conditions = Conditions::new();
    conditions.patterns(&params, "pool_name", columns::NAME);
    let order = params.order_by(
        &[
            ("id", columns::NAME),
            ("pool", columns::NAME),
            ("name", columns::NAME),
            ("team_name", columns::TEAM_NAME),
        ],
        "id",
        columns::UNIQUE,
    )?;
    let db = state.store.pool();
    let tenant = tenant.as_deref();
    let listed = read_page(page, |w| {
        pools::page(db, DEFAULT, tenant, &conditions, &order, w)
    })
    .await?;
    let total = listed.total;
    let pools: Vec<Pool> = listed.rows.into_iter().map(Pool::from).collect();
    Ok(Json(PoolCollection {
        pools: pool_responses(&state, &pools).await?,
        total_entries: total,
    }))
}

/// `GET /api/v2/pools/{pool_name}`.
pub async fn get_pool(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    params: Params,
) -> ApiResult<Json<PoolResponse>> {
    let tenant = acting_tenant(&user, &params, None)?;
    let pool = read_one::<Pool>(&state, &tenant, &name).await?;
    Ok(Json(pool_responses(&state, &[pool]).await?.remove(0)))
}

/// `POST /api/v2/pools`.
pub async fn post_pool(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    params: Params,
    Body(body): Body<PoolBody>,
) -> ApiResult<Response> {
    Pool::validate(&body, &Loc::body())?;
    let tenant = acting_tenant(&user, &params, Pool::body_team(&body))?;
    let pool = create_one::<Pool>(&state, &user, &tenant, &body).await?;
    let created = pool_responses(&state, &[pool]).await?.remove(0);
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `PATCH /api/v2/pools/{pool_name}`: patching `default_pool` records its first `PoolSet`.
pub async fn patch_pool(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    params: Params,
    Body(body): Body<PoolPatchBody>,
) -> ApiResult<Json<PoolResponse>> {
    let changes = body.changes()?;
    let mask = update_mask(&params)?;
    if body
        .pool
        .as_deref()
        .is_some_and(|p| !p.is_empty() && p != name)
    {
        return Err(ApiError::bad_request(
            "Invalid body, pool name from request body doesn't match uri parameter",
        ));
    }
    let tenant = acting_tenant(&user, &params, body.team_name.as_deref())?;
    let pool = update_one::<Pool>(&state, &user, &tenant, &name, |pool| {
        pool.apply(&changes, mask.as_deref())
    })
    .await?;
    Ok(Json(pool_responses(&state, &[pool]).await?.remove(0)))
}

/// `DELETE /api/v2/pools/{pool_name}`; `default_pool` cannot be deleted.
pub async fn delete_pool(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let tenant = acting_tenant(&user, &params, None)?;
    delete_one::<Pool>(&state, &user, &tenant, &name).await
}

/// `PATCH /api/v2/pools`: bulk create, update and delete.
pub async fn bulk_pools(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    params: Params,
    Body(body): Body<BulkBody<PoolBody>>,
) -> ApiResult<Json<BulkReport>> {
    bulk::<Pool>(&state, &user, &params, body).await
}
