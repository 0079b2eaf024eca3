//! Claims as leases. A claim lives [`CLAIM_LEASE`] unless its worker renews
//! it, so a worker that dies mid-request frees its claims within one lease
//! and a retry runs — instead of waiting for the route timeout. Renewal runs
//! in one pass per worker every [`RENEW_EVERY`], for the claims held longer
//! than [`RENEW_AFTER`] only (most requests finish long before), all sent at
//! once on the worker's Redis connections: one round trip per pass, and no
//! command at all for a request shorter than a second.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use fred::prelude::Client;

use crate::redis::scripts;

/// How long a claim outlives its worker's last renewal.
pub(crate) const CLAIM_LEASE: Duration = Duration::from_secs(6);
/// How often a worker renews the claims it holds: a third of the lease, so
/// two renewals in a row may fail (a Redis hiccup) before a claim lapses.
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(2);
/// Claims younger than this are left for the next pass, which still comes
/// well within their lease (`RENEW_AFTER + RENEW_EVERY < CLAIM_LEASE`).
const RENEW_AFTER: Duration = Duration::from_secs(1);

struct Held {
    key: String,
    claim: String,
    since: Instant,
}

/// The claims one worker holds while their requests run.
#[derive(Default)]
pub(crate) struct Leases {
    held: Mutex<HashMap<u64, Held>>,
    next: AtomicU64,
}

/// Keeps a claim renewed until dropped: dropped when the request's outcome is
/// stored, and also when its task ends any other way (cancelled, panicked),
/// so no claim is renewed for a request that no longer runs.
pub(crate) struct LeaseGuard {
    id: u64,
    leases: Arc<Leases>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.leases.lock().remove(&self.id);
    }
}

impl Leases {
    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<u64, Held>> {
        self.held.lock()
    }

    pub(crate) fn hold(self: &Arc<Self>, key: &str, claim: &str) -> LeaseGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let held = Held {
            key: key.to_string(),
            claim: claim.to_string(),
            since: Instant::now(),
        };
        self.lock().insert(id, held);
        LeaseGuard {
            id,
            leases: Arc::clone(self),
        }
    }

    /// The claims due for renewal now.
    fn due(&self) -> Vec<(u64, String, String)> {
        self.lock()
            .iter()
            .filter(|(_, held)| held.since.elapsed() >= RENEW_AFTER)
            .map(|(id, held)| (*id, held.key.clone(), held.claim.clone()))
            .collect()
    }
}

/// Renews `leases` every [`RENEW_EVERY`] until they are dropped.
pub(crate) async fn renew_leases(leases: Weak<Leases>, redis: Client) {
    let mut every = crate::Every::until_dropped(RENEW_EVERY);
    while every.tick().await {
        let Some(held) = leases.upgrade() else {
            return;
        };
        let due = held.due();
        if due.is_empty() {
            continue;
        }
        let renewals = due.iter().map(|(id, key, claim)| {
            let redis = &redis;
            async move {
                (
                    *id,
                    scripts::renew_claim(redis, key, claim, CLAIM_LEASE).await,
                )
            }
        });
        for (id, renewed) in futures::future::join_all(renewals).await {
            match renewed {
                Ok(true) => {}
                // Another worker may run the request now; ours still
                // answers, and its outcome is not stored (not the holder).
                Ok(false) => {
                    tracing::warn!(claim = id, "a request's claim lapsed before it finished");
                    held.lock().remove(&id);
                }
                Err(error) => tracing::debug!(%error, "claim not renewed, retrying next pass"),
            }
        }
    }
}
