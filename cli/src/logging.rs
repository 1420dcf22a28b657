//! Diagnostics of the control plane: `tracing` events written to stderr, as readable text or
//! as JSON lines for a log shipper, filtered like `RUST_LOG`.
//!
//! Spans go to an OpenTelemetry collector too when an OTLP endpoint is given (off by default).
//!
//! Only diagnostics go through here. What a command tells its user (Lite's banner and the
//! events it follows, setup's progress, a command's answer or its error) is printed directly,
//! whatever the log format.

use anyhow::{Context, Result};
use leoflow_telemetry::export::Exporter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

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

/// The spans exported as traces: Leoflow's own, whatever the log lines' filter.
const TRACED: &str = "leoflow=info";

/// An attempt's agent reports only warnings by default: the end of its stderr becomes the
/// reason of a try that ends without a report, which its progress lines would crowd out.
pub const AGENT_FILTER: &str = "warn";

/// The variable that switches on trace export for Lite and agents (`leoflow server` reads it
/// as its `otlp_endpoint` key, with the file and the flag).
pub const OTLP_ENDPOINT_ENV: &str = "LEOFLOW_OTLP_ENDPOINT";

/// What [`init`] set up that must be finished before the process exits.
pub struct Telemetry {
    exporter: Option<Exporter>,
}

impl Telemetry {
    /// Sends the spans still batched (a few seconds at most). Blocks: call it outside the
    /// runtime's tasks, while the runtime still runs (the exports use it).
    pub fn shutdown(self) {
        if let Some(exporter) = self.exporter {
            exporter.shutdown();
        }
    }
}

/// Sends this process's diagnostics to stderr in `format`, filtered by `RUST_LOG` when set,
/// else by [`DEFAULT_FILTER`] (or `default` when given); and, with an `otlp_endpoint`, its
/// spans to that OpenTelemetry collector as `service`. Must run inside the Tokio runtime.
pub fn init(
    format: LogFormat,
    default: Option<&str>,
    otlp_endpoint: Option<&str>,
    service: &str,
) -> Result<Telemetry> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .with_context(|| format!("RUST_LOG={directives:?} is not a valid log filter"))?,
        _ => EnvFilter::new(default.unwrap_or(DEFAULT_FILTER)),
    };
    let exporter = otlp_endpoint
        .map(|endpoint| Exporter::start(endpoint, service))
        .transpose()?;
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    // Each layer filters on its own: an agent's quiet log lines must not hide its spans.
    let spans = exporter
        .as_ref()
        .map(|exporter| exporter.layer().with_filter(EnvFilter::new(TRACED)));
    tracing_subscriber::registry()
        .with(spans)
        .with(lines.with_filter(filter))
        .try_init()
        .map_err(|error| anyhow::anyhow!("cannot set up logging: {error}"))?;
    Ok(Telemetry { exporter })
}
