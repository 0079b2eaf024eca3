//! The gateway's Redis layer: connection policy, key names and one typed
//! wrapper per Lua script in `scripts/`.

mod breaker_scripts;
mod cache_scripts;
pub mod clock;
mod connect;
pub mod eviction;
pub mod keys;
mod limit_scripts;
pub mod records;
mod registry_scripts;
mod replay_scripts;
pub mod scripts;

pub use connect::{connect, RedisSettings};
