//! Building a gateway: validated settings in, a running pipeline and the
//! handle of its background tasks out. Everything the gateway needs beside
//! requests — the registry cache and its refresh, health probes, API keys,
//! live-worker membership, metric and request-log flushes — is made and
//! started here, so a binary only wires configuration, its MQTT runtime
//! and telemetry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::Client;
use routemq_router::RouteTable;

use super::background::{BackgroundParts, BackgroundTasks};
use super::{Gateway, Limits, ReplyTopics, RouteTarget};
use crate::membership::Membership;
use crate::metrics::MetricsRecorder;
use crate::middleware::breaker_board::BreakerBoard;
use crate::middleware::{ApiKeys, AuthSettings, MiddlewareConfigs, RemoteJwks, RemoteJwksSettings};
use crate::process::ProcessId;
use crate::registry::RegistryCache;
use crate::request_log::RequestLog;
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

/// What a gateway keeps across reloads: connections, caches, counters and
/// the identity of this worker.
#[derive(Clone)]
pub(crate) struct Shared {
    pub redis: Client,
    pub http: reqwest::Client,
    pub cache: Arc<RegistryCache>,
    pub metrics: Arc<MetricsRecorder>,
    pub membership: Arc<Membership>,
    pub breakers: Arc<BreakerBoard>,
    pub api_keys: Option<Arc<ApiKeys>>,
    /// The identity provider's fetched keys (`auth.jwt.jwks_url`).
    pub remote_jwks: Option<Arc<RemoteJwks>>,
    /// Where answered requests are logged for the Redis lists; `None` disables it.
    pub request_log: Option<Arc<RequestLog>>,
    /// Whether spans are exported: only then is trace context extracted,
    /// recorded and propagated.
    pub traces: bool,
    pub worker_id: String,
    pub started: Instant,
    /// What the background tasks run with.
    pub fixed: FixedSettings,
}

/// The settings the background tasks started with. A reload cannot change
/// them (the tasks would have to restart, losing their state), so one that
/// does is refused whole.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FixedSettings {
    registry: RegistrySettings,
    metrics_flush_interval: Duration,
    request_log_length: Option<usize>,
    api_keys_refresh: Option<Duration>,
    remote_jwks: Option<RemoteJwksSettings>,
}

impl FixedSettings {
    pub fn of(config: &GatewayConfig) -> FixedSettings {
        FixedSettings {
            registry: config.registry,
            metrics_flush_interval: config.metrics_flush_interval,
            request_log_length: config.request_log_length,
            api_keys_refresh: config.auth.api_keys_refresh,
            remote_jwks: config
                .auth
                .jwt
                .as_ref()
                .and_then(|jwt| jwt.keys.remote.clone()),
        }
    }

    /// The configuration keys whose values differ in `other`.
    pub fn changed(&self, other: &FixedSettings) -> Vec<&'static str> {
        let (a, b) = (&self.registry, &other.registry);
        [
            (
                a.refresh_interval != b.refresh_interval,
                "registry.refresh_interval",
            ),
            (
                a.health_check_interval != b.health_check_interval,
                "registry.health_check_interval",
            ),
            (
                a.health_check_timeout != b.health_check_timeout,
                "registry.health_check_timeout",
            ),
            (
                self.metrics_flush_interval != other.metrics_flush_interval,
                "metrics.flush_interval",
            ),
            (
                self.request_log_length != other.request_log_length,
                "telemetry.request_log_length",
            ),
            (
                self.api_keys_refresh != other.api_keys_refresh,
                "auth.api_keys",
            ),
            (
                self.remote_jwks != other.remote_jwks,
                "auth.jwt.jwks_url (and its jwks_* settings)",
            ),
        ]
        .into_iter()
        .filter_map(|(changed, key)| changed.then_some(key))
        .collect()
    }
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

/// Builds a [`Gateway`] and starts its background tasks.
pub struct GatewayBuilder {
    config: GatewayConfig,
    worker_id: String,
    redis: Client,
    traces: bool,
    http: Option<reqwest::Client>,
}

impl GatewayBuilder {
    /// `worker_id` names this worker in logs, metrics and membership; each
    /// start adds a fresh nonce, so no id repeats across restarts.
    pub fn new(config: GatewayConfig, worker_id: impl Into<String>, redis: Client) -> Self {
        GatewayBuilder {
            config,
            worker_id: worker_id.into(),
            redis,
            traces: false,
            http: None,
        }
    }

    /// Extracts, records and propagates trace context (only when spans are exported).
    pub fn traces(mut self, traces: bool) -> Self {
        self.traces = traces;
        self
    }

    /// The HTTP client for upstream calls and health probes; by default one
    /// that follows no redirect (a 3xx goes back to the caller).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Reads the registry and API keys once (an unreachable Redis starts
    /// them empty), builds the pipeline and starts its background tasks.
    /// Fails on a route naming a middleware that is not configured.
    pub async fn start(self) -> Result<(Arc<Gateway>, BackgroundTasks), String> {
        let GatewayBuilder {
            config,
            worker_id,
            redis,
            traces,
            http,
        } = self;
        let http = match http {
            Some(http) => http,
            None => default_http_client()?,
        };
        let cache = Arc::new(RegistryCache::default());
        if let Err(error) = cache.refresh(&redis).await {
            tracing::warn!(%error, "registry not readable at start-up, starting with an empty cache");
        }
        let api_keys = config
            .auth
            .api_keys_refresh
            .map(|_| Arc::new(ApiKeys::default()));
        if let Some(api_keys) = &api_keys {
            if let Err(error) = api_keys.refresh(&redis).await {
                tracing::warn!(%error, "api keys not readable at start-up, starting with none");
            }
        }
        let remote_jwks = match config
            .auth
            .jwt
            .as_ref()
            .and_then(|jwt| jwt.keys.remote.clone())
        {
            Some(settings) => Some(Arc::new(RemoteJwks::new(settings)?)),
            None => None,
        };
        let request_log = config
            .request_log_length
            .map(|length| Arc::new(RequestLog::new(length, &worker_id)));
        let membership = Membership::new(ProcessId::new(&worker_id));
        let metrics = Arc::new(MetricsRecorder::default());
        let breakers = Arc::new(BreakerBoard::default());

        let background = BackgroundTasks::start(BackgroundParts {
            config: &config,
            redis: &redis,
            http: &http,
            cache: &cache,
            metrics: &metrics,
            api_keys: api_keys.as_ref(),
            remote_jwks: remote_jwks.as_ref(),
            request_log: request_log.as_ref(),
            membership: &membership,
            breakers: &breakers,
        });
        let shared = Shared {
            redis,
            http,
            cache,
            metrics,
            membership,
            breakers,
            api_keys,
            remote_jwks,
            request_log,
            traces,
            worker_id,
            started: Instant::now(),
            fixed: FixedSettings::of(&config),
        };
        let gateway = Gateway::new(shared, config, None);
        match gateway {
            Ok(gateway) => Ok((Arc::new(gateway), background)),
            Err(message) => {
                background.stop().await;
                Err(message)
            }
        }
    }
}

/// Upstream calls never follow redirects: a 3xx goes back to the caller.
fn default_http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|error| format!("building the HTTP client: {error}"))
}
