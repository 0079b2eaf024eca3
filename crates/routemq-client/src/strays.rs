//! Replies that matched no waiting request, told apart when tracked.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::StrayReplies;

/// What became of the correlation data of finished requests.
#[derive(Default)]
pub(crate) struct Strays {
    tracking: bool,
    answered: Mutex<HashSet<Bytes>>,
    timed_out: Mutex<HashSet<Bytes>>,
    duplicates: AtomicU64,
    late: AtomicU64,
    unknown: AtomicU64,
}

impl Strays {
    /// Remembers answered and timed-out requests only when `tracking`.
    pub(crate) fn new(tracking: bool) -> Strays {
        Strays {
            tracking,
            ..Strays::default()
        }
    }

    pub(crate) fn answered(&self, correlation: &Bytes) {
        if self.tracking {
            self.answered.lock().insert(correlation.clone());
        }
    }

    pub(crate) fn timed_out(&self, correlation: Bytes) {
        if self.tracking {
            self.timed_out.lock().insert(correlation);
        }
    }

    /// Classifies a reply nobody waits for.
    pub(crate) fn stray(&self, correlation: &Bytes) {
        let counter = if self.timed_out.lock().remove(correlation) {
            self.answered.lock().insert(correlation.clone());
            &self.late
        } else if self.answered.lock().contains(correlation) {
            &self.duplicates
        } else {
            &self.unknown
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> StrayReplies {
        StrayReplies {
            duplicates: self.duplicates.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            unknown: self.unknown.load(Ordering::Relaxed),
        }
    }
}
