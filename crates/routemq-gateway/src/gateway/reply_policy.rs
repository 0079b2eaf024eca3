//! Whether a request's reply address may be used (the reply-address
//! policy), checked before anything
//! else runs: a refused address means the request is not run and nothing
//! is published; the refusal is counted and logged (at most once a second
//! per worker, so a flood of them cannot flood the log).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use routemq_router::{filter_matches, is_valid_topic_name, topic_levels, SubscriptionFilter};

use super::reply_topics::{ReplyTopics, Verdict};
use crate::middleware::Credentials;
use crate::route::Limits;
use crate::ReplyAddress;

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

/// Where replies may go: the address's shape, the gateway's own filters,
/// the allowlist and, for `{sub}` filters, the caller's verified identity.
/// Owns its refusal counting and rate-limited warnings.
pub(super) struct ReplyPolicy {
    max_topic_bytes: usize,
    max_topic_levels: usize,
    /// The filters the gateway serves: a reply there would come back in as a request.
    served: Vec<SubscriptionFilter>,
    reply_topics: ReplyTopics,
    warnings: [WarnEverySecond; REFUSALS],
    /// When the worker started: the warnings' clock.
    started: Instant,
}

impl ReplyPolicy {
    pub(super) fn new(
        limits: &Limits,
        served: &[SubscriptionFilter],
        reply_topics: ReplyTopics,
        started: Instant,
    ) -> ReplyPolicy {
        ReplyPolicy {
            max_topic_bytes: limits.max_topic_bytes,
            max_topic_levels: limits.max_topic_levels,
            served: served.to_vec(),
            reply_topics,
            warnings: Default::default(),
            started,
        }
    }

    /// Whether replies may go to `address`; a refusal is counted and logged.
    pub(super) fn accept(
        &self,
        address: &ReplyAddress,
        request_id: &str,
        credentials: &Credentials<'_>,
    ) -> bool {
        match self.check(&address.topic, credentials) {
            Ok(()) => true,
            Err(refusal) => {
                self.note_refused(refusal, request_id, &address.topic);
                false
            }
        }
    }

    /// Checks a reply topic: its shape, the allowlist, and — for filters
    /// bound to an identity — the caller's verified credentials.
    pub(super) fn check(&self, topic: &str, credentials: &Credentials<'_>) -> Result<(), Refusal> {
        if topic.len() > self.max_topic_bytes {
            return Err(Refusal::TooLong);
        }
        if !is_valid_topic_name(topic) {
            return Err(Refusal::Invalid);
        }
        if topic_levels(topic) > self.max_topic_levels {
            return Err(Refusal::TooDeep);
        }
        if topic.starts_with('$') {
            return Err(Refusal::Reserved);
        }
        if self.served.iter().any(|f| filter_matches(&f.filter, topic)) {
            return Err(Refusal::Served);
        }
        match self.reply_topics.precheck(topic) {
            Verdict::Allowed => Ok(()),
            Verdict::Refused => Err(Refusal::NotAllowed),
            Verdict::NeedsIdentity if self.reply_topics.allows(topic, credentials.identity()) => {
                Ok(())
            }
            Verdict::NeedsIdentity => Err(Refusal::NotBound),
        }
    }

    /// Counts and (rate-limited) logs a refused reply address.
    fn note_refused(&self, refusal: Refusal, request_id: &str, topic: &str) {
        if crate::observe::metrics_enabled() {
            metrics::counter!("routemq_reply_topic_refused_total", "reason" => refusal.as_str())
                .increment(1);
        }
        if let Some(held_back) = self.warnings[refusal as usize].may_warn(self.started) {
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
