//! End-to-end tests: real mosquitto, real redis-server, real worker processes,
//! real HTTP upstreams. Nothing is mocked.

mod bad_input;
mod balancing;
mod lifecycle;
mod retries;
mod stack;
