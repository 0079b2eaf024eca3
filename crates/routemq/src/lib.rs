//! The `routemq` binary's library: configuration, the MQTT runtime, the CLI
//! and the demo services. `main.rs` only calls [`cli::main`].
#![forbid(unsafe_code)]

pub mod asyncapi;
pub mod cli;
pub mod config;
pub mod demo;
pub mod runtime;
mod telemetry;
