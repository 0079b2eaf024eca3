//! The gateway's tasks beside request handling, supervised: a task that
//! panics is not left dead while the worker serves on without it (a revoked
//! API key still accepted, a registry never refreshed); it is logged and
//! reported through [`BackgroundTasks::failed`], and the worker stops so
//! its supervisor starts a whole one.

use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::shared::Shared;
use crate::registry::{run_health_probes, ProbeSettings};

/// The background tasks of one gateway. Stop them after the requests have
/// drained, so the last flushes count every answered request.
pub struct BackgroundTasks {
    stop: CancellationToken,
    tasks: TaskTracker,
    failure: Failure,
}

/// The first background task that panicked, once one has.
#[derive(Clone, Default)]
struct Failure {
    fired: CancellationToken,
    task: Arc<Mutex<Option<&'static str>>>,
}

impl BackgroundTasks {
    fn new() -> BackgroundTasks {
        BackgroundTasks {
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            failure: Failure::default(),
        }
    }

    /// Request-log and metric flushes, API-key and registry refreshes,
    /// health probes and live-worker membership.
    pub(super) fn start(shared: &Shared) -> BackgroundTasks {
        let background = BackgroundTasks::new();
        background.start_flushes(shared);
        background.start_credentials(shared);
        background.start_cluster(shared);
        background
    }

    /// The request log's and the metrics' flushes to Redis.
    fn start_flushes(&self, shared: &Shared) {
        let flush = shared.fixed.metrics_flush_interval;
        if let Some(log) = &shared.request_log {
            let (log, redis, stop) = (Arc::clone(log), shared.redis.clone(), self.stop.clone());
            self.spawn("request log flush", async move {
                log.run_flush(redis, flush, stop).await
            });
        }
        let (metrics, redis, stop) = (
            Arc::clone(&shared.metrics),
            shared.redis.clone(),
            self.stop.clone(),
        );
        self.spawn("metrics flush", async move {
            metrics.run_flush(redis, flush, stop).await
        });
    }

    /// API keys and the identity provider's keys, kept current.
    fn start_credentials(&self, shared: &Shared) {
        if let (Some(api_keys), Some(interval)) = (&shared.api_keys, shared.fixed.api_keys_refresh)
        {
            let (api_keys, redis, stop) = (
                Arc::clone(api_keys),
                shared.redis.clone(),
                self.stop.clone(),
            );
            self.spawn("api key refresh", async move {
                api_keys.run_refresh(redis, interval, stop).await
            });
        }
        if let Some(remote_jwks) = &shared.remote_jwks {
            self.spawn(
                "identity provider keys",
                Arc::clone(remote_jwks).run(self.stop.clone()),
            );
        }
    }

    /// Membership, the breaker board, the registry cache and health probes.
    fn start_cluster(&self, shared: &Shared) {
        let (redis, stop, registry) = (&shared.redis, &self.stop, shared.fixed.registry);
        let membership = &shared.membership;
        self.spawn(
            "membership",
            Arc::clone(membership).run(redis.clone(), stop.clone()),
        );
        self.spawn(
            "breaker board",
            Arc::clone(&shared.breakers).run(redis.clone(), stop.clone()),
        );
        self.spawn(
            "registry refresh",
            Arc::clone(&shared.cache).run_refresh(
                redis.clone(),
                registry.refresh_interval,
                stop.clone(),
            ),
        );
        let probes = ProbeSettings {
            interval: registry.health_check_interval,
            timeout: registry.health_check_timeout,
        };
        self.spawn(
            "health probes",
            run_health_probes(
                redis.clone(),
                Arc::clone(&shared.cache),
                shared.http.clone(),
                Arc::clone(membership),
                probes,
                stop.clone(),
            ),
        );
    }

    /// Runs `task` in its own tokio task, watched: a panic is logged with
    /// `name` and reported by [`BackgroundTasks::failed`].
    fn spawn(&self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let running = tokio::spawn(task);
        let failure = self.failure.clone();
        self.tasks.spawn(async move {
            let Err(error) = running.await else {
                return;
            };
            if error.is_panic() {
                tracing::error!(task = name, "a background task panicked; the worker stops");
                failure.task.lock().get_or_insert(name);
                failure.fired.cancel();
            }
        });
    }

    /// Resolves with the name of the first background task that panicked;
    /// never, while none has.
    pub fn failed(&self) -> impl Future<Output = &'static str> + Send + 'static {
        let failure = self.failure.clone();
        async move {
            failure.fired.cancelled().await;
            failure.task.lock().unwrap_or("a background task")
        }
    }

    /// Stops the tasks and waits for them (the metrics task flushes once more).
    pub async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::BackgroundTasks;

    #[tokio::test]
    async fn a_panicking_task_is_reported_by_name_and_a_quiet_one_is_not() {
        let background = BackgroundTasks::new();
        background.spawn("quiet", async {});
        let quiet = tokio::time::timeout(Duration::from_millis(50), background.failed()).await;
        assert!(quiet.is_err(), "nothing failed yet");
        let period = Duration::ZERO;
        background.spawn("zero period", async move {
            let _clock = crate::Every::new(period, Default::default());
        });
        let failed = tokio::time::timeout(Duration::from_secs(5), background.failed()).await;
        assert_eq!(failed.ok(), Some("zero period"));
        background.stop().await;
    }
}
