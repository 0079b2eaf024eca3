//! The service registry: instances in Redis (the reference's model, with
//! hash-tagged keys), a worker-local cache refreshed in the background,
//! cluster-coordinated health probes and shared round-robin selection.

mod balancer;
mod cache;
mod health;
mod model;
mod store;

pub use balancer::Balancer;
pub use cache::{RegistryCache, ServiceEntry, Snapshot};
pub use health::{run_health_probes, ProbeSettings};
pub use model::{Instance, InstanceStatus, ServiceHealth};
pub use store::{deregister, heartbeat, instance, list_services, register};
