//! Phase 4's safe-retry claim: whether a POST/PATCH runs, is answered from
//! the replay store, or is refused as a duplicate in flight or a reused id;
//! and, once answered, the answer kept for the retries to come.

use crate::middleware::{ChainRun, Identity, RequestContext};
use crate::replay::{Attempt, Claim, Kept, Replays, Ticket};
use crate::route::ForwardRoute;
use crate::upstream::PreparedCall;
use crate::{ErrorKind, GatewayError, Reply};

/// What admission lets a request do.
pub(super) enum Proceed {
    /// Call the upstream; settle the permits with its outcome, finish the
    /// ticket (if claimed) with its answer.
    Call {
        permits: ChainRun,
        ticket: Option<Ticket>,
    },
    /// A retry of a request already answered: its stored reply.
    Replay(Reply),
}

/// The replay store as the pipeline uses it.
pub(super) struct RetryClaims {
    replays: Replays,
}

impl RetryClaims {
    pub(super) fn new(replays: Replays) -> RetryClaims {
        RetryClaims { replays }
    }

    /// Claims a POST/PATCH for safe retries. Only a client-chosen id
    /// identifies a retry; a generated one never repeats. Replies are bound
    /// to the verified caller; an anonymous caller is replayed only where
    /// the route opted in.
    pub(super) async fn claim(
        &self,
        ctx: &RequestContext<'_>,
        route: &ForwardRoute,
        call: &PreparedCall,
        retry_safe_id: bool,
    ) -> Claim {
        let caller = ctx.identity.as_ref().map(Identity::caller_key);
        let replayable = caller.is_some() || route.anonymous_replay;
        if !(retry_safe_id && replayable && self.replays.applies(&route.method)) {
            return Claim::Skip;
        }
        let attempt = Attempt {
            method: &route.method,
            caller: caller.as_deref(),
            request_id: ctx.request_id,
            topic: ctx.topic,
            // The body as forwarded, encoded once (serde_json orders keys,
            // so equal bodies encode equally).
            payload: call.body.as_deref().unwrap_or_default(),
        };
        Box::pin(self.replays.claim(attempt)).await
    }

    /// The claim's verdict on a request the chain admitted.
    pub(super) fn proceed(permits: ChainRun, claim: Claim) -> Result<Proceed, GatewayError> {
        match claim {
            Claim::Fresh(ticket) => Ok(Proceed::Call {
                permits,
                ticket: Some(ticket),
            }),
            Claim::Skip => Ok(Proceed::Call {
                permits,
                ticket: None,
            }),
            Claim::Replay(reply) => Ok(Proceed::Replay(reply)),
            Claim::Reused => Err(GatewayError::new(
                ErrorKind::RequestIdReused,
                "this x-request-id was already used on this topic with a different payload",
            )),
            Claim::InProgress => Err(GatewayError::new(
                ErrorKind::RequestInProgress,
                "a request with this x-request-id is still being processed; retry later",
            )),
        }
    }

    /// A claim taken for a request the chain refused keeps the refusal, so
    /// its retries get the same answer.
    pub(super) fn refused(
        &self,
        claim: Claim,
        error: &GatewayError,
        request_id: &str,
        service: &str,
    ) {
        if let Claim::Fresh(ticket) = claim {
            self.replays
                .finish(ticket, &Reply::error(error, request_id, Some(service)));
        }
    }

    /// Keeps the upstream's answer (a fallback's is not) for retries; a
    /// reply too large to keep says so (`x-replay: not-kept`).
    pub(super) fn answered(
        &self,
        ticket: Option<Ticket>,
        mut result: Result<Reply, GatewayError>,
        request_id: &str,
        service: &str,
    ) -> Result<Reply, GatewayError> {
        let Some(ticket) = ticket else {
            return result;
        };
        let stored = match &result {
            Ok(reply) => reply.clone(),
            Err(error) => Reply::error(error, request_id, Some(service)),
        };
        if self.replays.finish(ticket, &stored) == Kept::TooLarge {
            if let Ok(reply) = &mut result {
                reply
                    .properties
                    .push(("x-replay".into(), "not-kept".into()));
            }
        }
        result
    }
}
