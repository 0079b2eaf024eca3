//! A gateway's validated settings: what a binary's configuration becomes
//! before anything connects or starts.

use std::time::Duration;

use routemq_router::RouteTable;

use super::ReplyTopics;
use crate::middleware::{AuthSettings, MiddlewareConfigs};
use crate::route::{Limits, RouteTarget};
use crate::upstream::ServiceLimits;

/// A gateway's validated settings; no connections, nothing running.
#[derive(Debug)]
pub struct GatewayConfig {
    pub routes: RouteTable<RouteTarget>,
    /// Middleware by name; every name a route uses is here.
    pub middleware: MiddlewareConfigs,
    pub auth: AuthSettings,
    pub limits: Limits,
    /// Where replies may be published.
    pub reply_topics: ReplyTopics,
    /// Bulkheads: calls in flight per upstream service on this worker.
    pub service_limits: ServiceLimits,
    /// Round-robin counter values leased per Redis round trip (1 = exact per request).
    pub round_robin_lease: u32,
    /// How long answered POST/PATCH replies are kept to replay retries; zero disables.
    pub replay_window: Duration,
    /// Replies larger than this are answered but not kept for replay, so the
    /// store holds at most POST rate × `replay_window` × this.
    pub replay_max_reply_bytes: usize,
    pub registry: RegistrySettings,
    /// How often counters and the request log are flushed to Redis.
    pub metrics_flush_interval: Duration,
    /// Entries each Redis request/response/error log list keeps; `None`: not logged.
    pub request_log_length: Option<usize>,
    /// Which configuration this is (e.g. a hash of its file): reported in
    /// `gateway/health`, so an operator sees which workers applied a reload.
    pub version: String,
}

/// How a worker follows the service registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrySettings {
    /// How often the registry cache is re-read.
    pub refresh_interval: Duration,
    /// How often each instance is probed, cluster-wide.
    pub health_check_interval: Duration,
    pub health_check_timeout: Duration,
}
