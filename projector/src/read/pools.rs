//! `slot_pool`: the pools of every tenant, each tenant's `default_pool` in whether or not it
//! was ever set, and the slots task instances hold in them (a task instance holds slots in the
//! pools of its DAG's tenant).

use sqlx::{AssertSqlSafe, FromRow, PgPool};

use super::filter::Conditions;
use super::page::{ListQuery, Window, fetch_page};

/// The columns a list of pools filters and orders by.
pub mod columns {
    /// The tenant that owns it.
    pub const TENANT: &str = "p.tenant";
    /// The pool's name.
    pub const NAME: &str = "p.pool";
    /// Airflow's team: the tenant, `NULL` for the default one (Airflow's "no team").
    pub const TEAM_NAME: &str = "NULLIF(p.tenant, 'default')";
    /// Name, then tenant: an order with no ties, to end every list's order.
    pub const UNIQUE: &str = "p.pool, p.tenant";
}

/// A pool: a `slot_pool` row, or a tenant's `default_pool` before any `PoolSet` for it.
#[derive(Debug, Clone, FromRow)]
pub struct PoolRow {
    /// The tenant that owns it.
    pub tenant: String,
    /// The name.
    pub name: String,
    /// Its slots (`-1`: unlimited).
    pub slots: i32,
    /// The description.
    pub description: Option<String>,
    /// Whether deferred task instances hold slots.
    pub include_deferred: bool,
}

/// `default_pool` as the scheduler defines it: the pool every tenant has before anyone sets it.
#[derive(Debug, Clone, Copy)]
pub struct DefaultPool {
    /// Its name.
    pub name: &'static str,
    /// Its slots until a `PoolSet` says otherwise.
    pub slots: i32,
}

/// `text` as an SQL literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The pools of `tenant` (`None`: of every tenant), as `p`, each tenant's `default_pool`
/// included whether or not it was ever set. Every tenant means the default one and those that
/// own a DAG or a pool. The default's name, its slots and the tenant are quoted as SQL
/// literals, so the `FROM` takes no bind parameters and lists bind only their conditions.
fn pools_from(default: DefaultPool, tenant: Option<&str>) -> String {
    let name = literal(default.name);
    let slots = default.slots;
    let (rows, tenants) = match tenant {
        Some(tenant) => (
            format!(" WHERE tenant = {}", literal(tenant)),
            format!("SELECT {} AS tenant", literal(tenant)),
        ),
        None => (
            String::new(),
            format!(
                "SELECT {} AS tenant UNION SELECT tenant FROM dag UNION SELECT tenant FROM slot_pool",
                literal(leoflow_events::DEFAULT_TENANT)
            ),
        ),
    };
    format!(
        "FROM (SELECT tenant, pool, slots, description, include_deferred FROM slot_pool{rows} \
         UNION ALL SELECT t.tenant, {name}, {slots}, 'Default pool', false FROM ({tenants}) t \
         WHERE NOT EXISTS (SELECT 1 FROM slot_pool s WHERE s.tenant = t.tenant AND s.pool = {name})) p"
    )
}

/// The `SELECT` of a [`PoolRow`] from [`pools_from`].
fn select_pools(default: DefaultPool, tenant: Option<&str>) -> String {
    format!(
        "SELECT p.tenant, p.pool AS name, p.slots, p.description, p.include_deferred {}",
        pools_from(default, tenant)
    )
}

/// The pools of `tenant` with these names (those that exist; `default_pool` always does).
pub async fn by_names(
    pool: &PgPool,
    default: DefaultPool,
    tenant: &str,
    names: &[String],
) -> sqlx::Result<Vec<PoolRow>> {
    let sql = format!(
        "{} WHERE p.pool = ANY($1)",
        select_pools(default, Some(tenant))
    );
    sqlx::query_as(AssertSqlSafe(sql))
        .bind(names)
        .fetch_all(pool)
        .await
}

/// The pools of `tenant` (`None`: of every tenant) under `conditions` in `window`, in `order`
/// (expressions of [`columns`]), and how many there are in all; `default_pool` as `default`
/// says.
pub async fn page(
    pool: &PgPool,
    default: DefaultPool,
    tenant: Option<&str>,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<(Vec<PoolRow>, i64)> {
    let list = ListQuery {
        select: &select_pools(default, tenant),
        count_from: &pools_from(default, tenant),
        conditions,
        order,
    };
    fetch_page(pool, list, window).await
}

/// Slots held in a pool by its task instances in one state.
#[derive(Debug, Clone, FromRow)]
pub struct SlotsHeld {
    /// The tenant of the pool (and of the task instances' DAG).
    pub tenant: String,
    /// The pool.
    pub pool: String,
    /// The task instances' state.
    pub state: String,
    /// The slots they hold (a task instance without `pool_slots` holds one).
    pub slots: i64,
}

/// The slots task instances in `states` hold in the pools `names` of `tenant` (`None`: of
/// every tenant), by tenant, pool and state (no row where none do).
pub async fn slots_held(
    pool: &PgPool,
    tenant: Option<&str>,
    names: &[&str],
    states: &[&str],
) -> sqlx::Result<Vec<SlotsHeld>> {
    sqlx::query_as(
        "SELECT t.tenant, t.pool, t.state, sum(t.slots)::bigint AS slots FROM \
         (SELECT coalesce(d.tenant, $4) AS tenant, ti.pool, ti.state, \
                 coalesce(ti.pool_slots, 1) AS slots \
          FROM task_instance ti LEFT JOIN dag d ON d.dag_id = ti.dag_id \
          WHERE ti.pool = ANY($1) AND ti.state = ANY($2)) t \
         WHERE $3::text IS NULL OR t.tenant = $3 GROUP BY t.tenant, t.pool, t.state",
    )
    .bind(names)
    .bind(states)
    .bind(tenant)
    // A task instance whose DAG is not (or no longer) known holds slots as before tenants
    // existed: in the default tenant's pools.
    .bind(leoflow_events::DEFAULT_TENANT)
    .fetch_all(pool)
    .await
}
