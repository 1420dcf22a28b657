//! One page of a list endpoint and its `total_entries`, from a `FROM …` clause and the
//! conditions its query parameters make.

use sqlx::postgres::PgRow;
use sqlx::{FromRow, Postgres, QueryBuilder};

use crate::error::ApiResult;
use crate::query::{Conditions, Page};
use crate::state::ApiState;

/// An `ORDER BY` expression for attributes every row shares (Leoflow has no teams and keeps no
/// per-Variable encryption flag): ordering by them leaves the order to the tiebreak.
pub(super) const SAME_FOR_ALL: &str = "CAST(NULL AS text)";

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
