//! One page of a list and how many rows the list has: the one paging query every list of
//! the read models runs (the API adds its cursors on top).

use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};

use super::filter::Conditions;

/// How many rows `from` (a `FROM …` clause) has under `conditions`.
pub async fn count_rows(pool: &PgPool, from: &str, conditions: &Conditions) -> sqlx::Result<i64> {
    let mut count = QueryBuilder::<Postgres>::new(format!("SELECT count(*) {from}"));
    conditions.apply(&mut count);
    count.build_query_scalar().fetch_one(pool).await
}

/// Rows `offset..offset + limit` of `select` (a `SELECT … FROM …`) under `conditions`, in
/// `order`.
pub async fn page_rows<T>(
    pool: &PgPool,
    select: &str,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<Vec<T>>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    let mut query = QueryBuilder::<Postgres>::new(select);
    conditions.apply(&mut query);
    query.push(format!(" ORDER BY {order} LIMIT "));
    query.push_bind(window.limit);
    query.push(" OFFSET ");
    query.push_bind(window.offset);
    query.build_query_as().fetch_all(pool).await
}

/// Which rows of a list a page holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Rows at most.
    pub limit: i64,
    /// Rows skipped.
    pub offset: i64,
}

/// A list query: `SELECT <columns> FROM …` for the page, `FROM …` for the count (a count may
/// leave out joins no condition reads), the conditions and the order.
#[derive(Debug, Clone, Copy)]
pub struct ListQuery<'a> {
    /// `SELECT … FROM …`.
    pub select: &'a str,
    /// `FROM …` of the count.
    pub count_from: &'a str,
    /// The `WHERE` clause.
    pub conditions: &'a Conditions,
    /// The `ORDER BY` expression.
    pub order: &'a str,
}

/// The total of `list`, then its rows in `window`.
pub async fn fetch_page<T>(
    pool: &PgPool,
    list: ListQuery<'_>,
    window: Window,
) -> sqlx::Result<(Vec<T>, i64)>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    let total = count_rows(pool, list.count_from, list.conditions).await?;
    let rows = page_rows(pool, list.select, list.conditions, list.order, window).await?;
    Ok((rows, total))
}
