//! XCom values as tasks and the API read them: small ones with their rows from Postgres, large
//! ones through a cache the replicas share (Redis in Pro), so that a fan-out of many tasks
//! pulling one large upstream result does not read it from Postgres once per task.
//!
//! A value is kept under its blob's hash (the content's SHA-256): an entry can never be stale,
//! so nothing is invalidated when a task is cleared and pushes again (its new value has a new
//! hash). The cache holds no truth: a miss, a Redis away or an entry evicted only means the
//! value is read from Postgres, which always has it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;
use leoflow_events::{EventStore, StoreError};

/// Values from this size on (bytes of JSON) go through the shared cache: below it, reading
/// the value with its row costs Postgres less than a round trip to Redis costs the replica.
pub const SHARED_FROM_BYTES: i64 = 64 << 10;

/// Where replicas share large XCom values, by blob hash.
pub trait SharedBlobs: Send + Sync + std::fmt::Debug + 'static {
    /// The content under `hash`, if cached; an error when the cache cannot be asked.
    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<String>, String>>;
    /// Caches `content` under `hash` (evicted as the cache sees fit).
    fn put<'a>(&'a self, hash: &'a str, content: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// Large values found in the shared cache, and read from Postgres instead (then cached).
static HITS: AtomicU64 = AtomicU64::new(0);
static MISSES: AtomicU64 = AtomicU64::new(0);

/// `(hits, misses)` of the shared cache since this process started (the
/// `leoflow_xcom_cache_*_total` metrics).
pub fn cache_counts() -> (u64, u64) {
    (HITS.load(Ordering::Relaxed), MISSES.load(Ordering::Relaxed))
}

/// Reads XCom values, through the shared cache when there is one.
#[derive(Debug, Clone, Default)]
pub struct XComValues {
    shared: Option<Arc<dyn SharedBlobs>>,
}

impl XComValues {
    /// Large values shared through `shared`.
    pub fn shared_through(shared: Arc<dyn SharedBlobs>) -> Self {
        Self {
            shared: Some(shared),
        }
    }

    /// The size from which a value is not read with its row but through [`XComValues::value`]:
    /// without a shared cache, none.
    pub fn inline_below(&self) -> i64 {
        if self.shared.is_some() {
            SHARED_FROM_BYTES
        } else {
            i64::MAX
        }
    }

    /// The content of blob `hash`: from the shared cache when it has it, else from Postgres
    /// (and then shared). `None` when the blob is missing.
    pub async fn value(
        &self,
        store: &EventStore,
        hash: &str,
    ) -> Result<Option<String>, StoreError> {
        let Some(shared) = &self.shared else {
            return Ok(store.get_blob(hash).await?.map(|blob| blob.content));
        };
        match shared.get(hash).await {
            Ok(Some(content)) => {
                HITS.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(content));
            }
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "XCom cache unavailable; reading Postgres"),
        }
        MISSES.fetch_add(1, Ordering::Relaxed);
        let content = store.get_blob(hash).await?.map(|blob| blob.content);
        if let Some(content) = &content
            && let Err(error) = shared.put(hash, content).await
        {
            tracing::debug!(%error, "XCom cache unavailable; value not shared");
        }
        Ok(content)
    }
}
