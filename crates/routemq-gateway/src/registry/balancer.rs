use parking_lot::Mutex;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;

use super::{Instance, RegistryCache};
use crate::redis::scripts;
use crate::{ErrorKind, GatewayError};

/// Round-robin selection shared by every worker through one Redis counter per
/// service. A worker may lease several counter values per round trip
/// (`lease_size`): every value is still used exactly once cluster-wide, in
/// counter order within each lease, so the spread across instances stays
/// within one lease per worker of exact while Redis traffic drops.
pub struct Balancer {
    cache: Arc<RegistryCache>,
    redis: Client,
    lease_size: u32,
    leases: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Lease>>>>,
    /// Used when Redis cannot be reached: selection fails open to a local counter.
    local_counter: AtomicU64,
}

const COUNTER_IDLE_EXPIRY: Duration = Duration::from_secs(3600);
/// How long a worker balances locally after the shared counter failed.
const RETRY_LEASE_AFTER: Duration = Duration::from_secs(1);

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
        if self.lease_size == 1 {
            // Every request takes its own value: Redis hands them out in order.
            return match self.lease(service).await {
                Ok(last) => last,
                Err(()) => self.local_counter.fetch_add(1, Ordering::Relaxed),
            };
        }
        // One refill in flight per service: the others wait for it and take
        // the values it brings, in counter order, instead of each fetching a
        // lease of its own (a thundering herd that skips most values).
        let slot = self.slot(service);
        let mut lease = slot.lock().await;
        if let Some(ticket) = lease.take() {
            return ticket;
        }
        if lease
            .failing_until
            .is_some_and(|until| Instant::now() < until)
        {
            return self.local_counter.fetch_add(1, Ordering::Relaxed);
        }
        match self.lease(service).await {
            Ok(last) => {
                let size = u64::from(self.lease_size);
                lease.values = last.saturating_sub(size) + 1..last + 1;
                lease.failing_until = None;
                lease.take().unwrap_or(last)
            }
            Err(()) => {
                // Waiters fall back at once rather than each waiting out a
                // Redis timeout in turn.
                lease.failing_until = Some(Instant::now() + RETRY_LEASE_AFTER);
                self.local_counter.fetch_add(1, Ordering::Relaxed)
            }
        }
    }

    /// Leases the next `lease_size` counter values; the last one leased.
    async fn lease(&self, service: &str) -> Result<u64, ()> {
        // Boxed: fred's command futures are kilobytes, and every enclosing
        // request future would otherwise carry (and move) that much.
        let leased = Box::pin(scripts::next_index(
            &self.redis,
            service,
            self.lease_size,
            COUNTER_IDLE_EXPIRY,
        ));
        leased.await.map_err(|error| {
            tracing::debug!(%error, service, "round-robin counter unavailable, using the local counter");
        })
    }

    fn slot(&self, service: &str) -> Arc<tokio::sync::Mutex<Lease>> {
        let mut leases = self.leases.lock();
        if let Some(slot) = leases.get(service) {
            return Arc::clone(slot);
        }
        let slot = Arc::new(tokio::sync::Mutex::new(Lease::default()));
        leases.insert(service.to_string(), Arc::clone(&slot));
        slot
    }
}

/// The counter values a worker leased for one service and has not used yet.
#[derive(Default)]
struct Lease {
    values: Range<u64>,
    /// After a failed refill, selection uses the local counter until then.
    failing_until: Option<Instant>,
}

impl Lease {
    fn take(&mut self) -> Option<u64> {
        self.values.next()
    }
}
