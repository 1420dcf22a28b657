//! Variables, Connections and Pools (`/api/v2/variables`, `/connections`, `/pools`) in
//! Airflow's shapes. Reads come from the `variable`, `connection` and `slot_pool` read models;
//! every change is an event (`VariableSet`, `ConnectionDeleted`, `PoolSet`, …). A write reads
//! the rows it decides on, decides, and appends expecting their streams unchanged; when a
//! concurrent write got there first it decides again on what is there now.
//!
//! Responses mask secrets as Airflow's secrets masker does: values under sensitive names read
//! `***`. Connection passwords are encrypted before their event is appended and never returned.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use leoflow_events::catalog::{
    ConnectionDeleted, ConnectionSet, PoolDeleted, PoolSet, VariableDeleted, VariableSet,
};
use leoflow_events::{AppendBatch, AppendError, Event, ExpectedVersion, Metadata};
use leoflow_scheduler::reactor::DEFAULT_POOL_SLOTS;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, FromRow, Postgres, QueryBuilder};

use crate::auth::User;
use crate::body::Body;
use crate::error::{ApiError, ApiResult};
use crate::query::{Conditions, Page, Params};
use crate::state::ApiState;

// ---------------------------------------------------------------------------------------------
// Masking, as Airflow's secrets masker does it.

/// Airflow 3.2's `DEFAULT_SENSITIVE_FIELDS`: a value whose name contains one of these is hidden.
const SENSITIVE_NAMES: [&str; 22] = [
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

/// What Airflow shows instead of a secret (and takes back, in a patch, as "unchanged").
pub(crate) const MASK: &str = "***";

/// How deep the masker walks before it masks everything under a sensitive name.
const MAX_DEPTH: usize = 5;

/// Whether Airflow hides the value of `name` (a Variable key, a key of a Connection's extra).
fn is_sensitive(name: &str) -> bool {
    let name = name.trim().to_lowercase();
    SENSITIVE_NAMES.iter().any(|s| name.contains(s))
}

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
fn merge(new: &Value, old: &Value, name: Option<&str>, depth: usize, sensitive: bool) -> Value {
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

// ---------------------------------------------------------------------------------------------
// Lists.

/// An `ORDER BY` expression for attributes every row shares (Leoflow has no teams and keeps no
/// per-Variable encryption flag): ordering by them leaves the order to the tiebreak.
const SAME_FOR_ALL: &str = "CAST(NULL AS text)";

/// How many rows `from` (a `FROM …` clause) has under `conditions`.
pub(crate) async fn count_rows(
    state: &ApiState,
    from: &str,
    conditions: &Conditions,
) -> ApiResult<i64> {
    let mut count = QueryBuilder::<Postgres>::new(format!("SELECT count(*) {from}"));
    conditions.apply(&mut count);
    Ok(count
        .build_query_scalar()
        .fetch_one(state.store.pool())
        .await?)
}

/// One page of `select` (a `SELECT … FROM …`) under `conditions`, in `order`.
pub(crate) async fn page_rows<T>(
    state: &ApiState,
    select: &str,
    conditions: &Conditions,
    order: &str,
    page: Page,
) -> ApiResult<Vec<T>>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    let mut query = QueryBuilder::<Postgres>::new(select);
    conditions.apply(&mut query);
    query.push(format!(" ORDER BY {order} LIMIT "));
    query.push_bind(page.limit);
    query.push(" OFFSET ");
    query.push_bind(page.offset);
    Ok(query.build_query_as().fetch_all(state.store.pool()).await?)
}

/// The `update_mask` query list (`None` when not given: every field of the body applies).
fn update_mask(params: &Params) -> ApiResult<Option<Vec<String>>> {
    let mask = params.list("update_mask", None)?;
    Ok((!mask.is_empty()).then_some(mask))
}

/// Whether `field` is updated under `mask`.
fn wants(mask: Option<&[String]>, field: &str) -> bool {
    mask.is_none_or(|m| m.iter().any(|f| f.trim() == field))
}

// ---------------------------------------------------------------------------------------------
// Bodies.

/// Where a value of a request body is, as pydantic locates it (`["body", "actions", "0", …]`).
#[derive(Debug, Clone)]
struct Loc(Vec<String>);

impl Loc {
    fn body() -> Self {
        Self(vec!["body".into()])
    }

    fn at(&self, segment: impl ToString) -> Self {
        let mut loc = self.clone();
        loc.0.push(segment.to_string());
        loc
    }

    /// The 422 for `field` under this location.
    fn invalid(
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
    fn check_key(&self, field: &str, value: &str, max: usize) -> ApiResult<()> {
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

    /// Leoflow has one team: a `team_name` is refused rather than ignored.
    fn check_no_team(&self, team_name: &Option<String>) -> ApiResult<()> {
        match team_name {
            None => Ok(()),
            Some(team) => Err(self.invalid(
                "team_name",
                "value_error",
                "Value error, Leoflow has no teams (Airflow's multi-team mode): leave team_name out",
                json!(team),
            )),
        }
    }
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`), as pydantic's
/// `model_fields_set` does: a patch changes only the fields it names.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

// ---------------------------------------------------------------------------------------------
// Writes: decide on what was read, append expecting it unchanged.

/// A write refused with Airflow's status and message; a bulk action lists it among its errors.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    detail: String,
}

impl Refusal {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
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

/// A configuration entity kept by events, as its write endpoints and bulk actions need it.
trait Entity: Clone + Send + Sync + Sized + 'static {
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
    /// Refuses an invalid body as pydantic would (422), locating the field under `loc`.
    fn validate(body: &Self::Body, loc: &Loc) -> ApiResult<()>;
    /// The ones with these keys.
    fn load(state: &ApiState, keys: &[String])
    -> impl Future<Output = ApiResult<Vec<Self>>> + Send;
    /// What creating (or overwriting) with `body` makes.
    fn create(state: &ApiState, body: &Self::Body) -> Self;
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
    /// The event recording it as it is.
    fn set_event(&self) -> Event;
    /// The event recording that `key` was deleted.
    fn deleted_event(key: &str) -> Event;
}

fn not_found<E: Entity>(key: &str) -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        format!("{}: `{key}` was not found", E::LABEL),
    )
}

/// Decisions are retried this often when concurrent writes keep changing their streams.
const ATTEMPTS: usize = 5;

/// The entities a write decides on as they were read, and the events it decided.
struct Working<E> {
    keys: Vec<String>,
    /// Stream → its version when read (no entry: no event yet).
    versions: HashMap<String, i64>,
    current: BTreeMap<String, E>,
    events: Vec<Event>,
}

impl<E: Entity> Working<E> {
    async fn load(state: &ApiState, keys: &[String]) -> ApiResult<Self> {
        let streams: Vec<String> = keys.iter().map(|k| E::deleted_event(k).stream()).collect();
        // Versions before rows: a write landing in between fails the expectation below and the
        // decision is made again, so a decision never rests on rows older than its versions.
        let versions: Vec<(String, i64)> =
            sqlx::query_as("SELECT stream, version FROM event_streams WHERE stream = ANY($1)")
                .bind(&streams)
                .fetch_all(state.store.pool())
                .await?;
        let current = E::load(state, keys)
            .await?
            .into_iter()
            .map(|e| (e.key().to_owned(), e))
            .collect();
        Ok(Self {
            keys: keys.to_vec(),
            versions: versions.into_iter().collect(),
            current,
            events: Vec::new(),
        })
    }

    fn get(&self, key: &str) -> Option<&E> {
        self.current.get(key)
    }

    fn set(&mut self, entity: E) {
        self.events.push(entity.set_event());
        self.current.insert(entity.key().to_owned(), entity);
    }

    fn delete(&mut self, key: &str) {
        self.events.push(E::deleted_event(key));
        self.current.remove(key);
    }

    /// Appends the decided events, expecting every stream read to be as it was.
    async fn commit(self, state: &ApiState, user: &User) -> Result<(), AppendError> {
        if self.events.is_empty() {
            return Ok(());
        }
        let mut batch = AppendBatch::new();
        for key in &self.keys {
            let stream = E::deleted_event(key).stream();
            let expected = match self.versions.get(&stream) {
                Some(version) => ExpectedVersion::Exact(*version),
                None => ExpectedVersion::NoStream,
            };
            batch = batch.expect(stream, expected);
        }
        let metadata = Metadata::actor(&user.username);
        for event in self.events {
            batch = batch.push(event, &metadata);
        }
        state.store.append(batch).await.map(drop)
    }
}

/// Reads `keys`, lets `decision` change them, appends; decides again on a concurrent change.
async fn decide<E: Entity, T>(
    state: &ApiState,
    user: &User,
    keys: Vec<String>,
    mut decision: impl FnMut(&mut Working<E>) -> Result<T, ApiError> + Send,
) -> ApiResult<T> {
    let mut attempt = 1;
    loop {
        let mut working = Working::<E>::load(state, &keys).await?;
        let outcome = decision(&mut working)?;
        match working.commit(state, user).await {
            Ok(()) => return Ok(outcome),
            Err(AppendError::Conflict { .. }) if attempt < ATTEMPTS => attempt += 1,
            Err(error) => return Err(error.into()),
        }
    }
}

/// The one with `key`, or Airflow's 404.
async fn read_one<E: Entity>(state: &ApiState, key: &str) -> ApiResult<E> {
    E::load(state, &[key.to_owned()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| not_found::<E>(key).into())
}

/// Creates one; a conflict when it exists.
async fn create_one<E: Entity>(state: &ApiState, user: &User, body: &E::Body) -> ApiResult<E> {
    let key = E::body_key(body);
    decide(
        state,
        user,
        vec![key.to_owned()],
        |working: &mut Working<E>| {
            if working.get(key).is_some() {
                return Err(ApiError::conflict(format!(
                    "{}: `{key}` already exists",
                    E::LABEL
                )));
            }
            let entity = E::create(state, body);
            working.set(entity.clone());
            Ok(entity)
        },
    )
    .await
}

/// Changes one with `change`; a 404 when it does not exist.
async fn update_one<E: Entity>(
    state: &ApiState,
    user: &User,
    key: &str,
    change: impl Fn(&E) -> Result<E, Refusal> + Send + Sync,
) -> ApiResult<E> {
    decide(
        state,
        user,
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

/// Deletes one; a 404 when it does not exist.
async fn delete_one<E: Entity>(state: &ApiState, user: &User, key: &str) -> ApiResult<Response> {
    E::check_delete(key)?;
    decide(
        state,
        user,
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

// ---------------------------------------------------------------------------------------------
// Bulk: `PATCH /variables`, `/connections`, `/pools` with Airflow's `BulkBody`.

/// Airflow's `BulkBody[T]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkBody<B> {
    actions: Vec<BulkAction<B>>,
}

/// One action of a `BulkBody`, told apart by its `action`.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum BulkAction<B> {
    /// `BulkCreateAction`.
    Create {
        /// The entities to create.
        entities: Vec<B>,
        /// What to do with those that exist.
        #[serde(default)]
        action_on_existence: OnExistence,
    },
    /// `BulkUpdateAction`.
    Update {
        /// The entities to update.
        entities: Vec<B>,
        /// Which of their fields apply (all those given, by default).
        #[serde(default)]
        update_mask: Option<Vec<String>>,
        /// What to do with those that do not exist.
        #[serde(default)]
        action_on_non_existence: OnNonExistence,
    },
    /// `BulkDeleteAction`.
    Delete {
        /// The keys (or whole entities) to delete.
        entities: Vec<Target<B>>,
        /// What to do with those that do not exist.
        #[serde(default)]
        action_on_non_existence: OnNonExistence,
    },
}

/// Airflow's `BulkActionOnExistence`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExistence {
    /// Nothing of the action is done.
    #[default]
    Fail,
    /// The existing ones are left alone.
    Skip,
    /// The existing ones are replaced.
    Overwrite,
}

/// Airflow's `BulkActionNotOnExistence`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNonExistence {
    /// Nothing of the action is done.
    #[default]
    Fail,
    /// The missing ones are passed over.
    Skip,
}

/// What a delete action names: a key, or an entity whose key is taken.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Target<B> {
    /// A key.
    Key(String),
    /// An entity.
    Entity(B),
}

/// Airflow's `BulkActionResponse`.
#[derive(Debug, Default)]
struct ActionReport {
    success: Vec<String>,
    errors: Vec<Value>,
}

impl ActionReport {
    fn refuse(&mut self, refusal: Refusal) {
        self.errors.push(json!({
            "error": refusal.detail,
            "status_code": refusal.status.as_u16(),
        }));
    }

    fn json(&self) -> Value {
        json!({"success": self.success, "errors": self.errors})
    }
}

/// Airflow's `BulkResponse`: one report per kind of action the request had.
#[derive(Debug, Default)]
struct BulkReport {
    create: Option<ActionReport>,
    update: Option<ActionReport>,
    delete: Option<ActionReport>,
}

impl BulkReport {
    fn json(&self) -> Value {
        json!({
            "create": self.create.as_ref().map(ActionReport::json),
            "update": self.update.as_ref().map(ActionReport::json),
            "delete": self.delete.as_ref().map(ActionReport::json),
        })
    }
}

/// A set as Python prints it (`{'a', 'b'}`), as Airflow's bulk messages show keys.
fn python_set(keys: &BTreeSet<&str>) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("'{k}'")).collect();
    format!("{{{}}}", quoted.join(", "))
}

fn target_key<E: Entity>(target: &Target<E::Body>) -> &str {
    match target {
        Target::Key(key) => key,
        Target::Entity(body) => E::body_key(body),
    }
}

/// Runs a `BulkBody` in one append: every action decides on the state the previous ones left,
/// and the whole request is recorded (or, on a concurrent change, decided again) at once.
async fn bulk<E: Entity>(
    state: &ApiState,
    user: &User,
    body: BulkBody<E::Body>,
) -> ApiResult<Json<Value>> {
    let mut keys = BTreeSet::new();
    for (i, action) in body.actions.iter().enumerate() {
        let loc = Loc::body().at("actions").at(i);
        let (loc, bodies): (Loc, Vec<&E::Body>) = match action {
            BulkAction::Create { entities, .. } => (loc.at("create"), entities.iter().collect()),
            BulkAction::Update { entities, .. } => (loc.at("update"), entities.iter().collect()),
            BulkAction::Delete { entities, .. } => {
                keys.extend(entities.iter().map(|t| target_key::<E>(t).to_owned()));
                let bodies = entities
                    .iter()
                    .filter_map(|t| match t {
                        Target::Entity(body) => Some(body),
                        Target::Key(_) => None,
                    })
                    .collect();
                (loc.at("delete"), bodies)
            }
        };
        for (j, entity) in bodies.into_iter().enumerate() {
            E::validate(entity, &loc.at("entities").at(j))?;
            keys.insert(E::body_key(entity).to_owned());
        }
    }
    let report = decide(
        state,
        user,
        keys.into_iter().collect(),
        |working: &mut Working<E>| Ok(run_actions(state, &body.actions, working)),
    )
    .await?;
    Ok(Json(report.json()))
}

/// The bulk actions' decisions, as Airflow's `BulkService` makes them: an action whose
/// existence check fails does nothing; within an action, the first refusal stops it.
fn run_actions<E: Entity>(
    state: &ApiState,
    actions: &[BulkAction<E::Body>],
    working: &mut Working<E>,
) -> BulkReport {
    let mut report = BulkReport::default();
    for action in actions {
        match action {
            BulkAction::Create {
                entities,
                action_on_existence,
            } => {
                let outcome = report.create.get_or_insert_default();
                let existing: BTreeSet<&str> = entities
                    .iter()
                    .map(E::body_key)
                    .filter(|k| working.get(k).is_some())
                    .collect();
                if *action_on_existence == OnExistence::Fail && !existing.is_empty() {
                    outcome.refuse(Refusal::new(
                        StatusCode::CONFLICT,
                        format!(
                            "The {} with these {}: {} already exist.",
                            E::PLURAL,
                            E::KEYS,
                            python_set(&existing)
                        ),
                    ));
                    continue;
                }
                for body in entities {
                    let key = E::body_key(body);
                    if *action_on_existence == OnExistence::Skip && existing.contains(key) {
                        continue;
                    }
                    working.set(E::create(state, body));
                    outcome.success.push(key.to_owned());
                }
            }
            BulkAction::Update {
                entities,
                update_mask,
                action_on_non_existence,
            } => {
                let outcome = report.update.get_or_insert_default();
                let missing: BTreeSet<&str> = entities
                    .iter()
                    .map(E::body_key)
                    .filter(|k| working.get(k).is_none())
                    .collect();
                if *action_on_non_existence == OnNonExistence::Fail && !missing.is_empty() {
                    outcome.refuse(Refusal::new(
                        StatusCode::NOT_FOUND,
                        format!(
                            "The {} with these {}: {} were not found.",
                            E::PLURAL,
                            E::KEYS,
                            python_set(&missing)
                        ),
                    ));
                    continue;
                }
                let mask = update_mask.as_deref().filter(|m| !m.is_empty());
                for body in entities {
                    let key = E::body_key(body);
                    let Some(changed) = working.get(key).map(|e| e.update(state, body, mask))
                    else {
                        continue;
                    };
                    match changed {
                        Ok(changed) => {
                            working.set(changed);
                            outcome.success.push(key.to_owned());
                        }
                        Err(refusal) => {
                            outcome.refuse(refusal);
                            break;
                        }
                    }
                }
            }
            BulkAction::Delete {
                entities,
                action_on_non_existence,
            } => {
                let outcome = report.delete.get_or_insert_default();
                let mut keys: Vec<&str> = Vec::new();
                for key in entities.iter().map(target_key::<E>) {
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
                let missing: BTreeSet<&str> = keys
                    .iter()
                    .copied()
                    .filter(|k| working.get(k).is_none())
                    .collect();
                if *action_on_non_existence == OnNonExistence::Fail && !missing.is_empty() {
                    outcome.refuse(Refusal::new(
                        StatusCode::NOT_FOUND,
                        format!(
                            "The {} with these {}: {} were not found.",
                            E::PLURAL,
                            E::KEYS,
                            python_set(&missing)
                        ),
                    ));
                    continue;
                }
                for key in keys.into_iter().filter(|k| !missing.contains(k)) {
                    if let Err(refusal) = E::check_delete(key) {
                        outcome.refuse(refusal);
                        break;
                    }
                    working.delete(key);
                    outcome.success.push(key.to_owned());
                }
            }
        }
    }
    report
}

// ---------------------------------------------------------------------------------------------
// Variables.

/// A `variable` row.
#[derive(Debug, Clone, FromRow)]
struct Variable {
    key: String,
    val: String,
    description: Option<String>,
}

impl Variable {
    /// `VariableResponse`. Leoflow keeps values in its event log, not Fernet-encrypted rows.
    fn json(&self) -> Value {
        json!({
            "key": self.key,
            "value": shown_value(&self.key, &self.val),
            "description": self.description,
            "is_encrypted": false,
            "team_name": null,
        })
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
        loc.check_no_team(&body.team_name)
    }

    async fn load(state: &ApiState, keys: &[String]) -> ApiResult<Vec<Self>> {
        Ok(
            sqlx::query_as("SELECT key, val, description FROM variable WHERE key = ANY($1)")
                .bind(keys)
                .fetch_all(state.store.pool())
                .await?,
        )
    }

    fn create(_state: &ApiState, body: &VariableBody) -> Self {
        Variable {
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

    fn set_event(&self) -> Event {
        VariableSet {
            key: self.key.clone(),
            value: self.val.clone(),
            description: self.description.clone(),
        }
        .into()
    }

    fn deleted_event(key: &str) -> Event {
        VariableDeleted {
            key: key.to_owned(),
        }
        .into()
    }
}

/// `GET /api/v2/variables`.
pub async fn get_variables(
    State(state): State<ApiState>,
    params: Params,
) -> ApiResult<Json<Value>> {
    let page = params.page()?;
    let mut conditions = Conditions::new();
    conditions.patterns(&params, "variable_key", "v.key");
    // Airflow's `id` is the insertion order of its rows; Leoflow's rows are keyed by `key`.
    let order = params.order_by(
        &[
            ("key", "v.key"),
            ("id", "v.key"),
            ("_val", "v.val"),
            ("description", "v.description"),
            ("is_encrypted", SAME_FOR_ALL),
            ("team_name", SAME_FOR_ALL),
        ],
        "id",
        "v.key",
    )?;
    let total = count_rows(&state, "FROM variable v", &conditions).await?;
    let variables: Vec<Variable> = page_rows(
        &state,
        "SELECT v.key, v.val, v.description FROM variable v",
        &conditions,
        &order,
        page,
    )
    .await?;
    let variables: Vec<Value> = variables.iter().map(Variable::json).collect();
    Ok(Json(
        json!({"variables": variables, "total_entries": total}),
    ))
}

/// `GET /api/v2/variables/{variable_key}`.
pub async fn get_variable(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(read_one::<Variable>(&state, &key).await?.json()))
}

/// `POST /api/v2/variables`.
pub async fn post_variable(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Body(body): Body<VariableBody>,
) -> ApiResult<Response> {
    Variable::validate(&body, &Loc::body())?;
    let variable = create_one::<Variable>(&state, &user, &body).await?;
    Ok((StatusCode::CREATED, Json(variable.json())).into_response())
}

/// `PATCH /api/v2/variables/{variable_key}` (`update_mask` limits the fields that change).
pub async fn patch_variable(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(key): Path<String>,
    params: Params,
    Body(body): Body<VariableBody>,
) -> ApiResult<Json<Value>> {
    Variable::validate(&body, &Loc::body())?;
    let mask = update_mask(&params)?;
    if body.key != key {
        return Err(ApiError::bad_request(
            "Invalid body, key from request body doesn't match uri parameter",
        ));
    }
    let variable = update_one::<Variable>(&state, &user, &key, |variable| {
        variable.update(&state, &body, mask.as_deref())
    })
    .await?;
    Ok(Json(variable.json()))
}

/// `DELETE /api/v2/variables/{variable_key}`.
pub async fn delete_variable(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(key): Path<String>,
) -> ApiResult<Response> {
    delete_one::<Variable>(&state, &user, &key).await
}

/// `PATCH /api/v2/variables`: bulk create, update and delete.
pub async fn bulk_variables(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Body(body): Body<BulkBody<VariableBody>>,
) -> ApiResult<Json<Value>> {
    bulk::<Variable>(&state, &user, body).await
}

// ---------------------------------------------------------------------------------------------
// Connections.

/// A `connection` row; `password` is ciphertext.
#[derive(Debug, Clone, FromRow)]
struct Connection {
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

const CONNECTION_COLUMNS: &str =
    "c.conn_id, c.conn_type, c.description, c.host, c.schema, c.login, c.password, c.port, c.extra";

impl Connection {
    /// `ConnectionResponse`: a password reads `***` (as Airflow redacts it), never its value.
    fn json(&self) -> Value {
        json!({
            "connection_id": self.conn_id,
            "conn_type": self.conn_type,
            "description": self.description,
            "host": self.host,
            "login": self.login,
            "schema": self.schema,
            "port": self.port,
            "password": self.password.as_ref().map(|_| MASK),
            "extra": shown_extra(self.extra.as_deref()),
            "team_name": null,
        })
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
        loc.check_no_team(&body.team_name)
    }

    async fn load(state: &ApiState, keys: &[String]) -> ApiResult<Vec<Self>> {
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {CONNECTION_COLUMNS} FROM connection c WHERE c.conn_id = ANY($1)"
        )))
        .bind(keys)
        .fetch_all(state.store.pool())
        .await?)
    }

    fn create(state: &ApiState, body: &ConnectionBody) -> Self {
        Connection {
            conn_id: body.connection_id.clone(),
            conn_type: body.conn_type.clone(),
            description: body.description.clone().flatten(),
            host: body.host.clone().flatten(),
            schema: body.schema.clone().flatten(),
            login: body.login.clone().flatten(),
            password: body
                .password
                .clone()
                .flatten()
                .map(|p| state.connection_key.encrypt(&p)),
            port: body.port.flatten(),
            extra: body.extra(),
        }
    }

    fn update(
        &self,
        state: &ApiState,
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
                Some(password) => Some(state.connection_key.encrypt(&password)),
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

    fn set_event(&self) -> Event {
        ConnectionSet {
            conn_id: self.conn_id.clone(),
            conn_type: self.conn_type.clone(),
            description: self.description.clone(),
            host: self.host.clone(),
            schema: self.schema.clone(),
            login: self.login.clone(),
            password_ciphertext: self.password.clone(),
            port: self.port,
            extra: self.extra.clone(),
        }
        .into()
    }

    fn deleted_event(key: &str) -> Event {
        ConnectionDeleted {
            conn_id: key.to_owned(),
        }
        .into()
    }
}

/// `GET /api/v2/connections`.
pub async fn get_connections(
    State(state): State<ApiState>,
    params: Params,
) -> ApiResult<Json<Value>> {
    let page = params.page()?;
    let mut conditions = Conditions::new();
    conditions.patterns(&params, "connection_id", "c.conn_id");
    let order = params.order_by(
        &[
            ("conn_id", "c.conn_id"),
            ("connection_id", "c.conn_id"),
            ("conn_type", "c.conn_type"),
            ("description", "c.description"),
            ("host", "c.host"),
            ("port", "c.port"),
            ("id", "c.conn_id"),
            ("team_name", SAME_FOR_ALL),
        ],
        "id",
        "c.conn_id",
    )?;
    let total = count_rows(&state, "FROM connection c", &conditions).await?;
    let connections: Vec<Connection> = page_rows(
        &state,
        &format!("SELECT {CONNECTION_COLUMNS} FROM connection c"),
        &conditions,
        &order,
        page,
    )
    .await?;
    let connections: Vec<Value> = connections.iter().map(Connection::json).collect();
    Ok(Json(
        json!({"connections": connections, "total_entries": total}),
    ))
}

/// `GET /api/v2/connections/{connection_id}`.
pub async fn get_connection(
    State(state): State<ApiState>,
    Path(conn_id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(read_one::<Connection>(&state, &conn_id).await?.json()))
}

/// `POST /api/v2/connections`: the password is encrypted before its event is appended.
pub async fn post_connection(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Body(body): Body<ConnectionBody>,
) -> ApiResult<Response> {
    Connection::validate(&body, &Loc::body())?;
    let connection = create_one::<Connection>(&state, &user, &body).await?;
    Ok((StatusCode::CREATED, Json(connection.json())).into_response())
}

/// `PATCH /api/v2/connections/{connection_id}`: a password or extra key sent back as `***`
/// keeps its stored value, so the UI's edit form can save what it was shown.
pub async fn patch_connection(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(conn_id): Path<String>,
    params: Params,
    Body(body): Body<ConnectionBody>,
) -> ApiResult<Json<Value>> {
    Connection::validate(&body, &Loc::body())?;
    let mask = update_mask(&params)?;
    if body.connection_id != conn_id {
        return Err(ApiError::bad_request(
            "The connection_id in the request body does not match the URL parameter",
        ));
    }
    let connection = update_one::<Connection>(&state, &user, &conn_id, |connection| {
        connection.update(&state, &body, mask.as_deref())
    })
    .await?;
    Ok(Json(connection.json()))
}

/// `DELETE /api/v2/connections/{connection_id}`.
pub async fn delete_connection(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(conn_id): Path<String>,
) -> ApiResult<Response> {
    delete_one::<Connection>(&state, &user, &conn_id).await
}

/// `PATCH /api/v2/connections`: bulk create, update and delete.
pub async fn bulk_connections(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Body(body): Body<BulkBody<ConnectionBody>>,
) -> ApiResult<Json<Value>> {
    bulk::<Connection>(&state, &user, body).await
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

// ---------------------------------------------------------------------------------------------
// Pools.

/// The pool every task uses unless it names another one.
const DEFAULT_POOL: &str = "default_pool";

/// A `slot_pool` row, or `default_pool` before any `PoolSet` for it (the scheduler gives it
/// [`DEFAULT_POOL_SLOTS`] until then).
#[derive(Debug, Clone, FromRow)]
struct Pool {
    name: String,
    slots: i32,
    description: Option<String>,
    include_deferred: bool,
}

/// The pools, `default_pool` included whether or not it was ever set (as `p`).
fn pools_from() -> String {
    format!(
        "FROM (SELECT pool, slots, description, include_deferred FROM slot_pool \
         UNION ALL SELECT '{DEFAULT_POOL}', {DEFAULT_POOL_SLOTS}, 'Default pool', false \
         WHERE NOT EXISTS (SELECT 1 FROM slot_pool WHERE pool = '{DEFAULT_POOL}')) p"
    )
}

/// Slots held by a pool's task instances, by state.
#[derive(Debug, Default, Clone, Copy)]
struct SlotUse {
    running: i64,
    queued: i64,
    scheduled: i64,
    deferred: i64,
}

impl Pool {
    /// `PoolResponse`, with Airflow's slot statistics: running and queued tasks (deferred ones
    /// too with `include_deferred`) occupy slots; `-1` slots is unlimited, so `-1` open.
    fn json(&self, used: SlotUse) -> Value {
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
        json!({
            "name": self.name,
            "slots": self.slots,
            "description": self.description,
            "include_deferred": self.include_deferred,
            "occupied_slots": occupied,
            "running_slots": used.running,
            "queued_slots": used.queued,
            "scheduled_slots": used.scheduled,
            "open_slots": open,
            "deferred_slots": used.deferred,
            "team_name": null,
        })
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
        loc.check_no_team(&self.team_name)?;
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
        loc.check_no_team(&body.team_name)
    }

    async fn load(state: &ApiState, keys: &[String]) -> ApiResult<Vec<Self>> {
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "SELECT p.pool AS name, p.slots, p.description, p.include_deferred {} \
             WHERE p.pool = ANY($1)",
            pools_from()
        )))
        .bind(keys)
        .fetch_all(state.store.pool())
        .await?)
    }

    fn create(_state: &ApiState, body: &PoolBody) -> Self {
        Pool {
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

    fn set_event(&self) -> Event {
        PoolSet {
            name: self.name.clone(),
            slots: self.slots,
            description: self.description.clone(),
            include_deferred: self.include_deferred,
        }
        .into()
    }

    fn deleted_event(key: &str) -> Event {
        PoolDeleted {
            name: key.to_owned(),
        }
        .into()
    }
}

/// `PoolResponse`s of `pools`, with the slots their task instances hold now.
async fn pools_json(state: &ApiState, pools: &[Pool]) -> ApiResult<Vec<Value>> {
    let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
    // A scheduled task instance holds no slot yet; Leoflow learns its pool when it is queued,
    // so scheduled slots count those whose pool is already known (retries, cleared tries).
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT pool, state, sum(coalesce(pool_slots, 1))::bigint FROM task_instance \
         WHERE pool = ANY($1) AND state IN ('running', 'queued', 'scheduled', 'deferred') \
         GROUP BY pool, state",
    )
    .bind(&names)
    .fetch_all(state.store.pool())
    .await?;
    let mut used: HashMap<String, SlotUse> = HashMap::new();
    for (pool, task_state, slots) in rows {
        let entry = used.entry(pool).or_default();
        match task_state.as_str() {
            "running" => entry.running = slots,
            "queued" => entry.queued = slots,
            "scheduled" => entry.scheduled = slots,
            _ => entry.deferred = slots,
        }
    }
    Ok(pools
        .iter()
        .map(|p| p.json(used.get(&p.name).copied().unwrap_or_default()))
        .collect())
}

/// `GET /api/v2/pools`.
pub async fn get_pools(State(state): State<ApiState>, params: Params) -> ApiResult<Json<Value>> {
    let page = params.page()?;
    let mut conditions = Conditions::new();
    conditions.patterns(&params, "pool_name", "p.pool");
    let order = params.order_by(
        &[("id", "p.pool"), ("pool", "p.pool"), ("name", "p.pool")],
        "id",
        "p.pool",
    )?;
    let from = pools_from();
    let total = count_rows(&state, &from, &conditions).await?;
    let pools: Vec<Pool> = page_rows(
        &state,
        &format!("SELECT p.pool AS name, p.slots, p.description, p.include_deferred {from}"),
        &conditions,
        &order,
        page,
    )
    .await?;
    let pools = pools_json(&state, &pools).await?;
    Ok(Json(json!({"pools": pools, "total_entries": total})))
}

/// `GET /api/v2/pools/{pool_name}`.
pub async fn get_pool(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let pool = read_one::<Pool>(&state, &name).await?;
    Ok(Json(pools_json(&state, &[pool]).await?.remove(0)))
}

/// `POST /api/v2/pools`.
pub async fn post_pool(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Body(body): Body<PoolBody>,
) -> ApiResult<Response> {
    Pool::validate(&body, &Loc::body())?;
    let pool = create_one::<Pool>(&state, &user, &body).await?;
    let json = pools_json(&state, &[pool]).await?.remove(0);
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

/// `PATCH /api/v2/pools/{pool_name}`: patching `default_pool` records its first `PoolSet`.
pub async fn patch_pool(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    params: Params,
    Body(body): Body<PoolPatchBody>,
) -> ApiResult<Json<Value>> {
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
    let pool = update_one::<Pool>(&state, &user, &name, |pool| {
        pool.apply(&changes, mask.as_deref())
    })
    .await?;
    Ok(Json(pools_json(&state, &[pool]).await?.remove(0)))
}

/// `DELETE /api/v2/pools/{pool_name}`; `default_pool` cannot be deleted.
pub async fn delete_pool(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    delete_one::<Pool>(&state, &user, &name).await
}

/// `PATCH /api/v2/pools`: bulk create, update and delete.
pub async fn bulk_pools(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Body(body): Body<BulkBody<PoolBody>>,
) -> ApiResult<Json<Value>> {
    bulk::<Pool>(&state, &user, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_names_are_found_inside_longer_ones() {
        assert!(is_sensitive("DB_PASSWORD"));
        assert!(is_sensitive(" github_token "));
        assert!(is_sensitive("aws_secret_access_key"));
        assert!(!is_sensitive("greeting"));
    }

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
    fn bulk_bodies_parse_as_airflow_sends_them() {
        let body: BulkBody<VariableBody> = crate::body::parse(
            br#"{"actions": [
                {"action": "create", "entities": [{"key": "a", "value": 1}], "action_on_existence": "skip"},
                {"action": "update", "entities": [{"key": "a", "value": "x"}], "update_mask": ["value"]},
                {"action": "delete", "entities": ["a", {"key": "b", "value": "y"}]}
            ]}"#,
        )
        .unwrap();
        assert!(matches!(
            body.actions[0],
            BulkAction::Create {
                action_on_existence: OnExistence::Skip,
                ..
            }
        ));
        assert!(
            matches!(&body.actions[2], BulkAction::Delete { entities, .. } if entities.len() == 2)
        );
        let refused = crate::body::parse::<BulkBody<VariableBody>>(
            br#"{"actions": [{"action": "create", "entities": [], "colour": 1}]}"#,
        );
        assert!(refused.is_err());
        let refused = crate::body::parse::<BulkBody<VariableBody>>(
            br#"{"actions": [{"action": "upsert", "entities": []}]}"#,
        );
        assert!(refused.is_err());
    }

    #[test]
    fn connection_ids_follow_airflows_pattern() {
        assert!(valid_connection_id("my_db.prod-1"));
        assert!(!valid_connection_id("my db"));
        assert!(!valid_connection_id("a/b"));
    }
}
