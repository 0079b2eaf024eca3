//! The middleware chain a route runs before and after its upstream call.
//!
//! A chain is the route's groups' middleware lists, outermost first. Each
//! middleware implements the phases it needs of [`Middleware`]; the phases
//! read in the order they run, and every one has a no-op default:
//!
//! 1. [`Middleware::request_filter`] — in chain order, local work only: check
//!    credentials, rewrite the body, answer a CORS preflight.
//! 2. [`Middleware::admit`] — decisions on cluster-wide state (rate limit,
//!    circuit breaker). The admissions of a whole chain run *concurrently*, so
//!    a chain costs one Redis round trip of latency however many it has.
//! 3. The upstream call, then on its answer [`Middleware::response_filter`]
//!    — innermost first, rewriting the upstream's reply before the envelope
//!    is built — and [`Middleware::upstream_response`], which sees the
//!    final answer (the fallback cache stores it there).
//! 4. [`Middleware::fallback`] — when the upstream could not answer, a chance
//!    to answer instead (cached reply, fallback service).
//!
//! Kinds are registered by name in [`MiddlewareKinds`]; see [`kinds`]. Each
//! built-in kind is one module — its raw table, validated spec, behaviour
//! and registration — the way a custom kind is (`examples/custom_middleware.rs`).

mod auth;
mod breaker;
mod chain;
mod cors;
mod fail_mode;
mod fallback;
pub mod kinds;
mod rate_limit;
mod transform;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use fred::prelude::Client;
use futures::future::BoxFuture;
use routemq_router::Params;
use serde_json::Value;

pub use crate::error::Outcome;
use crate::membership::Membership;
use crate::metrics::MetricsRecorder;
use crate::process::ProcessId;
use crate::route::ForwardRoute;
use crate::upstream::{Forwarder, PreparedCall, UpstreamResponse};
use crate::{GatewayError, Headers, Reply};

pub use auth::{
    hash_api_key, ApiKeyRecord, ApiKeyStore, ApiKeys, AuthMethod, AuthSettings, AuthSpec,
    Authenticator, Credentials, JwtKeys, JwtSettings, RemoteJwks, RemoteJwksSettings,
};
pub use breaker::{
    BreakerBoard, BreakerSpec, BreakerState, CircuitBreaker, BREAKER_REFRESH_INTERVAL,
};
pub use chain::{Chain, ChainRun};
pub use cors::{Cors, CorsSpec};
pub use fail_mode::FailMode;
pub use fallback::{CacheSettings, Fallback, FallbackSpec};
pub use kinds::{DuplicateKind, Kind, MiddlewareKinds};
pub use rate_limit::{Algorithm, LocalLimit, LocalVerdict, RateLimit, RateLimitSpec};
pub use transform::{ResponseTransform, ResponseTransformSpec, Transform, TransformSpec};

impl Default for MiddlewareKinds {
    /// The built-in kinds.
    fn default() -> Self {
        let mut kinds = MiddlewareKinds::empty();
        for kind in [
            cors::kind(),
            auth::kind(),
            rate_limit::kind(),
            transform::kind(),
            transform::response_kind(),
            breaker::kind(),
            fallback::kind(),
        ] {
            kinds
                .register_shared(kind)
                .expect("the built-in kinds have distinct names");
        }
        kinds
    }
}

/// Who sent a request, as established by verified credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The JWT subject or the API key's id.
    pub subject: String,
    /// The JWT's `iss`; `None` for API keys and tokens without one. The same
    /// subject from two issuers is two callers.
    pub issuer: Option<String>,
    pub method: AuthMethod,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
}

impl Identity {
    /// One unambiguous string for who this is (method, issuer, subject), to
    /// key whatever is stored or counted per caller. Lengths are spelled out
    /// so no choice of issuer and subject can collide with another's.
    pub fn caller_key(&self) -> String {
        let issuer = self.issuer.as_deref().unwrap_or_default();
        format!(
            "{}:{}:{issuer}:{}",
            self.method.as_str(),
            issuer.len(),
            self.subject
        )
    }
}

/// What the middleware of one request share: the request as it stands, and
/// what the chain learnt about it.
pub struct RequestContext<'r> {
    pub request_id: &'r str,
    pub topic: &'r str,
    pub params: &'r Params<'r>,
    pub headers: &'r Headers,
    /// The caller's credentials, verified once for the whole request.
    pub credentials: &'r Credentials<'r>,
    /// The response topic, used as the client's identity when it has no credentials.
    pub response_topic: Option<&'r str>,
    /// `None` for the gateway's own routes.
    pub route: Option<&'r ForwardRoute>,
    /// The JSON body; transforms rewrite it before it goes upstream.
    pub body: Value,
    pub identity: Option<Identity>,
    /// User properties added to whatever reply this request gets.
    pub reply_properties: Vec<(String, String)>,
}

impl RequestContext<'_> {
    /// The key a client is counted under: the verified caller, else (only
    /// where the limiter trusts it) the `x-client-id` property, else the
    /// response topic. MQTT does not tell subscribers the publisher's client
    /// id, so an anonymous client is known by what it says. Whatever the
    /// client chose is hashed, so its length and bytes never reach a Redis
    /// key or a log line.
    pub fn client_key(&self, trust_client_id: bool) -> String {
        if let Some(identity) = &self.identity {
            return format!("id:{}", crate::digest::short_hash(&identity.caller_key()));
        }
        if trust_client_id {
            if let Some(client_id) = self.headers.get("x-client-id") {
                return format!("client:{}", crate::digest::short_hash(client_id));
            }
        }
        match self.response_topic {
            Some(topic) => format!("reply:{}", crate::digest::short_hash(topic)),
            None => "anonymous".to_string(),
        }
    }
}

/// What a request filter decided.
pub enum Flow {
    Continue,
    /// Answer now with this reply, without the upstream (a CORS preflight).
    Respond(Reply),
}

/// A passed admission: reply properties to add and, for a circuit breaker,
/// a permit to settle once the upstream call's outcome is known.
#[derive(Default)]
pub struct Grant {
    pub properties: Vec<(String, String)>,
    pub permit: Option<Box<dyn Permit>>,
}

/// A claim on shared state that must be settled, exactly once, with the outcome.
pub trait Permit: Send {
    fn settle(self: Box<Self>, outcome: Outcome);
}

/// What [`Middleware::admit`] returns: a grant, or the error that refuses.
pub type GrantFuture<'a> = BoxFuture<'a, Result<Grant, GatewayError>>;

/// One middleware. Implement the phases you need; the rest pass requests on.
pub trait Middleware: Send + Sync {
    /// The name it was configured under, for logs.
    fn name(&self) -> &str;

    /// Checks or rewrites the request. An error answers with that error.
    fn request_filter(&self, _ctx: &mut RequestContext<'_>) -> Result<Flow, GatewayError> {
        Ok(Flow::Continue)
    }

    /// A decision on cluster-wide state, run concurrently with the chain's other admissions.
    fn admit<'a>(&'a self, _ctx: &'a RequestContext<'_>) -> Option<GrantFuture<'a>> {
        None
    }

    /// Rewrites the upstream's answer before the reply envelope is built;
    /// runs innermost first. An error answers with that error instead.
    fn response_filter(
        &self,
        _ctx: &RequestContext<'_>,
        _response: &mut UpstreamResponse,
    ) -> Result<(), GatewayError> {
        Ok(())
    }

    /// Sees every upstream answer after the response filters (the fallback cache stores it here).
    fn upstream_response(
        &self,
        _ctx: &RequestContext<'_>,
        _call: &PreparedCall,
        _response: &UpstreamResponse,
    ) {
    }

    /// Answers instead of a failed upstream, if it can.
    fn fallback<'a>(
        &'a self,
        _ctx: &'a RequestContext<'_>,
        _call: &'a PreparedCall,
        _error: &'a GatewayError,
    ) -> Option<BoxFuture<'a, Option<Reply>>> {
        None
    }
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
    /// Every breaker's state as this worker knows it (kept across reloads).
    pub breakers: Arc<BreakerBoard>,
}

/// Validated middleware by the name routes refer to them by.
pub type MiddlewareConfigs = std::collections::HashMap<String, Arc<dyn MiddlewareConfig>>;

/// What a kind may consult while it validates a table.
pub struct KindContext<'a> {
    /// The credential methods `[auth]` configures.
    pub auth_methods: &'a [AuthMethod],
}

/// What a middleware means to the callers of a route that runs it, for the
/// published contract (`routemq asyncapi`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contract {
    /// The kind, as configured (`rate_limit`); `None` for a kind that does
    /// not say.
    pub kind: Option<&'static str>,
    /// What it does to a request, in a sentence.
    pub effect: String,
    /// Credentials it requires: one of these methods.
    pub credentials: Vec<AuthMethod>,
    /// The error kinds it may answer with.
    pub errors: Vec<crate::ErrorKind>,
}

/// A validated `[middleware.NAME]` table.
pub trait MiddlewareConfig: Send + Sync + fmt::Debug {
    /// The running middleware; one per configured name, shared by its routes.
    fn build(&self, name: &str, resources: &Resources) -> Arc<dyn Middleware>;

    /// Checks a forwarding route that runs this middleware, for settings
    /// that only make sense against the route (a breaker's probe lease must
    /// outlast the route's timeout).
    fn check_route(&self, _route: &ForwardRoute) -> Result<(), String> {
        Ok(())
    }

    /// What it means to callers; a kind that does not say is listed by
    /// its configured name only.
    fn contract(&self) -> Contract {
        Contract::default()
    }
}

/// One middleware kind: its name in configuration and how its table is validated.
pub trait MiddlewareKind: Send + Sync {
    fn kind(&self) -> &'static str;

    /// Validates the table's fields (without `kind`); the message names the
    /// problem, the caller adds where it is.
    fn configure(
        &self,
        settings: toml::Table,
        context: &KindContext<'_>,
    ) -> Result<Arc<dyn MiddlewareConfig>, String>;
}
