//! Logs, traces and metrics of one process.
//!
//! Logs and spans are filtered separately, so `RUST_LOG=warn` quiets the logs
//! without dropping a single span: the fmt layer has its own `EnvFilter`, the
//! OpenTelemetry layer its own (`ROUTEMQ_TRACE_FILTER`, default
//! `routemq=debug,routemq_gateway=debug`, for spans; only INFO and louder
//! events become span events). Traces are exported only when an
//! OTLP endpoint is configured through the standard variables
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`
//! and `_ARG`, `OTEL_RESOURCE_ATTRIBUTES`); without one no OpenTelemetry
//! layer is installed at all.

mod catalog;
mod prometheus;

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Level;
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use prometheus::{install_prometheus, serve_probes, Readiness};

/// The service name spans carry when `OTEL_SERVICE_NAME` is not set.
const DEFAULT_SERVICE_NAME: &str = "routemq-gateway";
const DEFAULT_TRACE_FILTER: &str = "routemq=debug,routemq_gateway=debug";

/// What must be flushed before the process exits.
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported (and so worth creating and propagating).
    pub fn traces_enabled(&self) -> bool {
        self.tracer_provider.is_some()
    }

    /// Exports the spans still batched. The SDK's shutdown blocks, so it runs
    /// on a blocking thread when called inside the runtime.
    pub async fn shutdown(self) {
        let Some(provider) = self.tracer_provider else {
            return;
        };
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match flushed {
            Ok(Ok(())) => tracing::info!("spans flushed"),
            Ok(Err(error)) => tracing::warn!(%error, "span export failed at shutdown"),
            Err(error) => tracing::warn!(%error, "span flush task failed"),
        }
    }
}

fn otlp_configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.is_empty());
    let exporter_off = std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|value| value == "none");
    !exporter_off
        && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Installs the global subscriber: logs to stderr (JSON lines when
/// `ROUTEMQ_LOG_FORMAT=json`) and, when `traces` and an OTLP endpoint is
/// configured, the trace exporter. Must run inside the Tokio runtime: the
/// gRPC exporter's channel lives on it.
pub fn init(traces: bool) -> Telemetry {
    let logs = log_layer();
    let provider = if traces { tracer_provider() } else { Ok(None) };
    let (traces, tracer_provider, export_error) = match provider {
        Ok(Some(provider)) => (Some(trace_layer(&provider)), Some(provider), None),
        Ok(None) => (None, None, None),
        Err(error) => (None, None, Some(error)),
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .ok();
    if let Some(error) = export_error {
        tracing::error!(%error, "trace export not started");
    }
    if tracer_provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]));
    }
    Telemetry { tracer_provider }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); JSON lines
/// when `ROUTEMQ_LOG_FORMAT=json`.
fn log_layer<S>() -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("ROUTEMQ_LOG_FORMAT").is_ok_and(|format| format == "json");
    if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(log_filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(log_filter)
            .boxed()
    }
}

/// Spans to the OpenTelemetry exporter, filtered by `ROUTEMQ_TRACE_FILTER`.
fn trace_layer<S>(provider: &SdkTracerProvider) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let span_filter = std::env::var("ROUTEMQ_TRACE_FILTER")
        .ok()
        .and_then(|filter| EnvFilter::try_new(filter).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_TRACE_FILTER));
    let tracer = provider.tracer("routemq");
    // Per-span extras the defaults add and a request's trace does not
    // need, each paid on every span (or every poll of an
    // instrumented future): source location and thread attributes
    // (strings), the tracing target, busy/idle timings (two clock
    // reads per poll) and attaching the OpenTelemetry context on
    // every enter — the gateway passes contexts explicitly.
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(span_filter.and(filter_fn(|metadata| {
            // Spans at the filter's level; only INFO and louder events
            // become span events (a debug line per request would
            // otherwise be formatted into every trace).
            metadata.is_span() || *metadata.level() <= Level::INFO
        })))
        .boxed()
}

fn tracer_provider() -> anyhow::Result<Option<SdkTracerProvider>> {
    if !otlp_configured() {
        return Ok(None);
    }
    // The protocol comes from OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL, the
    // endpoint, headers and timeout from their standard variables.
    let exporter = opentelemetry_otlp::SpanExporter::builder().build()?;
    let mut resource = Resource::builder();
    let named_in_attributes = std::env::var("OTEL_RESOURCE_ATTRIBUTES")
        .is_ok_and(|attributes| attributes.contains("service.name="));
    if std::env::var("OTEL_SERVICE_NAME").is_err() && !named_in_attributes {
        resource = resource.with_service_name(DEFAULT_SERVICE_NAME);
    }
    // The sampler is the SDK default, read from OTEL_TRACES_SAMPLER and _ARG.
    let provider = SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_batch_exporter(exporter)
        .build();
    Ok(Some(provider))
}
