//! The gateway's own routes: `gateway/health`, `gateway/services`, `gateway/metrics`.

use std::collections::HashMap;

use fred::prelude::*;
use futures::future::join_all;
use serde_json::{json, Map, Value};

use crate::gateway::Gateway;
use crate::middleware::BreakerState;
use crate::redis::scripts;
use crate::route::Builtin;
use crate::{metrics, ErrorKind, GatewayError, Reply};

impl Gateway {
    pub(crate) async fn builtin(&self, builtin: Builtin, request_id: &str) -> Reply {
        match builtin {
            Builtin::Health => self.health().await,
            Builtin::Services => self.services().await,
            Builtin::Metrics => self.metrics_report(request_id).await,
        }
    }

    /// Each service's circuit breaker state, read from Redis; `unknown` when
    /// Redis cannot say. Services no breaker ever tripped read `closed`.
    async fn breaker_states<'a>(
        &self,
        services: impl Iterator<Item = &'a String>,
    ) -> HashMap<String, &'static str> {
        let reads = services.map(|service| async move {
            let state = scripts::breaker_state(&self.shared.redis, service).await;
            let state = match state {
                Ok(state) => BreakerState::parse(state.as_deref().unwrap_or("closed")).as_str(),
                Err(_) => "unknown",
            };
            (service.clone(), state)
        });
        join_all(reads).await.into_iter().collect()
    }

    async fn health(&self) -> Reply {
        let redis_ok = self.shared.redis.ping::<String>(None).await.is_ok();
        let snapshot = self.shared.cache.snapshot();
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
                    "id": self.shared.worker_id,
                    "uptime_seconds": self.shared.started.elapsed().as_secs_f64(),
                    "config_version": self.version(),
                },
                "services": services,
                "circuit_breakers": breakers,
                "redis": if redis_ok { "healthy" } else { "unhealthy" },
            }),
        )
    }

    async fn services(&self) -> Reply {
        let snapshot = self.shared.cache.snapshot();
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

    async fn metrics_report(&self, request_id: &str) -> Reply {
        match metrics::read_report(&self.shared.redis).await {
            Ok(mut report) => {
                report["timestamp"] = json!(crate::clock::unix_time().as_secs_f64());
                Reply::raw(200, report)
            }
            Err(error) => {
                let error = GatewayError::new(
                    ErrorKind::StoreUnavailable,
                    format!("metrics unavailable: {error}"),
                );
                Reply::error(&error, request_id, None)
            }
        }
    }
}
