//! How many workers are alive right now. Limits that must hold for the whole
//! cluster while each worker enforces its own share — the rate limiter's
//! fail-open limit while Redis is down — divide by this count, so the share
//! follows autoscaling instead of a static setting. Each worker renews its
//! entry every [`RENEW_EVERY`]; a dead worker's entry lapses after
//! [`ENTRY_TTL`]; while Redis is unavailable the last known count stays.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
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
}

impl Membership {
    /// A member that counts only itself until it has heard from Redis.
    pub fn new(process: ProcessId) -> Arc<Membership> {
        Arc::new(Membership {
            process,
            workers: AtomicU32::new(1),
        })
    }

    pub fn process(&self) -> &ProcessId {
        &self.process
    }

    /// Live workers, this one included (at least 1).
    pub fn workers(&self) -> u32 {
        self.workers.load(Ordering::Relaxed).max(1)
    }

    /// Joins now and renews until `stop`, then leaves the set.
    pub async fn run(self: Arc<Self>, redis: Client, stop: CancellationToken) {
        let mut every = crate::Every::new(RENEW_EVERY, stop);
        while every.tick().await {
            match scripts::worker_membership(&redis, self.process.as_str(), ENTRY_TTL, true).await {
                Ok(workers) => self.set(workers),
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

    fn set(&self, workers: u64) {
        let workers = u32::try_from(workers).unwrap_or(u32::MAX).max(1);
        let before = self.workers.swap(workers, Ordering::Relaxed);
        if before != workers {
            tracing::info!(workers, "live workers changed");
        }
    }
}
