//! Intake: each delivered request becomes a task — gateway pipeline, reply,
//! then the acknowledgement — only once it holds a slot, so what a worker
//! holds in memory is bounded whatever clients send.
//!
//! QoS 1/2 requests are bounded by the MQTT receive maximum the worker
//! advertises (the broker holds the rest), so one waits for its slot. QoS 0
//! has no flow control at all: a request beyond its own pool of slots is
//! shed at once — answered `503 overloaded` if it names a Response Topic,
//! dropped otherwise — and counted (`routemq_requests_shed_total`). The two
//! pools are separate, so a QoS 0 flood cannot take the slots of QoS 1/2
//! requests.

use std::sync::Arc;
use std::time::Instant;

use routemq_gateway::Gateway;
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use super::event_loop::{Delivery, LoopEvent};
use super::memory::{Held, MemoryBudget};
use super::message;
use super::replies::Replies;
use super::session::{Acked, Arrival, Session};

/// Slots per worker: QoS 1/2 and QoS 0 requests handled at once, and the
/// bytes they may hold between them.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    pub acked: usize,
    pub qos0: usize,
    pub memory_bytes: usize,
}

pub struct Dispatcher {
    gateway: Arc<Gateway>,
    replies: Arc<Replies>,
    session: Arc<Session>,
    acked_slots: Arc<Semaphore>,
    qos0_slots: Arc<Semaphore>,
    memory: MemoryBudget,
    /// Requests being handled, for Prometheus.
    in_flight_gauge: metrics::Gauge,
    pub requests: TaskTracker,
}

impl Dispatcher {
    pub fn new(
        gateway: Arc<Gateway>,
        replies: Arc<Replies>,
        session: Arc<Session>,
        capacity: Capacity,
    ) -> Dispatcher {
        metrics::gauge!("routemq_requests_capacity").set(capacity.acked as f64);
        Dispatcher {
            gateway,
            replies,
            session,
            acked_slots: Arc::new(Semaphore::new(capacity.acked)),
            qos0_slots: Arc::new(Semaphore::new(capacity.qos0)),
            memory: MemoryBudget::new(capacity.memory_bytes),
            in_flight_gauge: metrics::gauge!("routemq_requests_in_flight"),
            requests: TaskTracker::new(),
        }
    }

    /// The gateway new requests run on.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Runs requests dispatched from now on on `gateway`; those already
    /// dispatched finish on the one they started with.
    pub fn replace_gateway(&mut self, gateway: Arc<Gateway>) {
        self.gateway = gateway;
    }

    /// Starts handling a request event; any other event is handed back.
    /// Waits only for memory: a QoS 1/2 request that does not fit the
    /// budget waits here, so the worker reads nothing more (and the broker
    /// keeps the rest) until answered requests give some back.
    pub async fn dispatch(&self, event: LoopEvent) -> Option<LoopEvent> {
        let LoopEvent::Request(delivery) = event else {
            return Some(event);
        };
        let Delivery {
            publish,
            received_at,
            connection,
        } = delivery;
        if self.session.arrival(&publish, connection) == Arrival::Duplicate {
            tracing::debug!(
                pkid = publish.pkid,
                "a copy of a delivery still being handled or answered; not run again"
            );
            metrics::counter!("routemq_redeliveries_skipped_total").increment(1);
            return None;
        }
        let task = Task {
            gateway: Arc::clone(&self.gateway),
            replies: Arc::clone(&self.replies),
            session: Arc::clone(&self.session),
            connection,
            gauge: self.in_flight_gauge.clone(),
        };
        if publish.qos == QoS::AtMostOnce {
            let slot = Arc::clone(&self.qos0_slots).try_acquire_owned().ok();
            match slot.zip(self.memory.try_take(&publish)) {
                Some(taken) => {
                    self.requests.spawn(task.run(taken, publish, received_at));
                }
                None => self.shed(&publish, received_at),
            }
            return None;
        }
        let held = self.memory.take(&publish).await?;
        match Arc::clone(&self.acked_slots).try_acquire_owned() {
            Ok(slot) => {
                self.requests
                    .spawn(task.run((slot, held), publish, received_at));
            }
            Err(_) => {
                // At most the receive maximum of these wait, plus the few
                // the broker sends between an ack and its slot's release.
                let slots = Arc::clone(&self.acked_slots);
                self.requests.spawn(async move {
                    let Ok(slot) = slots.acquire_owned().await else {
                        return;
                    };
                    task.run((slot, held), publish, received_at).await;
                });
            }
        }
        None
    }

    /// Answers a QoS 0 request beyond capacity without running it. The reply
    /// is queued only if the reply queue has room: shedding never waits.
    fn shed(&self, publish: &Publish, received_at: Instant) {
        let inbound = message::inbound(publish, received_at);
        if let Some(reply) = self.gateway.shed(&inbound) {
            self.replies.try_publish(reply);
        }
    }
}

/// The QoS a reply goes out at: the request's, but at most 1. A QoS 2
/// request's exactly-once exchange is between its client and the broker; a
/// QoS 2 reply would add nothing but a slot the broker can refuse with a
/// PUBREC failure, which rumqttc 0.25.1 never frees (after the receive
/// maximum of those, the connection sends nothing more).
fn reply_qos(request: QoS) -> QoS {
    match request {
        QoS::AtMostOnce => QoS::AtMostOnce,
        QoS::AtLeastOnce | QoS::ExactlyOnce => QoS::AtLeastOnce,
    }
}

/// What one request's task needs.
struct Task {
    gateway: Arc<Gateway>,
    replies: Arc<Replies>,
    session: Arc<Session>,
    /// The connection the request arrived on: only it may carry the ack.
    connection: u64,
    gauge: metrics::Gauge,
}

impl Task {
    /// Runs the request holding its slot and its share of the memory
    /// budget. The slot comes back once it is answered; the budget once its
    /// reply is written (or at once, when there is none).
    async fn run(
        self,
        (_slot, held): (OwnedSemaphorePermit, Held),
        publish: Box<Publish>,
        received_at: Instant,
    ) {
        self.gauge.increment(1.0);
        self.handle(&publish, received_at, held).await;
        self.gauge.decrement(1.0);
    }

    async fn handle(&self, publish: &Publish, received_at: Instant, held: Held) {
        let inbound = message::inbound(publish, received_at);
        if let Some(reply) = Box::pin(self.gateway.handle(inbound)).await {
            let qos = reply_qos(publish.qos);
            self.replies.publish(reply, qos, held).await;
        }
        // Acked only once its reply is queued on the reply connection.
        if publish.qos == QoS::AtMostOnce {
            return;
        }
        if self.session.ack(publish, self.connection) == Acked::Stale {
            tracing::debug!(
                pkid = publish.pkid,
                "answered after its connection dropped; not acked on the new one"
            );
            metrics::counter!("routemq_stale_acks_total").increment(1);
        }
    }
}
