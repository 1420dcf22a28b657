//! Traces of Leoflow: one trace from what started the work (an API request, a timer) through
//! the command, the append, the scheduler's decision, the dispatch, the agent and the runner.
//!
//! Spans are `tracing` spans; when traces are exported (the `otlp` feature, switched on by an
//! endpoint) they become OpenTelemetry spans. Where work crosses a boundary that a span cannot
//! (the event log between a command and the decision it causes, the gRPC channel, a new agent
//! process), the W3C `traceparent` of the span on one side is carried across and adopted as
//! the parent on the other: in events' metadata, in gRPC metadata, and in the environment of
//! agents and runners. Without an exporter no span has a trace context, nothing is carried,
//! and the log, the calls and the processes are as they were.

#![warn(missing_docs)]

#[cfg(feature = "otlp")]
pub mod export;
#[cfg(feature = "receiver")]
pub mod receiver;

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header name, also the key in gRPC metadata and in events' metadata.
pub const TRACEPARENT: &str = "traceparent";

/// The environment variable an agent and a runner find their parent in (OpenTelemetry's
/// environment carrier: the header name upper-cased).
pub const TRACEPARENT_ENV: &str = "TRACEPARENT";

/// The `traceparent` of `span`, when traces are exported.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| format(&span_context))
}

/// The `traceparent` of the current span, when traces are exported.
pub fn current() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// Makes `span` a child of `traceparent` (from an event, a call or the environment). A missing
/// or malformed parent leaves the span where `tracing` put it: a trace is never worth an error.
/// Must come before anything reads the span's context.
pub fn adopt(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(parent) = traceparent.and_then(parse) {
        let _ = span.set_parent(Context::new().with_remote_span_context(parent));
    }
}

/// Records the span's trace id in its `trace_id` field (declared empty where the span is made),
/// so that log lines written inside it carry the id a trace viewer shows.
pub fn record_trace_id(span: &tracing::Span) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", span_context.trace_id().to_string());
    }
}

/// `00-<trace id>-<span id>-<flags>`.
pub fn format(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// A `traceparent` as W3C defines it: version `00` (or a later one, read as `00`), a trace id
/// and a parent id that are not all zeros, and the flags.
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let version = parts.next().filter(|v| v.len() == 2 && *v != "ff")?;
    let (trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?);
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || !hex(trace_id, 32) || !hex(span_id, 16) || !hex(flags, 2) {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8()),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_reads_back_as_written() {
        let context = parse(SAMPLE).expect("valid");
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(context.is_sampled());
        assert!(context.is_remote());
        assert_eq!(format(&context), SAMPLE);
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad:?} was accepted");
        }
        // A later version may append fields; its first four are read as version 00's.
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz").is_some());
    }

    #[test]
    fn without_an_exporter_no_span_has_a_trace_context() {
        let span = tracing::info_span!("nothing exported");
        adopt(&span, Some(SAMPLE));
        assert_eq!(traceparent_of(&span), None);
    }
}
