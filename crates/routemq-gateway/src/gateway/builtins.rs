//! The gateway's own routes: `gateway/health`, `gateway/services`, `gateway/metrics`.

use std::collections::HashMap;

use std::sync::Arc;
use std::time::Instant;

use fred::prelude::*;
use futures::future::join_all;
use serde_json::{json, Map, Value};

use super::Shared;
use crate::middleware::BreakerState;
use crate::redis::scripts;
use crate::registry::RegistryCache;
use crate::route::Builtin;
use crate::{metrics, ErrorKind, GatewayError, Reply};

/// What the built-in routes read: Redis, the registry cache, and who this
/// worker is.
pub(super) struct Builtins {
    redis: Client,
    cache: Arc<RegistryCache>,
    worker_id: String,
    started: Instant,
    /// Which configuration the worker runs.
    version: String,
}

impl Builtins {
    pub(super) fn new(shared: &Shared, version: &str) -> Builtins {
        Builtins {
            redis: shared.redis.clone(),
            cache: Arc::clone(&shared.cache),
            worker_id: shared.worker_id.clone(),
            started: shared.started,
            version: version.to_string(),
        }
    }

    pub(super) async fn answer(&self, builtin: Builtin) -> Result<Reply, GatewayError> {
        match builtin {
            Builtin::Health => Ok(self.health().await),
            Builtin::Services => Ok(self.services().await),
            Builtin::Metrics => self.metrics_report().await,
        }
    }

    /// Each service's circuit breaker state, read from Redis; `unknown` when
    /// Redis cannot say. Services no breaker ever tripped read `closed`.
    async fn breaker_states<'a>(
        &self,
        services: impl Iterator<Item = &'a String>,
    ) -> HashMap<String, &'static str> {
        let reads = services.map(|service| async move {
            let state = scripts::breaker_state(&self.redis, service).await;
            let state = match state {
                Ok(state) => BreakerState::parse(state.as_deref().unwrap_or("closed")).as_str(),
                Err(_) => "unknown",
            };
            (service.clone(), state)
        });
        join_all(reads).await.into_iter().collect()
    }

    async fn health(&self) -> Reply {
        let redis_ok = self.redis.ping::<String>(None).await.is_ok();
        let snapshot = self.cache.snapshot();
        let breakers = self.breaker_states(snapshot.services.keys()).await;
        let services: Map<String, Value> = snapshot
            .services
            .iter()
            .map(|(name, entry)| (name.clone(), json!(entry.health())))
            .collect();
        Reply::raw(
            200,
            json!({
                "status": if redis_ok { "healthy" } else { "degraded" },
                "timestamp": crate::clock::unix_time().as_secs_f64(),
                "version": env!("CARGO_PKG_VERSION"),
                "worker": {
                    "id": self.worker_id,
                    "uptime_seconds": self.started.elapsed().as_secs_f64(),
                    "config_version": self.version,
                },
                "services": services,
                "circuit_breakers": breakers,
                "redis": if redis_ok { "healthy" } else { "unhealthy" },
            }),
        )
    }

    async fn services(&self) -> Reply {
        let snapshot = self.cache.snapshot();
        let breakers = self.breaker_states(snapshot.services.keys()).await;
        let services: Vec<Value> = snapshot
            .services
            .iter()
            .map(|(name, entry)| {
                json!({
                    "name": name,
                    "total_instances": entry.instances.len(),
                    "healthy_instances": entry.healthy.len(),
                    "status": if entry.healthy.is_empty() { "unhealthy" } else { "healthy" },
                    "circuit_breaker": breakers.get(name).copied().unwrap_or("closed"),
                    "instances": entry.instances.iter().map(|i| json!({
                        "instance_id": i.instance_id,
                        "url": i.url,
                        "status": i.status,
                        "last_heartbeat_ms": i.last_heartbeat_ms,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        Reply::raw(
            200,
            json!({
                "status": "success",
                "count": services.len(),
                "services": services,
                "timestamp": crate::clock::unix_time().as_secs_f64(),
            }),
        )
    }

    async fn metrics_report(&self) -> Result<Reply, GatewayError> {
        let mut report = metrics::read_report(&self.redis).await.map_err(|error| {
            GatewayError::new(
                ErrorKind::StoreUnavailable,
                format!("metrics unavailable: {error}"),
            )
        })?;
        report["timestamp"] = json!(crate::clock::unix_time().as_secs_f64());
        Ok(Reply::raw(200, report))
    }
}
