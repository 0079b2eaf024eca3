//! The reference's request, response and error logs, kept in Redis as capped
//! lists (`{routemq}:logs:*`, newest first). Entries are buffered per worker
//! and pushed in one script call per interval, never on the request path; a
//! batch that fails is dropped (logs are best effort). The lists keep only
//! the newest `cap` entries, so the buffer keeps only those too: a ring
//! whose oldest entry's strings are reused for the next request, so a busy
//! worker neither grows a buffer nor allocates per logged request.

use parking_lot::Mutex;
use std::collections::VecDeque;
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

pub struct RequestLog {
    /// The newest entries since the last flush, oldest first, at most `cap`.
    buffer: Mutex<VecDeque<Entry>>,
    /// Entries each list keeps (the reference: 1000).
    cap: usize,
    worker_id: String,
}

impl RequestLog {
    pub fn new(cap: usize, worker_id: &str) -> RequestLog {
        RequestLog {
            buffer: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
            worker_id: worker_id.to_string(),
        }
    }

    pub fn record(&self, record: &LogRecord<'_>) {
        let timestamp = crate::unix_time().as_secs_f64();
        let mut buffer = self.buffer.lock();
        if buffer.len() < self.cap {
            buffer.push_back(Entry::new(timestamp, record));
            return;
        }
        if let Some(mut oldest) = buffer.pop_front() {
            oldest.fill(timestamp, record);
            buffer.push_back(oldest);
        }
    }

    async fn flush(&self, redis: &Client) {
        let newest = std::mem::take(&mut *self.buffer.lock());
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
