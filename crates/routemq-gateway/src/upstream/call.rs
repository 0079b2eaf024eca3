use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use tracing::Instrument;

use super::{
    forward, BodyLimits, Bulkheads, CallKey, Coalescer, LargeReplies, PreparedCall, Role,
    UpstreamRequest, UpstreamResponse,
};
use crate::observe;
use crate::registry::{Balancer, Instance};
use crate::{ErrorKind, GatewayError};

/// Sends prepared calls to round-robin-balanced healthy instances.
pub struct Forwarder {
    http: reqwest::Client,
    balancer: Arc<Balancer>,
    bulkheads: Bulkheads,
    bodies: LargeReplies,
    coalescer: Coalescer,
}

impl Forwarder {
    pub fn new(
        http: reqwest::Client,
        balancer: Arc<Balancer>,
        bulkheads: Bulkheads,
        body_limits: BodyLimits,
    ) -> Self {
        Forwarder {
            http,
            balancer,
            bulkheads,
            bodies: LargeReplies::new(body_limits),
            coalescer: Coalescer::default(),
        }
    }

    /// Calls one instance of `service`, within its bulkhead (waiting for a
    /// slot at most the bulkhead's queue timeout, and never past the call's
    /// own timeout). A failure that never reached the instance
    /// ([`ErrorKind::retries_elsewhere`]) is retried, once, on another
    /// instance. A timeout of the caller's own deadline is answered `504
    /// deadline_exceeded`, not as the upstream's fault.
    pub async fn call(
        &self,
        service: &str,
        call: &PreparedCall,
    ) -> Result<UpstreamResponse, GatewayError> {
        let queued_at = Instant::now();
        let _slot = self
            .bulkheads
            .enter(service, call.caller, call.timeout)
            .await?;
        let waited = queued_at.elapsed();
        // The wait counts against the caller's deadline (the route's
        // timeout is the upstream's own allowance, and starts now).
        let timeout = match call.deadline_bound {
            true => call.timeout.saturating_sub(waited),
            false => call.timeout,
        };
        let deadline = Instant::now() + timeout.max(Duration::from_millis(1));
        match self.call_instances(service, call, deadline).await {
            Err(error) if error.kind == ErrorKind::UpstreamTimeout && call.deadline_bound => {
                Err(GatewayError::new(
                    ErrorKind::DeadlineExceeded,
                    "the request's deadline passed before the upstream answered",
                ))
            }
            result => result,
        }
    }

    /// [`Forwarder::call`], shared with the identical calls in flight under
    /// `key` (`coalesce.rs`); `joined` runs when this request joins another's.
    pub async fn call_shared(
        &self,
        service: &str,
        call: &PreparedCall,
        key: CallKey,
        joined: impl FnOnce(),
    ) -> (Result<UpstreamResponse, GatewayError>, Role) {
        let bounds = (call.timeout, call.deadline_bound);
        self.coalescer
            .call(key, bounds, joined, || self.call(service, call))
            .await
    }

    async fn call_instances(
        &self,
        service: &str,
        call: &PreparedCall,
        deadline: Instant,
    ) -> Result<UpstreamResponse, GatewayError> {
        let mut refused_instance: Option<String> = None;
        loop {
            let instance = self
                .balancer
                .pick(service, refused_instance.as_deref())
                .await?;
            let span = attempt_span(call, &instance, service);
            let mut headers = call.headers.clone();
            // An unsampled request still passes its (unsampled) context on.
            let context_source = if span.is_disabled() {
                tracing::Span::current()
            } else {
                span.clone()
            };
            observe::inject_trace_context(&context_source, &mut headers);
            // A retry on another instance has only what the first attempt left.
            let timeout = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            if let Some(name) = &call.deadline_header {
                headers.insert(name.clone(), HeaderValue::from(timeout.as_millis() as u64));
            }
            let request = UpstreamRequest {
                call,
                base_url: &instance.base_url,
                headers,
                timeout,
                bodies: &self.bodies,
            };
            let started = Instant::now();
            // Boxed: the HTTP client's future is large, and moving it through every
            // enclosing state machine showed up as memcpy in profiles.
            let result = Box::pin(forward(&self.http, request))
                .instrument(span.clone())
                .await;
            observe_upstream(&span, service, &result, started.elapsed());
            match result {
                Err(error) if error.kind.retries_elsewhere() && refused_instance.is_none() => {
                    tracing::debug!(instance = %instance.instance_id, "connection refused, trying another instance");
                    refused_instance = Some(instance.instance_id.clone());
                }
                result => return result,
            }
        }
    }

    /// Whether `service` has a healthy instance right now (registry cache, no I/O).
    pub fn has_healthy_instance(&self, service: &str) -> bool {
        self.balancer.has_healthy_instance(service)
    }
}

/// The client span of one upstream attempt; disabled (free) unless the
/// request is sampled.
fn attempt_span(call: &PreparedCall, instance: &Instance, service: &str) -> tracing::Span {
    if !observe::children_sampled() {
        return tracing::Span::none();
    }
    tracing::debug_span!(
        "http.client",
        otel.name = %call.method,
        otel.kind = "client",
        http.request.method = %call.method,
        server.address = instance.base_url.host_str().unwrap_or_default(),
        server.port = instance.base_url.port_or_known_default().unwrap_or_default(),
        url.path = %call.path,
        routemq.service = service,
        routemq.instance = %instance.instance_id,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// Span attributes and latency metrics of one upstream attempt.
fn observe_upstream(
    span: &tracing::Span,
    service: &str,
    result: &Result<UpstreamResponse, GatewayError>,
    elapsed: Duration,
) {
    let status = match result {
        Ok(response) => Some(response.status),
        Err(error) => match error.kind {
            ErrorKind::UpstreamRejected(status) => Some(status),
            _ => None,
        },
    };
    if let Some(status) = status {
        span.record("http.response.status_code", status);
    }
    if let Err(error) = result {
        if !matches!(error.kind, ErrorKind::UpstreamRejected(_)) {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", error.kind.type_name());
        }
    }
    if !observe::metrics_enabled() {
        return;
    }
    let outcome = match result {
        Ok(_) => "success",
        Err(error) => error.kind.type_name(),
    };
    metrics::histogram!(
        "routemq_upstream_duration_seconds",
        "service" => service.to_string(),
        "outcome" => outcome,
    )
    .record(elapsed.as_secs_f64());
}
