//! Building a gateway: validated settings in, a running pipeline and the
//! handle of its background tasks out. A binary only wires configuration,
//! its MQTT runtime and telemetry.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::Client;

use super::background::BackgroundTasks;
use super::config::GatewayConfig;
use super::shared::Shared;
use super::Gateway;

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
        let shared = Shared::open(&config, worker_id, redis, http, traces).await?;
        let background = BackgroundTasks::start(&shared);
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
