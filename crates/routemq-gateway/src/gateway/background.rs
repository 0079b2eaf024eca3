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
        let Shared {
            redis,
            http,
            cache,
            metrics,
            api_keys,
            remote_jwks,
            request_log,
            membership,
            breakers,
            fixed,
            ..
        } = shared;
        let background = BackgroundTasks::new();
        let (stop, flush) = (&background.stop, fixed.metrics_flush_interval);
        if let Some(log) = request_log {
            let (log, redis, stop) = (Arc::clone(log), redis.clone(), stop.clone());
            background.spawn("request log flush", async move {
                log.run_flush(redis, flush, stop).await
            });
        }
        if let (Some(api_keys), Some(interval)) = (api_keys, fixed.api_keys_refresh) {
            let (api_keys, redis, stop) = (Arc::clone(api_keys), redis.clone(), stop.clone());
            background.spawn("api key refresh", async move {
                api_keys.run_refresh(redis, interval, stop).await
            });
        }
        if let Some(remote_jwks) = remote_jwks {
            background.spawn(
                "identity provider keys",
                Arc::clone(remote_jwks).run(stop.clone()),
            );
        }
        background.spawn(
            "membership",
            Arc::clone(membership).run(redis.clone(), stop.clone()),
        );
        background.spawn(
            "breaker board",
            Arc::clone(breakers).run(redis.clone(), stop.clone()),
        );
        let registry = fixed.registry;
        background.spawn(
            "registry refresh",
            Arc::clone(cache).run_refresh(redis.clone(), registry.refresh_interval, stop.clone()),
        );
        background.spawn(
            "health probes",
            run_health_probes(
                redis.clone(),
                Arc::clone(cache),
                http.clone(),
                Arc::clone(membership),
                ProbeSettings {
                    interval: registry.health_check_interval,
                    timeout: registry.health_check_timeout,
                },
                stop.clone(),
            ),
        );
        let (flushed, flush_redis, flush_stop) = (Arc::clone(metrics), redis.clone(), stop.clone());
        background.spawn("metrics flush", async move {
            flushed.run_flush(flush_redis, flush, flush_stop).await
        });
        background
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
