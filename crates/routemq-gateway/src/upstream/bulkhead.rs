//! Bulkheads: a cap on the calls in flight to each upstream service, so one
//! hanging service holds at most its own share of a worker's capacity
//! (Envoy's per-cluster `max_requests`). Beyond the cap a request is refused
//! at once with `503 service_overloaded` instead of waiting for a slot.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{ErrorKind, GatewayError};

/// How many calls each service may have in flight on one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLimits {
    /// For every service not listed in `per_service`.
    pub default_max_in_flight: usize,
    pub per_service: HashMap<String, usize>,
}

impl ServiceLimits {
    /// No bulkheads: every service may use the whole worker.
    pub fn unlimited() -> ServiceLimits {
        ServiceLimits {
            default_max_in_flight: Semaphore::MAX_PERMITS,
            per_service: HashMap::new(),
        }
    }

    fn limit(&self, service: &str) -> usize {
        self.per_service
            .get(service)
            .copied()
            .unwrap_or(self.default_max_in_flight)
            .clamp(1, Semaphore::MAX_PERMITS)
    }
}

/// The per-service slots of one worker, made on a service's first call.
pub struct Bulkheads {
    limits: ServiceLimits,
    slots: RwLock<HashMap<String, Arc<Semaphore>>>,
}

impl Bulkheads {
    pub fn new(limits: ServiceLimits) -> Bulkheads {
        Bulkheads {
            limits,
            slots: RwLock::default(),
        }
    }

    /// Takes one of `service`'s slots, held until the permit is dropped.
    pub fn enter(&self, service: &str) -> Result<OwnedSemaphorePermit, GatewayError> {
        let slots = self.slots(service);
        slots.try_acquire_owned().map_err(|_| {
            if crate::observe::metrics_enabled() {
                metrics::counter!("routemq_service_overloaded_total", "service" => service.to_string())
                    .increment(1);
            }
            GatewayError::new(
                ErrorKind::ServiceOverloaded,
                format!(
                    "`{service}` already has {} calls in flight on this worker",
                    self.limits.limit(service)
                ),
            )
            .with_property("retry-after", "1")
        })
    }

    fn slots(&self, service: &str) -> Arc<Semaphore> {
        let known = self.slots.read().get(service).cloned();
        if let Some(slots) = known {
            return slots;
        }
        let mut slots = self.slots.write();
        Arc::clone(
            slots
                .entry(service.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.limits.limit(service)))),
        )
    }
}
