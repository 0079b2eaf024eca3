//! The route model: what a matched route does with a request, and the
//! bounds every request stays within. Built from configuration, read by the
//! pipeline and the middleware; it depends on nothing of either.

use std::time::Duration;

use reqwest::Method;

use crate::upstream::{HeaderPolicy, PathTemplate};

mod limits;

pub use limits::Limits;

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

impl RouteTarget {
    /// The forwarding route, unless the gateway answers itself.
    pub fn forward(&self) -> Option<&ForwardRoute> {
        match self {
            RouteTarget::Forward(route) => Some(route),
            RouteTarget::Builtin(_) => None,
        }
    }
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
