//! The reference's request, response and error logs, kept in Redis as capped
//! lists (`{routemq}:logs:*`, newest first). Entries are buffered per worker
//! and pushed in one script call per interval, never on the request path; a
//! batch that fails is dropped (logs are best effort) and counted.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::prelude::Client;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::redis::scripts;

/// Entries kept while Redis is slow; beyond this, new entries are dropped.
const MAX_BUFFERED: usize = 30_000;

#[derive(Default)]
struct Buffer {
    requests: Vec<String>,
    responses: Vec<String>,
    errors: Vec<String>,
    dropped: u64,
}

impl Buffer {
    fn len(&self) -> usize {
        self.requests.len() + self.responses.len() + self.errors.len()
    }
}

/// One answered request, as logged.
pub struct LogRecord<'a> {
    pub request_id: &'a str,
    pub trace_id: Option<&'a str>,
    pub topic: &'a str,
    pub route: Option<&'a str>,
    pub service: Option<&'a str>,
    pub status: u16,
    pub duration: Duration,
    pub worker_id: &'a str,
}

pub struct RequestLog {
    buffer: Mutex<Buffer>,
    /// Entries each list keeps (the reference: 1000).
    cap: usize,
}

impl RequestLog {
    pub fn new(cap: usize) -> RequestLog {
        RequestLog {
            buffer: Mutex::new(Buffer::default()),
            cap: cap.max(1),
        }
    }

    pub fn record(&self, record: &LogRecord<'_>) {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let request = json!({
            "timestamp": timestamp,
            "request_id": record.request_id,
            "trace_id": record.trace_id,
            "topic": record.topic,
            "route": record.route,
            "worker": record.worker_id,
        })
        .to_string();
        let response = json!({
            "timestamp": timestamp,
            "request_id": record.request_id,
            "status": record.status,
            "service": record.service,
            "duration_ms": record.duration.as_secs_f64() * 1000.0,
        })
        .to_string();
        let error = (record.status >= 400).then(|| {
            json!({
                "timestamp": timestamp,
                "request_id": record.request_id,
                "trace_id": record.trace_id,
                "topic": record.topic,
                "status": record.status,
                "service": record.service,
            })
            .to_string()
        });
        let mut buffer = self
            .buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buffer.len() >= MAX_BUFFERED {
            buffer.dropped += 1;
            return;
        }
        buffer.requests.push(request);
        buffer.responses.push(response);
        buffer.errors.extend(error);
    }

    fn take(&self) -> Buffer {
        std::mem::take(
            &mut *self
                .buffer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    async fn flush(&self, redis: &Client) {
        let batch = self.take();
        if batch.dropped > 0 {
            tracing::warn!(
                dropped = batch.dropped,
                "request log entries dropped: buffer full"
            );
        }
        if batch.len() == 0 {
            return;
        }
        // Each list keeps only `cap` entries, so no more are ever sent.
        let newest =
            |entries: &[String]| entries[entries.len().saturating_sub(self.cap)..].to_vec();
        let pushed = scripts::push_logs(
            redis,
            self.cap,
            &newest(&batch.requests),
            &newest(&batch.responses),
            &newest(&batch.errors),
        )
        .await;
        if let Err(error) = pushed {
            tracing::warn!(%error, entries = batch.len(), "request log batch dropped");
        }
    }

    /// Pushes the buffer every `interval` until `stop`, then once more.
    pub async fn run_flush(&self, redis: Client, interval: Duration, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => self.flush(&redis).await,
            }
        }
        self.flush(&redis).await;
    }
}
