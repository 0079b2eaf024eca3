//! Whether a request's reply address may be used, checked before anything
//! else runs: a refused address means the request is not run and nothing
//! is published; the refusal is counted and logged (at most once a second
//! per worker, so a flood of them cannot flood the log).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use routemq_router::{filter_matches, is_valid_topic_name, topic_levels};

use super::reply_topics::Verdict;
use super::Gateway;
use crate::request::is_acceptable_request_id;
use crate::{ErrorKind, GatewayError, Headers, Inbound, Outbound, Reply, ReplyAddress};

/// Why a reply address was refused; the `reason` label of
/// `routemq_reply_topic_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    TooLong,
    TooDeep,
    Invalid,
    Reserved,
    Served,
    NotAllowed,
    NotBound,
}

impl Refusal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::TooLong => "too_long",
            Refusal::TooDeep => "too_deep",
            Refusal::Invalid => "invalid",
            Refusal::Reserved => "reserved",
            Refusal::Served => "served",
            Refusal::NotAllowed => "not_allowed",
            Refusal::NotBound => "not_bound",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Refusal::TooLong => "longer than limits.max_topic_bytes",
            Refusal::TooDeep => "more levels than limits.max_topic_levels",
            Refusal::Invalid => {
                "empty or contains a wildcard, a control character or a non-character (MQTT forbids them)"
            }
            Refusal::Reserved => "reserved `$` topic",
            Refusal::Served => "falls under a filter the gateway serves",
            Refusal::NotAllowed => "outside the reply-topic allowlist",
            Refusal::NotBound => "not bound to the caller's verified identity",
        }
    }
}

/// How many kinds of [`Refusal`] there are: each is warned about on its own.
pub(crate) const REFUSALS: usize = 7;

/// A warning at most once per second, with the number held back since.
#[derive(Default)]
pub(crate) struct WarnEverySecond {
    last_ms: AtomicU64,
    held_back: AtomicU64,
}

impl WarnEverySecond {
    /// The number of warnings held back since the last one, if one may go now.
    fn may_warn(&self, started: Instant) -> Option<u64> {
        let now = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX) + 1000;
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1000
            || self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.held_back.swap(0, Ordering::Relaxed))
    }
}

impl Gateway {
    /// Checks a reply address: its shape, the allowlist, and — for filters
    /// bound to an identity — the caller's verified credentials.
    pub(crate) fn check_reply_topic(&self, topic: &str, headers: &Headers) -> Result<(), Refusal> {
        if topic.len() > self.limits.max_topic_bytes {
            return Err(Refusal::TooLong);
        }
        if !is_valid_topic_name(topic) {
            return Err(Refusal::Invalid);
        }
        if topic_levels(topic) > self.limits.max_topic_levels {
            return Err(Refusal::TooDeep);
        }
        if topic.starts_with('$') {
            return Err(Refusal::Reserved);
        }
        // A topic the gateway serves would loop the reply back in as a request.
        if self
            .routes
            .filters()
            .iter()
            .any(|f| filter_matches(&f.filter, topic))
        {
            return Err(Refusal::Served);
        }
        match self.reply_topics.precheck(topic) {
            Verdict::Allowed => Ok(()),
            Verdict::Refused => Err(Refusal::NotAllowed),
            Verdict::NeedsIdentity => {
                let identity = self.authenticator.identify(headers);
                if self.reply_topics.allows(topic, identity.as_ref()) {
                    Ok(())
                } else {
                    Err(Refusal::NotBound)
                }
            }
        }
    }

    /// The answer to a request the worker sheds at capacity without running
    /// it: `503 overloaded`, if it names a usable MQTT 5 Response Topic
    /// (a payload `reply_to` is not parsed for a shed request). Counted in
    /// `routemq_requests_shed_total`.
    pub fn shed(&self, inbound: &Inbound) -> Option<Outbound> {
        metrics::counter!("routemq_requests_shed_total").increment(1);
        let topic = inbound.response_topic.clone()?;
        let headers = Headers::from_properties(&inbound.user_properties);
        if let Err(refusal) = self.check_reply_topic(&topic, &headers) {
            let request_id = headers.get("x-request-id").unwrap_or_default();
            self.note_refused_reply(refusal, request_id, &topic);
            return None;
        }
        let request_id = headers
            .get("x-request-id")
            .filter(|id| is_acceptable_request_id(id))
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let error = GatewayError::new(
            ErrorKind::Overloaded,
            "the worker is at capacity; retry later",
        )
        .with_property("retry-after", "1");
        let address = ReplyAddress {
            topic,
            correlation_data: inbound.correlation_data.clone(),
            from_payload: false,
        };
        Some(Outbound::new(
            address,
            Reply::error(&error, &request_id, None),
            &request_id,
        ))
    }

    /// Counts and (rate-limited) logs a refused reply address.
    pub(crate) fn note_refused_reply(&self, refusal: Refusal, request_id: &str, topic: &str) {
        if crate::observe::metrics_enabled() {
            metrics::counter!("routemq_reply_topic_refused_total", "reason" => refusal.as_str())
                .increment(1);
        }
        let warnings = &self.refusal_warnings[refusal as usize];
        if let Some(held_back) = warnings.may_warn(self.shared.started) {
            tracing::warn!(
                request_id,
                reply_topic = ?truncated(topic),
                reason = refusal.describe(),
                held_back,
                "request refused: unusable reply topic; nothing published"
            );
        }
    }
}

/// At most 128 bytes of a client string for a log line (escaped by `?`).
pub(crate) fn truncated(text: &str) -> &str {
    let mut end = text.len().min(128);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
