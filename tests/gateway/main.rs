//! End-to-end tests: real mosquitto, real redis-server, real worker processes,
//! real HTTP upstreams. Nothing is mocked.

mod auth;
mod bad_input;
mod balancing;
mod browser;
mod bursts;
mod chunks;
mod coalescing;
mod deadlines;
mod deploy;
mod edge;
mod eviction;
mod extend;
mod faults;
mod harness;
mod intake;
mod isolation;
mod jwks;
mod lifecycle;
mod measure;
mod mw;
mod observability;
mod poison;
mod redelivery;
mod registry;
mod reload;
mod retries;
mod shared_state;
mod shipped;
mod stack;
mod tls;
