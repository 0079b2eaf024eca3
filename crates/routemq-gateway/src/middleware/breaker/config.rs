//! The `circuit_breaker` kind's configuration: its `[middleware.NAME]` table as
//! written (unknown fields refused), validated into the spec that builds
//! the running middleware, and the kind's registration.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::CircuitBreaker;
use crate::middleware::fail_mode::FailMode;
use crate::middleware::kinds::{positive, validated};
use crate::middleware::{Contract, Middleware, MiddlewareConfig, MiddlewareKind, Resources};
use crate::redis::scripts::BreakerLimits;
use crate::route::ForwardRoute;
use crate::ErrorKind;

#[derive(Debug, Clone)]
pub struct BreakerSpec {
    /// Failures within the window that open the breaker; 0: no count threshold.
    pub failure_threshold: u32,
    /// Failure-rate mode: the share of failed calls within the window that
    /// opens the breaker, once `min_requests` calls were made; `None`: off.
    pub failure_rate: Option<f64>,
    pub min_requests: u32,
    pub failure_window: Duration,
    /// How long an open breaker refuses before it lets probes through.
    pub recovery_time: Duration,
    pub half_open_probes: u32,
    /// How long a half-open probe holds its slot if its outcome never comes.
    pub probe_timeout: Duration,
    pub on_redis_error: FailMode,
}

impl BreakerSpec {
    /// The arguments the breaker's scripts take.
    pub fn limits(&self) -> BreakerLimits {
        BreakerLimits {
            failure_threshold: self.failure_threshold,
            failure_window: self.failure_window,
            failure_rate: self.failure_rate,
            min_requests: self.min_requests,
            recovery: self.recovery_time,
            half_open_probes: self.half_open_probes,
            probe_lease: self.probe_timeout,
        }
    }
}

impl MiddlewareConfig for BreakerSpec {
    fn build(&self, name: &str, resources: &Resources) -> Arc<dyn Middleware> {
        Arc::new(CircuitBreaker::new(
            name.to_string(),
            self.clone(),
            resources.redis.clone(),
            &resources.process,
            Arc::clone(&resources.breakers),
        ))
    }

    fn contract(&self) -> Contract {
        let mut errors = vec![ErrorKind::CircuitOpen];
        if self.on_redis_error == FailMode::Closed {
            errors.push(ErrorKind::StoreUnavailable);
        }
        Contract {
            kind: Some("circuit_breaker"),
            effect: "refuses with 503 circuit_open, and retry-after, while the service's breaker is open".into(),
            credentials: Vec::new(),
            errors,
        }
    }

    /// A probe's lease must outlast the calls it admits, or a slow probe
    /// would free its slot while still running and let a second probe in.
    fn check_route(&self, route: &ForwardRoute) -> Result<(), String> {
        if self.probe_timeout >= route.timeout {
            return Ok(());
        }
        Err(format!(
            "probe_timeout {} below the route's timeout {}: a probe's lease must outlast its call",
            humantime::format_duration(self.probe_timeout),
            humantime::format_duration(route.timeout),
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    failure_threshold: Option<u32>,
    failure_rate: Option<f64>,
    min_requests: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    failure_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    recovery_time: Option<Duration>,
    half_open_probes: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    probe_timeout: Option<Duration>,
    on_redis_error: Option<String>,
}

fn validate(raw: RawBreaker) -> Result<BreakerSpec, String> {
    if let Some(rate) = raw.failure_rate {
        if !(rate > 0.0 && rate <= 1.0) {
            return Err(format!(
                "failure_rate must be above 0 and at most 1, not {rate}"
            ));
        }
    }
    // With a failure rate the count threshold applies only if written.
    let count_default = if raw.failure_rate.is_some() { 0 } else { 5 };
    if raw.failure_rate.is_none() && raw.failure_threshold == Some(0) {
        return Err("failure_threshold 0 needs a failure_rate".into());
    }
    let window = raw.failure_window.unwrap_or(Duration::from_secs(300));
    let recovery = raw.recovery_time.unwrap_or(Duration::from_secs(60));
    let probe_timeout = raw.probe_timeout.unwrap_or(Duration::from_secs(60));
    Ok(BreakerSpec {
        failure_threshold: raw.failure_threshold.unwrap_or(count_default),
        failure_rate: raw.failure_rate,
        min_requests: raw.min_requests.unwrap_or(20).max(1),
        failure_window: positive(window, "failure_window")?,
        recovery_time: positive(recovery, "recovery_time")?,
        half_open_probes: raw.half_open_probes.unwrap_or(1).max(1),
        probe_timeout: positive(probe_timeout, "probe_timeout")?,
        on_redis_error: FailMode::parse(raw.on_redis_error, FailMode::Open)?,
    })
}

pub(in crate::middleware) fn kind() -> Arc<dyn MiddlewareKind> {
    validated("circuit_breaker", validate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::middleware::kinds::from_toml;

    fn breaker_from(text: &str) -> Result<BreakerSpec, String> {
        from_toml(text, validate)
    }

    #[test]
    fn with_a_failure_rate_the_count_threshold_is_off_unless_written() {
        let rated = breaker_from("failure_rate = 0.5").expect("rate mode");
        assert_eq!(
            (
                rated.failure_threshold,
                rated.failure_rate,
                rated.min_requests
            ),
            (0, Some(0.5), 20)
        );
        let counted = breaker_from("").expect("count mode");
        assert_eq!((counted.failure_threshold, counted.failure_rate), (5, None));
        assert!(breaker_from("failure_threshold = 0").is_err());
        assert!(breaker_from("failure_rate = 1.5").is_err());
        assert!(breaker_from("probe_timeout = \"0s\"").is_err());
    }
}
