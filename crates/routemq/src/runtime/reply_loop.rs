//! The reply connection's event loop: it writes the queued replies, counts
//! those the broker refuses, and reconnects.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use routemq_client::Backoff;
use rumqttc::v5::mqttbytes::v5::{ConnAck, Packet, PubAckReason};
use rumqttc::v5::mqttbytes::Error as MqttError;
use rumqttc::v5::{ConnectionError, Event, EventLoop, StateError};
use rumqttc::Outgoing;
use tokio::sync::mpsc;

use super::event_loop::{refusal, LoopEvent};
use super::outflow::Outflow;
use crate::telemetry::Readiness;

/// What the loop shares with the worker.
pub struct Shared {
    pub outflow: Arc<Outflow>,
    /// Set from each CONNACK's Maximum Packet Size, capped by `configured_max`.
    pub max_packet: Arc<AtomicU32>,
    pub configured_max: u32,
    pub readiness: Arc<Readiness>,
}

/// Drives the reply connection until the client sends DISCONNECT or the
/// worker stops listening on `events`. It never waits on the worker: only a
/// refusal before the first connection is sent there. A stall reported on
/// the outflow drops the connection as if it had failed; replies still
/// queued then are dropped with it (counted as `connection_lost`) — a clean
/// start would not take their packet ids anyway.
pub async fn drive(mut event_loop: EventLoop, shared: Shared, events: mpsc::Sender<LoopEvent>) {
    let Shared {
        outflow, readiness, ..
    } = &shared;
    let mut backoff = Backoff::default();
    let mut connected = false;
    let mut connections = 0u64;
    let mut refusals = RefusalLog::default();
    let mut stalled = std::pin::pin!(outflow.stalled.notified());
    loop {
        let polled = tokio::select! {
            polled = event_loop.poll() => polled,
            () = &mut stalled, if connected => {
                stalled.set(outflow.stalled.notified());
                Err(ConnectionError::RequestsDone)
            }
        };
        match polled {
            Ok(Event::Outgoing(Outgoing::Publish(_))) => outflow.sent(),
            Ok(Event::Incoming(Packet::PubAck(ack))) => refusals.note(ack.pkid, ack.reason),
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                connected = true;
                connections += 1;
                shared.connected(&ack, connections);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(error) => {
                note_unreadable_refusal(&error);
                if connections == 0 {
                    if let Some(reason) = refusal(&error) {
                        events.send(LoopEvent::Refused(reason)).await.ok();
                        return;
                    }
                }
                if std::mem::take(&mut connected) {
                    readiness.set(&readiness.replies_connected, false);
                    let dropped = outflow.forget(|| {
                        event_loop.clean();
                        event_loop.pending.clear();
                    });
                    metrics::counter!("routemq_replies_failed_total", "reason" => "connection_lost")
                        .increment(dropped as u64);
                }
                if events.is_closed() {
                    return;
                }
                let retry_in = backoff.next_wait();
                tracing::warn!(%error, ?retry_in, "reply connection lost");
                tokio::time::sleep(retry_in).await;
            }
        }
    }
}

impl Shared {
    /// A CONNACK: the broker's packet limit taken (capped by the config),
    /// the outflow and readiness told, a reconnect counted.
    fn connected(&self, ack: &ConnAck, connections: u64) {
        self.outflow.connected();
        if connections > 1 {
            metrics::counter!("routemq_mqtt_reconnects_total").increment(1);
        }
        let announced = ack.properties.as_ref().and_then(|p| p.max_packet_size);
        let limit = announced.unwrap_or(u32::MAX).min(self.configured_max);
        self.max_packet.store(limit, Ordering::Relaxed);
        let readiness = &self.readiness;
        readiness.set(&readiness.replies_connected, true);
        readiness.set(&readiness.stalled, false);
        tracing::info!("reply connection up");
    }
}

/// PUBACKs with a failure reason: the broker refused a reply (an ACL, a
/// quota, a size limit). Counted by reason; logged at most once a second,
/// with how many were held back, so a flood of refusals cannot flood the log.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    held_back: u64,
}

impl RefusalLog {
    fn note(&mut self, pkid: u16, reason: PubAckReason) {
        let Some(label) = refusal_label(reason) else {
            return;
        };
        metrics::counter!("routemq_replies_failed_total", "reason" => label).increment(1);
        if self
            .last
            .is_some_and(|last| last.elapsed() < Duration::from_secs(1))
        {
            self.held_back += 1;
            return;
        }
        self.last = Some(Instant::now());
        tracing::warn!(
            pkid,
            reason = label,
            held_back = std::mem::take(&mut self.held_back),
            "the broker refused a reply"
        );
    }
}

/// A PUBACK refusing a reply as too large (0x95: Mosquitto's
/// `message_size_limit`, which CONNACK does not announce) is a reason code
/// rumqttc 0.25.1 cannot parse: the connection fails with it. Counted and
/// explained, since only configuration prevents it.
fn note_unreadable_refusal(error: &ConnectionError) {
    const PACKET_TOO_LARGE: u8 = 0x95;
    if let ConnectionError::MqttState(StateError::Deserialization(
        MqttError::InvalidConnectReturnCode(PACKET_TOO_LARGE),
    )) = error
    {
        metrics::counter!("routemq_replies_failed_total", "reason" => "packet_too_large")
            .increment(1);
        tracing::error!(
            "the broker refused a reply as too large (PUBACK 0x95), which drops the connection: \
             set mqtt.max_packet_size at or below the broker's limit (Mosquitto: use \
             max_packet_size, which it announces, rather than message_size_limit)"
        );
    }
}

/// The `reason` label of a refused PUBACK; `None` when it is a success.
fn refusal_label(reason: PubAckReason) -> Option<&'static str> {
    Some(match reason {
        PubAckReason::Success | PubAckReason::NoMatchingSubscribers => return None,
        PubAckReason::NotAuthorized => "not_authorized",
        PubAckReason::TopicNameInvalid => "topic_name_invalid",
        PubAckReason::QuotaExceeded => "quota_exceeded",
        PubAckReason::PayloadFormatInvalid => "payload_format_invalid",
        PubAckReason::PacketIdentifierInUse => "packet_id_in_use",
        PubAckReason::ImplementationSpecificError => "implementation_specific",
        PubAckReason::UnspecifiedError => "unspecified",
    })
}
