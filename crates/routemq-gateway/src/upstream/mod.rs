//! Forwarding a request to an upstream instance over HTTP.

mod body;
mod bulkhead;
mod call;
mod coalesce;
mod concurrency;
mod fair_queue;
mod forward;
mod headers;
mod http_error;
mod path;
mod prepared;

pub use body::{BodyLimits, LargeReplies, LargeReply};
pub use bulkhead::{Bulkheads, ServiceLimits, BULKHEAD_REFUSALS};
pub use call::Forwarder;
pub use coalesce::{CallKey, Coalescer, Role};
pub use fair_queue::Caller;
pub use forward::{forward, UpstreamRequest, UpstreamResponse};
pub use headers::{HeaderPolicy, NEVER_FORWARDED};
pub use path::{PathTemplate, PathTemplateError};
pub use prepared::PreparedCall;

#[cfg(test)]
mod tests;
