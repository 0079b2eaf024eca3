//! Cluster-wide gateway metrics. Each worker adds to local counters on the hot
//! path (one uncontended lock, no I/O) and a background task flushes them to
//! one Redis hash in batches; `gateway/metrics` reads the totals.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;

use fred::prelude::*;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::redis::records::ServiceCounter;
use crate::redis::{keys, scripts};

#[derive(Debug, Default, Clone, Copy)]
struct ServiceCounters {
    requests: i64,
    errors: i64,
    time_us: i64,
}

#[derive(Debug, Default)]
struct Batch {
    total: i64,
    successful: i64,
    failed: i64,
    rate_limit_hits: i64,
    services: HashMap<String, ServiceCounters>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.total == 0 && self.rate_limit_hits == 0
    }

    fn into_deltas(self) -> Vec<(String, i64)> {
        let mut deltas = vec![
            ("gateway:total_requests".to_string(), self.total),
            ("gateway:successful_requests".to_string(), self.successful),
            ("gateway:failed_requests".to_string(), self.failed),
            ("gateway:rate_limit_hits".to_string(), self.rate_limit_hits),
        ];
        for (service, counters) in self.services {
            deltas.push((ServiceCounter::Requests.field(&service), counters.requests));
            deltas.push((ServiceCounter::Errors.field(&service), counters.errors));
            deltas.push((ServiceCounter::TimeMicros.field(&service), counters.time_us));
        }
        deltas.retain(|(_, delta)| *delta != 0);
        deltas
    }
}

/// A batch that failed to flush keeps its sequence number, so resending it
/// cannot count twice.
struct Pending {
    sequence: u64,
    deltas: Vec<(String, i64)>,
}

#[derive(Default)]
pub struct MetricsRecorder {
    batch: Mutex<Batch>,
}

/// Batches kept while Redis is unreachable (an hour at the default 1 s flush).
const MAX_PENDING_BATCHES: usize = 3600;

/// How long Redis remembers a worker's last flushed batch; far longer than any retry.
const BATCH_MARKER_EXPIRY: Duration = Duration::from_secs(600);

impl MetricsRecorder {
    /// Counts one request refused by a rate limit (it is also counted by
    /// [`MetricsRecorder::record`] when its 429 reply goes out).
    pub fn record_rate_limited(&self) {
        self.batch.lock().rate_limit_hits += 1;
    }

    /// Counts one answered request. `service` is the upstream it was forwarded
    /// to, if any; a status of 400 or more counts as a failure, as in the reference.
    pub fn record(&self, service: Option<&str>, status: u16, elapsed: Duration) {
        let failed = status >= 400;
        let mut batch = self.batch.lock();
        batch.total += 1;
        if failed {
            batch.failed += 1;
        } else {
            batch.successful += 1;
        }
        let Some(service) = service else {
            return;
        };
        let counters = match batch.services.get_mut(service) {
            Some(counters) => counters,
            None => batch.services.entry(service.to_string()).or_default(),
        };
        counters.requests += 1;
        counters.errors += i64::from(failed);
        counters.time_us += i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX);
    }

    fn take(&self) -> Batch {
        let mut batch = self.batch.lock();
        std::mem::take(&mut *batch)
    }

    /// Flushes every `interval`, and once more when cancelled.
    pub async fn run_flush(&self, redis: Client, interval: Duration, cancel: CancellationToken) {
        // One id per process: a restarted worker starts its sequence afresh.
        let flusher_id = uuid::Uuid::new_v4().simple().to_string();
        let mut sequence = 0;
        let mut pending: Vec<Pending> = Vec::new();
        let mut every = crate::Every::new(interval, cancel);
        loop {
            let stopping = !every.tick().await;
            let batch = self.take();
            if !batch.is_empty() {
                sequence += 1;
                pending.push(Pending {
                    sequence,
                    deltas: batch.into_deltas(),
                });
            }
            if pending.len() > MAX_PENDING_BATCHES {
                let dropped = pending.len() - MAX_PENDING_BATCHES;
                pending.drain(..dropped);
                tracing::warn!(
                    dropped,
                    "redis unreachable for long: oldest metric batches dropped"
                );
            }
            // In order: once a later batch is applied, Redis refuses the earlier ones.
            while let Some(batch) = pending.first() {
                let flushed = scripts::flush_metrics(
                    &redis,
                    &flusher_id,
                    batch.sequence,
                    &batch.deltas,
                    BATCH_MARKER_EXPIRY,
                )
                .await;
                if let Err(error) = flushed {
                    tracing::warn!(%error, pending = pending.len(), "metrics flush failed, will retry");
                    break;
                }
                pending.remove(0);
            }
            if stopping {
                return;
            }
        }
    }
}

/// The reference's `gateway/metrics` report, from the cluster-wide totals.
pub async fn read_report(redis: &Client) -> anyhow::Result<Value> {
    let fields: HashMap<String, i64> = redis.hgetall(keys::METRICS).await?;
    let get = |name: &str| fields.get(name).copied().unwrap_or(0);
    let total = get("gateway:total_requests");
    let successful = get("gateway:successful_requests");
    let mut services = Map::new();
    let mut names: Vec<&str> = fields
        .keys()
        .filter_map(|key| ServiceCounter::requests_of(key))
        .collect();
    names.sort_unstable();
    for name in names {
        let requests = get(&ServiceCounter::Requests.field(name));
        let errors = get(&ServiceCounter::Errors.field(name));
        let time_us = get(&ServiceCounter::TimeMicros.field(name));
        let per_request = |value: i64| value as f64 / requests.max(1) as f64;
        services.insert(
            name.to_string(),
            json!({
                "total_requests": requests,
                "avg_response_time": per_request(time_us) / 1e6,
                "error_rate": per_request(errors) * 100.0,
            }),
        );
    }
    Ok(json!({
        "gateway": {
            "total_requests": total,
            "successful_requests": successful,
            "failed_requests": get("gateway:failed_requests"),
            "success_rate": successful as f64 / total.max(1) as f64 * 100.0,
            "rate_limit_hits": get("gateway:rate_limit_hits"),
        },
        "services": services,
    }))
}
