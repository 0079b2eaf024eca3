//! Which cache entries this worker saw and wrote lately, so a reply is
//! cached only once it is wanted again — on its `admit_after`th request
//! within about a refresh interval (cache-on-second-hit, as CDNs do: a
//! stream of one-off requests, or a client varying its query, writes
//! nothing) — and then rewritten once per interval, not on every request.
//!
//! Two generations of maps, swapped every interval: a key seen in the
//! current or the previous generation keeps its count; written keys are not
//! written again until they fall out of both, so each is rewritten between
//! one and two intervals after its last write while it is requested. Each
//! generation holds at most `capacity` keys; past that, new keys are not
//! counted (with `admit_after` 1 they are written, unremembered: Redis caps
//! what they cost), so memory here is bounded whatever clients send.
//! Hand-written: a cache crate would add eviction machinery this needs none
//! of.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub struct RecentWrites {
    interval: Duration,
    capacity: usize,
    /// Requests for one key (this worker, this interval or the last) before it is cached.
    admit_after: u32,
    generations: Mutex<Generations>,
}

/// Requests seen for a key; `WRITTEN` once it has been written.
type Seen = u32;
const WRITTEN: Seen = u32::MAX;

struct Generations {
    started: Instant,
    current: HashMap<[u8; 32], Seen>,
    previous: HashMap<[u8; 32], Seen>,
}

impl RecentWrites {
    pub fn new(interval: Duration, capacity: usize, admit_after: u32) -> RecentWrites {
        RecentWrites {
            interval,
            capacity,
            admit_after: admit_after.max(1),
            generations: Mutex::new(Generations {
                started: Instant::now(),
                current: HashMap::new(),
                previous: HashMap::new(),
            }),
        }
    }

    /// Whether `key`'s reply should be written now; if so, it counts as written.
    pub fn due(&self, key: [u8; 32], now: Instant) -> bool {
        let mut generations = self.generations.lock();
        if now.duration_since(generations.started) >= self.interval {
            let current = std::mem::take(&mut generations.current);
            generations.previous = current;
            generations.started = now;
        }
        let seen = generations
            .current
            .get(&key)
            .or_else(|| generations.previous.get(&key))
            .copied()
            .unwrap_or(0);
        if seen == WRITTEN {
            return false;
        }
        let due = seen + 1 >= self.admit_after;
        let remembered = generations.current.contains_key(&key);
        if remembered || generations.current.len() < self.capacity {
            generations
                .current
                .insert(key, if due { WRITTEN } else { seen + 1 });
        } else if !due {
            // Past the cap and not counted: not cached this time.
            return false;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_written_again_only_after_an_interval_has_passed() {
        let writes = RecentWrites::new(Duration::from_secs(10), 100, 1);
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
        let writes = RecentWrites::new(Duration::from_secs(10), 2, 1);
        let now = Instant::now();
        for index in 0..5u8 {
            assert!(writes.due([index; 32], now));
        }
        assert!(!writes.due([0; 32], now), "remembered");
        assert!(writes.due([4; 32], now), "past the cap: written again");
        assert!(writes.generations.lock().current.len() <= 2);
    }

    #[test]
    fn with_admit_after_two_only_a_key_wanted_again_is_written() {
        let writes = RecentWrites::new(Duration::from_secs(10), 100, 2);
        let start = Instant::now();
        assert!(!writes.due([1; 32], start), "first request: only counted");
        assert!(
            writes.due([1; 32], start + Duration::from_secs(12)),
            "second, one generation later"
        );
        assert!(
            !writes.due([1; 32], start + Duration::from_secs(13)),
            "then written once per interval"
        );
        for index in 10..60u8 {
            assert!(
                !writes.due([index; 32], start + Duration::from_secs(13)),
                "one-off requests write nothing"
            );
        }
    }
}
