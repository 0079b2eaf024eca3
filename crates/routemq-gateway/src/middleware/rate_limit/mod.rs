//! Cluster-wide rate limiting per client in Redis, with time taken from
//! Redis, by one of two algorithms: a sliding-window log (`rate_limit.lua`:
//! exactly at most `limit` in any window, O(limit) state per client) or GCRA
//! (`gcra.lua`: `limit` per window on average with bursts of `burst`, O(1)
//! state, for high limits). When Redis fails, each limiter's policy decides:
//! fail open to a per-worker local limit, or fail closed.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::Client;
use futures::FutureExt;

mod batch;
mod config;
mod local;

use batch::LimitBatcher;
pub(super) use config::kind;
pub use config::RateLimitSpec;
pub use local::{LocalLimit, LocalVerdict};

use crate::membership::Membership;
use crate::metrics::MetricsRecorder;
use crate::middleware::{FailMode, Grant, GrantFuture, Middleware, RequestContext};
use crate::process::AttemptIds;
use crate::redis::keys;
use crate::redis::scripts::{Limit, LimitScript};
use crate::{ErrorKind, GatewayError};

/// How a limiter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// At most `limit` admissions in any window: the contract for quotas.
    SlidingLog,
    /// GCRA: one admission per `window / limit` on average, up to `burst`
    /// at once from a rested client — so up to about `limit + burst` in the
    /// first window.
    Gcra { burst: u32 },
}

pub struct RateLimit {
    name: String,
    spec: RateLimitSpec,
    metrics: Arc<MetricsRecorder>,
    attempts: AttemptIds,
    /// The fail-open limit: this worker's share of the cluster limit.
    local: LocalLimit,
    membership: Arc<Membership>,
    /// This worker's attempts, sent to Redis a batch at a time.
    batcher: LimitBatcher,
}

impl RateLimit {
    pub fn new(
        name: String,
        spec: RateLimitSpec,
        redis: Client,
        metrics: Arc<MetricsRecorder>,
        membership: Arc<Membership>,
    ) -> RateLimit {
        if crate::observe::metrics_enabled() {
            // From the first scrape, so `rate()` and alerts see the series.
            metrics::counter!("routemq_rate_limited_total", "limiter" => name.clone()).increment(0);
        }
        let script = match spec.algorithm {
            Algorithm::SlidingLog => LimitScript::SlidingLog,
            Algorithm::Gcra { burst } => LimitScript::Gcra { burst },
        };
        let limit = Limit {
            script,
            limit: spec.limit,
            window: spec.window,
        };
        RateLimit {
            attempts: AttemptIds::new(membership.process(), &name),
            local: LocalLimit::new(spec.limit, spec.window, spec.fallback_limit),
            membership,
            batcher: LimitBatcher::new(redis, limit),
            name,
            spec,
            metrics,
        }
    }

    async fn check(&self, client_key: String) -> Result<Grant, GatewayError> {
        let attempt = self.attempts.next();
        let limit = self.spec.limit;
        let (script, key) = match self.spec.algorithm {
            Algorithm::SlidingLog => ("rate_limit", keys::rate_limit(&self.name, &client_key)),
            Algorithm::Gcra { .. } => ("gcra", keys::gcra(&self.name, &client_key)),
        };
        let verdict = crate::observe::redis_call(script, self.batcher.count(key, attempt)).await;
        let verdict = match verdict {
            // Too late to count: answer as if Redis had not answered at all.
            Ok(verdict) if verdict.stale => {
                return self.without_redis(client_key, &"the store answered too late")
            }
            Ok(verdict) => verdict,
            Err(error) => return self.without_redis(client_key, &error),
        };
        let properties = vec![
            ("x-ratelimit-limit".to_string(), limit.to_string()),
            (
                "x-ratelimit-remaining".to_string(),
                verdict.remaining.to_string(),
            ),
        ];
        if verdict.admitted {
            return Ok(Grant {
                properties,
                permit: None,
            });
        }
        self.count_hit();
        let retry_after_seconds = seconds(verdict.retry_after);
        let mut error = GatewayError::new(
            ErrorKind::RateLimited,
            format!(
                "rate limit of {limit} requests per {} exceeded",
                humantime::format_duration(self.spec.window)
            ),
        )
        .with_property("retry-after", retry_after_seconds.to_string());
        error.properties.extend(properties);
        Err(error)
    }

    /// A refused request, in the cluster-wide report and in Prometheus.
    fn count_hit(&self) {
        self.metrics.record_rate_limited();
        if !crate::observe::metrics_enabled() {
            return;
        }
        metrics::counter!("routemq_rate_limited_total", "limiter" => self.name.clone())
            .increment(1);
    }

    fn without_redis(
        &self,
        client_key: String,
        error: &dyn std::fmt::Display,
    ) -> Result<Grant, GatewayError> {
        tracing::warn!(limiter = %self.name, %error, policy = ?self.spec.on_redis_error, "rate limit store unavailable");
        match self.spec.on_redis_error {
            FailMode::Closed => Err(GatewayError::new(
                ErrorKind::StoreUnavailable,
                "rate limit store unavailable",
            )),
            FailMode::Open => match self.local.check(&client_key, self.membership.workers()) {
                LocalVerdict::Grant { share } => Ok(Grant {
                    properties: vec![("x-ratelimit-limit".to_string(), share.to_string())],
                    permit: None,
                }),
                LocalVerdict::Refused { share, retry_after } => {
                    self.count_hit();
                    Err(GatewayError::new(
                        ErrorKind::RateLimited,
                        "local rate limit exceeded while the shared store is unavailable",
                    )
                    .with_property("retry-after", seconds(retry_after).to_string())
                    .with_property("x-ratelimit-limit", share.to_string()))
                }
            },
        }
    }
}

/// Whole seconds to wait, rounded up, at least 1 (`retry-after`).
fn seconds(wait: Duration) -> u128 {
    wait.as_millis().div_ceil(1000).max(1)
}

impl Middleware for RateLimit {
    fn name(&self) -> &str {
        &self.name
    }

    fn admit<'a>(&'a self, ctx: &'a RequestContext<'_>) -> Option<GrantFuture<'a>> {
        Some(
            self.check(ctx.client_key(self.spec.trust_client_id))
                .boxed(),
        )
    }
}
