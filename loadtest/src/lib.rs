//! The RouteMQ load-test harness, as a library: the `routemq-loadtest`
//! binary and the integration tests drive the same code.
//!
//! [`run::run`] sends requests to any MQTT 5 request/response service — in an
//! open loop at a constant arrival rate (latency counted from each request's
//! intended send time, so a stalled server cannot hide its queueing: no
//! coordinated omission) or a closed loop with K outstanding — and returns a
//! [`report::Report`]: every request sent, replied, lost, duplicated or late,
//! errors by status, HDR latency percentiles and a per-second timeline,
//! written as JSON, Markdown and an SVG chart.
#![forbid(unsafe_code)]

pub mod mix;
pub mod report;
pub mod run;
pub mod stub;
mod tally;
