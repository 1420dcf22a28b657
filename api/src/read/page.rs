//! One page of a list endpoint, its `total_entries` and its cursors: the projector's paging
//! query under the page a request asked for, the one paging helper every list uses.

use leoflow_projector::read::page::Window;

use crate::error::ApiResult;
use crate::query::Page;

impl Page {
    /// The rows of a list this page holds, as the projector's queries take them.
    pub fn window(self) -> Window {
        Window {
            limit: self.limit,
            offset: self.offset,
        }
    }
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
