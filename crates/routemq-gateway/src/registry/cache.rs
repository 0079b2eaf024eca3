use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;
use futures::future::try_join_all;
use tokio_util::sync::CancellationToken;

use super::store::list_instances;
use super::{Instance, InstanceStatus, ServiceHealth};
use crate::redis::{keys, scripts};

/// How often a worker compares every service's version even though the
/// cluster-wide token did not move: it catches a change whose writer died
/// between its script and the token, at the cost of one command per
/// service per sweep.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// One service as the cache last saw it.
#[derive(Debug, Clone, Default)]
pub struct ServiceEntry {
    /// All live instances, sorted by id.
    pub instances: Vec<Arc<Instance>>,
    /// The healthy ones, in the same order: round robin indexes this list.
    pub healthy: Vec<Arc<Instance>>,
}

impl ServiceEntry {
    fn new(instances: Vec<Arc<Instance>>) -> ServiceEntry {
        let healthy = instances
            .iter()
            .filter(|instance| instance.is_healthy())
            .cloned()
            .collect();
        ServiceEntry { instances, healthy }
    }

    pub fn health(&self) -> ServiceHealth {
        ServiceHealth::of(self.healthy.len(), self.instances.len())
    }
}

/// The registry at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub services: BTreeMap<String, ServiceEntry>,
}

/// The version tokens the cache's contents were read at.
#[derive(Debug, Default)]
struct Seen {
    /// The cluster-wide token; `None` before the first read.
    registry: Option<Option<String>>,
    services: HashMap<String, Option<String>>,
    swept: Option<Instant>,
}

/// A worker-local copy of the registry, swapped whole so a request reads it
/// without touching Redis. A background task polls the cluster-wide version
/// token (one command per refresh interval, however large the registry) and
/// re-reads only the services whose own version moved. When Redis is
/// unreachable the last snapshot stays in use, with the health verdicts this
/// worker's own probes made meanwhile laid over it ([`RegistryCache::mark_local`]).
#[derive(Debug, Default)]
pub struct RegistryCache {
    /// The registry as Redis last said.
    base: RwLock<Arc<Snapshot>>,
    /// `base` with the local verdicts laid over: what requests read.
    current: RwLock<Arc<Snapshot>>,
    /// Verdicts of probes that could not be recorded in Redis, by (service,
    /// instance id): healthy or not, and until when they override Redis.
    local: Mutex<HashMap<(String, String), (bool, Instant)>>,
    seen: tokio::sync::Mutex<Seen>,
    /// Whether the last refresh reached Redis.
    reachable: AtomicBool,
}

impl RegistryCache {
    /// The registry as requests see it.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read())
    }

    /// The registry as Redis last said, without local verdicts: what probes
    /// compare their verdicts with, to write only changes.
    pub fn redis_view(&self) -> Arc<Snapshot> {
        Arc::clone(&self.base.read())
    }

    /// Whether the last refresh reached Redis.
    pub fn redis_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// Replaces the registry (tests and tools; workers read it from Redis).
    pub fn replace(&self, snapshot: Snapshot) {
        *self.base.write() = Arc::new(snapshot);
        self.lay_over();
    }

    /// Marks an instance healthy or not in this worker only, for `hold`: a
    /// probe verdict that could not be written to Redis. It also overrides
    /// what Redis says until then, since Redis still holds the verdicts from
    /// before it became unreachable.
    pub fn mark_local(&self, service: &str, instance_id: &str, healthy: bool, hold: Duration) {
        let key = (service.to_string(), instance_id.to_string());
        self.local
            .lock()
            .insert(key, (healthy, Instant::now() + hold));
        self.lay_over();
    }

    /// Recomputes what requests see: the Redis view with the live local
    /// verdicts applied (expired ones dropped).
    fn lay_over(&self) {
        let base = self.redis_view();
        let mut verdicts = self.local.lock();
        let now = Instant::now();
        verdicts.retain(|_, (_, until)| *until > now);
        if verdicts.is_empty() {
            *self.current.write() = base;
            return;
        }
        let mut services = base.services.clone();
        for ((service, instance_id), (healthy, _)) in verdicts.iter() {
            let Some(entry) = services.get_mut(service) else {
                continue;
            };
            let status = if *healthy {
                InstanceStatus::Healthy
            } else {
                InstanceStatus::Unhealthy
            };
            let mut instances = entry.instances.clone();
            for found in instances.iter_mut().filter(|instance| {
                &instance.instance_id == instance_id && instance.status != status
            }) {
                let mut changed = Instance::clone(found);
                changed.status = status;
                *found = Arc::new(changed);
            }
            *entry = ServiceEntry::new(instances);
        }
        *self.current.write() = Arc::new(Snapshot { services });
    }

    /// Reads the whole registry from Redis and swaps it in.
    pub async fn refresh(&self, client: &Client) -> anyhow::Result<()> {
        self.follow(client, true).await.map(|_| ())
    }

    /// [`Self::read_changes`], noting whether Redis answered.
    async fn follow(&self, client: &Client, full: bool) -> anyhow::Result<bool> {
        let followed = self.read_changes(client, full).await;
        self.reachable.store(followed.is_ok(), Ordering::Relaxed);
        followed
    }

    /// Brings the cache up to date, re-reading only the services whose
    /// version moved (every service when `full`); true when it re-read any.
    async fn read_changes(&self, client: &Client, full: bool) -> anyhow::Result<bool> {
        let mut seen = self.seen.lock().await;
        // Read before anything it covers, so a change made meanwhile moves
        // it again and is read at the next poll.
        let registry = scripts::registry_version(client).await?;
        let sweep_due = seen.swept.is_none_or(|at| at.elapsed() >= SWEEP_EVERY);
        if !full && !sweep_due && seen.registry.as_ref() == Some(&registry) {
            self.lay_over();
            return Ok(false);
        }
        let names: Vec<String> = client.smembers(keys::SERVICES).await?;
        let versions = try_join_all(
            names
                .iter()
                .map(|name| scripts::service_version(client, name)),
        )
        .await?;
        let base = self.redis_view();
        let mut services = BTreeMap::new();
        let mut stale = Vec::new();
        for (name, version) in names.into_iter().zip(versions) {
            match base.services.get(&name) {
                Some(entry) if !full && seen.services.get(&name) == Some(&version) => {
                    services.insert(name, entry.clone());
                }
                _ => stale.push((name, version)),
            }
        }
        let listings =
            try_join_all(stale.iter().map(|(name, _)| list_instances(client, name))).await?;
        let reread = !stale.is_empty();
        for ((name, version), instances) in stale.into_iter().zip(listings) {
            let instances = instances.into_iter().map(Arc::new).collect();
            services.insert(name.clone(), ServiceEntry::new(instances));
            seen.services.insert(name, version);
        }
        seen.services.retain(|name, _| services.contains_key(name));
        seen.registry = Some(registry);
        seen.swept = Some(Instant::now());
        self.replace(Snapshot { services });
        Ok(reread)
    }

    /// Follows the registry every `interval` until cancelled.
    pub async fn run_refresh(
        self: Arc<Self>,
        client: Client,
        interval: Duration,
        cancel: CancellationToken,
    ) {
        let mut every = crate::Every::new(interval, cancel);
        let mut failing = false;
        while every.tick().await {
            match self.follow(&client, false).await {
                Ok(reread) => {
                    // What tests wait on to know a worker has seen the
                    // registry as it is now.
                    metrics::counter!("routemq_registry_refreshes_total", "outcome" => "ok")
                        .increment(1);
                    tracing::debug!(reread, "registry refreshed");
                    if failing {
                        failing = false;
                        tracing::info!("registry refresh recovered");
                    }
                }
                Err(error) if !failing => {
                    metrics::counter!("routemq_registry_refreshes_total", "outcome" => "failed")
                        .increment(1);
                    failing = true;
                    tracing::warn!(%error, "registry refresh failed, serving the last snapshot");
                }
                Err(_) => {
                    metrics::counter!("routemq_registry_refreshes_total", "outcome" => "failed")
                        .increment(1);
                }
            }
        }
    }
}
