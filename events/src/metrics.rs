//! How this process's appends to the log go: their latency (lock, insert, inline projection,
//! commit) and how many events each carried (group commits show as batches above one).
//! Process-wide, as a Prometheus exporter is: `register` adds them to a scrape.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

static APPEND_SECONDS: LazyLock<Histogram> =
    LazyLock::new(|| Histogram::new(exponential_buckets(0.0002, 2.5, 12)));

static APPEND_BATCH: LazyLock<Histogram> =
    LazyLock::new(|| Histogram::new(exponential_buckets(1.0, 2.0, 12)));

/// Records an append of `events` events that took `took`.
pub(crate) fn appended(events: usize, took: Duration) {
    APPEND_SECONDS.observe(took.as_secs_f64());
    APPEND_BATCH.observe(events as f64);
}

/// Registers the append metrics (names without a prefix: the caller's registry gives it).
pub fn register(registry: &mut Registry) {
    registry.register(
        "event_append_duration_seconds",
        "Appends to the event log by this process, lock to commit",
        APPEND_SECONDS.clone(),
    );
    registry.register(
        "event_append_batch_events",
        "Events per append by this process",
        APPEND_BATCH.clone(),
    );
}
