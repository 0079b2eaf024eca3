//! The route model: what a matched route does with a request, and the
//! bounds every request stays within. Built from configuration, read by the
//! pipeline and the middleware; it depends on nothing of either.

use std::time::Duration;

use reqwest::header::HeaderName;
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
    /// The header that tells the upstream how many milliseconds it has
    /// (`None`: not sent).
    pub deadline_header: Option<HeaderName>,
    /// When a reply larger than the broker takes goes out in chunks.
    pub chunked_replies: ChunkedReplies,
    /// Whether identical concurrent GETs share one upstream call, and whose.
    pub coalesce: Option<Coalesce>,
}

/// The header routes send their deadline in unless configured otherwise.
pub const DEFAULT_DEADLINE_HEADER: &str = "x-request-timeout-ms";

/// When a reply larger than the broker's packet size is sent in chunks
/// (`docs/protocol.md`, Chunked replies) rather than answered `502
/// reply_too_large`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChunkedReplies {
    /// When the request says it reassembles them (`x-accept-chunks`).
    #[default]
    OnRequest,
    /// Always: the route's callers all reassemble chunks.
    Always,
    /// Never, even when asked.
    Never,
}

impl ChunkedReplies {
    /// The setting a route names in configuration.
    pub fn parse(name: &str) -> Option<ChunkedReplies> {
        Some(match name {
            "on_request" => ChunkedReplies::OnRequest,
            "always" => ChunkedReplies::Always,
            "never" => ChunkedReplies::Never,
            _ => return None,
        })
    }

    /// The setting's name in configuration.
    pub fn name(self) -> &'static str {
        match self {
            ChunkedReplies::OnRequest => "on_request",
            ChunkedReplies::Always => "always",
            ChunkedReplies::Never => "never",
        }
    }

    /// The packet size in which a request gets chunks, given the one it
    /// asked for (`None`: it did not ask); `None`: no chunks. `usize::MAX`
    /// stands for the broker's own limit.
    pub fn packet_size(self, asked: Option<usize>) -> Option<usize> {
        match self {
            ChunkedReplies::OnRequest => asked,
            ChunkedReplies::Always => Some(asked.unwrap_or(usize::MAX)),
            ChunkedReplies::Never => None,
        }
    }
}

/// Whose identical GETs share one upstream call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coalesce {
    /// Only the same caller's: the reply may depend on who asks.
    PerCaller,
    /// Anyone's: the route declared its reply the same for every caller.
    AcrossCallers,
}

impl Coalesce {
    /// How a published contract names it.
    pub fn name(self) -> &'static str {
        match self {
            Coalesce::PerCaller => "per_caller",
            Coalesce::AcrossCallers => "across_callers",
        }
    }
}
