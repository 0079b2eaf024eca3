//! What the worker hands to its reply connection, until it is written.
//!
//! Every reply is handed over with a stamp — when, and the request's share
//! of the intake memory budget — under the same lock as its place in
//! rumqttc's request queue, so stamps and queue keep one order. Each reply
//! rumqttc writes (its `Outgoing::Publish` event, in that order) takes the
//! oldest stamp away: a reply waiting to be written still counts against the
//! budget, and the budget comes back only once the bytes are on their way.
//! The queue has a fixed number of places ([`Outflow::hand`] waits for one),
//! so nothing in it is unbounded.
//!
//! rumqttc reads its queue only while the broker's receive maximum leaves
//! room for another QoS 1 PUBLISH. A slot the broker never frees (an ack
//! lost on the way, a packet-id collision) stops every reply behind it while
//! the connection looks healthy. When the oldest stamp is older than the
//! stall timeout the session is stuck: `/readyz` turns 503 and the reply
//! connection is dropped to start a fresh one. A request waiting on a slow
//! upstream hands nothing over, so it never looks like a stall.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use routemq_gateway::upstream::LargeReply;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::memory::Held;
use crate::telemetry::Readiness;

/// One reply in rumqttc's queue.
struct Handed {
    at: Instant,
    _keep: Keep,
}

/// What a reply in the queue holds until it is written (given back when
/// it is dropped).
#[derive(Default)]
pub struct Keep {
    _held: Option<Held>,
    _chunk: Option<OwnedSemaphorePermit>,
    _large: Option<LargeReply>,
}

impl Keep {
    /// `held`: its request's share of the intake budget (none for a shed
    /// reply, nor for a chunk before the last); `chunk`: a chunk's place
    /// among the chunks a worker has in flight; `large`: the worker's slot
    /// for a body over `max_response_bytes`.
    pub fn new(
        held: Option<Held>,
        chunk: Option<OwnedSemaphorePermit>,
        large: Option<LargeReply>,
    ) -> Keep {
        Keep {
            _held: held,
            _chunk: chunk,
            _large: large,
        }
    }
}

/// Replies handed to the client and not yet written, oldest first.
pub struct Outflow {
    waiting: Mutex<VecDeque<Handed>>,
    /// Free places in the client's queue.
    room: Semaphore,
    /// Wakes the reply connection's loop to drop a stuck connection.
    pub stalled: Notify,
}

/// Why the client refused a reply (boxed: rumqttc's error holds the request).
pub type QueueError = Box<rumqttc::v5::ClientError>;

/// The client's queue had no place, or refused the reply.
#[derive(Debug)]
pub struct NotHanded;

impl Outflow {
    /// An outflow for a client queue of `places`.
    pub fn new(places: usize) -> Outflow {
        Outflow {
            waiting: Mutex::new(VecDeque::new()),
            room: Semaphore::new(places),
            stalled: Notify::new(),
        }
    }

    /// Waits for a place, then queues a reply with `queue` (which must not
    /// wait: a `try_` call on the client) holding `keep` until it is written.
    pub async fn hand(
        &self,
        keep: Keep,
        queue: impl FnOnce() -> Result<(), QueueError>,
    ) -> Result<(), NotHanded> {
        let place = self.room.acquire().await.map_err(|_| NotHanded)?;
        place.forget();
        self.queue(keep, queue)
    }

    /// Queues a reply only if a place is free now.
    pub fn try_hand(
        &self,
        queue: impl FnOnce() -> Result<(), QueueError>,
    ) -> Result<(), NotHanded> {
        let place = self.room.try_acquire().map_err(|_| NotHanded)?;
        place.forget();
        self.queue(Keep::default(), queue)
    }

    fn queue(
        &self,
        keep: Keep,
        queue: impl FnOnce() -> Result<(), QueueError>,
    ) -> Result<(), NotHanded> {
        let mut waiting = self.waiting.lock();
        if let Err(error) = queue() {
            self.room.add_permits(1);
            tracing::error!(%error, "could not queue a reply");
            return Err(NotHanded);
        }
        waiting.push_back(Handed {
            at: Instant::now(),
            _keep: keep,
        });
        Ok(())
    }

    /// rumqttc wrote the oldest reply to the network.
    pub fn sent(&self) {
        if self.waiting.lock().pop_front().is_some() {
            self.room.add_permits(1);
        }
    }

    /// Runs `drop_queue` (which empties the client's queue: the connection
    /// is gone) under the lock hand-offs take, so no reply slips in between;
    /// returns how many replies were dropped with it.
    pub fn forget(&self, drop_queue: impl FnOnce()) -> usize {
        let mut waiting = self.waiting.lock();
        drop_queue();
        let dropped = waiting.len();
        waiting.clear();
        self.room.add_permits(dropped);
        dropped
    }

    /// A connection is up: what was handed while there was none has waited
    /// for the broker, not on it, so its clock starts now.
    pub fn connected(&self) {
        let now = Instant::now();
        self.waiting
            .lock()
            .iter_mut()
            .for_each(|handed| handed.at = now);
    }

    /// How long the oldest hand-off has waited.
    fn oldest_wait(&self) -> Option<Duration> {
        self.waiting
            .lock()
            .front()
            .map(|handed| handed.at.elapsed())
    }
}

/// Checks the outflow a few times per `timeout` until `stop`; a stall is
/// counted, logged, shown on `/readyz` and ends the reply connection.
pub async fn watch(
    outflow: Arc<Outflow>,
    timeout: Duration,
    readiness: Arc<Readiness>,
    stop: CancellationToken,
) {
    let mut every = routemq_gateway::Every::new((timeout / 4).max(Duration::from_millis(50)), stop);
    while every.tick().await {
        let Some(waited) = outflow.oldest_wait() else {
            continue;
        };
        let connected = readiness.replies_connected.load(Ordering::Relaxed);
        if waited < timeout || !connected || readiness.stalled.load(Ordering::Relaxed) {
            continue;
        }
        metrics::counter!("routemq_mqtt_stalls_total").increment(1);
        tracing::error!(
            waited = ?waited,
            "the broker connection stopped taking replies; reconnecting"
        );
        readiness.set(&readiness.stalled, true);
        outflow.stalled.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use rumqttc::v5::mqttbytes::v5::Publish;
    use rumqttc::v5::mqttbytes::QoS;

    use super::super::memory::MemoryBudget;
    use super::*;

    #[tokio::test]
    async fn the_oldest_unsent_reply_is_measured_in_order_and_places_come_back() {
        let outflow = Outflow::new(2);
        assert_eq!(outflow.oldest_wait(), None);
        let budget = MemoryBudget::new(1 << 20);
        let request = Publish::new("api/x", QoS::AtLeastOnce, "", None);
        let held = budget.try_take(&request).expect("fits");
        outflow
            .hand(Keep::new(Some(held), None, None), || Ok(()))
            .await
            .expect("a place");
        std::thread::sleep(Duration::from_millis(5));
        outflow.try_hand(|| Ok(())).expect("a second place");
        assert!(outflow.try_hand(|| Ok(())).is_err(), "the queue is full");
        let first = outflow.oldest_wait().expect("waiting");
        outflow.sent();
        let second = outflow.oldest_wait().expect("still one");
        assert!(second < first, "{second:?} < {first:?}");
        outflow.try_hand(|| Ok(())).expect("a place came back");
        assert_eq!(outflow.forget(|| {}), 2);
        assert_eq!(outflow.oldest_wait(), None);
        outflow.sent();
        let refused = || {
            Err(Box::new(rumqttc::v5::ClientError::Request(
                rumqttc::v5::Request::PingReq,
            )))
        };
        assert!(outflow.try_hand(refused).is_err());
        outflow
            .try_hand(|| Ok(()))
            .expect("a refused reply gave its place back");
        outflow
            .try_hand(|| Ok(()))
            .expect("and the others are free");
    }
}
