//! How many workers are alive right now. Limits that must hold for the whole
//! cluster while each worker enforces its own share — the rate limiter's
//! fail-open limit while Redis is down — divide by this count, so the share
//! follows autoscaling instead of a static setting. Each worker renews its
//! entry every [`RENEW_EVERY`]; a dead worker's entry lapses after
//! [`ENTRY_TTL`]; while Redis is unavailable the last known count stays.
//!
//! The same renewal keeps the worker in the prober set, over which health
//! probes are shared: each instance has one owner among the live probers
//! (rendezvous hashing, so a worker joining or leaving moves only its own
//! share), and a worker that is not (yet) in the set it last read probes
//! everything.

use std::hash::Hasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use std::time::Duration;

use fred::prelude::Client;
use tokio_util::sync::CancellationToken;

use crate::process::ProcessId;
use crate::redis::scripts;

pub const RENEW_EVERY: Duration = Duration::from_secs(5);
pub const ENTRY_TTL: Duration = Duration::from_secs(15);

/// This process's place in the live-worker set, and the last count seen.
#[derive(Debug)]
pub struct Membership {
    process: ProcessId,
    workers: AtomicU32,
    probers: RwLock<Arc<Probers>>,
}

/// The live probers as last read, and whether this worker is one of them.
#[derive(Debug, Default)]
pub struct Probers {
    ids: Vec<String>,
    includes_me: bool,
}

impl Probers {
    /// Whether this worker probes (or reaps) `key`: its owner is the prober
    /// with the highest weight for it; every key when this worker is not in
    /// the set (before its first renewal, or while Redis is away).
    pub fn owns(&self, me: &ProcessId, key: &str) -> bool {
        if !self.includes_me {
            return true;
        }
        self.ids
            .iter()
            .max_by_key(|prober| weight(prober, key))
            .is_none_or(|owner| owner == me.as_str())
    }
}

/// Rendezvous weight of `prober` for `key`. FNV-1a is fixed by its
/// definition (std's hashers may change between Rust releases, and workers
/// built by different releases must agree during an upgrade); the
/// finaliser (splitmix64's) spreads FNV's weak low bits.
fn weight(prober: &str, key: &str) -> u64 {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(prober.as_bytes());
    hasher.write(&[0]);
    hasher.write(key.as_bytes());
    let mut x = hasher.finish();
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Membership {
    /// A member that counts only itself until it has heard from Redis.
    pub fn new(process: ProcessId) -> Arc<Membership> {
        Arc::new(Membership {
            process,
            workers: AtomicU32::new(1),
            probers: RwLock::new(Arc::default()),
        })
    }

    pub fn process(&self) -> &ProcessId {
        &self.process
    }

    /// Live workers, this one included (at least 1).
    pub fn workers(&self) -> u32 {
        self.workers.load(Ordering::Relaxed).max(1)
    }

    /// The live probers as last read from Redis.
    pub fn probers(&self) -> Arc<Probers> {
        Arc::clone(&self.probers.read())
    }

    /// Whether this worker probes (or reaps) `key` now.
    pub fn owns(&self, key: &str) -> bool {
        self.probers().owns(&self.process, key)
    }

    /// Joins now and renews until `stop`, then leaves the set.
    pub async fn run(self: Arc<Self>, redis: Client, stop: CancellationToken) {
        let mut every = crate::Every::new(RENEW_EVERY, stop);
        while every.tick().await {
            match scripts::worker_membership(&redis, self.process.as_str(), ENTRY_TTL, true).await {
                Ok(members) => {
                    self.set(members.workers);
                    self.set_probers(members.probers);
                }
                Err(error) => {
                    tracing::debug!(%error, workers = self.workers(), "live workers unknown, keeping the last count");
                }
            }
        }
        if let Err(error) =
            scripts::worker_membership(&redis, self.process.as_str(), ENTRY_TTL, false).await
        {
            tracing::debug!(%error, "could not leave the live-worker set; the entry lapses by itself");
        }
    }

    fn set_probers(&self, ids: Vec<String>) {
        let includes_me = ids.iter().any(|id| id == self.process.as_str());
        *self.probers.write() = Arc::new(Probers { ids, includes_me });
    }

    fn set(&self, workers: u64) {
        let workers = u32::try_from(workers).unwrap_or(u32::MAX).max(1);
        let before = self.workers.swap(workers, Ordering::Relaxed);
        metrics::gauge!("routemq_live_workers").set(f64::from(workers));
        if before != workers {
            tracing::info!(workers, "live workers changed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Probers, ProcessId};

    fn probers(ids: &[&ProcessId], me: &ProcessId) -> Probers {
        let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        let includes_me = ids.iter().any(|id| id == me.as_str());
        Probers { ids, includes_me }
    }

    #[test]
    fn every_key_has_exactly_one_owner_and_a_leaver_moves_only_its_own() {
        let workers: Vec<ProcessId> = (0..4).map(|n| ProcessId::new(&format!("w{n}"))).collect();
        let all: Vec<&ProcessId> = workers.iter().collect();
        let keys: Vec<String> = (0..2000).map(|n| format!("svc/i-{n}")).collect();
        let owner = |set: &[&ProcessId], key: &str| -> usize {
            let owners: Vec<usize> = (0..workers.len())
                .filter(|&w| {
                    set.contains(&&workers[w]) && probers(set, &workers[w]).owns(&workers[w], key)
                })
                .collect();
            assert_eq!(owners.len(), 1, "{key} owned by {owners:?}");
            owners[0]
        };
        let before: Vec<usize> = keys.iter().map(|key| owner(&all, key)).collect();
        for w in 0..workers.len() {
            let share = before.iter().filter(|&&o| o == w).count();
            assert!(
                (350..650).contains(&share),
                "worker {w} owns {share} of 2000"
            );
        }
        let without_last: Vec<&ProcessId> = workers[..3].iter().collect();
        for (key, was) in keys.iter().zip(&before) {
            let now = owner(&without_last, key);
            if *was != 3 {
                assert_eq!(now, *was, "{key} moved though its owner stayed");
            }
        }
    }

    #[test]
    fn a_worker_outside_the_set_it_read_owns_everything() {
        let me = ProcessId::new("new");
        let other = ProcessId::new("old");
        assert!(probers(&[&other], &me).owns(&me, "svc/i-1"));
        assert!(Probers::default().owns(&me, "svc/i-1"));
    }
}
