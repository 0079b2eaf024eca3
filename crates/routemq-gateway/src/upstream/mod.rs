//! Forwarding a request to an upstream instance over HTTP.

mod bulkhead;
mod call;
mod forward;
mod headers;
mod path;

pub use bulkhead::{Bulkheads, ServiceLimits};
pub use call::{Forwarder, PreparedCall};
pub use forward::{forward, UpstreamRequest, UpstreamResponse};
pub use headers::{HeaderPolicy, NEVER_FORWARDED};
pub use path::{PathTemplate, PathTemplateError};

#[cfg(test)]
mod tests;
