mod address;
mod admission;
mod background;
mod builder;
mod checks;
mod config;
mod pipeline;
mod prepare;
mod reply_topics;
mod shared;
mod telemetry;

pub use background::BackgroundTasks;
pub use builder::GatewayBuilder;
pub use config::{GatewayConfig, RegistrySettings};
pub use reply_topics::ReplyTopics;
pub use routemq_router::encode_level;
pub(crate) use shared::{FixedSettings, Shared};

use std::collections::HashMap;
use std::sync::Arc;

use metrics::SharedString;
use routemq_router::{RouteTable, SubscriptionFilter};

use crate::middleware::{Authenticator, Chain, Middleware, MiddlewareConfigs, Resources};
use crate::registry::Balancer;
use crate::replay::Replays;
use crate::route::{Limits, RouteTarget};
use crate::upstream::{Bulkheads, Forwarder, ServiceLimits};

/// One worker's request pipeline. Stateless apart from read caches and
/// metric counters, so any number of identical workers behave as one.
///
/// A reload builds a new `Gateway` from the running one
/// ([`Gateway::reconfigured`]): the routes, middleware and limits are new,
/// what [`Shared`] holds carries over, and requests in flight finish on the
/// gateway they started on.
pub struct Gateway {
    pub(crate) shared: Shared,
    pub(crate) routes: RouteTable<Plan>,
    forwarder: Arc<Forwarder>,
    /// What the forwarder was built from: a reload with the same settings
    /// keeps it, so bulkhead slots held by calls in flight stay counted.
    forwarder_settings: (ServiceLimits, usize, u32),
    replays: Replays,
    limits: Limits,
    reply_topics: ReplyTopics,
    authenticator: Arc<Authenticator>,
    refusal_warnings: [address::WarnEverySecond; address::REFUSALS],
    /// Which configuration this is (a hash of its file).
    version: String,
}

/// A route's target and the middleware chain it runs.
pub(crate) struct Plan {
    target: RouteTarget,
    chain: Chain,
    /// The route's pattern, as a metrics label and span name.
    label: SharedString,
}

/// Why a new configuration was not applied; the running one stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadRefused {
    /// Settings the background tasks run with changed: only a restart applies them.
    #[error("restart required: {} changed", .0.join(", "))]
    RestartRequired(Vec<&'static str>),
    #[error("{0}")]
    Invalid(String),
}

impl Gateway {
    /// Builds the pipeline; fails on a route naming a middleware that is not
    /// configured. `previous` is the gateway being replaced, if any.
    pub(crate) fn new(
        shared: Shared,
        config: GatewayConfig,
        previous: Option<&Gateway>,
    ) -> Result<Gateway, String> {
        let forwarder_settings = (
            config.service_limits.clone(),
            config.limits.max_response_bytes,
            config.round_robin_lease,
        );
        let forwarder = match previous {
            Some(previous) if previous.forwarder_settings == forwarder_settings => {
                Arc::clone(&previous.forwarder)
            }
            _ => {
                let balancer = Arc::new(Balancer::new(
                    Arc::clone(&shared.cache),
                    shared.redis.clone(),
                    config.round_robin_lease,
                ));
                Arc::new(Forwarder::new(
                    shared.http.clone(),
                    balancer,
                    Bulkheads::new(config.service_limits),
                    config.limits.max_response_bytes,
                ))
            }
        };
        let authenticator = Arc::new(Authenticator::new(
            config.auth.jwt.clone(),
            shared.api_keys.clone(),
            shared.remote_jwks.clone(),
        ));
        let process = shared.membership.process().clone();
        let replays = Replays::new(
            shared.redis.clone(),
            Some(config.replay_window),
            config.replay_max_reply_bytes,
            process.clone(),
        );
        let resources = Resources {
            redis: shared.redis.clone(),
            authenticator: Arc::clone(&authenticator),
            metrics: Arc::clone(&shared.metrics),
            forwarder: Arc::clone(&forwarder),
            process,
            membership: Arc::clone(&shared.membership),
            breakers: Arc::clone(&shared.breakers),
        };
        let routes = plans(config.routes, &config.middleware, &resources)?;
        Ok(Gateway {
            shared,
            routes,
            forwarder,
            forwarder_settings,
            replays,
            limits: config.limits,
            reply_topics: config.reply_topics,
            authenticator,
            refusal_warnings: Default::default(),
            version: config.version,
        })
    }

    /// A gateway running `config` on this one's connections, caches,
    /// counters and background tasks. Refused whole when `config` changes a
    /// setting the background tasks started with, or does not build.
    pub fn reconfigured(&self, config: GatewayConfig) -> Result<Gateway, ReloadRefused> {
        let changed = self.shared.fixed.changed(&FixedSettings::of(&config));
        if !changed.is_empty() {
            return Err(ReloadRefused::RestartRequired(changed));
        }
        Gateway::new(self.shared.clone(), config, Some(self)).map_err(ReloadRefused::Invalid)
    }

    /// Which configuration this gateway runs (a hash of its file).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The topic filters this gateway serves.
    pub fn filters(&self) -> &[SubscriptionFilter] {
        self.routes.filters()
    }
}

/// Each route's target with its chain: one middleware instance per
/// configured name, shared by every route naming it.
fn plans(
    routes: RouteTable<RouteTarget>,
    middleware: &MiddlewareConfigs,
    resources: &Resources,
) -> Result<RouteTable<Plan>, String> {
    let instances: HashMap<&str, Arc<dyn Middleware>> = middleware
        .iter()
        .map(|(name, spec)| (name.as_str(), spec.build(name, resources)))
        .collect();
    if crate::observe::metrics_enabled() {
        // Each service's bulkhead refusals exist from the first scrape.
        for route in routes.routes() {
            if let RouteTarget::Forward(forward) = &route.target {
                for reason in crate::upstream::BULKHEAD_REFUSALS {
                    metrics::counter!(
                        "routemq_service_overloaded_total",
                        "service" => forward.service.clone(),
                        "reason" => reason
                    )
                    .increment(0);
                }
            }
        }
    }
    routes.try_map_targets(|route| {
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
    })
}
