//! Forwarding a request to an upstream instance over HTTP.

mod bulkhead;
mod call;
mod concurrency;
mod fair_queue;
mod forward;
mod headers;
mod path;

pub use bulkhead::{Bulkheads, ServiceLimits, BULKHEAD_REFUSALS};
pub use call::{Forwarder, PreparedCall};
pub use fair_queue::Caller;
pub use forward::{forward, UpstreamRequest, UpstreamResponse};
pub use headers::{HeaderPolicy, NEVER_FORWARDED};
pub use path::{PathTemplate, PathTemplateError};

#[cfg(test)]
mod tests;
