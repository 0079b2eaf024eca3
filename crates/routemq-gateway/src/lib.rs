//! The RouteMQ Gateway request pipeline.
//!
//! The MQTT runtime hands each incoming PUBLISH to [`Gateway::handle`] as an
//! [`Inbound`] and publishes the [`Outbound`] reply it gets back. Everything in
//! between — validation, routing, service discovery, load balancing, upstream
//! forwarding and metrics — lives here, with its Redis scripts in `scripts/`.
#![forbid(unsafe_code)]

mod admin;
mod error;
mod every;
mod gateway;
pub mod membership;
pub mod metrics;
pub mod middleware;
pub mod observe;
pub mod process;
pub mod redis;
pub mod registry;
mod replay;
mod reply;
mod request;
pub mod request_log;
pub mod tls;
pub mod upstream;

pub use error::{ErrorKind, GatewayError, Retry, Side};
pub use every::Every;
pub use gateway::{
    encode_level, BackgroundTasks, Builtin, ForwardRoute, Gateway, GatewayBuilder, GatewayConfig,
    Limits, RegistrySettings, ReloadRefused, ReplyTopics, RouteTarget,
};
pub use reply::{Outbound, Reply};
pub use request::{Headers, Inbound, ReplyAddress};

/// Time since the Unix epoch by the wall clock, for timestamps people and
/// other systems read (log entries, key records, token claims); zero if the
/// clock is set before 1970. Durations and deadlines use `Instant` instead.
pub fn unix_time() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Lower-case hex of a digest, for Redis keys and fingerprints.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}
