//! The gateway's own routes: `gateway/health`, `gateway/services`, `gateway/metrics`.

use std::time::{SystemTime, UNIX_EPOCH};

use fred::prelude::*;
use serde_json::{json, Map, Value};

use crate::gateway::{Builtin, Gateway};
use crate::{metrics, ErrorKind, GatewayError, Reply};

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Gateway {
    pub(crate) async fn builtin(&self, builtin: Builtin, request_id: &str) -> Reply {
        match builtin {
            Builtin::Health => self.health().await,
            Builtin::Services => self.services(),
            Builtin::Metrics => self.metrics_report(request_id).await,
        }
    }

    async fn health(&self) -> Reply {
        let redis_ok = self.redis.ping::<String>(None).await.is_ok();
        let snapshot = self.cache.snapshot();
        let services: Map<String, Value> = snapshot
            .services
            .iter()
            .map(|(name, entry)| (name.clone(), json!(entry.health())))
            .collect();
        Reply::raw(
            200,
            json!({
                "status": if redis_ok { "healthy" } else { "degraded" },
                "timestamp": unix_seconds(),
                "version": env!("CARGO_PKG_VERSION"),
                "worker": {
                    "id": self.worker_id,
                    "uptime_seconds": self.started.elapsed().as_secs_f64(),
                },
                "services": services,
                "redis": if redis_ok { "healthy" } else { "unhealthy" },
            }),
        )
    }

    fn services(&self) -> Reply {
        let snapshot = self.cache.snapshot();
        let services: Vec<Value> = snapshot
            .services
            .iter()
            .map(|(name, entry)| {
                json!({
                    "name": name,
                    "total_instances": entry.instances.len(),
                    "healthy_instances": entry.healthy.len(),
                    "status": if entry.healthy.is_empty() { "unhealthy" } else { "healthy" },
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
                "timestamp": unix_seconds(),
            }),
        )
    }

    async fn metrics_report(&self, request_id: &str) -> Reply {
        match metrics::read_report(&self.redis).await {
            Ok(mut report) => {
                report["timestamp"] = json!(unix_seconds());
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
