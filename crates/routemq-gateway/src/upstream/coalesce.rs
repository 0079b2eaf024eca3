//! Identical concurrent GETs sharing one upstream call (NGINX's
//! `proxy_cache_lock`, Varnish's request coalescing), on routes that opt in.
//!
//! The first request of a kind (the leader) calls; the others that arrive
//! while it runs (followers) wait for its answer and get a copy. Each has
//! passed its own admission before it gets here and builds its own reply.
//! "Identical" is exact: the same service, path, query and forwarded
//! headers, and — unless the route says its reply is the same for every
//! caller — the same caller, compared whole (issuer and subject, or the
//! reply topic of an anonymous caller), never by hash.
//!
//! A follower never inherits what belongs to the leader alone: if the
//! leader's own deadline ran out, or the leader went away, each follower
//! calls for itself. A follower waits at most its own deadline.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::{PreparedCall, UpstreamResponse};
use crate::{ErrorKind, GatewayError};

/// What one call gives every request that shared it.
type Shared = Result<UpstreamResponse, GatewayError>;

/// Which requests may share a call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallKey {
    service: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, Vec<u8>)>,
    /// `None` when the route's reply is the same for every caller.
    caller: Option<String>,
}

/// Headers that differ between identical requests and say nothing about
/// the answer: the request's own id, trace context and deadline.
fn is_per_request(name: &str, call: &PreparedCall) -> bool {
    matches!(
        name,
        "x-request-id" | "x-request-attempt" | "traceparent" | "tracestate"
    ) || call
        .deadline_header
        .as_ref()
        .is_some_and(|header| header.as_str() == name)
}

impl CallKey {
    /// The key of `call` to `service`; `caller` is the whole identity of
    /// the caller, or `None` when any caller may share (then the verified
    /// identity's headers are left out too: the upstream sees the leader's).
    pub fn new(service: &str, call: &PreparedCall, caller: Option<String>) -> CallKey {
        let mut headers: Vec<(String, Vec<u8>)> = call
            .headers
            .iter()
            .filter(|(name, _)| !is_per_request(name.as_str(), call))
            .filter(|(name, _)| caller.is_some() || !name.as_str().starts_with("x-user-"))
            .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
            .collect();
        headers.sort();
        CallKey {
            service: service.to_string(),
            path: call.path.clone(),
            query: call.query.clone(),
            headers,
            caller,
        }
    }
}

/// The calls in flight that others may join.
#[derive(Default)]
pub struct Coalescer {
    flights: Mutex<HashMap<CallKey, Vec<oneshot::Sender<Shared>>>>,
}

/// Whether a request made the call or shared another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
}

impl Coalescer {
    /// Joins the call in flight under `key` (then runs `joined`, when it
    /// joins: an observer can count followers while they wait), or makes
    /// it with `call`. `timeout` bounds a follower's wait (its own deadline).
    pub async fn call<F>(
        &self,
        key: CallKey,
        (timeout, deadline_bound): (Duration, bool),
        joined: impl FnOnce(),
        call: impl FnOnce() -> F,
    ) -> (Shared, Role)
    where
        F: Future<Output = Shared>,
    {
        let follows = {
            let mut flights = self.flights.lock();
            match flights.get_mut(&key) {
                Some(followers) => {
                    let (sender, receiver) = oneshot::channel();
                    followers.push(sender);
                    Some(receiver)
                }
                None => {
                    flights.insert(key.clone(), Vec::new());
                    None
                }
            }
        };
        let Some(answer) = follows else {
            let flight = Flight {
                coalescer: self,
                key: Some(key),
            };
            let shared = call().await;
            flight.land(&shared);
            return (shared, Role::Leader);
        };
        joined();
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(shared)) if !is_the_leaders_own(&shared) => (shared, Role::Follower),
            Ok(_) => (call().await, Role::Leader),
            Err(_) => (Err(waited_too_long(deadline_bound)), Role::Follower),
        }
    }
}

/// The leader's deadline passed: its callers' doing, not the answer.
fn is_the_leaders_own(shared: &Shared) -> bool {
    matches!(shared, Err(error) if error.kind == ErrorKind::DeadlineExceeded)
}

fn waited_too_long(deadline_bound: bool) -> GatewayError {
    match deadline_bound {
        true => GatewayError::new(
            ErrorKind::DeadlineExceeded,
            "the request's deadline passed before the upstream answered",
        ),
        false => GatewayError::new(
            ErrorKind::UpstreamTimeout,
            "upstream did not answer in time",
        ),
    }
}

/// A leader's call in flight: removed from the map when it lands, or when
/// the leader goes away (then its followers, whose senders are dropped
/// with it, call for themselves).
struct Flight<'a> {
    coalescer: &'a Coalescer,
    key: Option<CallKey>,
}

impl Flight<'_> {
    fn land(mut self, shared: &Shared) {
        let Some(key) = self.key.take() else {
            return;
        };
        let followers = self.coalescer.flights.lock().remove(&key);
        for follower in followers.into_iter().flatten() {
            follower.send(shared.clone()).ok();
        }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.coalescer.flights.lock().remove(&key);
        }
    }
}
