//! Spans sent to an OpenTelemetry collector over OTLP/gRPC, batched on a thread of their own.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// How long one export may take before the batch is dropped (a collector that is away costs
/// spans, never the control plane's progress).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long exiting waits for the last spans to be sent.
const FLUSH_ON_EXIT: Duration = Duration::from_secs(3);

/// The OTLP exporter of this process.
pub struct Exporter {
    provider: SdkTracerProvider,
}

/// The endpoint could not be used.
#[derive(Debug)]
pub struct BadEndpoint(String);

impl std::fmt::Display for BadEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadEndpoint {}

impl Exporter {
    /// Exports this process's spans to `endpoint` (`http://host:4317`)
    /// as `service` (OpenTelemetry's `service.name`). Must be called inside a Tokio runtime,
    /// which the exports use for as long as the process runs.
    ///
    /// The batching follows OpenTelemetry's `OTEL_BSP_*` variables (a 5 s delay by default).
    pub fn start(endpoint: &str, service: &str) -> Result<Self, BadEndpoint> {
        check_endpoint(endpoint)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| BadEndpoint(format!("OTLP endpoint {endpoint:?}: {e}")))?;
        let provider = SdkTracerProvider::builder()
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .build(),
            )
            .with_batch_exporter(exporter)
            .build();
        Ok(Self { provider })
    }

    /// The `tracing` layer that turns this process's spans into exported spans.
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("leoflow"))
            .with_threads(false)
            .with_tracked_inactivity(false)
    }

    /// Sends what is still batched and stops. Spans that cannot be sent in time are dropped.
    pub fn shutdown(self) {
        let _ = self.provider.shutdown_with_timeout(FLUSH_ON_EXIT);
    }
}

/// Refuses an endpoint the exporter cannot send to, saying what it takes.
pub fn check_endpoint(endpoint: &str) -> Result<(), BadEndpoint> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| BadEndpoint(format!("OTLP endpoint {endpoint:?} is not a URL: {e}")))?;
    // TLS to the collector is not built: a collector beside the server (a sidecar or the
    // node's agent) takes plain gRPC and forwards over TLS.
    if uri.scheme_str() == Some("https") {
        return Err(BadEndpoint(format!(
            "OTLP endpoint {endpoint:?}: TLS to the collector is not supported; send plain \
         gRPC (http://) to a collector beside the server, which can forward over TLS"
        )));
    }
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(BadEndpoint(format!(
            "OTLP endpoint {endpoint:?} must be http://HOST:PORT (OTLP over gRPC)"
        )));
    }
    Ok(())
}
