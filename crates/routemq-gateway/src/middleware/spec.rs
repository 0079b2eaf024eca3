//! The built-in kinds' validated settings ([`super::kinds`] produces them)
//! and how each becomes a running middleware.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::auth::Auth;
use super::registry::{MiddlewareConfig, Resources};
use super::transform::ResponseTransform;
use super::{
    Algorithm, AuthMethod, CircuitBreaker, Cors, FailMode, Fallback, Middleware, RateLimit,
    Transform,
};
use crate::redis::scripts::BreakerLimits;
use crate::route::ForwardRoute;

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

impl MiddlewareConfig for CorsSpec {
    fn build(&self, name: &str, _: &Resources) -> Arc<dyn Middleware> {
        Arc::new(Cors::new(name.to_string(), self.clone()))
    }
}

#[derive(Debug, Clone)]
pub struct AuthSpec {
    pub methods: Vec<AuthMethod>,
    /// All required.
    pub scopes: Vec<String>,
    /// Any one required; empty requires none.
    pub roles: Vec<String>,
}

impl MiddlewareConfig for AuthSpec {
    fn build(&self, name: &str, resources: &Resources) -> Arc<dyn Middleware> {
        let authenticator = Arc::clone(&resources.authenticator);
        Arc::new(Auth::new(name.to_string(), authenticator, self.clone()))
    }
}

#[derive(Debug, Clone)]
pub struct RateLimitSpec {
    pub algorithm: Algorithm,
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

impl MiddlewareConfig for RateLimitSpec {
    fn build(&self, name: &str, resources: &Resources) -> Arc<dyn Middleware> {
        Arc::new(RateLimit::new(
            name.to_string(),
            self.clone(),
            resources.redis.clone(),
            Arc::clone(&resources.metrics),
            Arc::clone(&resources.membership),
        ))
    }
}

/// Rename, remove, set and add top-level fields of a JSON object, in that order.
#[derive(Debug, Clone, Default)]
pub struct TransformSpec {
    pub rename: Vec<(String, String)>,
    pub remove: Vec<String>,
    /// String values may contain `{param}`.
    pub set: Vec<(String, Value)>,
    /// Like `set`, only when the field is absent.
    pub add: Vec<(String, Value)>,
}

impl MiddlewareConfig for TransformSpec {
    fn build(&self, name: &str, _: &Resources) -> Arc<dyn Middleware> {
        Arc::new(Transform::new(name.to_string(), self.clone()))
    }
}

/// A [`TransformSpec`] applied to the upstream's successful JSON reply.
#[derive(Debug, Clone, Default)]
pub struct ResponseTransformSpec(pub TransformSpec);

impl MiddlewareConfig for ResponseTransformSpec {
    fn build(&self, name: &str, _: &Resources) -> Arc<dyn Middleware> {
        Arc::new(ResponseTransform::new(name.to_string(), self.0.clone()))
    }
}

#[derive(Debug, Clone)]
pub struct BreakerSpec {
    /// Failures within the window that open the breaker; 0: no count threshold.
    pub failure_threshold: u32,
    /// Failure-rate mode: the share of failed calls within the window that
    /// opens the breaker, once `min_requests` calls were made; `None`: off.
    pub failure_rate: Option<f64>,
    pub min_requests: u32,
    pub failure_window: Duration,
    /// How long an open breaker refuses before it lets probes through.
    pub recovery_time: Duration,
    pub half_open_probes: u32,
    /// How long a half-open probe holds its slot if its outcome never comes.
    pub probe_timeout: Duration,
    pub on_redis_error: FailMode,
}

impl BreakerSpec {
    /// The arguments the breaker's scripts take.
    pub fn limits(&self) -> BreakerLimits {
        BreakerLimits {
            failure_threshold: self.failure_threshold,
            failure_window: self.failure_window,
            failure_rate: self.failure_rate,
            min_requests: self.min_requests,
            recovery: self.recovery_time,
            half_open_probes: self.half_open_probes,
            probe_lease: self.probe_timeout,
        }
    }
}

impl MiddlewareConfig for BreakerSpec {
    fn build(&self, name: &str, resources: &Resources) -> Arc<dyn Middleware> {
        Arc::new(CircuitBreaker::new(
            name.to_string(),
            self.clone(),
            resources.redis.clone(),
            &resources.process,
            Arc::clone(&resources.breakers),
        ))
    }

    /// A probe's lease must outlast the calls it admits, or a slow probe
    /// would free its slot while still running and let a second probe in.
    fn check_route(&self, route: &ForwardRoute) -> Result<(), String> {
        if self.probe_timeout >= route.timeout {
            return Ok(());
        }
        Err(format!(
            "probe_timeout {} below the route's timeout {}: a probe's lease must outlast its call",
            humantime::format_duration(self.probe_timeout),
            humantime::format_duration(route.timeout),
        ))
    }
}

#[derive(Debug, Clone)]
pub struct FallbackSpec {
    /// How last good replies are kept; `None` makes the route not cacheable.
    pub cache: Option<CacheSettings>,
    /// Try `<service>-fallback` when there is no cached reply.
    pub fallback_service: bool,
}

/// The fallback cache of one fallback middleware. Redis holds at most
/// `max_entries` replies of at most `max_entry_bytes` per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long a reply is kept.
    pub ttl: Duration,
    /// A worker rewrites one request's reply at most this often.
    pub refresh: Duration,
    /// Requests for the same reply, on one worker within about `refresh`,
    /// before it is cached (1: the first good reply).
    pub admit_after: u32,
    pub max_entries: usize,
    /// Larger replies are not cached.
    pub max_entry_bytes: usize,
}

impl MiddlewareConfig for FallbackSpec {
    fn build(&self, name: &str, resources: &Resources) -> Arc<dyn Middleware> {
        Arc::new(Fallback::new(
            name.to_string(),
            self.clone(),
            resources.redis.clone(),
            Arc::clone(&resources.forwarder),
        ))
    }
}
