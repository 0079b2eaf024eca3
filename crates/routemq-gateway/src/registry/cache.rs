use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;
use tokio_util::sync::CancellationToken;

use super::{list_services, Instance, InstanceStatus, ServiceHealth};

/// One service as the cache last saw it.
#[derive(Debug, Clone, Default)]
pub struct ServiceEntry {
    /// All live instances, sorted by id.
    pub instances: Vec<Arc<Instance>>,
    /// The healthy ones, in the same order: round robin indexes this list.
    pub healthy: Vec<Arc<Instance>>,
}

fn healthy_of(instances: &[Arc<Instance>]) -> Vec<Arc<Instance>> {
    instances
        .iter()
        .filter(|instance| instance.is_healthy())
        .cloned()
        .collect()
}

impl ServiceEntry {
    pub fn health(&self) -> ServiceHealth {
        ServiceHealth::of(self.healthy.len(), self.instances.len())
    }
}

/// The registry at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub services: BTreeMap<String, ServiceEntry>,
}

/// A worker-local copy of the registry, swapped whole by a background
/// refresh so a request reads it without touching Redis. When Redis is
/// unreachable the last snapshot stays in use, with the health verdicts this
/// worker's own probes made meanwhile laid over it ([`RegistryCache::mark_local`]).
#[derive(Debug, Default)]
pub struct RegistryCache {
    current: RwLock<Arc<Snapshot>>,
    /// Verdicts of probes that could not be recorded in Redis, by (service,
    /// instance id): healthy or not, and until when they override Redis.
    local: Mutex<HashMap<(String, String), (bool, Instant)>>,
}

impl RegistryCache {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read())
    }

    pub fn replace(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        *self.current.write() = snapshot;
    }

    /// Marks an instance healthy or not in this worker only, for `hold`: a
    /// probe verdict that could not be written to Redis. It also overrides
    /// what Redis says until then, since Redis still holds the verdicts from
    /// before it became unreachable.
    pub fn mark_local(&self, service: &str, instance_id: &str, healthy: bool, hold: Duration) {
        let key = (service.to_string(), instance_id.to_string());
        self.verdicts()
            .insert(key, (healthy, Instant::now() + hold));
        let snapshot = self.snapshot();
        self.replace(self.overlaid(&snapshot));
    }

    fn verdicts(&self) -> parking_lot::MutexGuard<'_, HashMap<(String, String), (bool, Instant)>> {
        self.local.lock()
    }

    /// `snapshot` with the live local verdicts applied (expired ones dropped).
    fn overlaid(&self, snapshot: &Snapshot) -> Snapshot {
        let mut verdicts = self.verdicts();
        let now = Instant::now();
        verdicts.retain(|_, (_, until)| *until > now);
        let mut services = snapshot.services.clone();
        for ((service, instance_id), (healthy, _)) in verdicts.iter() {
            let Some(entry) = services.get_mut(service) else {
                continue;
            };
            let Some(found) = entry
                .instances
                .iter_mut()
                .find(|instance| &instance.instance_id == instance_id)
            else {
                continue;
            };
            let status = if *healthy {
                InstanceStatus::Healthy
            } else {
                InstanceStatus::Unhealthy
            };
            if found.status != status {
                let mut changed = Instance::clone(found);
                changed.status = status;
                *found = Arc::new(changed);
            }
            entry.healthy = healthy_of(&entry.instances);
        }
        Snapshot { services }
    }

    /// Reads the whole registry from Redis and swaps it in.
    pub async fn refresh(&self, client: &Client) -> anyhow::Result<()> {
        let listing = list_services(client).await?;
        let services = listing
            .into_iter()
            .map(|(name, instances)| {
                let instances: Vec<Arc<Instance>> = instances.into_iter().map(Arc::new).collect();
                let healthy = healthy_of(&instances);
                (name, ServiceEntry { instances, healthy })
            })
            .collect();
        let snapshot = Snapshot { services };
        let snapshot = if self.verdicts().is_empty() {
            snapshot
        } else {
            self.overlaid(&snapshot)
        };
        self.replace(snapshot);
        Ok(())
    }

    /// Refreshes every `interval` until cancelled.
    pub async fn run_refresh(
        self: Arc<Self>,
        client: Client,
        interval: Duration,
        cancel: CancellationToken,
    ) {
        let mut every = crate::Every::new(interval, cancel);
        let mut failing = false;
        while every.tick().await {
            let refreshed = self.refresh(&client).await;
            if refreshed.is_ok() {
                // What tests (and an operator at debug level) wait on to know
                // a worker has seen the registry as it is now.
                tracing::debug!("registry refreshed");
            }
            match refreshed {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("registry refresh recovered");
                }
                Ok(()) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "registry refresh failed, serving the last snapshot");
                }
                Err(_) => {}
            }
        }
    }
}
