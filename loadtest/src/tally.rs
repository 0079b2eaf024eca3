//! Counting as a run goes: an HDR histogram of the whole measured window and
//! one per second for the timeline.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// One second of the measured window.
pub(crate) struct Second {
    pub sent: u64,
    pub replied: u64,
    pub errors: u64,
    pub latency_us: Histogram<u64>,
}

impl Second {
    fn new() -> Second {
        Second {
            sent: 0,
            replied: 0,
            errors: 0,
            latency_us: histogram(),
        }
    }
}

pub(crate) struct Tally {
    pub latency_us: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub sent: u64,
    pub lost: u64,
    /// Open loop only: requests not sent because too many were outstanding.
    pub skipped: u64,
    pub timeline: Vec<Second>,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            latency_us: histogram(),
            statuses: BTreeMap::new(),
            sent: 0,
            lost: 0,
            skipped: 0,
            timeline: Vec::new(),
        }
    }

    fn second(&mut self, offset: Duration) -> &mut Second {
        let index = usize::try_from(offset.as_secs())
            .unwrap_or(usize::MAX)
            .min(86_400);
        while self.timeline.len() <= index {
            self.timeline.push(Second::new());
        }
        &mut self.timeline[index]
    }

    /// A request sent at `offset` into the measured window.
    pub fn sent(&mut self, offset: Duration) {
        self.sent += 1;
        self.second(offset).sent += 1;
    }

    /// A reply that arrived at `offset`, `latency` after the request was (meant to be) sent.
    pub fn replied(&mut self, offset: Duration, latency: Duration, status: u16) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.latency_us.saturating_record(micros);
        *self.statuses.entry(status).or_default() += 1;
        let second = self.second(offset);
        second.replied += 1;
        second.latency_us.saturating_record(micros);
        if status >= 400 {
            second.errors += 1;
        }
    }

    pub fn lost(&mut self) {
        self.lost += 1;
    }
}
