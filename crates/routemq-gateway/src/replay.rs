//! Safe retries. Brokers redeliver and clients retry on timeout with the same
//! `x-request-id`, so a non-idempotent request (POST, PATCH) may arrive twice.
//! The first arrival claims its id in Redis; a retry gets the first one's
//! stored reply (marked `x-replayed`), or `409 request_in_progress` while the
//! first is still running. Upstream 5xx and gateway failures release the
//! claim, so a retry runs again. Redis trouble fails open: the request runs.

use std::time::Duration;

use bytes::Bytes;
use fred::prelude::Client;
use reqwest::Method;

use crate::redis::{keys, scripts};
use crate::Reply;

/// How long a claim outlives the upstream timeout before another try may run.
const PENDING_MARGIN: Duration = Duration::from_secs(5);

pub(crate) struct Replays {
    redis: Client,
    /// How long answered requests are remembered; `None` disables replay.
    window: Option<Duration>,
    worker_id: String,
}

pub(crate) enum Claim {
    /// This worker runs the request and must [`Replays::finish`] the ticket.
    Fresh(Ticket),
    Replay(Reply),
    InProgress,
    /// Replay does not apply, or Redis could not answer: just run it.
    Skip,
}

pub(crate) struct Ticket {
    key: String,
    token: String,
}

impl Replays {
    pub(crate) fn new(redis: Client, window: Option<Duration>, worker_id: String) -> Self {
        Replays {
            redis,
            window: window.filter(|window| !window.is_zero()),
            worker_id,
        }
    }

    /// Claims `request_id` on `topic` when replay applies to `method`.
    pub(crate) async fn claim(
        &self,
        method: &Method,
        request_id: &str,
        topic: &str,
        upstream_timeout: Duration,
    ) -> Claim {
        if self.window.is_none() || !matches!(*method, Method::POST | Method::PATCH) {
            return Claim::Skip;
        }
        let token = format!("{}:{}", self.worker_id, uuid::Uuid::new_v4().simple());
        let key = keys::request(request_id, topic);
        let claimed =
            scripts::claim_request(&self.redis, &key, &token, upstream_timeout + PENDING_MARGIN)
                .await;
        match claimed {
            Ok(None) => Claim::Fresh(Ticket { key, token }),
            Ok(Some(existing)) => match decode(&existing) {
                Some(reply) => Claim::Replay(reply),
                None => Claim::InProgress,
            },
            Err(error) => {
                tracing::debug!(%error, request_id, "replay store unavailable, running the request");
                Claim::Skip
            }
        }
    }

    /// Stores the reply for replay, or releases the claim after a 5xx so a
    /// retry runs again. Runs in the background: the reply does not wait.
    pub(crate) fn finish(&self, ticket: Ticket, reply: &Reply) {
        let Some(window) = self.window else {
            return;
        };
        let outcome = if reply.status < 500 {
            encode(reply)
        } else {
            String::new()
        };
        let redis = self.redis.clone();
        tokio::spawn(async move {
            let finished =
                scripts::finish_request(&redis, &ticket.key, &ticket.token, &outcome, window).await;
            if let Err(error) = finished {
                tracing::warn!(%error, key = %ticket.key, "could not store a reply for replay");
            }
        });
    }
}

fn encode(reply: &Reply) -> String {
    format!(
        "done:{}:{}",
        reply.status,
        String::from_utf8_lossy(&reply.payload)
    )
}

/// A stored reply, or `None` for a claim still pending.
fn decode(stored: &str) -> Option<Reply> {
    let rest = stored.strip_prefix("done:")?;
    let (status, payload) = rest.split_once(':')?;
    Some(Reply {
        status: status.parse().ok()?,
        payload: Bytes::from(payload.to_string()),
        replayed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};
    use crate::Reply;

    #[test]
    fn stored_replies_round_trip_and_pending_claims_do_not_decode() {
        let reply = Reply {
            status: 201,
            payload: bytes::Bytes::from_static(br#"{"status":"success","data":"a:b"}"#),
            replayed: false,
        };
        let decoded = decode(&encode(&reply)).expect("decodes");
        assert_eq!((decoded.status, decoded.payload), (201, reply.payload));
        assert!(decoded.replayed);
        assert!(decode("pending:worker-1:abc").is_none());
        assert!(decode("done:notanumber:{}").is_none());
    }
}
