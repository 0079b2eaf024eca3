//! A circuit breaker per upstream service, shared by every worker: each
//! transition is one Lua script (`breaker_admit.lua`, `breaker_record.lua`),
//! so workers can never disagree on the state or admit more half-open probes
//! between them than configured.
//!
//! Healthy traffic costs no Redis round trip: each worker keeps every
//! breaker's state on its [`BreakerBoard`], told of transitions at once, and
//! a closed breaker admits locally. An open one refuses locally until its
//! recovery time; then Redis admits the half-open probes. Only failures and
//! probe outcomes are written, after the reply has gone out. In failure-rate
//! mode successes are counted per worker and flushed once a second in one
//! batch.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use fred::prelude::Client;
use futures::FutureExt;

mod board;
mod config;

use board::Local;
pub use board::{BreakerBoard, REFRESH_INTERVAL as BREAKER_REFRESH_INTERVAL};
pub(super) use config::kind;
pub use config::BreakerSpec;

use crate::middleware::{
    FailMode, Grant, GrantFuture, Middleware, Outcome, Permit, RequestContext,
};
use crate::process::{AttemptIds, ProcessId};
use crate::redis::scripts::{self, BreakerLimits, CallOutcome};
use crate::{ErrorKind, GatewayError};

/// A breaker's state as stored in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn parse(state: &str) -> BreakerState {
        match state {
            "open" => BreakerState::Open,
            "half_open" => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

pub struct CircuitBreaker {
    name: String,
    limits: BreakerLimits,
    on_redis_error: FailMode,
    redis: Client,
    attempts: AttemptIds,
    /// Successful calls per service not yet flushed (failure-rate mode only).
    successes: Option<Arc<Successes>>,
    board: Arc<BreakerBoard>,
}

/// How often a worker adds its successful calls to the shared counts.
const SUCCESS_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// One worker's successful calls per service since the last flush.
#[derive(Default)]
struct Successes {
    pending: Mutex<HashMap<String, u64>>,
}

impl Successes {
    fn add(&self, service: &str) {
        let mut pending = self.pending.lock();
        match pending.get_mut(service) {
            Some(count) => *count += 1,
            None => {
                pending.insert(service.to_string(), 1);
            }
        }
    }

    fn take(&self) -> HashMap<String, u64> {
        std::mem::take(&mut *self.pending.lock())
    }
}

/// Flushes a breaker's success counts until the breaker is dropped. A batch
/// that fails is dropped, not resent: the rate is a sample, and resending
/// after a timed-out call that did run would count it twice.
async fn flush_successes(
    successes: Weak<Successes>,
    redis: Client,
    limits: BreakerLimits,
    flusher_id: String,
) {
    let mut sequence = 0u64;
    let mut every = crate::Every::until_dropped(SUCCESS_FLUSH_INTERVAL);
    while every.tick().await {
        let Some(successes) = successes.upgrade() else {
            return;
        };
        for (service, count) in successes.take() {
            sequence += 1;
            let flushed =
                scripts::breaker_successes(&redis, &service, &limits, &flusher_id, sequence, count)
                    .await;
            if let Err(error) = flushed {
                tracing::debug!(%service, %error, "breaker successes not flushed");
            }
        }
    }
}

impl CircuitBreaker {
    pub fn new(
        name: String,
        spec: BreakerSpec,
        redis: Client,
        process: &ProcessId,
        board: Arc<BreakerBoard>,
    ) -> CircuitBreaker {
        let runtime = tokio::runtime::Handle::try_current().ok();
        let limits = spec.limits();
        let successes = match (limits.failure_rate, runtime) {
            (Some(_), Some(runtime)) => {
                let successes = Arc::new(Successes::default());
                // Unique per process, so a restarted worker's batches are new.
                let flusher_id = format!("{process}:{name}");
                runtime.spawn(flush_successes(
                    Arc::downgrade(&successes),
                    redis.clone(),
                    limits,
                    flusher_id,
                ));
                Some(successes)
            }
            _ => None,
        };
        CircuitBreaker {
            attempts: AttemptIds::new(process, &name),
            name,
            on_redis_error: spec.on_redis_error,
            limits,
            redis,
            successes,
            board,
        }
    }

    async fn check(&self, service: String) -> Result<Grant, GatewayError> {
        let attempt = self.attempts.next();
        let limits = self.limits;
        match self.board.get(&service) {
            Some(Local::Closed) => return Ok(self.grant(service, attempt, false)),
            Some(Local::Open { until }) => {
                let now = Instant::now();
                if now < until {
                    return Err(refusal(&service, "open", until - now));
                }
            }
            Some(Local::HalfOpen) | None => {}
        }
        let verdict = Box::pin(scripts::breaker_admit(
            &self.redis,
            &service,
            &limits,
            &attempt,
        ))
        .await;
        let verdict = match verdict {
            Ok(verdict) => verdict,
            Err(error) => {
                tracing::warn!(breaker = %self.name, %service, %error, policy = ?self.on_redis_error, "circuit breaker store unavailable");
                return match self.on_redis_error {
                    FailMode::Open => Ok(Grant::default()),
                    FailMode::Closed => Err(GatewayError::new(
                        ErrorKind::StoreUnavailable,
                        "circuit breaker store unavailable",
                    )),
                };
            }
        };
        self.board.learn(
            &service,
            &verdict.state,
            verdict.retry_after,
            limits.recovery,
        );
        if !verdict.admitted {
            return Err(refusal(&service, &verdict.state, verdict.retry_after));
        }
        Ok(self.grant(service, attempt, verdict.probe))
    }

    fn grant(&self, service: String, attempt: String, probe: bool) -> Grant {
        let permit = BreakerPermit {
            redis: self.redis.clone(),
            service,
            limits: self.limits,
            attempt,
            probe,
            successes: self.successes.clone(),
            board: Arc::clone(&self.board),
        };
        Grant {
            properties: Vec::new(),
            permit: Some(Box::new(permit)),
        }
    }
}

/// `503 circuit_open`, to retry after `retry_after`.
fn refusal(service: &str, state: &str, retry_after: Duration) -> GatewayError {
    let seconds = retry_after.as_millis().div_ceil(1000).max(1);
    GatewayError::new(
        ErrorKind::CircuitOpen,
        format!("circuit breaker for `{service}` is {state}"),
    )
    .with_property("retry-after", seconds.to_string())
}

impl Middleware for CircuitBreaker {
    fn name(&self) -> &str {
        &self.name
    }

    fn admit<'a>(&'a self, ctx: &'a RequestContext<'_>) -> Option<GrantFuture<'a>> {
        let service = ctx.route?.service.clone();
        Some(self.check(service).boxed())
    }
}

/// One admitted call; its outcome is recorded in the background.
struct BreakerPermit {
    redis: Client,
    service: String,
    limits: BreakerLimits,
    attempt: String,
    probe: bool,
    successes: Option<Arc<Successes>>,
    board: Arc<BreakerBoard>,
}

impl Permit for BreakerPermit {
    fn settle(self: Box<Self>, outcome: Outcome) {
        if let (Outcome::Success, Some(successes)) = (outcome, &self.successes) {
            successes.add(&self.service);
        }
        let outcome = match (outcome, self.probe) {
            // In the closed state a success is never written one by one.
            (Outcome::Success, false) | (Outcome::NotSent, false) => return,
            (Outcome::Success, true) => CallOutcome::Success,
            (Outcome::Failure, _) => CallOutcome::Failure,
            (Outcome::NotSent, true) => CallOutcome::Release,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            match scripts::breaker_record(
                &self.redis,
                &self.service,
                &self.limits,
                &self.attempt,
                outcome,
            )
            .await
            {
                Ok(state) => {
                    let recovery = self.limits.recovery;
                    self.board.learn(&self.service, &state, recovery, recovery);
                    tracing::debug!(service = %self.service, ?outcome, %state, "breaker outcome recorded");
                }
                Err(error) => tracing::warn!(service = %self.service, ?outcome, %error, "breaker outcome not recorded"),
            }
        });
    }
}
