//! The route model: what a matched route does with a request, and the
//! bounds every request stays within. Built from configuration, read by the
//! pipeline and the middleware; it depends on nothing of either.

use std::time::Duration;

use reqwest::Method;

use crate::upstream::{HeaderPolicy, PathTemplate};

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
    /// Levels of a reply topic: a deeper one is refused before anything
    /// runs (Mosquitto disconnects a publisher beyond 200, EMQX's default
    /// `max_topic_levels` is 128).
    pub max_topic_levels: usize,
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
            max_topic_levels: 128,
        }
    }
}
