//! `connection`: the Connections, their password and extra sealed (opening them is the
//! vault's business).

use leoflow_events::catalog::Sealed;
use sqlx::types::Json;
use sqlx::{FromRow, PgPool};

use super::filter::Conditions;
use super::page::{ListQuery, Window, fetch_page};

/// The columns a list of Connections filters and orders by.
pub mod columns {
    /// The tenant that owns it.
    pub const TENANT: &str = "c.tenant";
    /// The connection id.
    pub const CONN_ID: &str = "c.conn_id";
    /// Id, then tenant: an order with no ties, to end every list's order.
    pub const UNIQUE: &str = "c.conn_id, c.tenant";
    /// The connection type.
    pub const CONN_TYPE: &str = "c.conn_type";
    /// The description.
    pub const DESCRIPTION: &str = "c.description";
    /// The host.
    pub const HOST: &str = "c.host";
    /// The port.
    pub const PORT: &str = "c.port";
    /// Airflow's team: the tenant, `NULL` for the default one (Airflow's "no team").
    pub const TEAM_NAME: &str = "NULLIF(c.tenant, 'default')";
}

/// A `connection` row: password and extra sealed.
#[derive(Debug, Clone, FromRow)]
pub struct ConnectionRow {
    /// The tenant that owns it.
    pub tenant: String,
    /// The connection id.
    pub conn_id: String,
    /// The connection type.
    pub conn_type: String,
    /// The description.
    pub description: Option<String>,
    /// The host.
    pub host: Option<String>,
    /// The schema.
    pub schema: Option<String>,
    /// The login.
    pub login: Option<String>,
    /// The password, sealed with the Connection's data key.
    pub password: Option<Json<Sealed>>,
    /// The port.
    pub port: Option<i32>,
    /// The extra (a JSON object's text), sealed with the Connection's data key.
    pub extra: Option<Json<Sealed>>,
}

macro_rules! select_connections {
    ($tail:literal) => {
        concat!(
            "SELECT c.tenant, c.conn_id, c.conn_type, c.description, c.host, c.schema, c.login, \
             c.password, c.port, c.extra FROM connection c",
            $tail
        )
    };
}

/// The Connections of `tenant` with these ids (those that exist).
pub async fn by_ids(
    pool: &PgPool,
    tenant: &str,
    conn_ids: &[String],
) -> sqlx::Result<Vec<ConnectionRow>> {
    sqlx::query_as(select_connections!(
        " WHERE c.tenant = $1 AND c.conn_id = ANY($2)"
    ))
    .bind(tenant)
    .bind(conn_ids)
    .fetch_all(pool)
    .await
}

/// `tenant`'s Connection `conn_id`, if it exists.
pub async fn by_id(
    pool: &PgPool,
    tenant: &str,
    conn_id: &str,
) -> sqlx::Result<Option<ConnectionRow>> {
    sqlx::query_as(select_connections!(
        " WHERE c.tenant = $1 AND c.conn_id = $2"
    ))
    .bind(tenant)
    .bind(conn_id)
    .fetch_optional(pool)
    .await
}

/// The ids of the Connections whose password an older Leoflow sealed with the master key
/// itself (before data keys), in id order: rotating the master key would lose them.
pub async fn sealed_by_master_key(pool: &PgPool) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT conn_id FROM connection WHERE password->>'form' = 'master_key' ORDER BY conn_id",
    )
    .fetch_all(pool)
    .await
}

/// The Connections under `conditions` in `window`, in `order` (expressions of [`columns`]), and
/// how many there are in all.
pub async fn page(
    pool: &PgPool,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<(Vec<ConnectionRow>, i64)> {
    let list = ListQuery {
        select: select_connections!(""),
        count_from: "FROM connection c",
        conditions,
        order,
    };
    fetch_page(pool, list, window).await
}
