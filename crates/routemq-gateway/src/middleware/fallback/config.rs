//! The `fallback` kind's configuration: its `[middleware.NAME]` table as
//! written (unknown fields refused), validated into the spec that builds
//! the running middleware, and the kind's registration.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::Fallback;
use crate::middleware::kinds::{positive, validated};
use crate::middleware::{Contract, Middleware, MiddlewareConfig, MiddlewareKind, Resources};

#[derive(Debug, Clone)]
pub struct FallbackSpec {
    /// How last good replies are kept; `None` makes the route not cacheable.
    pub cache: Option<CacheSettings>,
    /// Try `<service>-fallback` when there is no cached reply.
    pub fallback_service: bool,
}

/// The fallback cache of one fallback middleware. Redis holds at most
/// `max_entries` replies of at most `max_entry_bytes` per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long a reply is kept.
    pub ttl: Duration,
    /// A worker rewrites one request's reply at most this often.
    pub refresh: Duration,
    /// Requests for the same reply, on one worker within about `refresh`,
    /// before it is cached (1: the first good reply).
    pub admit_after: u32,
    pub max_entries: usize,
    /// Larger replies are not cached.
    pub max_entry_bytes: usize,
}

impl MiddlewareConfig for FallbackSpec {
    fn build(&self, name: &str, resources: &Resources) -> Arc<dyn Middleware> {
        Arc::new(Fallback::new(
            name.to_string(),
            self.clone(),
            resources.redis.clone(),
            Arc::clone(&resources.forwarder),
        ))
    }

    fn contract(&self) -> Contract {
        Contract {
            kind: Some("fallback"),
            effect: "when the upstream fails, may answer with its last good reply (source: cache) or the <service>-fallback service (source: fallback)".into(),
            ..Contract::default()
        }
    }
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

fn validate(raw: RawFallback) -> Result<FallbackSpec, String> {
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

pub(in crate::middleware) fn kind() -> Arc<dyn MiddlewareKind> {
    validated("fallback", validate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::middleware::kinds::from_toml;

    fn fallback_from(text: &str) -> Result<FallbackSpec, String> {
        from_toml(text, validate)
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
