//! `slot_pool`: the pools, with `default_pool` in whether or not it was ever set, and the
//! slots task instances hold in them.

use sqlx::{AssertSqlSafe, FromRow, PgPool};

use super::filter::Conditions;
use super::page::{ListQuery, Window, fetch_page};

/// The columns a list of pools filters and orders by.
pub mod columns {
    /// The pool's name.
    pub const NAME: &str = "p.pool";
}

/// A pool: a `slot_pool` row, or `default_pool` before any `PoolSet` for it.
#[derive(Debug, Clone, FromRow)]
pub struct PoolRow {
    /// The name.
    pub name: String,
    /// Its slots (`-1`: unlimited).
    pub slots: i32,
    /// The description.
    pub description: Option<String>,
    /// Whether deferred task instances hold slots.
    pub include_deferred: bool,
}

/// `default_pool` as the scheduler defines it: the pool that exists before anyone sets it.
#[derive(Debug, Clone, Copy)]
pub struct DefaultPool {
    /// Its name.
    pub name: &'static str,
    /// Its slots until a `PoolSet` says otherwise.
    pub slots: i32,
}

/// The pools, `default_pool` included whether or not it was ever set (as `p`). The default's
/// name is the scheduler's constant, quoted as an SQL literal.
fn pools_from(default: DefaultPool) -> String {
    let name = default.name.replace('\'', "''");
    let slots = default.slots;
    format!(
        "FROM (SELECT pool, slots, description, include_deferred FROM slot_pool \
         UNION ALL SELECT '{name}', {slots}, 'Default pool', false \
         WHERE NOT EXISTS (SELECT 1 FROM slot_pool WHERE pool = '{name}')) p"
    )
}

/// The `SELECT` of a [`PoolRow`] from [`pools_from`].
fn select_pools(default: DefaultPool) -> String {
    format!(
        "SELECT p.pool AS name, p.slots, p.description, p.include_deferred {}",
        pools_from(default)
    )
}

/// The pools with these names (those that exist; `default_pool` always does).
pub async fn by_names(
    pool: &PgPool,
    default: DefaultPool,
    names: &[String],
) -> sqlx::Result<Vec<PoolRow>> {
    let sql = format!("{} WHERE p.pool = ANY($1)", select_pools(default));
    sqlx::query_as(AssertSqlSafe(sql))
        .bind(names)
        .fetch_all(pool)
        .await
}

/// The pools under `conditions` in `window`, in `order` (expressions of [`columns`]), and how
/// many there are in all; `default_pool` as `default` says (its name and slots are part of the
/// `FROM`).
pub async fn page(
    pool: &PgPool,
    default: DefaultPool,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<(Vec<PoolRow>, i64)> {
    let list = ListQuery {
        select: &select_pools(default),
        count_from: &pools_from(default),
        conditions,
        order,
    };
    fetch_page(pool, list, window).await
}

/// Slots held in a pool by its task instances in one state.
#[derive(Debug, Clone, FromRow)]
pub struct SlotsHeld {
    /// The pool.
    pub pool: String,
    /// The task instances' state.
    pub state: String,
    /// The slots they hold (a task instance without `pool_slots` holds one).
    pub slots: i64,
}

/// The slots task instances in `states` hold in the pools `names`, by pool and state (no row
/// where none do).
pub async fn slots_held(
    pool: &PgPool,
    names: &[&str],
    states: &[&str],
) -> sqlx::Result<Vec<SlotsHeld>> {
    sqlx::query_as(
        "SELECT pool, state, sum(coalesce(pool_slots, 1))::bigint AS slots FROM task_instance \
         WHERE pool = ANY($1) AND state = ANY($2) GROUP BY pool, state",
    )
    .bind(names)
    .bind(states)
    .fetch_all(pool)
    .await
}
