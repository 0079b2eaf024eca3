//! Who is asking, as Redis sees it. Scripts tell a retried command from a new
//! one by the attempt id it carries, so ids must never repeat — not even
//! after a restart that keeps its `--worker-id` (StatefulSet pods, compose
//! hostnames): a repeated id would be taken for a repeat and not counted,
//! letting a restarted worker admit a whole rate-limit window again.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One run of one worker: `<worker id>:<random nonce>`, new at every start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessId(Arc<str>);

impl ProcessId {
    /// A fresh id for this run of `worker_id`: 62 random bits of nonce (a v4
    /// UUID's low half), so two runs collide with odds of 1 in 2^62.
    pub fn new(worker_id: &str) -> ProcessId {
        let nonce = uuid::Uuid::new_v4().as_u64_pair().1;
        ProcessId(format!("{worker_id}:{nonce:016x}").into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Attempt ids of one component in one process:
/// `<process id>:<component>:<counter>`, unique across workers and restarts.
pub struct AttemptIds {
    prefix: String,
    next: AtomicU64,
}

impl AttemptIds {
    pub fn new(process: &ProcessId, component: &str) -> AttemptIds {
        AttemptIds {
            prefix: format!("{process}:{component}"),
            next: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> String {
        format!(
            "{}:{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{AttemptIds, ProcessId};

    #[test]
    fn restarts_with_the_same_worker_id_issue_new_attempt_ids() {
        let before = AttemptIds::new(&ProcessId::new("worker-1"), "rate_limit");
        let after = AttemptIds::new(&ProcessId::new("worker-1"), "rate_limit");
        let first = before.next();
        assert_ne!(first, before.next());
        assert_ne!(first, after.next());
        assert!(first.starts_with("worker-1:"), "{first}");
    }
}
