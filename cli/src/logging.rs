//! Diagnostics of the control plane: `tracing` events written to stderr, as readable text or
//! as JSON lines for a log shipper, filtered like `RUST_LOG`.
//!
//! Only diagnostics go through here. What a command tells its user (Lite's banner and the
//! events it follows, setup's progress, a command's answer or its error) is printed directly,
//! whatever the log format.

use anyhow::{Context, Result};
use tracing_subscriber::EnvFilter;

/// How diagnostics are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event: time, level, spans with their fields, target, message.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`),
    /// `span` (the innermost span with its fields) and `spans` (all of them, outermost first).
    Json,
}

/// Leoflow's own crates (and the `leoflow` binary) at `info`, everything else (HTTP, gRPC, SQL
/// clients) at `warn`: the dependencies' info lines are per request, too many for a terminal.
/// sqlx's slow-statement alerts are left out: appends wait for the log's lock by design, and a
/// burst of them would flood the terminal whenever tries finish together.
const DEFAULT_FILTER: &str = "warn,leoflow=info,sqlx::query=error";

/// An attempt's agent reports only warnings by default: the end of its stderr becomes the
/// reason of a try that ends without a report, which its progress lines would crowd out.
pub const AGENT_FILTER: &str = "warn";

/// Sends this process's diagnostics to stderr in `format`, filtered by `RUST_LOG` when set,
/// else by [`DEFAULT_FILTER`] (or `default` when given).
pub fn init(format: LogFormat, default: Option<&str>) -> Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .with_context(|| format!("RUST_LOG={directives:?} is not a valid log filter"))?,
        _ => EnvFilter::new(default.unwrap_or(DEFAULT_FILTER)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|error| anyhow::anyhow!("cannot set up logging: {error}"))
}
