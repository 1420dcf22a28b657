//! What the write endpoints of every configuration entity share: its [`Entity`] description,
//! the checks of its body (located as pydantic locates them, see [`Loc`]), the `update_mask`,
//! the tenant a request acts in ([`acting_tenant`]), and the one way a write is made: read the
//! rows, decide, append expecting their streams unchanged, and decide again when a concurrent
//! write got there first.

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use leoflow_events::{
    Actor, AppendBatch, AppendError, DEFAULT_TENANT, Event, ExpectedVersion, Metadata, check_tenant,
};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::auth::User;
use crate::dag_access::tenant_to_act_in;
use crate::error::{ApiError, ApiResult};
use crate::query::Params;
use crate::state::ApiState;

// ---------------------------------------------------------------------------------------------
// Bodies.

/// Where a value of a request body is, as pydantic locates it (`["body", "actions", "0", …]`).
#[derive(Debug, Clone)]
pub(super) struct Loc(Vec<String>);

impl Loc {
    pub(super) fn body() -> Self {
        Self(vec!["body".into()])
    }

    pub(super) fn at(&self, segment: impl ToString) -> Self {
        let mut loc = self.clone();
        loc.0.push(segment.to_string());
        loc
    }

    /// The 422 for `field` under this location.
    pub(super) fn invalid(
        &self,
        field: &str,
        kind: &str,
        message: impl Into<String>,
        input: Value,
    ) -> ApiError {
        let loc = self.at(field);
        let parts: Vec<&str> = loc.0.iter().map(String::as_str).collect();
        ApiError::invalid(&parts, kind, message, input)
    }

    /// A key of 1 to `max` characters.
    pub(super) fn check_key(&self, field: &str, value: &str, max: usize) -> ApiResult<()> {
        if value.is_empty() {
            return Err(self.invalid(
                field,
                "string_too_short",
                "String should have at least 1 character",
                json!(value),
            ));
        }
        if value.chars().count() > max {
            return Err(self.invalid(
                field,
                "string_too_long",
                format!("String should have at most {max} characters"),
                json!(value),
            ));
        }
        Ok(())
    }

    /// A `team_name` must name a tenant (`default` names the default tenant, as leaving it
    /// out does).
    pub(super) fn check_team(&self, team_name: &Option<String>) -> ApiResult<()> {
        match team_name.as_deref().map(check_tenant) {
            None | Some(Ok(())) => Ok(()),
            Some(Err(why)) => Err(self.invalid(
                "team_name",
                "value_error",
                format!("Value error, team_name is a tenant: {why}"),
                json!(team_name),
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tenants: Airflow's teams.

/// How Airflow's `team_name` shows the tenant that owns a Variable, Connection or Pool: the
/// default tenant is Airflow's "no team" (`null`, so Lite answers as Airflow does), any other
/// tenant the team of its name.
pub(super) fn team_of(tenant: &str) -> Option<String> {
    (tenant != DEFAULT_TENANT).then(|| tenant.to_owned())
}

/// The tenant a request about Variables, Connections or Pools acts in: see [`tenant_named`],
/// given the `team_name` of its body (`body_team`), else of its query.
pub(super) fn acting_tenant(
    user: &User,
    params: &Params,
    body_team: Option<&str>,
) -> ApiResult<String> {
    tenant_named(user, body_team.or(params.str("team_name")))
}

/// The tenant a request naming `team_name` acts in ([`tenant_to_act_in`]). A body's
/// team_name was checked with the body ([`Loc::check_team`]): one that is not a tenant's name
/// is the query's.
pub(super) fn tenant_named(user: &User, team_name: Option<&str>) -> ApiResult<String> {
    tenant_to_act_in(user, team_name, "team_name")
}

/// The tenant a list shows (`None`: every tenant's): the caller's own, or, for a caller of
/// every tenant, the one `team_name` names if the query names one.
pub(super) fn listed_tenant(user: &User, params: &Params) -> ApiResult<Option<String>> {
    match (&user.tenant, params.str("team_name")) {
        (Some(_), _) | (None, Some(_)) => acting_tenant(user, params, None).map(Some),
        (None, None) => Ok(None),
    }
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`), as pydantic's
/// `model_fields_set` does: a patch changes only the fields it names.
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The `update_mask` query list (`None` when not given: every field of the body applies).
pub(super) fn update_mask(params: &Params) -> ApiResult<Option<Vec<String>>> {
    let mask = params.list("update_mask", None)?;
    Ok((!mask.is_empty()).then_some(mask))
}

/// Whether `field` is updated under `mask`.
pub(super) fn wants(mask: Option<&[String]>, field: &str) -> bool {
    mask.is_none_or(|m| m.iter().any(|f| f.trim() == field))
}

// ---------------------------------------------------------------------------------------------
// Writes: decide on what was read, append expecting it unchanged.

/// A write refused with Airflow's status and message; a bulk action lists it among its errors.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) detail: String,
}

impl Refusal {
    pub(super) fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        ApiError::detail(refusal.status, refusal.detail)
    }
}

/// A configuration entity kept by events, as its write endpoints and bulk actions need it. Each
/// belongs to a tenant; its key names it within the tenant.
pub(super) trait Entity: Clone + Send + Sync + Sized + 'static {
    /// Airflow's request body for it (`VariableBody`, `ConnectionBody`, `PoolBody`).
    type Body: Send + Sync;
    /// How Airflow's messages name one (`The Variable with key`).
    const LABEL: &'static str;
    /// How Airflow's bulk messages name several (`variables`) and their keys (`keys`).
    const PLURAL: &'static str;
    /// See [`Entity::PLURAL`].
    const KEYS: &'static str;

    /// Its key.
    fn key(&self) -> &str;
    /// The key a body names.
    fn body_key(body: &Self::Body) -> &str;
    /// The `team_name` a body names, if any.
    fn body_team(body: &Self::Body) -> Option<&str>;
    /// Refuses an invalid body as pydantic would (422), locating the field under `loc`.
    fn validate(body: &Self::Body, loc: &Loc) -> ApiResult<()>;
    /// The ones of `tenant` with these keys.
    fn load(
        state: &ApiState,
        tenant: &str,
        keys: &[String],
    ) -> impl Future<Output = ApiResult<Vec<Self>>> + Send;
    /// What creating (or overwriting) with `body` in `tenant` makes.
    fn create(state: &ApiState, tenant: &str, body: &Self::Body) -> Self;
    /// What updating this one with `body`'s fields (those in `mask`, if given) makes.
    fn update(
        &self,
        state: &ApiState,
        body: &Self::Body,
        mask: Option<&[String]>,
    ) -> Result<Self, Refusal>;
    /// Refuses deleting `key` when Airflow does.
    fn check_delete(_key: &str) -> Result<(), Refusal> {
        Ok(())
    }
    /// The event recording it as it is (its secrets sealed: hence async).
    fn set_event(&self, state: &ApiState) -> impl Future<Output = ApiResult<Event>> + Send;
    /// The event recording that `tenant`'s `key` was deleted.
    fn deleted_event(tenant: &str, key: &str) -> Event;
}

fn not_found<E: Entity>(key: &str) -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        format!("{}: `{key}` was not found", E::LABEL),
    )
}

/// Decisions are retried this often when concurrent writes keep changing their streams.
const ATTEMPTS: usize = 5;

/// The entities of one tenant a write decides on as they were read, and the events it decided.
pub(super) struct Working<E> {
    tenant: String,
    keys: Vec<String>,
    /// Stream → its version when read (no entry: no event yet).
    versions: HashMap<String, i64>,
    current: BTreeMap<String, E>,
    changes: Vec<Change<E>>,
}

/// One decided change, made an event when committed.
enum Change<E> {
    Set(E),
    Delete(String),
}

impl<E: Entity> Working<E> {
    async fn load(state: &ApiState, tenant: &str, keys: &[String]) -> ApiResult<Self> {
        let streams: Vec<String> = keys
            .iter()
            .map(|k| E::deleted_event(tenant, k).stream())
            .collect();
        // Versions before rows: a write landing in between fails the expectation below and the
        // decision is made again, so a decision never rests on rows older than its versions.
        let versions = state.store.stream_versions(&streams).await?;
        let current = E::load(state, tenant, keys)
            .await?
            .into_iter()
            .map(|e| (e.key().to_owned(), e))
            .collect();
        Ok(Self {
            tenant: tenant.to_owned(),
            keys: keys.to_vec(),
            versions: versions.into_iter().collect(),
            current,
            changes: Vec::new(),
        })
    }

    /// The tenant it decides in.
    pub(super) fn tenant(&self) -> &str {
        &self.tenant
    }

    pub(super) fn get(&self, key: &str) -> Option<&E> {
        self.current.get(key)
    }

    pub(super) fn set(&mut self, entity: E) {
        self.current.insert(entity.key().to_owned(), entity.clone());
        self.changes.push(Change::Set(entity));
    }

    pub(super) fn delete(&mut self, key: &str) {
        self.current.remove(key);
        self.changes.push(Change::Delete(key.to_owned()));
    }

    /// Appends the decided events, expecting every stream read to be as it was. The outer
    /// error is a failure to seal a secret; the inner one the append's (a conflict is retried).
    async fn commit(self, state: &ApiState, user: &User) -> ApiResult<Result<(), AppendError>> {
        if self.changes.is_empty() {
            return Ok(Ok(()));
        }
        let mut events = Vec::with_capacity(self.changes.len());
        for change in &self.changes {
            events.push(match change {
                Change::Set(entity) => entity.set_event(state).await?,
                Change::Delete(key) => E::deleted_event(&self.tenant, key),
            });
        }
        let mut batch = AppendBatch::new();
        for key in &self.keys {
            let stream = E::deleted_event(&self.tenant, key).stream();
            let expected = match self.versions.get(&stream) {
                Some(version) => ExpectedVersion::Exact(*version),
                None => ExpectedVersion::NoStream,
            };
            batch = batch.expect(stream, expected);
        }
        let metadata = Metadata::from(&Actor::from(user));
        for event in events {
            batch = batch.push(event, &metadata);
        }
        Ok(state.store.append(batch).await.map(drop))
    }
}

/// Reads `tenant`'s `keys`, lets `decision` change them, appends; decides again on a
/// concurrent change.
pub(super) async fn decide<E: Entity, T>(
    state: &ApiState,
    user: &User,
    tenant: &str,
    keys: Vec<String>,
    mut decision: impl FnMut(&mut Working<E>) -> Result<T, ApiError> + Send,
) -> ApiResult<T> {
    let mut attempt = 1;
    loop {
        let mut working = Working::<E>::load(state, tenant, &keys).await?;
        let outcome = decision(&mut working)?;
        match working.commit(state, user).await? {
            Ok(()) => return Ok(outcome),
            Err(AppendError::Conflict { .. }) if attempt < ATTEMPTS => attempt += 1,
            Err(error) => return Err(error.into()),
        }
    }
}

/// `tenant`'s one with `key`, or Airflow's 404.
pub(super) async fn read_one<E: Entity>(state: &ApiState, tenant: &str, key: &str) -> ApiResult<E> {
    E::load(state, tenant, &[key.to_owned()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| not_found::<E>(key).into())
}

/// Creates one in `tenant`; a conflict when it exists there.
pub(super) async fn create_one<E: Entity>(
    state: &ApiState,
    user: &User,
    tenant: &str,
    body: &E::Body,
) -> ApiResult<E> {
    let key = E::body_key(body);
    decide(
        state,
        user,
        tenant,
        vec![key.to_owned()],
        |working: &mut Working<E>| {
            if working.get(key).is_some() {
                return Err(ApiError::conflict(format!(
                    "{}: `{key}` already exists",
                    E::LABEL
                )));
            }
            let entity = E::create(state, tenant, body);
            working.set(entity.clone());
            Ok(entity)
        },
    )
    .await
}

/// Changes `tenant`'s one with `change`; a 404 when it does not exist.
pub(super) async fn update_one<E: Entity>(
    state: &ApiState,
    user: &User,
    tenant: &str,
    key: &str,
    change: impl Fn(&E) -> Result<E, Refusal> + Send + Sync,
) -> ApiResult<E> {
    decide(
        state,
        user,
        tenant,
        vec![key.to_owned()],
        |working: &mut Working<E>| {
            let current = working.get(key).ok_or_else(|| not_found::<E>(key))?;
            let changed = change(current)?;
            working.set(changed.clone());
            Ok(changed)
        },
    )
    .await
}

/// Deletes `tenant`'s one; a 404 when it does not exist.
pub(super) async fn delete_one<E: Entity>(
    state: &ApiState,
    user: &User,
    tenant: &str,
    key: &str,
) -> ApiResult<Response> {
    E::check_delete(key)?;
    decide(
        state,
        user,
        tenant,
        vec![key.to_owned()],
        |working: &mut Working<E>| {
            if working.get(key).is_none() {
                return Err(not_found::<E>(key).into());
            }
            working.delete(key);
            Ok(())
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
