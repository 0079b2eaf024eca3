//! One worker's gateway: the request pipeline and what it owns. A request
//! passes through [`Gateway::handle`] ([`pipeline`]), which calls the small
//! types below in phase order, each owning its data: the [`Exchange`](exchange::Exchange) of
//! one request, the [`ReplyPolicy`] for reply addresses, the route
//! [`Limits`], the [`Plan`]s with their middleware chains, the
//! [`RetryClaims`], the upstream [`Forwarder`] and the [`Builtins`].

mod background;
mod builder;
mod builtins;
mod config;
mod exchange;
mod pipeline;
mod plan;
mod prepare;
mod reply_policy;
mod reply_topics;
mod retry_claim;
mod shared;
mod shed;
mod telemetry;

#[cfg(test)]
mod tests;

pub use background::BackgroundTasks;
pub use builder::GatewayBuilder;
pub use config::{GatewayConfig, RegistrySettings};
pub use reply_topics::ReplyTopics;
pub use routemq_router::encode_level;
pub(crate) use shared::{FixedSettings, Shared};

use std::sync::Arc;

use routemq_router::{RouteTable, SubscriptionFilter};

use builtins::Builtins;
use plan::Plan;
use reply_policy::ReplyPolicy;
use retry_claim::RetryClaims;

use crate::middleware::{Authenticator, Resources};
use crate::registry::Balancer;
use crate::replay::Replays;
use crate::route::Limits;
use crate::upstream::{BodyLimits, Bulkheads, Forwarder, ServiceLimits};
use crate::{Inbound, Outbound};

/// One worker's request pipeline. Stateless apart from read caches and
/// metric counters, so any number of identical workers behave as one.
///
/// A reload builds a new `Gateway` from the running one
/// ([`Gateway::reconfigured`]): the routes, middleware and limits are new,
/// what the shared state holds carries over, and requests in flight finish on the
/// gateway they started on.
pub struct Gateway {
    shared: Shared,
    routes: RouteTable<Plan>,
    forwarder: Arc<Forwarder>,
    /// What the forwarder was built from: a reload with the same settings
    /// keeps it, so bulkhead slots held by calls in flight stay counted.
    forwarder_settings: (ServiceLimits, BodyLimits, u32),
    claims: RetryClaims,
    limits: Limits,
    reply_policy: ReplyPolicy,
    authenticator: Arc<Authenticator>,
    builtins: Builtins,
    /// Which configuration this is (a hash of its file).
    version: String,
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
            config.limits.body_limits(),
            config.round_robin_lease,
        );
        let forwarder = match previous {
            Some(previous) if previous.forwarder_settings == forwarder_settings => {
                Arc::clone(&previous.forwarder)
            }
            _ => forwarder(&shared, &config),
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
        let routes = plan::plans(config.routes, &config.middleware, &resources)?;
        let reply_policy = ReplyPolicy::new(
            &config.limits,
            routes.filters(),
            config.reply_topics,
            shared.started,
        );
        Ok(Gateway {
            builtins: Builtins::new(&shared, &config.version),
            shared,
            routes,
            forwarder,
            forwarder_settings,
            claims: RetryClaims::new(replays),
            limits: config.limits,
            reply_policy,
            authenticator,
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

    /// The answer to a request the worker sheds at capacity without running
    /// it: `503 overloaded`, if it names a usable MQTT 5 Response Topic.
    /// Counted in `routemq_requests_shed_total`.
    pub fn shed(&self, inbound: &Inbound) -> Option<Outbound> {
        shed::answer(&self.reply_policy, &self.authenticator, inbound)
    }
}

/// A forwarder on the shared connections and registry cache.
fn forwarder(shared: &Shared, config: &GatewayConfig) -> Arc<Forwarder> {
    let balancer = Arc::new(Balancer::new(
        Arc::clone(&shared.cache),
        shared.redis.clone(),
        config.round_robin_lease,
    ));
    Arc::new(Forwarder::new(
        shared.http.clone(),
        balancer,
        Bulkheads::new(config.service_limits.clone()),
        config.limits.body_limits(),
    ))
}
