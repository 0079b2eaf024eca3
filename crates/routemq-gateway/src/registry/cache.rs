use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use fred::prelude::*;
use tokio_util::sync::CancellationToken;

use super::{list_services, Instance, ServiceHealth};

/// One service as the cache last saw it.
#[derive(Debug, Clone, Default)]
pub struct ServiceEntry {
    /// All live instances, sorted by id.
    pub instances: Vec<Arc<Instance>>,
    /// The healthy ones, in the same order: round robin indexes this list.
    pub healthy: Vec<Arc<Instance>>,
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
/// unreachable the last snapshot stays in use.
#[derive(Debug, Default)]
pub struct RegistryCache {
    current: RwLock<Arc<Snapshot>>,
}

impl RegistryCache {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn replace(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        match self.current.write() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }

    /// Reads the whole registry from Redis and swaps it in.
    pub async fn refresh(&self, client: &Client) -> anyhow::Result<()> {
        let listing = list_services(client).await?;
        let services = listing
            .into_iter()
            .map(|(name, instances)| {
                let instances: Vec<Arc<Instance>> = instances.into_iter().map(Arc::new).collect();
                let healthy = instances
                    .iter()
                    .filter(|i| i.is_healthy())
                    .cloned()
                    .collect();
                (name, ServiceEntry { instances, healthy })
            })
            .collect();
        self.replace(Snapshot { services });
        Ok(())
    }

    /// Refreshes every `interval` until cancelled.
    pub async fn run_refresh(
        self: Arc<Self>,
        client: Client,
        interval: Duration,
        cancel: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match self.refresh(&client).await {
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
