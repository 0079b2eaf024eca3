//! The RouteMQ Gateway request pipeline.
//!
//! The MQTT runtime hands each incoming PUBLISH to [`Gateway::handle`] as an
//! [`Inbound`] and publishes the [`Outbound`] reply it gets back. Everything in
//! between — validation, routing, service discovery, load balancing, upstream
//! forwarding and metrics — lives here, with its Redis scripts in `scripts/`.
#![forbid(unsafe_code)]

mod clock;
mod digest;
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
pub mod route;
pub mod tls;
pub mod upstream;

pub use clock::unix_time;
pub use error::{ErrorKind, GatewayError, Retry, Side};
pub use every::Every;
pub use gateway::{
    encode_level, BackgroundTasks, Gateway, GatewayBuilder, GatewayConfig, RegistrySettings,
    ReloadRefused, ReplyTopics,
};
pub use reply::{Outbound, Reply};
pub use request::{Headers, Inbound, ReplyAddress};
pub use route::{
    Builtin, ChunkedReplies, Coalesce, ForwardRoute, Limits, RouteTarget, DEFAULT_DEADLINE_HEADER,
};
