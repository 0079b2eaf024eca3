//! Which cache entries this worker wrote lately, so a reply requested over
//! and over is written once per refresh interval, not on every request.
//!
//! Two generations of hashes, swapped every interval: a key written in the
//! current or the previous generation is not written again, so each key is
//! rewritten between one and two intervals after its last write while it is
//! requested. Each generation holds at most `capacity` keys; past that, new
//! keys are written without being remembered (Redis caps what they cost),
//! so memory here is bounded whatever clients send. Hand-written: a cache
//! crate would add eviction machinery this needs none of.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub struct RecentWrites {
    interval: Duration,
    capacity: usize,
    generations: Mutex<Generations>,
}

struct Generations {
    started: Instant,
    current: HashSet<[u8; 32]>,
    previous: HashSet<[u8; 32]>,
}

impl RecentWrites {
    pub fn new(interval: Duration, capacity: usize) -> RecentWrites {
        RecentWrites {
            interval,
            capacity,
            generations: Mutex::new(Generations {
                started: Instant::now(),
                current: HashSet::new(),
                previous: HashSet::new(),
            }),
        }
    }

    /// Whether `key` is due a write now; if so, it counts as written.
    pub fn due(&self, key: [u8; 32], now: Instant) -> bool {
        let mut generations = self.generations.lock();
        if now.duration_since(generations.started) >= self.interval {
            let current = std::mem::take(&mut generations.current);
            generations.previous = current;
            generations.started = now;
        }
        if generations.current.contains(&key) || generations.previous.contains(&key) {
            return false;
        }
        if generations.current.len() < self.capacity {
            generations.current.insert(key);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_written_again_only_after_an_interval_has_passed() {
        let writes = RecentWrites::new(Duration::from_secs(10), 100);
        let start = Instant::now();
        let key = [7; 32];
        assert!(writes.due(key, start));
        assert!(!writes.due(key, start + Duration::from_secs(1)));
        assert!(
            !writes.due(key, start + Duration::from_secs(15)),
            "kept one generation more"
        );
        assert!(writes.due(key, start + Duration::from_secs(25)));
        assert!(
            writes.due([8; 32], start + Duration::from_secs(25)),
            "other keys are their own"
        );
    }

    #[test]
    fn memory_is_capped_and_unremembered_keys_are_still_written() {
        let writes = RecentWrites::new(Duration::from_secs(10), 2);
        let now = Instant::now();
        for index in 0..5u8 {
            assert!(writes.due([index; 32], now));
        }
        assert!(!writes.due([0; 32], now), "remembered");
        assert!(writes.due([4; 32], now), "past the cap: written again");
        assert!(writes.generations.lock().current.len() <= 2);
    }
}
