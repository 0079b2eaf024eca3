//! How long to wait before reconnecting to the broker, for gateway workers
//! and for this crate's clients alike.
//!
//! Exponential from 100 ms, each wait drawn between half and all of its
//! step, so the many clients that lost the same broker do not return in
//! lockstep. A young outage (the first minute) is capped at 1 s: a broker
//! restart is over in about a second, and answers should resume about then.
//! An outage that lasts is capped at 5 s, so a fleet facing a broker that
//! stays down sends it at most one attempt per client per 2.5–5 s.

use std::time::{Duration, Instant};

const FIRST_STEP: Duration = Duration::from_millis(100);
const YOUNG_CAP: Duration = Duration::from_secs(1);
const OLD_CAP: Duration = Duration::from_secs(5);
/// How long an outage counts as young.
const YOUNG_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Backoff {
    step: Option<Duration>,
    outage_started: Option<Instant>,
}

impl Backoff {
    /// Connected: the next outage starts from the first step again.
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }

    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        self.next(Instant::now(), fastrand::f64())
    }

    /// The wait before the next attempt at `now`, `jitter` in `[0, 1)`
    /// choosing where between half and all of the step it falls.
    pub fn next(&mut self, now: Instant, jitter: f64) -> Duration {
        let started = *self.outage_started.get_or_insert(now);
        let cap = if now.duration_since(started) < YOUNG_FOR {
            YOUNG_CAP
        } else {
            OLD_CAP
        };
        let step = self.step.map_or(FIRST_STEP, |step| step * 2).min(cap);
        self.step = Some(step);
        step.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_young_outage_retries_within_a_second_and_an_old_one_backs_off_to_five() {
        let start = Instant::now();
        let mut backoff = Backoff::default();
        let young: Vec<Duration> = (0..8).map(|_| backoff.next(start, 0.999_999)).collect();
        assert!(young[0] <= FIRST_STEP && young[0] >= FIRST_STEP / 2);
        assert!(young.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!(young.iter().all(|wait| *wait <= YOUNG_CAP), "{young:?}");
        assert!(young[7] > YOUNG_CAP / 2, "{young:?}");
        let later = start + YOUNG_FOR + Duration::from_secs(1);
        let old: Vec<Duration> = (0..5).map(|_| backoff.next(later, 0.999_999)).collect();
        assert!(old.iter().all(|wait| *wait <= OLD_CAP), "{old:?}");
        assert!(old[4] > OLD_CAP / 2, "{old:?}");
        assert!(
            backoff.next(later, 0.0) >= OLD_CAP / 2,
            "jitter keeps at least half"
        );
        backoff.reset();
        assert!(backoff.next(later, 0.0) <= FIRST_STEP);
    }
}
