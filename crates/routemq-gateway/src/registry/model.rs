use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceStatus {
    Healthy,
    Unhealthy,
}

/// One registered instance of a service, as stored in its Redis hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub instance_id: String,
    pub service_name: String,
    pub url: String,
    /// `url`, parsed once when the instance is read from Redis.
    #[serde(skip)]
    pub base_url: reqwest::Url,
    pub health_check_url: String,
    pub status: InstanceStatus,
    pub registered_at_ms: i64,
    pub last_heartbeat_ms: i64,
    #[serde(skip)]
    pub ttl: Option<Duration>,
}

impl Instance {
    /// Reads a hash as HGETALL returns it; `None` when it has expired, is
    /// incomplete, or its url is not an http(s) URL.
    pub(crate) fn from_hash(fields: &HashMap<String, String>) -> Option<Instance> {
        let number = |name: &str| {
            fields
                .get(name)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        let ttl_ms = number("ttl_ms");
        let url = fields.get("url")?;
        let base_url = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))?;
        Some(Instance {
            instance_id: fields.get("instance_id")?.clone(),
            service_name: fields.get("service_name")?.clone(),
            url: url.clone(),
            base_url,
            health_check_url: fields.get("health_check_url").cloned().unwrap_or_default(),
            status: match fields.get("status").map(String::as_str) {
                Some("healthy") => InstanceStatus::Healthy,
                _ => InstanceStatus::Unhealthy,
            },
            registered_at_ms: number("registered_at_ms"),
            last_heartbeat_ms: number("last_heartbeat_ms"),
            ttl: (ttl_ms > 0).then(|| Duration::from_millis(ttl_ms.unsigned_abs())),
        })
    }

    pub fn is_healthy(&self) -> bool {
        self.status == InstanceStatus::Healthy
    }
}

/// A service's health as the reference reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceHealth {
    /// Every instance is healthy.
    Healthy,
    /// Some, not all, instances are healthy.
    Degraded,
    /// No instance is healthy (or none is registered).
    Unhealthy,
}

impl ServiceHealth {
    pub fn of(healthy: usize, total: usize) -> ServiceHealth {
        match (healthy, total) {
            (0, _) => ServiceHealth::Unhealthy,
            (h, t) if h < t => ServiceHealth::Degraded,
            _ => ServiceHealth::Healthy,
        }
    }
}
