//! Worker configuration: one TOML file parsed into a raw form (`raw.rs`),
//! then validated into typed values (`validate.rs`). Every error names the
//! file and line, and a broken file never half-starts a worker.

mod admin;
mod bounds;
mod guards;
mod middleware;
mod raw;
mod routes;
mod sections;
mod security;
mod validate;

pub use admin::redis_of;
pub use middleware::Secret;
pub use validate::{load, parse, version_of, ConfigError, Loader, MqttSettings, WorkerConfig};

#[cfg(test)]
mod tests;
