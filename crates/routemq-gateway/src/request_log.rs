//! The reference's request, response and error logs, kept in Redis as capped
//! lists (`{routemq}:logs:*`, newest first). Entries are buffered per worker
//! and pushed in one script call per interval, never on the request path; a
//! batch that fails is dropped (logs are best effort). The lists keep only
//! the newest `cap` entries, so the buffer keeps only those too: a ring
//! whose oldest entry's strings are reused for the next request, so a busy
//! worker neither grows a buffer nor allocates per logged request.

use parking_lot::Mutex;
use std::time::Duration;

use fred::prelude::Client;
use metrics::SharedString;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::redis::scripts;

/// One answered request, kept raw until the flush task encodes it, so the
/// request path only copies a few strings.
struct Entry {
    timestamp: f64,
    request_id: String,
    trace_id: Option<String>,
    topic: String,
    route: Option<SharedString>,
    service: Option<String>,
    status: u16,
    duration: Duration,
}

impl Entry {
    fn request(&self, worker_id: &str) -> String {
        json!({
            "timestamp": self.timestamp,
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "topic": self.topic,
            "route": self.route.as_deref(),
            "worker": worker_id,
        })
        .to_string()
    }

    fn response(&self) -> String {
        json!({
            "timestamp": self.timestamp,
            "request_id": self.request_id,
            "status": self.status,
            "service": self.service,
            "duration_ms": self.duration.as_secs_f64() * 1000.0,
        })
        .to_string()
    }

    fn error(&self) -> Option<String> {
        (self.status >= 400).then(|| {
            json!({
                "timestamp": self.timestamp,
                "request_id": self.request_id,
                "trace_id": self.trace_id,
                "topic": self.topic,
                "status": self.status,
                "service": self.service,
            })
            .to_string()
        })
    }
}

impl Entry {
    /// Overwrites this (evicted) entry with `record`, keeping its allocations.
    fn fill(&mut self, timestamp: f64, record: &LogRecord<'_>) {
        fn set(target: &mut String, value: &str) {
            target.clear();
            target.push_str(value);
        }
        self.timestamp = timestamp;
        set(&mut self.request_id, record.request_id);
        match (&mut self.trace_id, record.trace_id) {
            (Some(target), Some(value)) => set(target, value),
            (target, value) => *target = value.map(str::to_string),
        }
        set(&mut self.topic, record.topic);
        self.route = record.route.cloned();
        match (&mut self.service, record.service) {
            (Some(target), Some(value)) => set(target, value),
            (target, value) => *target = value.map(str::to_string),
        }
        self.status = record.status;
        self.duration = record.duration;
    }

    fn new(timestamp: f64, record: &LogRecord<'_>) -> Entry {
        Entry {
            timestamp,
            request_id: record.request_id.to_string(),
            trace_id: record.trace_id.map(str::to_string),
            topic: record.topic.to_string(),
            route: record.route.cloned(),
            service: record.service.map(str::to_string),
            status: record.status,
            duration: record.duration,
        }
    }
}

/// One answered request, as logged.
pub struct LogRecord<'a> {
    pub request_id: &'a str,
    pub trace_id: Option<&'a str>,
    pub topic: &'a str,
    pub route: Option<&'a SharedString>,
    pub service: Option<&'a str>,
    pub status: u16,
    pub duration: Duration,
}

/// Entries in a ring: once `cap` are kept, each new one overwrites the oldest.
#[derive(Default)]
struct Ring {
    entries: Vec<Entry>,
    /// Where the oldest entry is once the ring is full.
    oldest: usize,
}

pub struct RequestLog {
    /// The newest entries since the last flush, at most `cap`.
    buffer: Mutex<Ring>,
    /// Entries each list keeps (the reference: 1000).
    cap: usize,
    worker_id: String,
}

impl RequestLog {
    pub fn new(cap: usize, worker_id: &str) -> RequestLog {
        RequestLog {
            buffer: Mutex::new(Ring::default()),
            cap: cap.max(1),
            worker_id: worker_id.to_string(),
        }
    }

    pub fn record(&self, record: &LogRecord<'_>) {
        let timestamp = crate::clock::unix_time().as_secs_f64();
        let mut buffer = self.buffer.lock();
        if buffer.entries.len() < self.cap {
            buffer.entries.push(Entry::new(timestamp, record));
            return;
        }
        let oldest = buffer.oldest;
        if let Some(entry) = buffer.entries.get_mut(oldest) {
            entry.fill(timestamp, record);
        }
        buffer.oldest = (oldest + 1) % self.cap;
    }

    /// The entries since the last flush, oldest first, emptying the ring.
    fn take_newest(&self) -> Vec<Entry> {
        let Ring {
            mut entries,
            oldest,
        } = std::mem::take(&mut *self.buffer.lock());
        entries.rotate_left(oldest);
        entries
    }

    async fn flush(&self, redis: &Client) {
        let newest = self.take_newest();
        if newest.is_empty() {
            return;
        }
        let requests: Vec<String> = newest.iter().map(|e| e.request(&self.worker_id)).collect();
        let responses: Vec<String> = newest.iter().map(Entry::response).collect();
        let errors: Vec<String> = newest.iter().filter_map(Entry::error).collect();
        let pushed = scripts::push_logs(redis, self.cap, &requests, &responses, &errors).await;
        if let Err(error) = pushed {
            tracing::warn!(%error, entries = newest.len(), "request log batch dropped");
        }
    }

    /// Pushes the buffer every `interval` until `stop`, then once more.
    pub async fn run_flush(&self, redis: Client, interval: Duration, stop: CancellationToken) {
        let mut every = crate::Every::new(interval, stop);
        while every.tick().await {
            self.flush(&redis).await;
        }
        self.flush(&redis).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_entries_oldest_first() {
        let log = RequestLog::new(3, "w");
        let ids: Vec<String> = (0..7).map(|index| format!("r{index}")).collect();
        for (index, id) in ids.iter().enumerate() {
            log.record(&LogRecord {
                request_id: id,
                trace_id: (index % 2 == 0).then_some("t"),
                topic: "api/x",
                route: None,
                service: (index % 3 == 0).then_some("svc"),
                status: 200,
                duration: Duration::ZERO,
            });
        }
        let kept: Vec<(String, Option<String>, Option<String>)> = log
            .take_newest()
            .into_iter()
            .map(|entry| (entry.request_id, entry.trace_id, entry.service))
            .collect();
        let expected = |id: &str, trace: bool, service: bool| {
            (
                id.to_string(),
                trace.then(|| "t".to_string()),
                service.then(|| "svc".to_string()),
            )
        };
        assert_eq!(
            kept,
            [
                expected("r4", true, false),
                expected("r5", false, false),
                expected("r6", true, true)
            ]
        );
        assert!(log.take_newest().is_empty(), "taken");
    }
}
