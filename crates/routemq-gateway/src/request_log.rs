//! The reference's request, response and error logs, kept in Redis as capped
//! lists (`{routemq}:logs:*`, newest first). Entries are buffered per worker
//! and pushed in one script call per interval, never on the request path; a
//! batch that fails is dropped (logs are best effort) and counted.

use parking_lot::Mutex;
use std::time::Duration;

use fred::prelude::Client;
use metrics::SharedString;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::redis::scripts;

/// Entries kept while Redis is slow; beyond this, new entries are dropped.
const MAX_BUFFERED: usize = 30_000;

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

#[derive(Default)]
struct Buffer {
    entries: Vec<Entry>,
    dropped: u64,
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
    buffer: Mutex<Buffer>,
    /// Entries each list keeps (the reference: 1000).
    cap: usize,
    worker_id: String,
}

impl RequestLog {
    pub fn new(cap: usize, worker_id: &str) -> RequestLog {
        RequestLog {
            buffer: Mutex::new(Buffer::default()),
            cap: cap.max(1),
            worker_id: worker_id.to_string(),
        }
    }

    pub fn record(&self, record: &LogRecord<'_>) {
        let timestamp = crate::unix_time().as_secs_f64();
        let mut buffer = self.buffer.lock();
        if buffer.entries.len() >= MAX_BUFFERED {
            buffer.dropped += 1;
            return;
        }
        buffer.entries.push(Entry {
            timestamp,
            request_id: record.request_id.to_string(),
            trace_id: record.trace_id.map(str::to_string),
            topic: record.topic.to_string(),
            route: record.route.cloned(),
            service: record.service.map(str::to_string),
            status: record.status,
            duration: record.duration,
        });
    }

    fn take(&self) -> Buffer {
        std::mem::take(&mut *self.buffer.lock())
    }

    async fn flush(&self, redis: &Client) {
        let batch = self.take();
        if batch.dropped > 0 {
            tracing::warn!(
                dropped = batch.dropped,
                "request log entries dropped: buffer full"
            );
        }
        if batch.entries.is_empty() {
            return;
        }
        // Each list keeps only `cap` entries, so no more are ever sent.
        let newest = &batch.entries[batch.entries.len().saturating_sub(self.cap)..];
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
