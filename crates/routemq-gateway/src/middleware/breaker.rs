//! A circuit breaker per upstream service, shared by every worker: each
//! transition is one Lua script (`breaker_admit.lua`, `breaker_record.lua`),
//! so workers can never disagree on the state or admit more half-open probes
//! between them than configured.
//!
//! Healthy traffic costs one cheap admission read; only failures and probe
//! outcomes are written, after the reply has gone out.

use std::sync::atomic::{AtomicU64, Ordering};

use fred::prelude::Client;
use futures::FutureExt;

use super::spec::BreakerSpec;
use super::{Admission, Admitted, FailMode, Middleware, Outcome, Permit, RequestContext};
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
    spec: BreakerSpec,
    redis: Client,
    attempt_prefix: String,
    attempts: AtomicU64,
}

impl CircuitBreaker {
    pub fn new(name: String, spec: BreakerSpec, redis: Client, worker_id: &str) -> CircuitBreaker {
        CircuitBreaker {
            attempt_prefix: format!("{worker_id}:{name}"),
            name,
            spec,
            redis,
            attempts: AtomicU64::new(0),
        }
    }

    async fn check(&self, service: String) -> Result<Admitted, GatewayError> {
        let attempt = format!(
            "{}:{}",
            self.attempt_prefix,
            self.attempts.fetch_add(1, Ordering::Relaxed)
        );
        let limits = self.spec.limits;
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
                tracing::warn!(breaker = %self.name, %service, %error, policy = ?self.spec.on_redis_error, "circuit breaker store unavailable");
                return match self.spec.on_redis_error {
                    FailMode::Open => Ok(Admitted::default()),
                    FailMode::Closed => Err(GatewayError::new(
                        ErrorKind::StoreUnavailable,
                        "circuit breaker store unavailable",
                    )),
                };
            }
        };
        record_state(&service, BreakerState::parse(&verdict.state));
        if !verdict.admitted {
            let retry_after = verdict.retry_after.as_millis().div_ceil(1000).max(1);
            return Err(GatewayError::new(
                ErrorKind::CircuitOpen,
                format!("circuit breaker for `{service}` is {}", verdict.state),
            )
            .with_property("retry-after", retry_after.to_string()));
        }
        let permit = BreakerPermit {
            redis: self.redis.clone(),
            service,
            limits,
            attempt,
            probe: verdict.probe,
        };
        Ok(Admitted {
            properties: Vec::new(),
            permit: Some(Box::new(permit)),
        })
    }
}

impl Middleware for CircuitBreaker {
    fn name(&self) -> &str {
        &self.name
    }

    fn admit<'a>(&'a self, ctx: &'a RequestContext<'_>) -> Option<Admission<'a>> {
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
}

impl Permit for BreakerPermit {
    fn settle(self: Box<Self>, outcome: Outcome) {
        let outcome = match (outcome, self.probe) {
            // In the closed state only failures are counted; a success needs no write.
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
                    record_state(&self.service, BreakerState::parse(&state));
                    tracing::debug!(service = %self.service, ?outcome, %state, "breaker outcome recorded");
                }
                Err(error) => tracing::warn!(service = %self.service, ?outcome, %error, "breaker outcome not recorded"),
            }
        });
    }
}

/// The breaker's state as a Prometheus gauge: 0 closed, 1 half open, 2 open.
fn record_state(service: &str, state: BreakerState) {
    if !crate::observe::metrics_enabled() {
        return;
    }
    let value = match state {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open => 2.0,
    };
    metrics::gauge!("routemq_circuit_breaker_state", "service" => service.to_string()).set(value);
}
