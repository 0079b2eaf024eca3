//! The rate limiter's fail-open limit: while Redis cannot answer, each worker
//! admits at most its share of the cluster limit — `limit / live workers`
//! ([`crate::membership`]) — per client in any window, so the cluster as a
//! whole stays within the limit. GCRA (governor), O(1) per client: a burst of
//! half the share, refilled at a rate that keeps any window's admissions at
//! or below the share (see [`quota`]).

use parking_lot::RwLock;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// Clients tracked at most; beyond, newcomers share one bucket, so memory
/// stays bounded under any number of client keys.
const MAX_CLIENTS: usize = 100_000;
/// Idle clients (back to a full bucket) are forgotten every this many checks.
const PRUNE_EVERY: u64 = 4096;
const OVERFLOW_KEY: &str = "\u{0}overflow";

type Limiter<C> =
    RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One worker's share of a limit, rebuilt when the worker count changes.
struct Share<C: Clock> {
    workers: u32,
    share: u32,
    limiter: Limiter<C>,
}

pub struct LocalLimit<C: Clock = DefaultClock> {
    limit: u32,
    window: Duration,
    /// An optional per-worker cap below the share (`fallback_limit`).
    cap: Option<u32>,
    clock: C,
    current: RwLock<Arc<Share<C>>>,
    checks: AtomicU64,
}

/// The local verdict: admitted, or refused until `retry_after` has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalVerdict {
    Grant { share: u32 },
    Refused { share: u32, retry_after: Duration },
}

/// The GCRA quota that admits at most `share` in any window: a burst of `b`
/// = ⌈share/2⌉ and one more every `window / (share − b + 1)`. n admissions
/// in GCRA are at least (n − b) emission intervals apart, so n within one
/// window means n < b + (share − b + 1), i.e. n ≤ share.
pub fn quota(share: u32, window: Duration) -> Quota {
    let share = share.max(1);
    let burst = share.div_ceil(2);
    let refills = share - burst + 1;
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(window / refills)
        .unwrap_or_else(|| Quota::per_second(burst))
        .allow_burst(burst)
}

impl LocalLimit {
    pub fn new(limit: u32, window: Duration, cap: Option<u32>) -> LocalLimit {
        LocalLimit::with_clock(limit, window, cap, DefaultClock::default())
    }
}

impl<C: Clock + Clone> LocalLimit<C> {
    pub fn with_clock(limit: u32, window: Duration, cap: Option<u32>, clock: C) -> LocalLimit<C> {
        let current = RwLock::new(Arc::new(Share::build(limit, window, cap, 1, &clock)));
        LocalLimit {
            limit,
            window,
            cap,
            clock,
            current,
            checks: AtomicU64::new(0),
        }
    }

    /// Checks one request of `client` with `workers` live workers.
    pub fn check(&self, client: &str, workers: u32) -> LocalVerdict {
        let share = self.share_for(workers);
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(PRUNE_EVERY)
        {
            share.limiter.retain_recent();
        }
        let key = if share.limiter.len() < MAX_CLIENTS {
            client
        } else {
            OVERFLOW_KEY
        };
        match share.limiter.check_key(&key.to_string()) {
            Ok(_) => LocalVerdict::Grant { share: share.share },
            Err(not_until) => LocalVerdict::Refused {
                share: share.share,
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        }
    }

    fn share_for(&self, workers: u32) -> Arc<Share<C>> {
        let workers = workers.max(1);
        let current = Arc::clone(&self.current.read());
        if current.workers == workers {
            return current;
        }
        // The worker count changed (seen only while Redis is up, so rarely):
        // start a fresh limiter at the new share.
        let rebuilt = Arc::new(Share::build(
            self.limit,
            self.window,
            self.cap,
            workers,
            &self.clock,
        ));
        *self.current.write() = Arc::clone(&rebuilt);
        rebuilt
    }
}

impl<C: Clock + Clone> Share<C> {
    fn build(limit: u32, window: Duration, cap: Option<u32>, workers: u32, clock: &C) -> Share<C> {
        let share = (limit / workers).max(1);
        let share = cap.map_or(share, |cap| share.min(cap.max(1)));
        Share {
            workers,
            share,
            limiter: RateLimiter::new(
                quota(share, window),
                DefaultKeyedStateStore::default(),
                clock.clone(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::{LocalLimit, LocalVerdict};

    /// Offers a request every `step` for `total`, and returns the admission times.
    fn admissions(
        limit: &LocalLimit<FakeRelativeClock>,
        clock: &FakeRelativeClock,
        workers: u32,
        step: Duration,
        total: Duration,
    ) -> Vec<Duration> {
        let mut admitted = Vec::new();
        let mut now = Duration::ZERO;
        while now < total {
            if matches!(limit.check("client", workers), LocalVerdict::Grant { .. }) {
                admitted.push(now);
            }
            clock.advance(step);
            now += step;
        }
        admitted
    }

    /// The most admissions inside any half-open window of `window`.
    fn busiest(admitted: &[Duration], window: Duration) -> usize {
        (0..admitted.len())
            .map(|first| {
                admitted[first..]
                    .iter()
                    .take_while(|t| **t < admitted[first] + window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn no_window_admits_more_than_the_share() {
        let window = Duration::from_secs(60);
        for (limit, workers) in [(1000, 4), (30, 1), (30, 2), (7, 3), (1, 1), (2, 5)] {
            let clock = FakeRelativeClock::default();
            let local = LocalLimit::with_clock(limit, window, None, clock.clone());
            let admitted = admissions(
                &local,
                &clock,
                workers,
                Duration::from_millis(10),
                window * 4,
            );
            let share = (limit / workers).max(1) as usize;
            assert!(
                busiest(&admitted, window) <= share,
                "{limit}/{workers}: {} in one window",
                busiest(&admitted, window)
            );
            assert!(
                admitted.len() >= share * 2,
                "{limit}/{workers}: only {} in four windows",
                admitted.len()
            );
        }
    }

    #[test]
    fn a_refusal_says_when_to_come_back() {
        let clock = FakeRelativeClock::default();
        let local = LocalLimit::with_clock(2, Duration::from_secs(60), None, clock.clone());
        assert!(matches!(
            local.check("c", 1),
            LocalVerdict::Grant { share: 2 }
        ));
        let LocalVerdict::Refused { retry_after, .. } = local.check("c", 1) else {
            panic!("the burst of one is spent");
        };
        assert_eq!(retry_after, Duration::from_secs(30));
        clock.advance(retry_after);
        assert!(matches!(local.check("c", 1), LocalVerdict::Grant { .. }));
    }

    #[test]
    fn the_share_follows_the_workers_and_the_cap() {
        let clock = FakeRelativeClock::default();
        let local = LocalLimit::with_clock(100, Duration::from_secs(60), Some(20), clock.clone());
        assert!(matches!(
            local.check("c", 1),
            LocalVerdict::Grant { share: 20 }
        ));
        assert!(matches!(
            local.check("c", 10),
            LocalVerdict::Grant { share: 10 }
        ));
    }
}
