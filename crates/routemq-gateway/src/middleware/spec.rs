//! Validated middleware settings, as the configuration produces them, and
//! how each becomes a running middleware.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::Client;
use serde_json::Value;

use super::auth::Auth;
use super::{
    AuthMethod, Authenticator, CircuitBreaker, Cors, FailMode, Fallback, Middleware, RateLimit,
    Transform,
};
use crate::membership::Membership;
use crate::metrics::MetricsRecorder;
use crate::process::ProcessId;
use crate::redis::scripts::BreakerLimits;
use crate::upstream::Forwarder;

#[derive(Debug, Clone)]
pub struct CorsSpec {
    /// Allowed origins; `*` allows any.
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age: Duration,
}

#[derive(Debug, Clone)]
pub struct AuthSpec {
    pub methods: Vec<AuthMethod>,
    /// All required.
    pub scopes: Vec<String>,
    /// Any one required; empty requires none.
    pub roles: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RateLimitSpec {
    pub limit: u32,
    pub window: Duration,
    pub on_redis_error: FailMode,
    /// While Redis is unavailable each worker admits its share of `limit`
    /// (`limit / live workers`) per client per window; this caps that share.
    pub fallback_limit: Option<u32>,
    /// Count anonymous clients by their `x-client-id` property. Off by
    /// default: any client can claim any id, including a victim's.
    pub trust_client_id: bool,
}

#[derive(Debug, Clone, Default)]
pub struct TransformSpec {
    pub rename: Vec<(String, String)>,
    pub remove: Vec<String>,
    /// String values may contain `{param}`.
    pub set: Vec<(String, Value)>,
    /// Like `set`, only when the field is absent.
    pub add: Vec<(String, Value)>,
}

#[derive(Debug, Clone)]
pub struct BreakerSpec {
    pub limits: BreakerLimits,
    pub on_redis_error: FailMode,
}

#[derive(Debug, Clone)]
pub struct FallbackSpec {
    /// Keep the last good reply this long; `None` makes the route not cacheable.
    pub cache_ttl: Option<Duration>,
    /// Try `<service>-fallback` when there is no cached reply.
    pub fallback_service: bool,
}

/// One configured middleware.
#[derive(Debug, Clone)]
pub enum MiddlewareSpec {
    Cors(CorsSpec),
    Auth(AuthSpec),
    RateLimit(RateLimitSpec),
    Transform(TransformSpec),
    CircuitBreaker(BreakerSpec),
    Fallback(FallbackSpec),
}

/// What running middleware share with the rest of the worker.
pub struct Resources {
    pub redis: Client,
    pub authenticator: Arc<Authenticator>,
    pub metrics: Arc<MetricsRecorder>,
    pub forwarder: Arc<Forwarder>,
    /// This run of the worker, for ids that must not repeat across restarts.
    pub process: ProcessId,
    /// The live workers, for per-worker shares of cluster limits.
    pub membership: Arc<Membership>,
}

impl MiddlewareSpec {
    pub fn build(&self, name: &str, resources: &Resources) -> Arc<dyn Middleware> {
        let name = name.to_string();
        match self.clone() {
            MiddlewareSpec::Cors(spec) => Arc::new(Cors::new(name, spec)),
            MiddlewareSpec::Auth(spec) => {
                Arc::new(Auth::new(name, Arc::clone(&resources.authenticator), spec))
            }
            MiddlewareSpec::RateLimit(spec) => Arc::new(RateLimit::new(
                name,
                spec,
                resources.redis.clone(),
                Arc::clone(&resources.metrics),
                Arc::clone(&resources.membership),
            )),
            MiddlewareSpec::Transform(spec) => Arc::new(Transform::new(name, spec)),
            MiddlewareSpec::CircuitBreaker(spec) => Arc::new(CircuitBreaker::new(
                name,
                spec,
                resources.redis.clone(),
                &resources.process,
            )),
            MiddlewareSpec::Fallback(spec) => Arc::new(Fallback::new(
                name,
                spec,
                resources.redis.clone(),
                Arc::clone(&resources.forwarder),
            )),
        }
    }
}
