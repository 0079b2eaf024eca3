mod address;
mod checks;
mod pipeline;
mod reply_topics;

pub use reply_topics::ReplyTopics;
pub use routemq_router::encode_level;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::Client;
use metrics::SharedString;
use reqwest::Method;
use routemq_router::{RouteTable, SubscriptionFilter};
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::membership::Membership;
use crate::metrics::MetricsRecorder;
use crate::middleware::{Authenticator, Chain, Middleware, MiddlewareConfigs, Resources};
use crate::observe::{self, PropertyExtractor};
use crate::registry::{Balancer, RegistryCache};
use crate::replay::Replays;
use crate::request::is_acceptable_request_id;
use crate::request_log::{LogRecord, RequestLog};
use crate::upstream::{Bulkheads, Forwarder, HeaderPolicy, PathTemplate, ServiceLimits};
use crate::{GatewayError, Headers, Inbound, Outbound, Reply, ReplyAddress};

/// The gateway's own routes (`gateway/*`), answered without an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Health,
    Services,
    Metrics,
}

impl Builtin {
    /// The `handler` name routes give it in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Health => "health",
            Builtin::Services => "services",
            Builtin::Metrics => "metrics",
        }
    }
}

/// What a route does with a request.
#[derive(Debug, Clone)]
pub enum RouteTarget {
    Forward(ForwardRoute),
    Builtin(Builtin),
}

/// Forwarding to a service: the HTTP method and path the topic maps to.
#[derive(Debug, Clone)]
pub struct ForwardRoute {
    pub service: String,
    pub method: Method,
    pub path: PathTemplate,
    pub timeout: Duration,
    pub headers: HeaderPolicy,
    /// Replay retries of anonymous callers too. Off by default: an anonymous
    /// caller's request id and reply address can be guessed and chosen by
    /// anyone, so a stored reply could reach someone else.
    pub anonymous_replay: bool,
}

/// Bounds on what a request may carry; beyond them it gets a typed error.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_payload_bytes: usize,
    pub max_user_properties: usize,
    /// Sum of user-property names and values.
    pub max_header_bytes: usize,
    pub max_param_bytes: usize,
    pub max_response_bytes: usize,
    /// Request and reply topics; a longer request topic gets 400, a longer
    /// reply topic is refused.
    pub max_topic_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 256 * 1024,
            max_user_properties: 64,
            max_header_bytes: 16 * 1024,
            max_param_bytes: 256,
            max_response_bytes: 4 * 1024 * 1024,
            max_topic_bytes: 512,
        }
    }
}

/// Everything a gateway needs, built by the runtime from its configuration.
pub struct GatewayParts {
    pub routes: RouteTable<RouteTarget>,
    /// Middleware by the name routes refer to them by.
    pub middleware: MiddlewareConfigs,
    /// The credentials every auth middleware checks.
    pub authenticator: Arc<Authenticator>,
    /// Whether spans are exported: only then is trace context extracted,
    /// recorded and propagated.
    pub traces: bool,
    /// Where answered requests are logged for the Redis lists; `None` disables it.
    pub request_log: Option<Arc<RequestLog>>,
    pub redis: Client,
    pub http: reqwest::Client,
    pub cache: Arc<RegistryCache>,
    pub metrics: Arc<MetricsRecorder>,
    pub limits: Limits,
    pub worker_id: String,
    /// This process among the live workers (its id makes attempt ids unique).
    pub membership: Arc<Membership>,
    /// Round-robin counter values leased per Redis round trip (1 = exact per request).
    pub round_robin_lease: u32,
    /// How long answered POST/PATCH requests are kept for replaying retries
    /// with the same `x-request-id`; `None` or zero disables it.
    pub replay_window: Option<Duration>,
    /// Bulkheads: calls in flight per upstream service on this worker.
    pub service_limits: ServiceLimits,
    /// Where replies may be published.
    pub reply_topics: ReplyTopics,
}

/// One worker's request pipeline. Stateless apart from read caches and
/// metric counters, so any number of identical workers behave as one.
pub struct Gateway {
    pub(crate) routes: RouteTable<Plan>,
    pub(crate) redis: Client,
    pub(crate) cache: Arc<RegistryCache>,
    forwarder: Arc<Forwarder>,
    replays: Replays,
    metrics: Arc<MetricsRecorder>,
    limits: Limits,
    pub(crate) worker_id: String,
    pub(crate) started: Instant,
    traces: bool,
    request_log: Option<Arc<RequestLog>>,
    reply_topics: ReplyTopics,
    authenticator: Arc<Authenticator>,
    refusal_warnings: [address::WarnEverySecond; address::REFUSALS],
}

/// A route's target and the middleware chain it runs.
pub(crate) struct Plan {
    target: RouteTarget,
    chain: Chain,
    /// The route's pattern, as a metrics label and span name.
    label: SharedString,
}

/// One request on its way through [`Gateway::handle`].
struct Request<'r> {
    inbound: &'r Inbound,
    headers: &'r Headers,
    request_id: &'r str,
    /// The client chose the request id, so a retry can be recognised.
    retry_safe_id: bool,
    trace_id: Option<&'r str>,
    started: Instant,
}

/// An answer and the upstream service it came from, for metrics.
struct Answer {
    reply: Reply,
    service: Option<String>,
    /// The matched route's pattern; `None` before a route matched.
    route: Option<SharedString>,
}

impl Answer {
    fn error(error: GatewayError, request_id: &str, service: Option<String>) -> Answer {
        Answer {
            reply: Reply::error(&error, request_id, service.as_deref()),
            service,
            route: None,
        }
    }
}

impl Gateway {
    /// Builds the pipeline; fails on a route naming a middleware that is not configured.
    pub fn new(parts: GatewayParts) -> Result<Gateway, String> {
        let balancer = Arc::new(Balancer::new(
            Arc::clone(&parts.cache),
            parts.redis.clone(),
            parts.round_robin_lease,
        ));
        let forwarder = Arc::new(Forwarder::new(
            parts.http,
            balancer,
            Bulkheads::new(parts.service_limits),
            parts.limits.max_response_bytes,
        ));
        let process = parts.membership.process().clone();
        let replays = Replays::new(parts.redis.clone(), parts.replay_window, process.clone());
        let resources = Resources {
            redis: parts.redis.clone(),
            authenticator: Arc::clone(&parts.authenticator),
            metrics: Arc::clone(&parts.metrics),
            forwarder: Arc::clone(&forwarder),
            process,
            membership: Arc::clone(&parts.membership),
        };
        // One instance per configured name, shared by every route naming it.
        let instances: HashMap<&str, Arc<dyn Middleware>> = parts
            .middleware
            .iter()
            .map(|(name, spec)| (name.as_str(), spec.build(name, &resources)))
            .collect();
        let routes = parts.routes.try_map_targets(|route| {
            let chain = route
                .middleware
                .iter()
                .map(|name| {
                    instances.get(name.as_str()).cloned().ok_or_else(|| {
                        format!("route `{}`: unknown middleware `{name}`", route.pattern)
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok::<Plan, String>(Plan {
                target: route.target.clone(),
                chain: Chain::new(chain),
                label: SharedString::from_owned(route.pattern.to_string()),
            })
        })?;
        Ok(Gateway {
            routes,
            redis: parts.redis,
            cache: parts.cache,
            forwarder,
            replays,
            metrics: parts.metrics,
            limits: parts.limits,
            worker_id: parts.worker_id,
            started: Instant::now(),
            traces: parts.traces,
            request_log: parts.request_log,
            reply_topics: parts.reply_topics,
            authenticator: parts.authenticator,
            refusal_warnings: Default::default(),
        })
    }

    /// The topic filters this gateway serves.
    pub fn filters(&self) -> &[SubscriptionFilter] {
        self.routes.filters()
    }

    /// Handles one request and returns the reply to publish, or `None` when
    /// the request has no usable reply address (it is still processed and logged).
    pub async fn handle(&self, inbound: Inbound) -> Option<Outbound> {
        let started = Instant::now();
        let headers = Headers::from_properties(&inbound.user_properties);
        let client_request_id = headers
            .get("x-request-id")
            .filter(|id| is_acceptable_request_id(id));
        let retry_safe_id = client_request_id.is_some();
        let request_id = client_request_id
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let span = self.request_span(&inbound, &headers, &request_id);
        let trace_id = observe::trace_id(&span);
        let request = Request {
            inbound: &inbound,
            headers: &headers,
            request_id: &request_id,
            retry_safe_id,
            trace_id: trace_id.as_deref(),
            started,
        };
        let sampled = observe::is_sampled(&span);
        observe::with_sampling(sampled, self.handle_request(request).instrument(span)).await
    }

    async fn handle_request(&self, request: Request<'_>) -> Option<Outbound> {
        let Request {
            inbound,
            headers,
            request_id,
            retry_safe_id,
            trace_id,
            started,
        } = request;
        let mut address = inbound.response_topic.clone().map(|topic| ReplyAddress {
            topic,
            correlation_data: inbound.correlation_data.clone(),
            from_payload: false,
        });
        if let Some(address) = &address {
            if let Err(refusal) = self.check_reply_topic(&address.topic, headers) {
                self.note_refused_reply(refusal, request_id, &address.topic);
                return None;
            }
        }
        let mut answer = self
            .process(inbound, headers, request_id, retry_safe_id, &mut address)
            .await?;
        let status = answer.reply.status;
        let elapsed = started.elapsed();
        self.metrics
            .record(answer.service.as_deref(), status, elapsed);
        self.observe_answer(&answer, elapsed);
        let topic = String::from_utf8_lossy(&inbound.topic);
        if let Some(log) = &self.request_log {
            log.record(&LogRecord {
                request_id,
                trace_id,
                topic: &topic,
                route: answer.route.as_ref(),
                service: answer.service.as_deref(),
                status,
                duration: elapsed,
            });
        }
        if let Some(trace_id) = trace_id {
            answer
                .reply
                .properties
                .push(("x-trace-id".to_string(), trace_id.to_string()));
        }
        match address {
            Some(address) => {
                tracing::debug!(request_id, trace_id, topic = ?address::truncated(&topic), status, "request answered");
                Some(Outbound::new(address, answer.reply, request_id))
            }
            None => {
                tracing::info!(request_id, trace_id, topic = ?address::truncated(&topic), status, "request processed without a reply address");
                None
            }
        }
    }

    /// The request's server-side span, parented to the publisher's trace
    /// context; disabled (free) when spans are not exported.
    fn request_span(&self, inbound: &Inbound, headers: &Headers, request_id: &str) -> Span {
        if !self.traces {
            return Span::none();
        }
        // Named after the route template (low cardinality), found here because
        // a span's name cannot change once its context exists.
        let template = std::str::from_utf8(&inbound.topic)
            .ok()
            .and_then(|topic| self.routes.find(topic))
            .map(|found| found.route.target.label.clone());
        let name = match &template {
            Some(template) => format!("process {template}"),
            None => "process".to_string(),
        };
        // DEBUG, like its children: log lines name the request themselves, so
        // the log layer (INFO by default) never pays for formatting span fields.
        let span = tracing::debug_span!(
            "request",
            otel.name = name,
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "mqtt",
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.destination.name = %String::from_utf8_lossy(&inbound.topic),
            messaging.destination.template = template.as_deref(),
            messaging.message.body.size = inbound.payload.len(),
            request_id,
            trace_id = tracing::field::Empty,
            routemq.service = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&PropertyExtractor(headers))
        });
        span.set_parent(parent).ok();
        if let Some(trace_id) = observe::trace_id(&span) {
            span.record("trace_id", trace_id);
        }
        span
    }

    /// Metrics and span attributes of a finished request.
    fn observe_answer(&self, answer: &Answer, elapsed: Duration) {
        let status = answer.reply.status;
        if self.traces {
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
        let route = answer
            .route
            .clone()
            .unwrap_or(SharedString::const_str("unmatched"));
        let service = answer.service.clone().unwrap_or_default();
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
}

/// The smaller of the route's timeout and the time the client still waits.
fn upstream_timeout(route_timeout: Duration, deadline: Option<Instant>) -> Duration {
    match deadline {
        Some(deadline) => route_timeout.min(deadline.saturating_duration_since(Instant::now())),
        None => route_timeout,
    }
}

fn header_value(value: &str) -> Result<reqwest::header::HeaderValue, GatewayError> {
    reqwest::header::HeaderValue::from_str(value).map_err(|_| {
        GatewayError::new(
            crate::ErrorKind::InvalidHeader,
            "header value not allowed in HTTP",
        )
    })
}
