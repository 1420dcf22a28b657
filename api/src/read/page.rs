//! One page of a list endpoint, its `total_entries` and its cursors: the projector's paging
//! query under the page a request asked for, the one paging helper every list uses.

use leoflow_projector::read::page::{self, Window};
use sqlx::FromRow;
use sqlx::postgres::PgRow;

pub use leoflow_projector::read::page::ListQuery;

use crate::error::ApiResult;
use crate::query::{Conditions, Page};
use crate::state::ApiState;

impl Page {
    /// The rows of a list this page holds, as the projector's queries take them.
    pub fn window(self) -> Window {
        Window {
            limit: self.limit,
            offset: self.offset,
        }
    }
}

/// How many rows `from` (a `FROM …` clause) has under `conditions`.
pub(crate) async fn count_rows(
    state: &ApiState,
    from: &str,
    conditions: &Conditions,
) -> ApiResult<i64> {
    Ok(page::count_rows(state.store.pool(), from, conditions).await?)
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
    Ok(page::page_rows(state.store.pool(), select, conditions, order, page.window()).await?)
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

/// One page of a list the projector reads: `read` gets the page's window and answers its rows
/// and the list's total (e.g. `leoflow_projector::read::runs::page`).
pub(crate) async fn read_page<T, F>(
    page: Page,
    read: impl FnOnce(Window) -> F,
) -> ApiResult<Paged<T>>
where
    F: Future<Output = sqlx::Result<(Vec<T>, i64)>>,
{
    let (rows, total) = read(page.window()).await?;
    Ok(Paged { rows, total, page })
}

/// The total, then one page of `list`.
// Lists whose query the API still builds use it; those the projector reads use `read_page`.
#[allow(dead_code)]
pub(crate) async fn fetch_page<T>(
    state: &ApiState,
    list: ListQuery<'_>,
    page: Page,
) -> ApiResult<Paged<T>>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    let (rows, total) = page::fetch_page(state.store.pool(), list, page.window()).await?;
    Ok(Paged { rows, total, page })
}
