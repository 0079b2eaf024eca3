//! Traces and metrics of the request pipeline.
//!
//! Spans follow the OpenTelemetry semantic conventions: the request is a
//! `consumer` span named `process <route template>` with `messaging.*`
//! attributes, parented to the publisher's W3C `traceparent` user property;
//! middleware, Redis scripts (`db.*`) and the upstream call (`http.*`,
//! `client`) are its children, and the upstream gets the `traceparent` of the
//! HTTP span. Child spans are DEBUG level, so logs at INFO never pay for them
//! while the trace layer (filtered on its own) still records them.
//!
//! Metrics go through the `metrics` facade: free until the binary installs a
//! recorder (Prometheus), then one labelled update per event.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use fred::error::Error as RedisError;
use opentelemetry::propagation::{Extractor, Injector};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::Headers;

static METRICS_ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns metric updates on; the binary calls it once it has installed a
/// recorder, so a worker without one never builds a label.
pub fn enable_metrics() {
    METRICS_ENABLED.store(true, Ordering::Relaxed);
}

pub(crate) fn metrics_enabled() -> bool {
    METRICS_ENABLED.load(Ordering::Relaxed)
}

tokio::task_local! {
    /// Whether the request being handled is sampled, so its children are worth recording.
    static SAMPLED: bool;
}

/// Runs a request's future knowing whether it is sampled: unsampled requests
/// create no child spans at all (a 1 % sample then costs about 1 % of the spans).
pub(crate) async fn with_sampling<F: Future>(sampled: bool, future: F) -> F::Output {
    SAMPLED.scope(sampled, future).await
}

/// Whether child spans of the current request should be created.
pub(crate) fn children_sampled() -> bool {
    SAMPLED.try_with(|sampled| *sampled).unwrap_or(false)
}

/// What the sampler decided for a span, read once from its context.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sampling {
    /// Whether the span will be exported.
    pub sampled: bool,
    /// Its trace id, when valid (unsampled spans have one too).
    pub trace_id: Option<String>,
}

/// The sampler's decision for `span` (reading a span's context makes the
/// tracing layer start it, which is when the sampler runs).
pub(crate) fn sampling(span: &tracing::Span) -> Sampling {
    use opentelemetry::trace::TraceContextExt;
    if span.is_disabled() {
        return Sampling::default();
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    Sampling {
        sampled: span_context.is_sampled(),
        trace_id: span_context
            .is_valid()
            .then(|| span_context.trace_id().to_string()),
    }
}

/// Reads W3C trace context (`traceparent`, `tracestate`, `baggage`) from the
/// request's user properties.
pub(crate) struct PropertyExtractor<'a>(pub &'a Headers);

impl Extractor for PropertyExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name).collect()
    }
}

/// Writes trace context into the upstream request's headers.
struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Adds the trace context of `span` to `headers`; nothing when the span is not recorded.
pub(crate) fn inject_trace_context(span: &tracing::Span, headers: &mut HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Runs one Redis script call inside a `db` span, recording its latency and
/// errors in the metrics.
pub(crate) async fn redis_call<T>(
    script: &'static str,
    call: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, RedisError> {
    if !children_sampled() && !metrics_enabled() {
        return call.await;
    }
    let span = if children_sampled() {
        redis_span(script)
    } else {
        tracing::Span::none()
    };
    let started = Instant::now();
    let result = call.instrument(span.clone()).await;
    if metrics_enabled() {
        metrics::histogram!("routemq_redis_duration_seconds", "script" => script)
            .record(started.elapsed().as_secs_f64());
    }
    if let Err(error) = &result {
        if metrics_enabled() {
            metrics::counter!("routemq_redis_errors_total", "script" => script).increment(1);
            if error.details().starts_with("OOM") {
                // A full Redis under noeviction: the write was skipped
                // (`routemq_redis_errors_total{script}` says which script).
                metrics::counter!("routemq_redis_oom_total").increment(1);
            }
        }
        span.record("otel.status_code", "ERROR");
        span.record("error.type", tracing::field::debug(error.kind()));
    }
    result
}

fn redis_span(script: &'static str) -> tracing::Span {
    tracing::debug_span!(
        "redis",
        otel.name = format!("EVALSHA {script}"),
        otel.kind = "client",
        db.system.name = "redis",
        db.operation.name = "EVALSHA",
        db.query.summary = script,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}
