//! One request as the phases see it: decoded once (topic, user properties,
//! request id), its credentials verified at most once, its route and
//! service resolved once, its reply address kept whole, and the reply
//! properties the chain adds gathered in one place. The pipeline fills it
//! phase by phase; the reply phase consumes it.

use std::borrow::Cow;
use std::time::Instant;

use metrics::SharedString;
use routemq_router::chunk::{accepted_packet_size, ACCEPT_CHUNKS};

use crate::middleware::Credentials;
use crate::request::is_acceptable_request_id;
use crate::route::ChunkedReplies;
use crate::{Headers, Inbound, ReplyAddress};

pub(super) struct Exchange<'r> {
    pub inbound: &'r Inbound,
    /// The topic, when it is valid UTF-8 within the length limit.
    pub topic: Option<&'r str>,
    pub headers: &'r Headers,
    pub credentials: &'r Credentials<'r>,
    pub request_id: String,
    /// The client chose the request id, so a retry can be recognised.
    pub retry_safe_id: bool,
    pub started: Instant,
    /// Where the answer goes, once accepted (phase 1); `None`: it has none.
    pub address: Option<ReplyAddress>,
    /// The matched route's pattern, a metrics label; `None` before a route matched.
    pub route: Option<SharedString>,
    /// The service a matched forwarding route calls.
    pub service: Option<String>,
    /// Reply properties the chain added (CORS, rate-limit counters).
    pub reply_properties: Vec<(String, String)>,
    /// A reply too large for one packet goes out in chunks of packets of
    /// at most this many bytes (`usize::MAX`: the broker's limit); `None`:
    /// whole or not at all. Phase 2 decides.
    pub chunks: Option<usize>,
}

impl<'r> Exchange<'r> {
    pub(super) fn new(
        inbound: &'r Inbound,
        headers: &'r Headers,
        credentials: &'r Credentials<'r>,
        max_topic_bytes: usize,
        started: Instant,
    ) -> Exchange<'r> {
        let (request_id, retry_safe_id) = request_id(headers);
        let topic = Some(&inbound.topic)
            .filter(|topic| topic.len() <= max_topic_bytes)
            .and_then(|topic| std::str::from_utf8(topic).ok());
        Exchange {
            inbound,
            topic,
            headers,
            credentials,
            request_id,
            retry_safe_id,
            started,
            address: None,
            route: None,
            service: None,
            reply_properties: Vec::new(),
            chunks: None,
        }
    }

    /// Whether (and in what packet size) this request takes a chunked
    /// reply on a route with `setting`: the caller asked (`x-accept-chunks`)
    /// or the route says all its callers do, and its reply goes to an MQTT 5
    /// Response Topic (an MQTT 3.1.1 client reads no user properties, so it
    /// cannot tell chunks apart).
    pub(super) fn takes_chunks(&self, setting: ChunkedReplies) -> Option<usize> {
        let mqtt5 = self
            .address
            .as_ref()
            .is_some_and(|address| !address.from_payload);
        if !mqtt5 {
            return None;
        }
        let asked = self
            .headers
            .get(ACCEPT_CHUNKS)
            .and_then(accepted_packet_size);
        setting.packet_size(asked)
    }

    /// The topic for logs and spans: as decoded, or lossily when it is not
    /// valid UTF-8 (or too long to have been decoded).
    pub(super) fn topic_text(&self) -> Cow<'r, str> {
        match self.topic {
            Some(topic) => Cow::Borrowed(topic),
            None => String::from_utf8_lossy(&self.inbound.topic),
        }
    }
}

/// The client's `x-request-id` when it is acceptable (then a retry can be
/// recognised by it), else a fresh UUID.
pub(super) fn request_id(headers: &Headers) -> (String, bool) {
    match headers
        .get("x-request-id")
        .filter(|id| is_acceptable_request_id(id))
    {
        Some(id) => (id.to_string(), true),
        None => (uuid::Uuid::new_v4().to_string(), false),
    }
}
