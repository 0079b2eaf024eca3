//! What a gateway keeps across reloads, made once at start-up: everything
//! it needs beside requests — the registry cache, API keys, the identity
//! provider's keys, live-worker membership, the breaker board, metric and
//! request-log buffers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::Client;

use super::config::{GatewayConfig, RegistrySettings};
use crate::membership::Membership;
use crate::metrics::MetricsRecorder;
use crate::middleware::BreakerBoard;
use crate::middleware::{ApiKeys, RemoteJwks, RemoteJwksSettings};
use crate::process::ProcessId;
use crate::registry::RegistryCache;
use crate::request_log::RequestLog;

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
    pub registry: RegistrySettings,
    pub metrics_flush_interval: Duration,
    pub request_log_length: Option<usize>,
    pub api_keys_refresh: Option<Duration>,
    pub remote_jwks: Option<RemoteJwksSettings>,
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

impl Shared {
    /// Reads the registry and API keys once (an unreachable Redis starts
    /// them empty) and makes what the background tasks keep current.
    pub async fn open(
        config: &GatewayConfig,
        worker_id: String,
        redis: Client,
        http: reqwest::Client,
        traces: bool,
    ) -> Result<Shared, String> {
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

        Ok(Shared {
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
            fixed: FixedSettings::of(config),
        })
    }
}
