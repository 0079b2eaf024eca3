//! Safe retries. Brokers redeliver and clients retry on timeout with the same
//! `x-request-id`, so a non-idempotent request (POST, PATCH) may arrive twice.
//! The first arrival claims its id (for its caller, on its topic) in Redis;
//! request ids are not secrets, so the claim is scoped to the verified caller:
//! the same id from another caller is another request, and nobody can read or
//! poison another caller's replies. Anonymous callers, whose reply address
//! anyone can choose, get no replay unless their route opts in. A retry gets the
//! first one's stored reply (marked `x-replayed`), or `409
//! request_in_progress` while the first is still running, and the same id
//! with a different payload gets `422 request_id_reused`. Upstream 5xx and
//! gateway failures release the claim, so a retry runs again. A claim is a
//! lease its worker renews while the request runs ([`lease`]), so a dead
//! worker's claims free within seconds. Redis trouble fails open: the
//! request runs.

mod lease;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::Client;
use reqwest::Method;
use sha1::{Digest, Sha1};

use crate::process::ProcessId;
use crate::redis::keys;
use crate::redis::records::ReplayRecord;
use crate::redis::scripts::{self, ClaimResult};
use crate::{ErrorKind, GatewayError, Reply};
use lease::{LeaseGuard, Leases, CLAIM_LEASE};

pub(crate) struct Replays {
    redis: Client,
    /// How long answered requests are remembered; `None` disables replay.
    window: Option<Duration>,
    /// Larger replies are answered but not kept: the store holds at most
    /// POST rate × window × this (plus a small record per request).
    max_reply_bytes: usize,
    process: ProcessId,
    leases: Arc<Leases>,
}

/// Whether a finished request's reply was kept for its retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kept {
    Kept,
    /// Too large to keep: retries get `410 reply_not_kept` (the request
    /// ran; it never runs twice), and the reply says `x-replay: not-kept`.
    TooLarge,
}

/// One request as the replay store sees it.
pub(crate) struct Attempt<'a> {
    pub method: &'a Method,
    /// The verified caller ([`crate::middleware::Identity::caller_key`]), or
    /// `None` for an anonymous caller on a route that opted in.
    pub caller: Option<&'a str>,
    pub request_id: &'a str,
    pub topic: &'a str,
    /// The request body as forwarded (canonical JSON, without a payload reply address).
    pub payload: &'a [u8],
}

pub(crate) enum Claim {
    /// This worker runs the request and must [`Replays::finish`] the ticket.
    Fresh(Ticket),
    Replay(Reply),
    InProgress,
    /// The id was used on this topic for a different payload.
    Reused,
    /// Replay does not apply, or Redis could not answer: just run it.
    Skip,
}

pub(crate) struct Ticket {
    key: String,
    claim: String,
    fingerprint: String,
    request_id: String,
    /// Which execution of the request this is, from 1 (`X-Request-Attempt`).
    pub attempt: u64,
    /// Renews the claim until the outcome is stored.
    lease: LeaseGuard,
}

impl Replays {
    pub(crate) fn new(
        redis: Client,
        window: Option<Duration>,
        max_reply_bytes: usize,
        process: ProcessId,
    ) -> Self {
        let leases = Arc::new(Leases::default());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(lease::renew_leases(Arc::downgrade(&leases), redis.clone()));
        }
        Replays {
            redis,
            window: window.filter(|window| !window.is_zero()),
            max_reply_bytes,
            process,
            leases,
        }
    }

    /// Whether requests with `method` are claimed: POST and PATCH, when enabled.
    pub(crate) fn applies(&self, method: &Method) -> bool {
        self.window.is_some() && matches!(*method, Method::POST | Method::PATCH)
    }

    pub(crate) async fn claim(&self, attempt: Attempt<'_>) -> Claim {
        let Some(window) = self.window.filter(|_| self.applies(attempt.method)) else {
            return Claim::Skip;
        };
        let fingerprint = fingerprint(attempt.payload);
        let token = format!("{}:{}", self.process, uuid::Uuid::new_v4().simple());
        let claim = ReplayRecord::Pending {
            fingerprint: fingerprint.as_str().into(),
            token: token.into(),
        }
        .encode();
        let scope = scope(attempt.caller, attempt.topic, attempt.request_id);
        let request_id = attempt.request_id.to_string();
        let key = keys::request(&scope);
        let attempts = keys::request_attempts(&scope);
        let claimed =
            scripts::claim_request(&self.redis, &key, &attempts, &claim, CLAIM_LEASE, window);
        let existing = match claimed.await {
            Ok(ClaimResult::Claimed { attempt }) => {
                let lease = self.leases.hold(&key, &claim);
                return Claim::Fresh(Ticket {
                    key,
                    claim,
                    fingerprint,
                    request_id: request_id.clone(),
                    attempt,
                    lease,
                });
            }
            Ok(ClaimResult::Existing(existing)) => existing,
            Err(error) => {
                tracing::debug!(%error, request_id = attempt.request_id, "replay store unavailable, running the request");
                return Claim::Skip;
            }
        };
        match ReplayRecord::decode(&existing) {
            Some(record) if record.fingerprint() != fingerprint => Claim::Reused,
            Some(ReplayRecord::Done {
                status, payload, ..
            }) => Claim::Replay(Reply {
                status,
                payload: Bytes::from(payload.into_owned()),
                replayed: true,
                properties: Vec::new(),
                large: None,
            }),
            Some(ReplayRecord::Pending { .. }) => Claim::InProgress,
            None => {
                tracing::warn!(
                    request_id = attempt.request_id,
                    "unreadable replay record, running the request"
                );
                Claim::Skip
            }
        }
    }

    /// Stores the reply for replay, or releases the claim after a 5xx so a
    /// retry runs again. Runs in the background: the reply does not wait.
    pub(crate) fn finish(&self, ticket: Ticket, reply: &Reply) -> Kept {
        let Some(window) = self.window else {
            return Kept::Kept;
        };
        let mut kept = Kept::Kept;
        let outcome = if !is_final(reply.status) {
            String::new()
        } else if reply.payload.len() <= self.max_reply_bytes {
            ReplayRecord::Done {
                fingerprint: ticket.fingerprint.as_str().into(),
                status: reply.status,
                payload: String::from_utf8_lossy(&reply.payload),
            }
            .encode()
        } else {
            kept = Kept::TooLarge;
            let error = GatewayError::new(
                ErrorKind::ReplyNotKept,
                format!(
                    "this request already ran (status {}); its {}-byte reply is above gateway.replay_max_reply_bytes ({}), so it was not kept for retries",
                    reply.status,
                    reply.payload.len(),
                    self.max_reply_bytes
                ),
            );
            let tombstone = Reply::error(&error, &ticket.request_id, None);
            ReplayRecord::Done {
                fingerprint: ticket.fingerprint.as_str().into(),
                status: tombstone.status,
                payload: String::from_utf8_lossy(&tombstone.payload),
            }
            .encode()
        };
        let redis = self.redis.clone();
        tokio::spawn(async move {
            let finished =
                scripts::finish_request(&redis, &ticket.key, &ticket.claim, &outcome, window).await;
            if let Err(error) = finished {
                tracing::warn!(%error, key = %ticket.key, "could not store a reply for replay");
            }
            // Renewed until here; a claim left unfinished lapses within a lease.
            drop(ticket.lease);
        });
        kept
    }
}

/// Whether an answer is the request's final word, to replay to its retries.
/// 5xx and the retryable refusals (408 timeout, 425 too early, 429 rate
/// limited) say "try again": storing them would refuse every retry.
fn is_final(status: u16) -> bool {
    status < 500 && !matches!(status, 408 | 425 | 429)
}

/// The replay key's scope: caller, topic and id, hashed (each part is client
/// chosen and unbounded), with lengths so no choice of parts collides.
fn scope(caller: Option<&str>, topic: &str, request_id: &str) -> String {
    let caller = caller.unwrap_or("anonymous");
    let mut hasher = sha2::Sha256::new();
    for part in [caller, topic, request_id] {
        sha2::Digest::update(&mut hasher, (part.len() as u64).to_be_bytes());
        sha2::Digest::update(&mut hasher, part.as_bytes());
    }
    crate::digest::hex(&sha2::Digest::finalize(hasher))
}

fn fingerprint(payload: &[u8]) -> String {
    crate::digest::hex(&Sha1::digest(payload))
}

#[cfg(test)]
mod tests;
