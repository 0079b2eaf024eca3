//! Phase 4's safe-retry claim: whether a POST/PATCH runs, is answered from
//! the replay store, or is refused as a duplicate in flight or a reused id.

use super::pipeline::Admitted;
use super::Gateway;
use crate::middleware::{ChainRun, Identity, RequestContext};
use crate::replay::{Attempt, Claim};
use crate::route::ForwardRoute;
use crate::upstream::PreparedCall;
use crate::{ErrorKind, GatewayError};

impl Gateway {
    /// The claim's verdict on a request the chain admitted.
    pub(super) fn claimed(
        &self,
        permits: ChainRun,
        claim: Claim,
    ) -> Result<Admitted, GatewayError> {
        match claim {
            Claim::Fresh(ticket) => Ok(Admitted::Run {
                permits,
                ticket: Some(ticket),
            }),
            Claim::Skip => Ok(Admitted::Run {
                permits,
                ticket: None,
            }),
            Claim::Replay(reply) => Ok(Admitted::Replayed(reply)),
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

    /// Claims a POST/PATCH for safe retries. Only a client-chosen id
    /// identifies a retry; a generated one never repeats. Replies are bound
    /// to the verified caller; an anonymous caller is replayed only where the
    /// route opted in.
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
}
