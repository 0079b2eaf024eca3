//! The upstream call as a request makes it, before an instance is chosen.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName};
use reqwest::Method;

use super::Caller;

/// An upstream call with everything but the instance decided: built once per
/// request, then sent to the service (and, if that fails, to its fallback).
#[derive(Debug, Clone)]
pub struct PreparedCall {
    pub method: Method,
    /// Rendered and percent-encoded.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<Bytes>,
    pub headers: HeaderMap,
    pub timeout: Duration,
    /// `timeout` is the caller's remaining deadline, shorter than the
    /// route's: running out of it is the caller's doing, not the upstream's.
    pub deadline_bound: bool,
    /// The header that tells the upstream how long it has
    /// (`x-request-timeout-ms` unless configured otherwise; `None`: not sent).
    pub deadline_header: Option<HeaderName>,
    /// The caller takes a chunked reply, so the body may exceed
    /// `max_response_bytes` (up to `max_chunked_reply_bytes`).
    pub accepts_chunks: bool,
    /// Who is calling (a hash of the verified identity or the anonymous
    /// key), for turns at a busy service's bulkhead.
    pub caller: Caller,
}
