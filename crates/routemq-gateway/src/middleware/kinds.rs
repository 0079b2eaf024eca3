//! The built-in kinds: each `[middleware.NAME]` table read into its raw
//! form (unknown fields refused), then checked into its spec.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::registry::{settings, Kind, KindContext, MiddlewareConfig, MiddlewareKind};
use super::spec::{
    AuthSpec, BreakerSpec, CacheSettings, CorsSpec, FallbackSpec, RateLimitSpec,
    ResponseTransformSpec, TransformSpec,
};
use super::{Algorithm, AuthMethod, FailMode};

type Configured = Result<Arc<dyn MiddlewareConfig>, String>;

pub(super) fn builtin() -> Vec<Arc<dyn MiddlewareKind>> {
    fn kind(
        name: &'static str,
        configure: fn(toml::Table, &KindContext<'_>) -> Configured,
    ) -> Arc<dyn MiddlewareKind> {
        Arc::new(Kind::new(name, configure))
    }
    vec![
        kind("cors", |table, _| Ok(Arc::new(cors(settings(table)?)?))),
        kind("auth", |table, context| {
            Ok(Arc::new(auth(settings(table)?, context)?))
        }),
        kind("rate_limit", |table, _| {
            Ok(Arc::new(rate_limit(settings(table)?)?))
        }),
        kind("transform", |table, _| {
            Ok(Arc::new(TransformSpec::from(settings::<RawTransform>(
                table,
            )?)))
        }),
        kind("response_transform", |table, _| {
            let spec = TransformSpec::from(settings::<RawTransform>(table)?);
            Ok(Arc::new(ResponseTransformSpec(spec)))
        }),
        kind("circuit_breaker", |table, _| {
            Ok(Arc::new(breaker(settings(table)?)?))
        }),
        kind("fallback", |table, _| {
            Ok(Arc::new(fallback(settings(table)?)?))
        }),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    #[serde(default)]
    allow_origins: Vec<String>,
    allow_methods: Option<Vec<String>>,
    allow_headers: Option<Vec<String>>,
    #[serde(default)]
    expose_headers: Vec<String>,
    #[serde(default)]
    allow_credentials: bool,
    #[serde(default, with = "humantime_serde")]
    max_age: Option<Duration>,
}

fn cors(raw: RawCors) -> Result<CorsSpec, String> {
    if raw.allow_origins.is_empty() {
        return Err("allow_origins is empty".into());
    }
    if raw.allow_credentials && raw.allow_origins.iter().any(|o| o == "*") {
        return Err("allow_credentials cannot be combined with the `*` origin".into());
    }
    let strings = |names: &[&str]| names.iter().map(|name| name.to_string()).collect();
    Ok(CorsSpec {
        allow_origins: raw.allow_origins,
        allow_methods: raw
            .allow_methods
            .unwrap_or_else(|| strings(&["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])),
        allow_headers: raw.allow_headers.unwrap_or_else(|| {
            strings(&["authorization", "content-type", "x-api-key", "x-request-id"])
        }),
        expose_headers: raw.expose_headers,
        allow_credentials: raw.allow_credentials,
        max_age: raw.max_age.unwrap_or(Duration::from_secs(600)),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    methods: Option<Vec<String>>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
}

fn auth(raw: RawAuth, context: &KindContext<'_>) -> Result<AuthSpec, String> {
    let configured = context.auth_methods;
    let methods = match raw.methods {
        None => configured.to_vec(),
        Some(names) => names
            .iter()
            .map(|method| match method.as_str() {
                "jwt" => Ok(AuthMethod::Jwt),
                "api_key" => Ok(AuthMethod::ApiKey),
                other => Err(format!("unknown method `{other}` (known: jwt, api_key)")),
            })
            .collect::<Result<_, _>>()?,
    };
    if let Some(missing) = methods.iter().find(|m| !configured.contains(m)) {
        let section = match missing {
            AuthMethod::Jwt => "jwt",
            AuthMethod::ApiKey => "api_keys",
        };
        return Err(format!(
            "method {missing:?} needs [auth.{section}] to be configured"
        ));
    }
    if methods.is_empty() {
        return Err("no credentials configured: add [auth.jwt] or [auth.api_keys]".into());
    }
    Ok(AuthSpec {
        methods,
        scopes: raw.scopes,
        roles: raw.roles,
    })
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

fn rate_limit(raw: RawRateLimit) -> Result<RateLimitSpec, String> {
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
        on_redis_error: fail_mode(raw.on_redis_error, FailMode::Open)?,
        fallback_limit: raw.fallback_limit.map(|cap| cap.max(1)),
        trust_client_id: raw.trust_client_id,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransform {
    #[serde(default)]
    rename: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    set: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    add: BTreeMap<String, serde_json::Value>,
}

impl From<RawTransform> for TransformSpec {
    fn from(raw: RawTransform) -> TransformSpec {
        TransformSpec {
            rename: raw.rename.into_iter().collect(),
            remove: raw.remove,
            set: raw.set.into_iter().collect(),
            add: raw.add.into_iter().collect(),
        }
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

fn breaker(raw: RawBreaker) -> Result<BreakerSpec, String> {
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
        on_redis_error: fail_mode(raw.on_redis_error, FailMode::Open)?,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFallback {
    #[serde(default, with = "humantime_serde")]
    cache_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    cache_refresh: Option<Duration>,
    cache_max_entries: Option<usize>,
    cache_max_entry_bytes: Option<usize>,
    cache_admit_after: Option<u32>,
    fallback_service: Option<bool>,
}

fn fallback(raw: RawFallback) -> Result<FallbackSpec, String> {
    let cache = match raw.cache_ttl {
        None => {
            let tuning = raw.cache_refresh.is_some()
                || raw.cache_max_entries.is_some()
                || raw.cache_max_entry_bytes.is_some()
                || raw.cache_admit_after.is_some();
            if tuning {
                return Err(
                    "cache_refresh, cache_admit_after and cache_max_* need cache_ttl".into(),
                );
            }
            None
        }
        Some(ttl) => {
            let ttl = positive(ttl, "cache_ttl")?;
            let refresh = positive(raw.cache_refresh.unwrap_or(ttl / 10), "cache_refresh")?;
            if refresh >= ttl {
                return Err("cache_refresh must be below cache_ttl".into());
            }
            Some(CacheSettings {
                ttl,
                refresh,
                max_entries: raw.cache_max_entries.unwrap_or(10_000).max(1),
                max_entry_bytes: raw.cache_max_entry_bytes.unwrap_or(64 * 1024),
                admit_after: raw.cache_admit_after.unwrap_or(2).max(1),
            })
        }
    };
    Ok(FallbackSpec {
        cache,
        fallback_service: raw.fallback_service.unwrap_or(true),
    })
}

fn fail_mode(raw: Option<String>, default: FailMode) -> Result<FailMode, String> {
    match raw.as_deref() {
        None => Ok(default),
        Some("open") => Ok(FailMode::Open),
        Some("closed") => Ok(FailMode::Closed),
        Some(other) => Err(format!(
            "on_redis_error must be \"open\" or \"closed\", not `{other}`"
        )),
    }
}

fn positive(duration: Duration, field: &str) -> Result<Duration, String> {
    if duration.is_zero() {
        return Err(format!("{field} must be above zero"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker_from(text: &str) -> Result<BreakerSpec, String> {
        breaker(settings(toml::from_str(text).map_err(|e| e.to_string())?)?)
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

    fn limit_from(text: &str) -> Result<RateLimitSpec, String> {
        rate_limit(settings(toml::from_str(text).map_err(|e| e.to_string())?)?)
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

    fn fallback_from(text: &str) -> Result<FallbackSpec, String> {
        fallback(settings(toml::from_str(text).map_err(|e| e.to_string())?)?)
    }

    #[test]
    fn the_fallback_cache_refreshes_at_a_tenth_of_its_ttl_and_is_capped_by_default() {
        let cache = fallback_from("cache_ttl = \"5m\"").expect("cache").cache;
        assert_eq!(
            cache,
            Some(CacheSettings {
                ttl: Duration::from_secs(300),
                refresh: Duration::from_secs(30),
                max_entries: 10_000,
                max_entry_bytes: 65_536,
                admit_after: 2,
            })
        );
        assert_eq!(fallback_from("").expect("no cache").cache, None);
        assert!(
            fallback_from("cache_max_entries = 5").is_err(),
            "a cap needs a cache"
        );
        assert!(fallback_from("cache_ttl = \"1m\"\ncache_refresh = \"1m\"").is_err());
    }
}
