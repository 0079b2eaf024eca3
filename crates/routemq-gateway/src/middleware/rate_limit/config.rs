//! The `rate_limit` kind's configuration: its `[middleware.NAME]` table as
//! written (unknown fields refused), validated into the spec that builds
//! the running middleware, and the kind's registration.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{Algorithm, RateLimit};
use crate::middleware::fail_mode::FailMode;
use crate::middleware::kinds::{positive, validated};
use crate::middleware::{Contract, Middleware, MiddlewareConfig, MiddlewareKind, Resources};
use crate::ErrorKind;

#[derive(Debug, Clone)]
pub struct RateLimitSpec {
    pub algorithm: Algorithm,
    pub limit: u32,
    pub window: Duration,
    pub on_redis_error: FailMode,
    /// While Redis is unavailable each worker admits its share of `limit`
    /// (`limit / live workers`) per client per window; this caps that share.
    pub fallback_limit: Option<u32>,
    /// Count anonymous clients by their `x-client-id` property. Off by
    /// default: any client can claim any id, including a victim's.
    pub trust_client_id: bool,
}

impl MiddlewareConfig for RateLimitSpec {
    fn build(&self, name: &str, resources: &Resources) -> Arc<dyn Middleware> {
        Arc::new(RateLimit::new(
            name.to_string(),
            self.clone(),
            resources.redis.clone(),
            Arc::clone(&resources.metrics),
            Arc::clone(&resources.membership),
        ))
    }

    fn contract(&self) -> Contract {
        let mut errors = vec![ErrorKind::RateLimited];
        if self.on_redis_error == FailMode::Closed {
            errors.push(ErrorKind::StoreUnavailable);
        }
        Contract {
            kind: Some("rate_limit"),
            effect: format!(
                "at most {} requests per {} per caller, cluster-wide; replies carry x-ratelimit-limit and x-ratelimit-remaining, a refusal retry-after",
                self.limit,
                humantime::format_duration(self.window)
            ),
            credentials: Vec::new(),
            errors,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    limit: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    window: Option<Duration>,
    on_redis_error: Option<String>,
    fallback_limit: Option<u32>,
    #[serde(default)]
    trust_client_id: bool,
    algorithm: Option<String>,
    burst: Option<u32>,
}

fn validate(raw: RawRateLimit) -> Result<RateLimitSpec, String> {
    let limit = raw.limit.unwrap_or(1000);
    if limit == 0 {
        return Err("limit must be above zero".into());
    }
    let algorithm = match (raw.algorithm.as_deref(), raw.burst) {
        (None | Some("sliding_log"), None) => Algorithm::SlidingLog,
        (None | Some("sliding_log"), Some(_)) => {
            return Err("burst applies to algorithm = \"gcra\" only".into())
        }
        (Some("gcra"), burst) => Algorithm::Gcra {
            burst: match burst.unwrap_or(limit) {
                0 => return Err("burst must be above zero".into()),
                burst => burst,
            },
        },
        (Some(other), _) => {
            return Err(format!(
                "unknown algorithm `{other}`: use \"sliding_log\" or \"gcra\""
            ))
        }
    };
    Ok(RateLimitSpec {
        algorithm,
        limit,
        window: positive(raw.window.unwrap_or(Duration::from_secs(60)), "window")?,
        on_redis_error: FailMode::parse(raw.on_redis_error, FailMode::Open)?,
        fallback_limit: raw.fallback_limit.map(|cap| cap.max(1)),
        trust_client_id: raw.trust_client_id,
    })
}

pub(in crate::middleware) fn kind() -> Arc<dyn MiddlewareKind> {
    validated("rate_limit", validate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::middleware::kinds::from_toml;

    fn limit_from(text: &str) -> Result<RateLimitSpec, String> {
        from_toml(text, validate)
    }

    #[test]
    fn gcra_bursts_default_to_the_limit_and_only_gcra_takes_a_burst() {
        let log = limit_from("limit = 50").expect("sliding log");
        assert_eq!(log.algorithm, Algorithm::SlidingLog);
        let gcra = limit_from("limit = 50\nalgorithm = \"gcra\"").expect("gcra");
        assert_eq!(gcra.algorithm, Algorithm::Gcra { burst: 50 });
        let small = limit_from("limit = 50\nalgorithm = \"gcra\"\nburst = 5").expect("gcra");
        assert_eq!(small.algorithm, Algorithm::Gcra { burst: 5 });
        assert!(limit_from("burst = 5").is_err());
        assert!(limit_from("algorithm = \"gcra\"\nburst = 0").is_err());
        assert!(limit_from("algorithm = \"token_bucket\"").is_err());
    }
}
