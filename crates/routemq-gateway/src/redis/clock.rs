//! Redis's clock, as one worker last saw it. A command that timed out in the
//! worker may still run when a stalled Redis resumes: a rate-limit script
//! would then count an attempt the worker already answered without it (a
//! client under its limit gets 429 after every Redis stall). Scripts that
//! count take a deadline in Redis time, estimated here from the latest time a
//! reply carried plus the worker's own monotonic clock since — so no two
//! hosts' wall clocks are compared.

use parking_lot::Mutex;
use parking_lot::MutexGuard;
use std::time::{Duration, Instant};

/// Past this, a command has outlived any allowed command timeout
/// (`redis.command_timeout` is at most 500 ms) with room for the reply's
/// trip and scheduling delays.
pub const STALE_AFTER: Duration = Duration::from_millis(750);

#[derive(Debug, Default)]
pub struct RedisClock {
    /// A Redis time (ms) and when it was seen.
    last: Mutex<Option<(u64, Instant)>>,
}

impl RedisClock {
    fn lock(&self) -> MutexGuard<'_, Option<(u64, Instant)>> {
        self.last.lock()
    }

    /// Records Redis's time (ms) from a reply that just arrived. The estimate
    /// only moves forward: on a Redis Cluster whose nodes' clocks differ it
    /// follows the fastest, so a call to a slower node is never taken for a
    /// late one (its lateness is only judged less strictly).
    pub fn observe(&self, redis_ms: u64) {
        let mut last = self.lock();
        let ahead = match *last {
            Some((seen_ms, seen)) => redis_ms > seen_ms.saturating_add(elapsed_ms(seen)),
            None => true,
        };
        if ahead {
            *last = Some((redis_ms, Instant::now()));
        }
    }

    /// The Redis time (ms) after which a command sent now must not count;
    /// `None` until a reply has told the time.
    pub fn deadline(&self) -> Option<u64> {
        let (redis_ms, seen) = (*self.lock())?;
        let stale_after = u64::try_from(STALE_AFTER.as_millis()).unwrap_or(u64::MAX);
        Some(
            redis_ms
                .saturating_add(elapsed_ms(seen))
                .saturating_add(stale_after),
        )
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::RedisClock;

    #[test]
    fn the_estimate_follows_the_fastest_clock_seen() {
        let clock = RedisClock::default();
        assert_eq!(clock.deadline(), None);
        clock.observe(10_000);
        let first = clock.deadline().expect("deadline");
        assert!(first >= 10_750, "{first}");
        clock.observe(5_000);
        let after_slower = clock.deadline().expect("deadline");
        assert!(after_slower >= first, "a slower node does not pull it back");
        clock.observe(20_000);
        assert!(clock.deadline().expect("deadline") >= 20_750);
    }
}
