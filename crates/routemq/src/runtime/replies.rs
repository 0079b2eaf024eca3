//! Replies leave on an MQTT connection of their own.
//!
//! The connection requests arrive on stops reading when the intake memory
//! budget is spent (`memory.rs`): that is how backpressure reaches the
//! broker. But rumqttc writes only while its event loop is polled, and
//! polling also reads, so a reply queued on that same connection waited for
//! the very budget its request held: 4 096 requests of 256 KiB at once
//! stalled a worker. On a connection of its own, a reply goes out whatever
//! the intake does, and gives its request's budget back once written
//! (`outflow.rs`). The request connection carries only acks.
//!
//! Its client id is the worker's with `-replies` appended; it subscribes to
//! nothing and uses the same credentials, so broker ACLs by user name cover
//! it unchanged.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, MqttOptions};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use routemq_gateway::Outbound;

use super::chunked::{self, Chunks};
use super::event_loop::LoopEvent;
use super::memory::Held;
use super::message;
use super::outflow::{self, Keep, Outflow};
use super::reply_loop;
use crate::telemetry::Readiness;

/// Room in the client's queue beyond the replies: the disconnect.
const QUEUE_SPARE: usize = 16;

/// The reply connection's client, as request tasks use it.
pub struct Replies {
    client: AsyncClient,
    outflow: Arc<Outflow>,
    /// The largest packet the broker takes (CONNACK's Maximum Packet Size,
    /// capped by the configured one); kept current by the event loop.
    max_packet: Arc<AtomicU32>,
    /// Places for chunks in the client's queue: half of it.
    chunk_places: Arc<Semaphore>,
}

/// A started reply connection.
pub struct Started {
    pub replies: Arc<Replies>,
    pub task: JoinHandle<()>,
    /// Stops the stall watch with the connection.
    pub watch: DropGuard,
}

/// How the reply connection is set up.
pub struct Setup {
    /// The worker's MQTT options; the client id gets `-replies` appended.
    pub options: MqttOptions,
    /// Replies that may wait to be written (`outflow.rs`).
    pub places: usize,
    pub max_packet_size: u32,
    pub stall_timeout: Duration,
}

impl Replies {
    /// Connects in a task of its own. A refusal before the first connection
    /// (credentials, TLS) is reported on `events`, as the request
    /// connection's are, and start-up fails with it.
    pub fn start(
        setup: Setup,
        readiness: Arc<Readiness>,
        events: mpsc::Sender<LoopEvent>,
    ) -> Started {
        let Setup {
            mut options,
            places,
            max_packet_size,
            stall_timeout,
        } = setup;
        let client_id = format!("{}-replies", options.client_id());
        options.set_client_id(client_id);
        let (client, event_loop) = AsyncClient::new(options, places + QUEUE_SPARE);
        let outflow = Arc::new(Outflow::new(places));
        let max_packet = Arc::new(AtomicU32::new(max_packet_size));
        let task = tokio::spawn(reply_loop::drive(
            event_loop,
            reply_loop::Shared {
                outflow: Arc::clone(&outflow),
                max_packet: Arc::clone(&max_packet),
                configured_max: max_packet_size,
                readiness: Arc::clone(&readiness),
            },
            events,
        ));
        let stop = CancellationToken::new();
        tokio::spawn(outflow::watch(
            Arc::clone(&outflow),
            stall_timeout,
            readiness,
            stop.clone(),
        ));
        let replies = Replies {
            client,
            outflow,
            max_packet,
            chunk_places: Arc::new(Semaphore::new((places / 2).max(1))),
        };
        Started {
            replies: Arc::new(replies),
            task,
            watch: stop.drop_guard(),
        }
    }

    /// Publishes a reply, holding its request's budget (`held`) until it is
    /// written. A reply the broker would refuse goes out in chunks when its
    /// caller takes them (`chunked.rs`), else as a small `502
    /// reply_too_large` in its place: handed to rumqttc, an oversized packet
    /// fails inside its event loop and drops the connection with every
    /// reply in flight. Waits while the queue is full.
    pub async fn publish(&self, reply: Outbound, qos: QoS, held: Held) {
        let broker_limit = self.max_packet.load(Ordering::Relaxed) as usize;
        // A caller that named its own packet size gets chunks that fit it.
        let limit = broker_limit.min(reply.chunks.unwrap_or(usize::MAX));
        let size = if message::packet_size_bound(&reply) <= limit {
            0
        } else {
            message::packet_size(&reply, qos)
        };
        if size > limit && reply.chunks.is_some() {
            if let Some(chunk_size) = chunked::chunk_size(&reply, limit) {
                return self.publish_chunks(reply, qos, held, chunk_size).await;
            }
        }
        let reply = if size > limit {
            tracing::warn!(
                size,
                limit,
                "reply larger than the broker accepts; answering 502 reply_too_large"
            );
            metrics::counter!("routemq_replies_failed_total", "reason" => "too_large").increment(1);
            reply.too_large(size, limit)
        } else {
            reply
        };
        let keep = Keep::new(Some(held), None, reply.large.clone());
        let (topic, payload, properties) = message::into_publish(reply);
        self.hand(keep, qos, (topic, payload, properties)).await;
    }

    /// Publishes `reply` as chunks of `chunk_size` bytes, in order. Each
    /// waits for a place among the worker's chunks in flight (half the
    /// reply queue), so however large the replies, the other half is left
    /// for ordinary replies; the request's budget and large-body slot are
    /// held by the last chunk, until it is written.
    async fn publish_chunks(&self, reply: Outbound, qos: QoS, held: Held, chunk_size: usize) {
        let large = reply.large.clone();
        let hashing = tokio::task::spawn_blocking(move || Chunks::new(reply, chunk_size));
        let Ok(chunks) = hashing.await else {
            metrics::counter!("routemq_replies_failed_total", "reason" => "publish_error")
                .increment(1);
            return;
        };
        let count = chunks.chunk_count();
        metrics::counter!("routemq_chunked_replies_total").increment(1);
        metrics::counter!("routemq_reply_chunks_total").increment(count as u64);
        let mut last = Some((held, large));
        for (index, parts) in chunks.enumerate() {
            let Ok(place) = Arc::clone(&self.chunk_places).acquire_owned().await else {
                return;
            };
            let (held, large) = match index + 1 == count {
                true => last.take().unzip(),
                false => (None, None),
            };
            let keep = Keep::new(held, Some(place), large.flatten());
            if !self.hand(keep, qos, parts).await {
                return;
            }
        }
    }

    /// Queues one PUBLISH; `false` (and counted) when the client refused it.
    async fn hand(&self, keep: Keep, qos: QoS, parts: (String, Bytes, PublishProperties)) -> bool {
        let (topic, payload, properties) = parts;
        let queue = || {
            self.client
                .try_publish_with_properties(topic, qos, false, payload, properties)
                .map_err(Box::new)
        };
        let handed = self.outflow.hand(keep, queue).await.is_ok();
        if !handed {
            metrics::counter!("routemq_replies_failed_total", "reason" => "publish_error")
                .increment(1);
        }
        handed
    }

    /// Publishes a QoS 0 reply only if the queue has room now: shedding
    /// never waits.
    pub fn try_publish(&self, reply: Outbound) {
        let (topic, payload, properties) = message::into_publish(reply);
        let queue = || {
            self.client
                .try_publish_with_properties(topic, QoS::AtMostOnce, false, payload, properties)
                .map_err(Box::new)
        };
        if self.outflow.try_hand(queue).is_err() {
            metrics::counter!("routemq_replies_failed_total", "reason" => "queue_full")
                .increment(1);
        }
    }

    /// Disconnects once every reply queued so far is written.
    pub async fn disconnect(&self) {
        self.client.disconnect().await.ok();
    }
}
