use std::sync::Arc;

use fred::prelude::Client;
use routemq_gateway::membership::Membership;
use routemq_gateway::metrics::MetricsRecorder;
use routemq_gateway::middleware::ApiKeys;
use routemq_gateway::registry::{run_health_probes, ProbeSettings, RegistryCache};
use routemq_gateway::request_log::RequestLog;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::WorkerConfig;

/// The worker's tasks beside request handling: registry and API key
/// refresh, health probes, live-worker membership, metric and request-log
/// flushes. They stop after
/// the requests have drained, so the last flushes count every answered request.
pub struct Background {
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// What the background tasks work on, shared with the request pipeline.
pub struct Shared<'a> {
    pub redis: &'a Client,
    pub http: reqwest::Client,
    pub cache: &'a Arc<RegistryCache>,
    pub metrics: &'a Arc<MetricsRecorder>,
    pub api_keys: Option<&'a Arc<ApiKeys>>,
    pub request_log: Option<&'a Arc<RequestLog>>,
    pub membership: &'a Arc<Membership>,
}

impl Background {
    pub fn start(config: &WorkerConfig, worker_id: &str, shared: Shared<'_>) -> Background {
        let Shared {
            redis,
            http,
            cache,
            metrics,
            api_keys,
            request_log,
            membership,
        } = shared;
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        if let Some(log) = request_log {
            let (log, redis, stop) = (Arc::clone(log), redis.clone(), stop.clone());
            let interval = config.metrics_flush_interval;
            tasks.spawn(async move { log.run_flush(redis, interval, stop).await });
        }
        if let (Some(api_keys), Some(interval)) = (api_keys, config.auth.api_keys_refresh) {
            let (api_keys, redis, stop) = (Arc::clone(api_keys), redis.clone(), stop.clone());
            tasks.spawn(async move { api_keys.run_refresh(redis, interval, stop).await });
        }
        tasks.spawn(Arc::clone(membership).run(redis.clone(), stop.clone()));
        tasks.spawn(Arc::clone(cache).run_refresh(
            redis.clone(),
            config.refresh_interval,
            stop.clone(),
        ));
        tasks.spawn(run_health_probes(
            redis.clone(),
            Arc::clone(cache),
            http,
            ProbeSettings {
                interval: config.health_check_interval,
                timeout: config.health_check_timeout,
                worker_id: worker_id.to_string(),
            },
            stop.clone(),
        ));
        let (metrics, redis, interval, flush_stop) = (
            Arc::clone(metrics),
            redis.clone(),
            config.metrics_flush_interval,
            stop.clone(),
        );
        tasks.spawn(async move { metrics.run_flush(redis, interval, flush_stop).await });
        Background { stop, tasks }
    }

    /// Stops the tasks and waits for them (the metrics task flushes once more).
    pub async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
