//! Human-in-the-loop details (Airflow's `hitl_detail`): what a try waiting for a person's answer
//! asks, and the answer, kept on its `task_instance_try` row.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};

use super::filter::{Bind, Conditions};
use super::page::{ListQuery, Window, fetch_page};

/// The expressions a list of details filters and orders by (`h.` the try, `t.` its task
/// instance).
pub mod columns {
    /// The DAG.
    pub const DAG_ID: &str = "h.dag_id";
    /// The run.
    pub const RUN_ID: &str = "h.run_id";
    /// The task.
    pub const TASK_ID: &str = "h.task_id";
    /// The map index.
    pub const MAP_INDEX: &str = "h.map_index";
    /// The try.
    pub const TRY_NUMBER: &str = "h.try_number";
    /// The task instance's state.
    pub const STATE: &str = "t.state";
    /// When it asked.
    pub const CREATED_AT: &str = "h.hitl_created_at";
    /// Its subject.
    pub const SUBJECT: &str = "(h.hitl_request->>'subject')";
    /// Its body.
    pub const BODY: &str = "(h.hitl_request->>'body')";
    /// Whether an answer came (or the defaults were taken).
    pub const RESPONSE_RECEIVED: &str = "(h.hitl_response IS NOT NULL)";
    /// Who answered: their id.
    pub const RESPONDED_BY_ID: &str = "(h.hitl_response->'responded_by_user'->>'id')";
    /// Who answered: their name.
    pub const RESPONDED_BY_NAME: &str = "(h.hitl_response->'responded_by_user'->>'name')";
    /// When the answer came.
    pub const RESPONDED_AT: &str = "(h.hitl_response->>'responded_at')";
}

/// A try that asked a person, and what it got.
#[derive(Debug, Clone, FromRow)]
pub struct HitlRecord {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// The task.
    pub task_id: String,
    /// The map index.
    pub map_index: i32,
    /// The try.
    pub try_number: i32,
    /// What it asks (`subject`, `body`, `options`, `defaults`, `multiple`, `params`,
    /// `assigned_users`).
    pub request: Value,
    /// When it asked.
    pub created_at: DateTime<Utc>,
    /// The answer (`chosen_options`, `params_input`, `responded_by_user`, `responded_at`).
    pub response: Option<Value>,
}

/// The current tries that asked, with their task instances (`h.`, `t.`).
const FROM: &str = "FROM task_instance_try h JOIN task_instance t ON t.dag_id = h.dag_id \
    AND t.run_id = h.run_id AND t.task_id = h.task_id AND t.map_index = h.map_index \
    AND t.try_number = h.try_number";

const SELECT: &str = "SELECT h.dag_id, h.run_id, h.task_id, h.map_index, h.try_number, \
    h.hitl_request AS request, h.hitl_created_at AS created_at, h.hitl_response AS response";

/// The details of current tries under `conditions` in `window`, in `order`, and how many there
/// are in all.
pub async fn page(
    pool: &PgPool,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<(Vec<HitlRecord>, i64)> {
    let mut conditions = conditions.clone();
    conditions.push("h.hitl_request IS NOT NULL", vec![]);
    let list = ListQuery {
        select: &format!("{SELECT} {FROM}"),
        count_from: FROM,
        conditions: &conditions,
        order,
    };
    fetch_page(pool, list, window).await
}

/// The detail of a task instance's try `try_number` (its current try without one), if that
/// try asked a person.
pub async fn find(
    pool: &PgPool,
    (dag_id, run_id, task_id, map_index): (&str, &str, &str, i32),
    try_number: Option<i32>,
) -> sqlx::Result<Option<HitlRecord>> {
    let mut conditions = Conditions::new();
    conditions.eq(columns::DAG_ID, Bind::Text(dag_id.to_owned()));
    conditions.eq(columns::RUN_ID, Bind::Text(run_id.to_owned()));
    conditions.eq(columns::TASK_ID, Bind::Text(task_id.to_owned()));
    conditions.eq(columns::MAP_INDEX, Bind::BigInt(map_index.into()));
    conditions.push("h.hitl_request IS NOT NULL", vec![]);
    let from = match try_number {
        Some(n) => {
            conditions.eq(columns::TRY_NUMBER, Bind::BigInt(n.into()));
            "FROM task_instance_try h"
        }
        None => FROM,
    };
    let mut query = QueryBuilder::<Postgres>::new(format!("{SELECT} {from}"));
    conditions.apply(&mut query);
    query.build_query_as().fetch_optional(pool).await
}
