//! How many calls a service may have in flight on one worker, learned from
//! its latency (a gradient limiter in the manner of Netflix's
//! concurrency-limits and Envoy's adaptive concurrency filter).
//!
//! Written by hand: the crates that offer one (tower-acc,
//! congestion-limiter) are young, tied to tower's `Service` or their own
//! permit types, and this is one small state machine whose every input the
//! bulkhead already has under its lock.
//!
//! Each completed call is a latency sample. Two running averages follow
//! them: a short one (about the last ten calls) says how the service is
//! doing now, a long one (about the last 500) what is normal for it. The
//! limit compares the two, not single samples with the fastest one ever
//! seen: a real service's latency varies several-fold from call to call,
//! and a worker busy on its own CPU adds to every sample it measures, so
//! comparing single samples with a minimum would read ordinary noise as
//! overload and pin the limit at its floor (it did: 0.7x throughput on the
//! full chain, with requests queueing behind four slots).
//! While the short average stays within twice the long one and the service
//! is in demand (at least half the limit in use), the limit grows by about
//! the square root of itself per ten calls; when it runs longer, the limit
//! shrinks in proportion, never below `min` nor above `max`. A sustained
//! slow-down becomes the new normal after a few hundred calls (as in
//! Netflix's Gradient2); a service that recovers to less than half its
//! normal latency has its normal follow it quickly.

/// A service's adaptive concurrency limit.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    limit: f64,
    min: f64,
    max: f64,
    /// Seconds; `None` until the first sample.
    averages: Option<Averages>,
}

#[derive(Debug, Clone, Copy)]
struct Averages {
    short: f64,
    long: f64,
    /// Samples taken, counted up to [`WARM_SAMPLES`].
    samples: u32,
}

/// Samples before the short average says how the service is doing: the
/// first calls of a cold service (connection set-up, a machine busy with a
/// burst) are not its latency.
const WARM_SAMPLES: u32 = 10;

/// How much of each sample goes into the short average (about ten calls).
const SHORT_WEIGHT: f64 = 0.1;
/// How much of each sample goes into the long average (about 500 calls).
const LONG_WEIGHT: f64 = 0.002;
/// The short average may reach this multiple of the long one before the
/// limit falls.
const TOLERANCE: f64 = 2.0;
/// How much of each new estimate goes into the limit.
const SMOOTHING: f64 = 0.1;

impl AdaptiveLimit {
    /// Starts at `initial`, kept within `min..=max` (at least 1).
    pub fn new(initial: usize, min: usize, max: usize) -> AdaptiveLimit {
        let max = max.max(1) as f64;
        let min = (min.max(1) as f64).min(max);
        AdaptiveLimit {
            limit: (initial as f64).clamp(min, max),
            min,
            max,
            averages: None,
        }
    }

    /// Calls that may be in flight now.
    pub fn current(&self) -> usize {
        self.limit.floor() as usize
    }

    /// The service's usual latency in seconds, once known.
    pub fn baseline(&self) -> Option<f64> {
        self.averages.map(|averages| averages.long)
    }

    /// The service's latency over its last few calls, in seconds, once
    /// known: what a call started now is likely to take.
    pub fn recent(&self) -> Option<f64> {
        self.averages
            .filter(|averages| averages.samples >= WARM_SAMPLES)
            .map(|averages| averages.short)
    }

    /// One call took `seconds`, with `in_use` calls in flight or waiting.
    pub fn sample(&mut self, seconds: f64, in_use: usize) {
        let seconds = seconds.max(1e-6);
        let Some(mut averages) = self.averages else {
            self.averages = Some(Averages {
                short: seconds,
                long: seconds,
                samples: 1,
            });
            return;
        };
        averages.samples = (averages.samples + 1).min(WARM_SAMPLES);
        averages.short += (seconds - averages.short) * SHORT_WEIGHT;
        averages.long += (seconds - averages.long) * LONG_WEIGHT;
        if averages.long > TOLERANCE * averages.short {
            // Recovered: what was normal during the slow spell is not.
            averages.long += (averages.short - averages.long) * SHORT_WEIGHT;
        }
        self.averages = Some(averages);
        let gradient = (TOLERANCE * averages.long / averages.short).clamp(0.5, 1.0);
        let in_demand = in_use as f64 * 2.0 >= self.limit;
        if gradient >= 1.0 && !in_demand {
            // An idle service proves nothing about a higher limit.
            return;
        }
        let estimate = if gradient < 1.0 {
            self.limit * gradient
        } else {
            self.limit + self.limit.sqrt()
        };
        self.limit =
            (self.limit * (1.0 - SMOOTHING) + estimate * SMOOTHING).clamp(self.min, self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::AdaptiveLimit;

    #[test]
    fn the_limit_rises_under_demand_at_steady_latency_and_falls_when_latency_grows() {
        let mut limit = AdaptiveLimit::new(128, 4, 1024);
        for _ in 0..500 {
            limit.sample(0.050, limit.current());
        }
        let risen = limit.current();
        assert!(risen > 128, "{risen}");
        for _ in 0..40 {
            limit.sample(0.500, risen);
        }
        let fallen = limit.current();
        assert!(fallen < risen / 2, "{fallen} < {risen}/2");
        let mut floor = AdaptiveLimit::new(128, 4, 1024);
        floor.sample(0.05, 1);
        for _ in 0..120 {
            floor.sample(5.0, 100);
        }
        assert_eq!(floor.current(), 4);
    }

    /// Latency that varies twentyfold from call to call around a steady
    /// mean is the service's normal, not overload: the limit holds or grows.
    #[test]
    fn noisy_but_steady_latency_does_not_lower_the_limit() {
        let mut limit = AdaptiveLimit::new(128, 4, 2048);
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let seconds = 0.0002 + (state % 1000) as f64 * 0.000_004;
            limit.sample(seconds, 64);
        }
        assert!(limit.current() >= 128, "{}", limit.current());
    }

    /// After a slow spell the service's normal follows it back down, so the
    /// next slow-down is seen at once.
    #[test]
    fn a_recovered_service_regains_its_normal() {
        let mut limit = AdaptiveLimit::new(128, 4, 1024);
        for _ in 0..3000 {
            limit.sample(0.5, 100);
        }
        for _ in 0..100 {
            limit.sample(0.01, 100);
        }
        let normal = limit.baseline().expect("sampled");
        assert!(normal < 0.05, "{normal}");
    }

    #[test]
    fn an_idle_service_keeps_its_limit_and_bounds_hold() {
        let mut limit = AdaptiveLimit::new(128, 4, 200);
        for _ in 0..500 {
            limit.sample(0.010, 1);
        }
        assert_eq!(limit.current(), 128);
        for _ in 0..5000 {
            limit.sample(0.010, 1000);
        }
        assert_eq!(limit.current(), 200);
        assert_eq!(AdaptiveLimit::new(0, 0, 0).current(), 1);
    }
}
