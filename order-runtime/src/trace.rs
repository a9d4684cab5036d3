//! Distributed tracing: OpenTelemetry with the OTLP exporter, configured by the standard
//! `OTEL_*` variables, and W3C trace context carried through gRPC metadata, event metadata and
//! SQS message attributes.
//!
//! Tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set and
//! `OTEL_SDK_DISABLED` is not `true`. Spans are exported in batches on a background thread:
//! an unreachable collector costs dropped spans and a debug log line, never a failed request.
//! Without tracing, the helpers here pass incoming `traceparent` values through unchanged.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static PROVIDER: OnceLock<Option<SdkTracerProvider>> = OnceLock::new();

/// Whether OTLP export was asked for by the environment.
pub fn configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The tracer provider, built once (inside a Tokio runtime: the exporter's client needs one).
pub(crate) fn provider(default_service: &str) -> Option<&'static SdkTracerProvider> {
    PROVIDER
        .get_or_init(|| {
            if !configured() {
                return None;
            }
            let exporter = match opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
            {
                Ok(exporter) => exporter,
                Err(error) => {
                    eprintln!("tracing disabled: the OTLP exporter could not be built: {error}");
                    return None;
                }
            };
            let mut resource = opentelemetry_sdk::Resource::builder();
            if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
                resource = resource.with_service_name(default_service.to_owned());
            }
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.build())
                .build();
            opentelemetry::global::set_tracer_provider(provider.clone());
            Some(provider)
        })
        .as_ref()
}

/// Whether spans are being exported (the subscriber was initialised with tracing on).
pub fn enabled() -> bool {
    PROVIDER.get().is_some_and(Option::is_some)
}

/// Flush pending spans (call before the process exits).
pub fn shutdown() {
    if let Some(Some(provider)) = PROVIDER.get() {
        let _ = provider.force_flush();
        let _ = provider.shutdown();
    }
}

fn propagator() -> &'static TraceContextPropagator {
    static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();
    PROPAGATOR.get_or_init(TraceContextPropagator::new)
}

/// The OpenTelemetry context a `traceparent` / `tracestate` pair describes.
pub fn context_from(traceparent: &str, tracestate: Option<&str>) -> opentelemetry::Context {
    let mut carrier = HashMap::new();
    carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    if let Some(state) = tracestate {
        carrier.insert("tracestate".to_owned(), state.to_owned());
    }
    propagator().extract(&carrier)
}

/// Make `span` a child of the remote span `traceparent` names (no-op when tracing is off or
/// the value is not a valid trace context).
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    if !enabled() {
        return;
    }
    if let Some(traceparent) = traceparent {
        let context = context_from(traceparent, tracestate);
        if context.span().span_context().is_valid() {
            let _ = span.set_parent(context);
        }
    }
}

/// Link `span` to the span `traceparent` names (a batch span to each producing trace).
pub fn add_link(span: &tracing::Span, traceparent: &str) {
    if !enabled() {
        return;
    }
    let context = context_from(traceparent, None);
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.add_link(span_context);
    }
}

/// The W3C `traceparent` and `tracestate` of `span`, when tracing is on.
pub fn traceparent_of(span: &tracing::Span) -> Option<(String, Option<String>)> {
    if !enabled() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    propagator().inject_context(&context, &mut carrier);
    let traceparent = carrier.remove("traceparent")?;
    let tracestate = carrier.remove("tracestate").filter(|s| !s.is_empty());
    Some((traceparent, tracestate))
}

/// The trace id of `span` (tracing on), else of the incoming `traceparent` (pass-through), as
/// 32 hex digits, for log lines.
pub fn trace_id(span: &tracing::Span, incoming: Option<&str>) -> String {
    if enabled() {
        let context = span.context();
        let span_context = context.span().span_context().clone();
        if span_context.is_valid() {
            return span_context.trace_id().to_string();
        }
    }
    incoming
        .and_then(|t| t.split('-').nth(1))
        .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_default()
        .to_owned()
}

/// Whether `value` is a W3C `traceparent` (Trace Context level 1): `version-traceid-parentid-
/// flags` in lower-case hex, version not `ff`, neither id all zeros; version `00` exactly that,
/// a later version that much followed by nothing or by `-` and more (its own fields).
pub fn valid_traceparent(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.len() < 55 || (bytes.len() > 55 && (value.starts_with("00") || bytes[55] != b'-')) {
        return false;
    }
    let lower_hex = |field: &[u8]| field.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let (version, trace_id, parent_id, flags) =
        (&bytes[0..2], &bytes[3..35], &bytes[36..52], &bytes[53..55]);
    [bytes[2], bytes[35], bytes[52]] == [b'-'; 3]
        && [version, trace_id, parent_id, flags]
            .into_iter()
            .all(lower_hex)
        && version != b"ff"
        && trace_id.iter().any(|&b| b != b'0')
        && parent_id.iter().any(|&b| b != b'0')
}

/// The incoming trace context as it may be recorded or forwarded without tracing: the
/// `traceparent` when it is a W3C one ([`valid_traceparent`]), and the `tracestate` only with
/// it (W3C: an invalid traceparent is discarded, and a tracestate means nothing alone).
pub fn pass_through(
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> (Option<String>, Option<String>) {
    match traceparent.filter(|t| valid_traceparent(t)) {
        Some(traceparent) => (Some(traceparent.to_owned()), tracestate.map(str::to_owned)),
        None => (None, None),
    }
}

/// The trace context to record or forward for work done in `span`: its own when tracing is
/// on, otherwise the incoming one if it is a W3C trace context ([`pass_through`]).
pub fn outgoing(
    span: &tracing::Span,
    incoming_traceparent: Option<&str>,
    incoming_tracestate: Option<&str>,
) -> (Option<String>, Option<String>) {
    match traceparent_of(span) {
        Some((traceparent, tracestate)) => (Some(traceparent), tracestate),
        None => pass_through(incoming_traceparent, incoming_tracestate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_pass_through_without_tracing() {
        let span = tracing::Span::none();
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id(&span, Some(incoming)),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(trace_id(&span, Some("garbage")), "");
        assert_eq!(
            outgoing(&span, Some(incoming), None),
            (Some(incoming.to_owned()), None)
        );
    }

    #[test]
    fn only_w3c_traceparents_pass_through_and_tracestate_only_with_one() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(valid_traceparent(valid));
        assert!(valid_traceparent(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09"
        ));
        assert!(valid_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-later"
        ));
        for invalid in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(!valid_traceparent(invalid), "{invalid}");
            assert_eq!(pass_through(Some(invalid), Some("a=b")), (None, None));
        }
        assert_eq!(
            pass_through(Some(valid), Some("a=b")),
            (Some(valid.to_owned()), Some("a=b".to_owned()))
        );
        assert_eq!(pass_through(None, Some("a=b")), (None, None));
        let span = tracing::Span::none();
        assert_eq!(outgoing(&span, Some("garbage"), Some("a=b")), (None, None));
    }

    #[test]
    fn valid_trace_contexts_parse() {
        let context = context_from(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            None,
        );
        assert!(context.span().span_context().is_valid());
        assert!(
            !context_from("not a traceparent", None)
                .span()
                .span_context()
                .is_valid()
        );
    }
}
