mod address;
mod admission;
mod builder;
mod checks;
mod pipeline;
mod prepare;
mod reply_topics;
mod telemetry;

pub use builder::{BackgroundTasks, GatewayBuilder, GatewayConfig, RegistrySettings};
pub use reply_topics::ReplyTopics;
pub use routemq_router::encode_level;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::Client;
use metrics::SharedString;
use reqwest::Method;
use routemq_router::{RouteTable, SubscriptionFilter};

use crate::membership::Membership;
use crate::metrics::MetricsRecorder;
use crate::middleware::{Authenticator, Chain, Middleware, MiddlewareConfigs, Resources};
use crate::registry::{Balancer, RegistryCache};
use crate::replay::Replays;
use crate::request_log::RequestLog;
use crate::upstream::{Bulkheads, Forwarder, HeaderPolicy, PathTemplate, ServiceLimits};

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

/// Everything a gateway is made of, assembled by [`GatewayBuilder`].
pub(crate) struct GatewayParts {
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

impl Gateway {
    /// Builds the pipeline; fails on a route naming a middleware that is not configured.
    pub(crate) fn new(parts: GatewayParts) -> Result<Gateway, String> {
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
        if crate::observe::metrics_enabled() {
            // Each service's bulkhead counter exists from the first scrape.
            for route in parts.routes.routes() {
                if let RouteTarget::Forward(forward) = &route.target {
                    metrics::counter!("routemq_service_overloaded_total", "service" => forward.service.clone())
                        .increment(0);
                }
            }
        }
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
}
