//! When the upstream cannot answer (5xx, timeout, no instance, open breaker):
//! the last good reply to the same request if the route is cacheable (a GET
//! route under a fallback with `cache_ttl`), else
//! the `<service>-fallback` service, else the original error.
//!
//! The cache costs little and stays bounded: a reply is cached once the
//! same request comes `cache_admit_after` times (default 2) to a worker
//! within about `cache_refresh`, then rewritten at most once per
//! `cache_refresh` ([`RecentWrites`]),
//! replies over `cache_max_entry_bytes` are not cached, and Redis keeps at
//! most `cache_max_entries` per service, evicting the oldest
//! (`fallback_store.lua`).

use std::sync::Arc;
use std::time::Instant;

use fred::prelude::*;
use futures::future::BoxFuture;
use futures::FutureExt;
use reqwest::Method;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

mod config;
mod recent_writes;

pub(super) use config::kind;
pub use config::{CacheSettings, FallbackSpec};
use recent_writes::RecentWrites;

use crate::middleware::{Middleware, RequestContext};
use crate::redis::records::CachedReply;
use crate::redis::{keys, scripts};
use crate::reply::Source;
use crate::upstream::{Forwarder, PreparedCall, UpstreamResponse};
use crate::{GatewayError, Reply};

pub struct Fallback {
    name: String,
    spec: FallbackSpec,
    redis: Client,
    forwarder: Arc<Forwarder>,
    /// Entries this worker wrote lately (only with a cache).
    recent: Option<Arc<RecentWrites>>,
}

impl Fallback {
    pub fn new(
        name: String,
        spec: FallbackSpec,
        redis: Client,
        forwarder: Arc<Forwarder>,
    ) -> Fallback {
        let recent = spec.cache.map(|cache| {
            // Counts one-off requests too, so room for more keys than Redis keeps.
            let remembered = cache.max_entries.saturating_mul(4).clamp(1024, 100_000);
            Arc::new(RecentWrites::new(
                cache.refresh,
                remembered,
                cache.admit_after,
            ))
        });
        Fallback {
            name,
            spec,
            redis,
            forwarder,
            recent,
        }
    }

    async fn answer(&self, ctx: &RequestContext<'_>, call: &PreparedCall) -> Option<Reply> {
        let route = ctx.route?;
        let started = Instant::now();
        if self.spec.cache.is_some() && route.method == Method::GET {
            if let Some((status, data)) = self.cached(&route.service, ctx, call).await {
                return Some(Reply::success_from(
                    status,
                    &data,
                    ctx.request_id,
                    &route.service,
                    started.elapsed().as_secs_f64(),
                    Some(Source::Cache),
                ));
            }
        }
        if !self.spec.fallback_service {
            return None;
        }
        let fallback_service = format!("{}-fallback", route.service);
        if !self.forwarder.has_healthy_instance(&fallback_service) {
            return None;
        }
        match self.forwarder.call(&fallback_service, call).await {
            Ok(response) => Some(Reply::success_from(
                response.status,
                &response.body,
                ctx.request_id,
                &fallback_service,
                started.elapsed().as_secs_f64(),
                Some(Source::Fallback),
            )),
            Err(error) => {
                tracing::warn!(service = %fallback_service, %error, "fallback service failed too");
                None
            }
        }
    }
}

impl Fallback {
    /// The cached reply to this request: the capped cache's entry, else one
    /// an older worker wrote under the version 1 key (during a rollout).
    async fn cached(
        &self,
        service: &str,
        ctx: &RequestContext<'_>,
        call: &PreparedCall,
    ) -> Option<(u16, Box<RawValue>)> {
        let hash = crate::digest::hex(&request_hash(ctx, call));
        for key in [
            keys::fallback_entry(service, &hash),
            keys::fallback_cache(service, &hash),
        ] {
            match self.redis.get::<Option<String>, _>(&key).await {
                Ok(Some(stored)) => return parse_stored(&stored),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "fallback cache unreadable");
                    return None;
                }
            }
        }
        None
    }
}

impl Middleware for Fallback {
    fn name(&self) -> &str {
        &self.name
    }

    fn upstream_response(
        &self,
        ctx: &RequestContext<'_>,
        call: &PreparedCall,
        response: &UpstreamResponse,
    ) {
        let (Some(cache), Some(recent), Some(route)) = (self.spec.cache, &self.recent, ctx.route)
        else {
            return;
        };
        // Only reads are cacheable: replaying a cached write would claim it
        // happened. A redirect or `304 Not Modified` is no data to fall back on.
        if route.method != Method::GET || !(200..300).contains(&response.status) {
            return;
        }
        if response.body.get().len() > cache.max_entry_bytes {
            return;
        }
        let hash = request_hash(ctx, call);
        if !recent.due(hash, Instant::now()) {
            return;
        }
        let key = keys::fallback_entry(&route.service, &crate::digest::hex(&hash));
        let stored = CachedReply {
            status: response.status,
            body: response.body.get().into(),
        }
        .encode();
        let (redis, service) = (self.redis.clone(), route.service.clone());
        // Off the reply path: the reply does not wait for the cache write.
        tokio::spawn(async move {
            let written = scripts::fallback_store(
                &redis,
                &service,
                &key,
                &stored,
                cache.ttl,
                cache.max_entries,
            );
            if let Err(error) = Box::pin(written).await {
                tracing::debug!(%error, "fallback cache write failed");
            }
        });
    }

    fn fallback<'a>(
        &'a self,
        ctx: &'a RequestContext<'_>,
        call: &'a PreparedCall,
        _error: &'a GatewayError,
    ) -> Option<BoxFuture<'a, Option<Reply>>> {
        Some(self.answer(ctx, call).boxed())
    }
}

/// A stable hash of the request as sent upstream, and of who sent it, so one
/// client's cached reply is never served to another.
fn request_hash(ctx: &RequestContext<'_>, call: &PreparedCall) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(call.method.as_str());
    hasher.update([0]);
    hasher.update(&call.path);
    for (name, value) in &call.query {
        hasher.update([0]);
        hasher.update(name);
        hasher.update([1]);
        hasher.update(value);
    }
    hasher.update([0]);
    if let Some(body) = &call.body {
        hasher.update(body);
    }
    hasher.update([0]);
    if let Some(identity) = &ctx.identity {
        hasher.update(identity.caller_key());
    }
    hasher.finalize().into()
}

/// A cached reply's status and body, if the record is readable.
fn parse_stored(stored: &str) -> Option<(u16, Box<RawValue>)> {
    let cached = CachedReply::decode(stored)?;
    Some((
        cached.status,
        RawValue::from_string(cached.body.into_owned()).ok()?,
    ))
}
