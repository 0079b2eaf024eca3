//! What a request leaves behind for operators: its span (parented to the
//! publisher's trace context), its metrics and span attributes once answered.

use std::time::Duration;

use metrics::SharedString;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::exchange::Exchange;
use crate::observe::{self, PropertyExtractor, Sampling};

/// The request's server-side span, parented to the publisher's trace
/// context, and the sampler's decision for it; disabled (free) when
/// spans are not exported. Named after the route template (low
/// cardinality), found before the span because a span's name cannot
/// change once its context exists.
pub(super) fn request_span(
    traces: bool,
    exchange: &Exchange<'_>,
    template: Option<&SharedString>,
) -> (Span, Sampling) {
    let inbound = exchange.inbound;
    if !traces {
        return (Span::none(), Sampling::default());
    }
    let name = match &template {
        Some(template) => format!("process {template}"),
        None => "process".to_string(),
    };
    // DEBUG, like its children: log lines name the request themselves, so
    // the log layer (INFO by default) never pays for formatting span fields.
    // Constant attributes cost nothing to build; the request's own
    // (strings copied into the span) are recorded only once the sampler
    // has kept it, so an unsampled request builds none.
    let span = tracing::debug_span!(
        "request",
        otel.name = name,
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "mqtt",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = tracing::field::Empty,
        messaging.destination.template = tracing::field::Empty,
        messaging.message.body.size = inbound.payload.len(),
        request_id = tracing::field::Empty,
        routemq.service = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&PropertyExtractor(exchange.headers))
    });
    span.set_parent(parent).ok();
    let sampling = observe::sampling(&span);
    if !sampling.sampled {
        return (span, sampling);
    }
    span.record("messaging.destination.name", exchange.topic_text().as_ref());
    if let Some(template) = template {
        span.record("messaging.destination.template", template.as_ref());
    }
    span.record("request_id", exchange.request_id.as_str());
    (span, sampling)
}

/// Metrics and span attributes of a finished request.
pub(super) fn observe_answer(
    traces: bool,
    exchange: &Exchange<'_>,
    status: u16,
    elapsed: Duration,
) {
    // An unsampled span is never exported: its attributes would be work for nothing.
    if traces && observe::children_sampled() {
        let span = Span::current();
        span.record("http.response.status_code", status);
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", status.to_string());
        }
    }
    if !observe::metrics_enabled() {
        return;
    }
    let route = exchange
        .route
        .clone()
        .unwrap_or(SharedString::const_str("unmatched"));
    let service = exchange.service.clone().unwrap_or_default();
    metrics::counter!(
        "routemq_requests_total",
        "route" => route.clone(),
        "service" => service,
        "status" => status.to_string(),
    )
    .increment(1);
    metrics::histogram!("routemq_request_duration_seconds", "route" => route)
        .record(elapsed.as_secs_f64());
}

/// A request that joined another's upstream call (a coalescing route).
pub(super) fn count_coalesced(ex: &Exchange<'_>) {
    let route = ex.route.clone().unwrap_or_default();
    metrics::counter!("routemq_coalesced_requests_total", "route" => route).increment(1);
}
