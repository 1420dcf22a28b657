//! One page of a list endpoint, its `total_entries` and its cursors, from a `FROM …` clause
//! and the conditions its query parameters make: the one paging helper every list uses.

use sqlx::postgres::PgRow;
use sqlx::{FromRow, Postgres, QueryBuilder};

use crate::error::ApiResult;
use crate::query::{Conditions, Page};
use crate::state::ApiState;

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

/// A page of rows and how many rows the list has in all.
#[derive(Debug, Clone)]
pub struct Paged<T> {
    /// The rows of the page.
    pub rows: Vec<T>,
    /// Rows in the whole list.
    pub total: i64,
    /// The page asked for (its cursors depend on it).
    pub page: Page,
}

impl<T> Paged<T> {
    /// `(next_cursor, previous_cursor)` after this page (both `None` without a cursor).
    pub fn cursors(&self) -> (Option<String>, Option<String>) {
        self.page.cursors(self.total, self.rows.len())
    }
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

/// The total, then one page of `list`.
pub(crate) async fn fetch_page<T>(
    state: &ApiState,
    list: ListQuery<'_>,
    page: Page,
) -> ApiResult<Paged<T>>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    let total = count_rows(state, list.count_from, list.conditions).await?;
    let rows = page_rows(state, list.select, list.conditions, list.order, page).await?;
    Ok(Paged { rows, total, page })
}
