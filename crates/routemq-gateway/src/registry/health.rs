use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use tokio_util::sync::CancellationToken;

use super::{Instance, RegistryCache, Snapshot};
use crate::membership::{Membership, Probers};
use crate::process::ProcessId;
use crate::redis::scripts::{self, HealthRecorded};

#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub interval: Duration,
    pub timeout: Duration,
}

/// Expired instances one reap removes at most; the rest go at the next one.
const REAP_BATCH: u32 = 500;

/// Probes every registered instance once per interval cluster-wide, and
/// removes expired instances, at a Redis cost that does not grow with the
/// number of instances: each instance and each service has one owner among
/// the live probers ([`Probers::owns`]), so no lock is taken per instance;
/// a verdict is written only when it differs from what Redis says, and
/// expired instances are found from the service's expiry index (one script
/// per service per interval). While Redis cannot be reached every worker
/// probes every instance itself and keeps the verdict locally
/// ([`RegistryCache::mark_local`]): a hung instance stops getting traffic
/// even then.
///
/// A prober that dies without leaving the set leaves its instances unprobed
/// until its entry lapses (the membership's entry ttl plus one renewal).
pub async fn run_health_probes(
    redis: Client,
    cache: Arc<RegistryCache>,
    http: reqwest::Client,
    membership: Arc<Membership>,
    settings: ProbeSettings,
    cancel: CancellationToken,
) {
    let mut every = crate::Every::new(settings.interval, cancel);
    while every.tick().await {
        let view = cache.redis_view();
        let redis_up = cache.redis_reachable();
        let probers = membership.probers();
        let me = membership.process();
        if redis_up {
            reap_owned(&redis, &view, &probers, me).await;
        }
        let probes = view
            .services
            .values()
            .flat_map(|entry| entry.instances.iter())
            .filter(|instance| !redis_up || probers.owns(me, &probe_key(instance)))
            .map(|instance| probe_and_record(&redis, &cache, &http, &settings, instance, redis_up));
        futures::future::join_all(probes).await;
    }
}

/// What assigns an instance's probes to a worker.
fn probe_key(instance: &Instance) -> String {
    format!("{}\0{}", instance.service_name, instance.instance_id)
}

/// Removes the expired instances of the services this worker owns.
async fn reap_owned(redis: &Client, view: &Snapshot, probers: &Probers, me: &ProcessId) {
    for service in view
        .services
        .keys()
        .filter(|service| probers.owns(me, service))
    {
        match scripts::reap_instances(redis, service, REAP_BATCH).await {
            Ok(0) => {}
            Ok(changes) => {
                tracing::info!(service, changes, "expired instances removed");
                announce(redis).await;
            }
            Err(error) => tracing::debug!(%error, service, "could not reap expired instances"),
        }
    }
}

/// Tells the workers the registry changed. When this fails they still see
/// the change at their next sweep of service versions.
async fn announce(redis: &Client) {
    if let Err(error) = scripts::bump_registry_version(redis).await {
        tracing::warn!(%error, "could not announce a registry change; workers see it within a sweep");
    }
}

async fn probe_and_record(
    redis: &Client,
    cache: &RegistryCache,
    http: &reqwest::Client,
    settings: &ProbeSettings,
    instance: &Instance,
    redis_up: bool,
) {
    let healthy = probe(http, &instance.health_check_url, settings.timeout).await;
    // Kept locally for two intervals when Redis cannot record it: long
    // enough for the next probe, short enough that Redis's view returns once
    // it is back and other workers probe again.
    let hold = settings.interval * 2 + settings.timeout;
    if !redis_up {
        cache.mark_local(&instance.service_name, &instance.instance_id, healthy, hold);
        return;
    }
    if healthy == instance.is_healthy() {
        // Redis already says so: writing it again would tell every worker
        // to re-read a service that did not change.
        return;
    }
    match scripts::set_health(
        redis,
        &instance.service_name,
        &instance.instance_id,
        healthy,
    )
    .await
    {
        Ok(HealthRecorded::Changed) => {
            tracing::info!(
                service = %instance.service_name,
                instance = %instance.instance_id,
                healthy,
                "instance health changed"
            );
            announce(redis).await;
        }
        // Redis already said so, but this worker read otherwise: others may
        // have too, and the script moved the service's version.
        Ok(HealthRecorded::Unchanged) => announce(redis).await,
        Ok(HealthRecorded::Gone) => {}
        Err(error) => {
            tracing::warn!(%error, instance = %instance.instance_id, "could not record a health probe");
            cache.mark_local(&instance.service_name, &instance.instance_id, healthy, hold);
        }
    }
}

async fn probe(http: &reqwest::Client, url: &str, timeout: Duration) -> bool {
    match http.get(url).timeout(timeout).send().await {
        Ok(response) => response.status().is_success(),
        Err(_) => false,
    }
}
