//! A local OpenTelemetry collector for measuring traces: starts the OTLP/gRPC receiver of
//! `leoflow-telemetry` (feature `receiver`) on a free loopback port, prints its endpoint, then
//! how many spans it has received every few seconds, until it is killed.
//!
//! It keeps every span in memory, as the tests' receiver does, and runs on one thread, so that
//! a benchmark beside it pays at most one core for the collector.
//!
//! ```sh
//! cargo build --release -p leoflow-cli -p leoflow-bench
//! target/release/otlp_sink [SECONDS] &       # first line: `endpoint: http://127.0.0.1:PORT`
//! LEOFLOW_OTLP_ENDPOINT=http://127.0.0.1:PORT LEOFLOW_BIN=target/release/leoflow \
//!     target/release/api_throughput          # Lite and servers inherit the variable
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use leoflow_telemetry::receiver::Receiver;

/// How often the count is printed, unless the first argument says another number of seconds.
const DEFAULT_EVERY: u64 = 5;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let every = match std::env::args().nth(1) {
        Some(seconds) => seconds
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .with_context(|| format!("{seconds:?} is not a number of seconds"))?,
        None => DEFAULT_EVERY,
    };
    let receiver = Receiver::start().await?;
    println!("endpoint: {}", receiver.endpoint());
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs(every));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        println!(
            "{:>5} s: {} spans received",
            started.elapsed().as_secs(),
            receiver.span_count()
        );
    }
}
