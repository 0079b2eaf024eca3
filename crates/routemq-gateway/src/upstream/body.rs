//! Reading an upstream's response body within its bounds.
//!
//! A reply the broker takes in one packet is bounded by `max_response_bytes`
//! (4 MiB by default). A caller that reassembles chunked replies may get
//! more, up to `max_chunked_reply_bytes`; such a large body is held in
//! memory until its last chunk is written, so a worker holds at most
//! `max_large_replies` of them at once. The slot is taken only once a body
//! grows past `max_response_bytes`: callers that accept chunks but get
//! ordinary replies never wait for one.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::http_error::classify;
use crate::{ErrorKind, GatewayError};

/// How large a response body may grow, per call and per worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// A body for a caller that takes one packet.
    pub max_response_bytes: usize,
    /// A body for a caller that takes a chunked reply.
    pub max_chunked_reply_bytes: usize,
    /// Bodies over `max_response_bytes` a worker holds at once.
    pub max_large_replies: usize,
}

/// The worker's slots for bodies over `max_response_bytes`.
#[derive(Debug)]
pub struct LargeReplies {
    limits: BodyLimits,
    slots: Arc<Semaphore>,
}

/// A slot for one large body, held until its reply is written: cloned
/// with the reply, given back when the last copy is dropped.
#[derive(Debug, Clone)]
pub struct LargeReply {
    _slot: Arc<Slot>,
}

/// A taken slot, shown in `routemq_large_replies_held` while it is held.
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit) -> Slot {
        metrics::gauge!("routemq_large_replies_held").increment(1.0);
        Slot { _permit: permit }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!("routemq_large_replies_held").decrement(1.0);
    }
}

impl LargeReplies {
    pub fn new(limits: BodyLimits) -> LargeReplies {
        LargeReplies {
            limits,
            slots: Arc::new(Semaphore::new(
                limits.max_large_replies.min(Semaphore::MAX_PERMITS),
            )),
        }
    }

    pub fn limits(&self) -> BodyLimits {
        self.limits
    }

    /// The body, refused past the caller's bound (read no further), with
    /// the slot a body over `max_response_bytes` took.
    pub async fn read(
        &self,
        response: &mut reqwest::Response,
        accepts_chunks: bool,
    ) -> Result<(Bytes, Option<LargeReply>), GatewayError> {
        let limits = self.limits;
        let max = match accepts_chunks {
            true => limits
                .max_chunked_reply_bytes
                .max(limits.max_response_bytes),
            false => limits.max_response_bytes,
        };
        let mut raw = BytesMut::new();
        let mut large = None;
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            let grown = raw.len() + chunk.len();
            if grown > max {
                return Err(GatewayError::new(
                    ErrorKind::ReplyTooLarge,
                    format!("upstream response exceeds {max} bytes"),
                ));
            }
            if grown > limits.max_response_bytes && large.is_none() {
                large = Some(self.slot()?);
            }
            raw.extend_from_slice(&chunk);
        }
        Ok((raw.into(), large))
    }

    fn slot(&self) -> Result<LargeReply, GatewayError> {
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => Ok(LargeReply {
                _slot: Arc::new(Slot::new(permit)),
            }),
            Err(_) => {
                metrics::counter!("routemq_large_replies_refused_total").increment(1);
                Err(GatewayError::new(
                    ErrorKind::Overloaded,
                    format!(
                        "this worker already holds {} replies over {} bytes; try again shortly",
                        self.limits.max_large_replies, self.limits.max_response_bytes
                    ),
                ))
            }
        }
    }
}

/// The body as a JSON value without parsing it into a tree: validated JSON
/// passes through as is, anything else becomes a JSON string, empty is null.
pub(super) fn encoded_body(raw: Bytes, is_json: bool) -> Box<RawValue> {
    let null = || RawValue::from_string("null".into()).expect("null is JSON");
    if raw.is_empty() {
        return null();
    }
    if is_json {
        if let Ok(text) = String::from_utf8(raw.to_vec()) {
            if let Ok(value) = RawValue::from_string(text) {
                return value;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw);
    serde_json::to_string(&text)
        .ok()
        .and_then(|quoted| RawValue::from_string(quoted).ok())
        .unwrap_or_else(null)
}
