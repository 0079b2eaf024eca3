use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use fred::types::{Expiration, SetOptions};
use tokio_util::sync::CancellationToken;

use super::{Instance, RegistryCache};
use crate::redis::{keys, scripts};

#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub interval: Duration,
    pub timeout: Duration,
    /// Written into the probe lock so an operator can see who probed.
    pub worker_id: String,
}

/// Probes every registered instance once per interval cluster-wide: before
/// probing, a worker takes the instance's probe lock (SET NX with the interval
/// as expiry), so N workers make one probe per instance, not N. While Redis
/// cannot be reached every worker probes every instance itself and keeps the
/// verdict locally ([`RegistryCache::mark_local`]): a hung instance stops
/// getting traffic even then.
pub async fn run_health_probes(
    redis: Client,
    cache: Arc<RegistryCache>,
    http: reqwest::Client,
    settings: ProbeSettings,
    cancel: CancellationToken,
) {
    let mut every = crate::Every::new(settings.interval, cancel);
    while every.tick().await {
        let snapshot = cache.snapshot();
        let probes = snapshot
            .services
            .values()
            .flat_map(|entry| entry.instances.iter())
            .map(|instance| probe_if_due(&redis, &cache, &http, &settings, instance));
        futures::future::join_all(probes).await;
    }
}

async fn probe_if_due(
    redis: &Client,
    cache: &RegistryCache,
    http: &reqwest::Client,
    settings: &ProbeSettings,
    instance: &Instance,
) {
    let lock = keys::probe_lock(&instance.service_name, &instance.instance_id);
    let lock_ms = i64::try_from(settings.interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let won: Result<Option<String>, _> = redis
        .set(
            lock,
            settings.worker_id.as_str(),
            Some(Expiration::PX(lock_ms)),
            Some(SetOptions::NX),
            false,
        )
        .await;
    let redis_up = match won {
        Ok(Some(_)) => true,
        // Another worker probes this instance in this interval.
        Ok(None) => return,
        Err(_) => false,
    };
    let healthy = probe(http, &instance.health_check_url, settings.timeout).await;
    if healthy != instance.is_healthy() {
        tracing::info!(
            service = %instance.service_name,
            instance = %instance.instance_id,
            healthy,
            "instance health changed"
        );
    }
    // Kept locally for two intervals when Redis cannot record it: long
    // enough for the next probe, short enough that Redis's view returns once
    // it is back and other workers probe again.
    let hold = settings.interval * 2 + settings.timeout;
    if !redis_up {
        cache.mark_local(&instance.service_name, &instance.instance_id, healthy, hold);
        return;
    }
    if let Err(error) = scripts::set_health(
        redis,
        &instance.service_name,
        &instance.instance_id,
        healthy,
    )
    .await
    {
        tracing::warn!(%error, instance = %instance.instance_id, "could not record a health probe");
        cache.mark_local(&instance.service_name, &instance.instance_id, healthy, hold);
    }
}

async fn probe(http: &reqwest::Client, url: &str, timeout: Duration) -> bool {
    match http.get(url).timeout(timeout).send().await {
        Ok(response) => response.status().is_success(),
        Err(_) => false,
    }
}
