use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::prelude::*;

use super::{Instance, RegistryCache};
use crate::redis::scripts;
use crate::{ErrorKind, GatewayError};

/// Round-robin selection shared by every worker through one Redis counter per
/// service. A worker may lease several counter values per round trip
/// (`lease_size`): every value is still used exactly once cluster-wide, so the
/// spread across instances stays exact while Redis traffic drops.
pub struct Balancer {
    cache: Arc<RegistryCache>,
    redis: Client,
    lease_size: u32,
    leases: Mutex<HashMap<String, VecDeque<Range<u64>>>>,
    /// Used when Redis cannot be reached: selection fails open to a local counter.
    local_counter: AtomicU64,
}

const COUNTER_IDLE_EXPIRY: Duration = Duration::from_secs(3600);

impl Balancer {
    pub fn new(cache: Arc<RegistryCache>, redis: Client, lease_size: u32) -> Self {
        Balancer {
            cache,
            redis,
            lease_size: lease_size.max(1),
            leases: Mutex::new(HashMap::new()),
            local_counter: AtomicU64::new(0),
        }
    }

    /// Whether `service` has a healthy instance in the registry cache.
    pub fn has_healthy_instance(&self, service: &str) -> bool {
        self.cache
            .snapshot()
            .services
            .get(service)
            .is_some_and(|entry| !entry.healthy.is_empty())
    }

    /// Picks the next healthy instance of `service`, skipping `exclude` (an
    /// instance that just refused a connection) when another is available.
    pub async fn pick(
        &self,
        service: &str,
        exclude: Option<&str>,
    ) -> Result<Arc<Instance>, GatewayError> {
        let snapshot = self.cache.snapshot();
        let healthy: Vec<&Arc<Instance>> = snapshot
            .services
            .get(service)
            .map(|entry| {
                entry
                    .healthy
                    .iter()
                    .filter(|instance| Some(instance.instance_id.as_str()) != exclude)
                    .collect()
            })
            .unwrap_or_default();
        match healthy.len() {
            0 => Err(GatewayError::new(
                ErrorKind::NoHealthyInstance,
                format!("no healthy instance of `{service}`"),
            )),
            // One candidate needs no shared counter: skip the round trip.
            1 => Ok(Arc::clone(healthy[0])),
            count => {
                let ticket = self.next_ticket(service).await;
                Ok(Arc::clone(healthy[(ticket % count as u64) as usize]))
            }
        }
    }

    async fn next_ticket(&self, service: &str) -> u64 {
        if let Some(ticket) = self.take_leased(service) {
            return ticket;
        }
        // Boxed: fred's command futures are kilobytes, and every enclosing
        // request future would otherwise carry (and move) that much.
        let leased = Box::pin(scripts::next_index(
            &self.redis,
            service,
            self.lease_size,
            COUNTER_IDLE_EXPIRY,
        ));
        match leased.await {
            Ok(last) => {
                let first = last.saturating_sub(u64::from(self.lease_size));
                if self.lease_size > 1 {
                    self.store_lease(service, first + 1..last);
                }
                first
            }
            Err(error) => {
                tracing::debug!(%error, service, "round-robin counter unavailable, using the local counter");
                self.local_counter.fetch_add(1, Ordering::Relaxed)
            }
        }
    }

    fn take_leased(&self, service: &str) -> Option<u64> {
        let mut leases = self
            .leases
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let ranges = leases.get_mut(service)?;
        let front = ranges.front_mut()?;
        let ticket = front.next();
        if front.is_empty() {
            ranges.pop_front();
        }
        ticket
    }

    fn store_lease(&self, service: &str, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        let mut leases = self
            .leases
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        leases
            .entry(service.to_string())
            .or_default()
            .push_back(range);
    }
}
