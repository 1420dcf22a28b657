//! `variable`: the Variables of every tenant, their values sealed (opening them is the vault's
//! business). A key names one Variable within its tenant.

use leoflow_events::catalog::Sealed;
use sqlx::types::Json;
use sqlx::{FromRow, PgPool};

use super::filter::Conditions;
use super::page::{ListQuery, Window, fetch_page};

/// The columns a list of Variables filters and orders by.
pub mod columns {
    /// The tenant that owns it.
    pub const TENANT: &str = "v.tenant";
    /// The key.
    pub const KEY: &str = "v.key";
    /// Key, then tenant: an order with no ties, to end every list's order.
    pub const UNIQUE: &str = "v.key, v.tenant";
    /// The sealed value.
    pub const VAL: &str = "v.val";
    /// The description.
    pub const DESCRIPTION: &str = "v.description";
    /// Whether the value is encrypted: every value is sealed, so the same for all rows and
    /// ordering by it leaves the order to the tiebreak.
    pub const IS_ENCRYPTED: &str = "CAST(NULL AS text)";
    /// Airflow's team: the tenant, `NULL` for the default one (Airflow's "no team").
    pub const TEAM_NAME: &str = "NULLIF(v.tenant, 'default')";
}

/// A `variable` row: its value sealed.
#[derive(Debug, Clone, FromRow)]
pub struct VariableRow {
    /// The tenant that owns it.
    pub tenant: String,
    /// The key.
    pub key: String,
    /// The value, sealed with the Variable's data key.
    pub val: Json<Sealed>,
    /// The description.
    pub description: Option<String>,
}

macro_rules! select_variables {
    ($tail:literal) => {
        concat!(
            "SELECT v.tenant, v.key, v.val, v.description FROM variable v",
            $tail
        )
    };
}

/// The Variables of `tenant` with these keys (those that exist).
pub async fn by_keys(
    pool: &PgPool,
    tenant: &str,
    keys: &[String],
) -> sqlx::Result<Vec<VariableRow>> {
    sqlx::query_as(select_variables!(
        " WHERE v.tenant = $1 AND v.key = ANY($2)"
    ))
    .bind(tenant)
    .bind(keys)
    .fetch_all(pool)
    .await
}

/// The sealed value of `tenant`'s Variable `key`, if it exists.
pub async fn sealed_value(pool: &PgPool, tenant: &str, key: &str) -> sqlx::Result<Option<Sealed>> {
    let sealed: Option<Json<Sealed>> =
        sqlx::query_scalar("SELECT val FROM variable WHERE tenant = $1 AND key = $2")
            .bind(tenant)
            .bind(key)
            .fetch_optional(pool)
            .await?;
    Ok(sealed.map(|json| json.0))
}

/// The Variables under `conditions` in `window`, in `order` (expressions of [`columns`]), and
/// how many there are in all.
pub async fn page(
    pool: &PgPool,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<(Vec<VariableRow>, i64)> {
    let list = ListQuery {
        select: select_variables!(""),
        count_from: "FROM variable v",
        conditions,
        order,
    };
    fetch_page(pool, list, window).await
}
