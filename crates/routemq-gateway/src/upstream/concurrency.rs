//! How many calls a service may have in flight on one worker, learned from
//! its latency (a gradient limiter in the manner of Netflix's
//! concurrency-limits and Envoy's adaptive concurrency filter).
//!
//! Written by hand: the crates that offer one (tower-acc,
//! congestion-limiter) are young, tied to tower's `Service` or their own
//! permit types, and this is one small state machine whose every input the
//! bulkhead already has under its lock.
//!
//! Each completed call is a latency sample, compared with the service's
//! unloaded latency (`baseline`): the lowest sample of the last window of
//! calls (like the minimum round-trip time of TCP Vegas or BBR), so a burst
//! that slows the service does not become its new normal while it lasts.
//! While samples stay within twice the baseline and the service is in
//! demand (at least half the limit in use), the limit grows by about the
//! square root of itself per ten calls; when samples run longer, it shrinks
//! in proportion, never below `min` nor above `max`.

/// A service's adaptive concurrency limit.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    limit: f64,
    min: f64,
    max: f64,
    /// Seconds; `None` until the first sample.
    baseline: Option<f64>,
    /// The lowest sample of the current window, and how many it has had.
    window_min: f64,
    window_samples: u32,
}

/// Calls per window: at its end the baseline becomes the window's lowest
/// sample, so a sustained rise in latency lowers the limit for a window
/// before it becomes the new normal (a lower sample is taken at once).
const WINDOW: u32 = 500;
/// Latency may reach this multiple of the baseline before the limit falls.
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
            baseline: None,
            window_min: f64::INFINITY,
            window_samples: 0,
        }
    }

    /// Calls that may be in flight now.
    pub fn current(&self) -> usize {
        self.limit.floor() as usize
    }

    /// The service's usual latency, once known.
    pub fn baseline(&self) -> Option<f64> {
        self.baseline
    }

    /// One call took `seconds`, with `in_use` calls in flight or waiting.
    pub fn sample(&mut self, seconds: f64, in_use: usize) {
        let seconds = seconds.max(1e-6);
        self.window_min = self.window_min.min(seconds);
        self.window_samples += 1;
        let baseline = match self.baseline {
            None => {
                self.baseline = Some(seconds);
                return;
            }
            Some(baseline) => baseline.min(seconds),
        };
        self.baseline = Some(baseline);
        if self.window_samples >= WINDOW {
            self.baseline = Some(self.window_min);
            self.window_min = f64::INFINITY;
            self.window_samples = 0;
        }
        let gradient = (TOLERANCE * baseline / seconds).clamp(0.5, 1.0);
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
