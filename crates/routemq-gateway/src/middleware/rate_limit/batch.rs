//! Rate-limit attempts that reach a limiter in the same pass of the
//! scheduler go to Redis as one script call: under load a worker holds many
//! requests at once, and one EVALSHA for all of them costs one write and one
//! read on each side instead of one per request. The batch is sent one
//! scheduler pass after its first attempt arrived, so an attempt waits for
//! no timer, only for the requests already runnable.
//!
//! A batch holds at most [`MAX_BATCH`] attempts and, on a Redis Cluster, only
//! keys of one hash slot (a script's keys must share one). Each batch is its
//! own task, so a request that is dropped while it waits cancels nothing for
//! the others. Hand-written: fred flushes every EVALSHA on its own, and
//! pipelining does not change that.

use std::collections::BTreeMap;
use std::sync::Arc;

use fred::error::{Error, ErrorKind};
use fred::prelude::{Client, ClientLike, FredResult};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::redis::clock::RedisClock;
use crate::redis::scripts::{self, Attempt, Limit, RateVerdict};

/// Attempts per script call; a larger batch goes as several calls at once.
const MAX_BATCH: usize = 64;

pub struct LimitBatcher {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Client,
    limit: Limit,
    /// Redis time as last seen, so a call that runs too late counts nothing.
    clock: RedisClock,
    queue: Mutex<Vec<Queued>>,
}

struct Queued {
    key: String,
    attempt_id: String,
    verdict: oneshot::Sender<FredResult<RateVerdict>>,
}

impl LimitBatcher {
    pub fn new(redis: Client, limit: Limit) -> LimitBatcher {
        LimitBatcher {
            inner: Arc::new(Inner {
                redis,
                limit,
                clock: RedisClock::default(),
                queue: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Counts one attempt (`attempt_id`, unique per request) in the log or
    /// state at `key`, with whatever other attempts arrive in the same pass.
    pub async fn count(&self, key: String, attempt_id: String) -> FredResult<RateVerdict> {
        let (verdict, answer) = oneshot::channel();
        let starts_batch = {
            let mut queue = self.inner.queue.lock();
            queue.push(Queued {
                key,
                attempt_id,
                verdict,
            });
            queue.len() == 1
        };
        if starts_batch {
            let inner = Arc::clone(&self.inner);
            tokio::spawn(async move {
                // One pass: the requests already runnable add their attempts.
                tokio::task::yield_now().await;
                inner.send_queued().await;
            });
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Canceled,
                "rate limit batch dropped before it answered",
            ))
        })
    }
}

impl Inner {
    async fn send_queued(&self) {
        let queued = std::mem::take(&mut *self.queue.lock());
        let batches = batches(queued, self.redis.is_clustered());
        futures::future::join_all(batches.into_iter().map(|batch| self.send(batch))).await;
    }

    async fn send(&self, batch: Vec<Queued>) {
        let attempts: Vec<Attempt<'_>> = batch
            .iter()
            .map(|queued| Attempt {
                key: &queued.key,
                attempt_id: &queued.attempt_id,
            })
            .collect();
        // Boxed: fred's command futures are large.
        let counted = Box::pin(scripts::count_attempts(
            &self.redis,
            &self.clock,
            self.limit,
            &attempts,
        ))
        .await;
        drop(attempts);
        match counted {
            Ok(verdicts) => {
                for (queued, verdict) in batch.into_iter().zip(verdicts) {
                    queued.verdict.send(Ok(verdict)).ok();
                }
            }
            Err(error) => {
                for queued in batch {
                    queued.verdict.send(Err(error.clone())).ok();
                }
            }
        }
    }
}

/// `queued` in arrival order, split into script calls: one slot each on a
/// cluster, at most [`MAX_BATCH`] attempts each.
fn batches(queued: Vec<Queued>, clustered: bool) -> Vec<Vec<Queued>> {
    let mut by_slot: BTreeMap<u16, Vec<Queued>> = BTreeMap::new();
    for attempt in queued {
        let slot = if clustered {
            fred::util::redis_keyslot(attempt.key.as_bytes())
        } else {
            0
        };
        by_slot.entry(slot).or_default().push(attempt);
    }
    let mut batches = Vec::new();
    for (_, mut attempts) in by_slot {
        while attempts.len() > MAX_BATCH {
            let rest = attempts.split_off(MAX_BATCH);
            batches.push(std::mem::replace(&mut attempts, rest));
        }
        batches.push(attempts);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(key: &str) -> Queued {
        Queued {
            key: key.to_string(),
            attempt_id: String::new(),
            verdict: oneshot::channel().0,
        }
    }

    #[test]
    fn batches_keep_order_split_by_slot_on_a_cluster_and_are_capped() {
        let keys =
            |batch: &Vec<Queued>| -> Vec<String> { batch.iter().map(|q| q.key.clone()).collect() };
        let mixed = || vec![queued("{a}:1"), queued("{b}:1"), queued("{a}:2")];
        let single = batches(mixed(), false);
        assert_eq!(single.len(), 1);
        assert_eq!(keys(&single[0]), ["{a}:1", "{b}:1", "{a}:2"]);
        let clustered = batches(mixed(), true);
        assert_eq!(clustered.len(), 2);
        assert!(clustered
            .iter()
            .any(|batch| keys(batch) == ["{a}:1", "{a}:2"]));
        let many = batches((0..150).map(|_| queued("{a}")).collect(), false);
        let sizes: Vec<usize> = many.iter().map(Vec::len).collect();
        assert_eq!(sizes, [64, 64, 22]);
    }
}
