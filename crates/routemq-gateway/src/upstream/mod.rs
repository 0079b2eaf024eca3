//! Forwarding a request to an upstream instance over HTTP.

mod bulkhead;
mod call;
mod concurrency;
mod fair_queue;
mod forward;
mod headers;
mod path;
mod prepared;

pub use bulkhead::{Bulkheads, ServiceLimits, BULKHEAD_REFUSALS};
pub use call::Forwarder;
pub use fair_queue::Caller;
pub use forward::{forward, UpstreamRequest, UpstreamResponse};
pub use headers::{HeaderPolicy, NEVER_FORWARDED};
pub use path::{PathTemplate, PathTemplateError};
pub use prepared::PreparedCall;

#[cfg(test)]
mod tests;
