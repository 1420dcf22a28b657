//! A span per HTTP request: the root of the trace of what the request causes (a triggered
//! run's decisions, dispatches and tries), or a child of the caller's own trace when the request
//! carries a W3C `traceparent`.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// Middleware: runs the request inside its span, named `METHOD route` as OpenTelemetry's HTTP
/// conventions name server spans.
pub(crate) async fn trace_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let parent = request
        .headers()
        .get(leoflow_telemetry::TRACEPARENT)
        .and_then(|value| value.to_str().ok());
    leoflow_telemetry::adopt(&span, parent);
    leoflow_telemetry::record_trace_id(&span);
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    span.in_scope(|| tracing::debug!(status, "answered"));
    response
}
