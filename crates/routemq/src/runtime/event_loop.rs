use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use routemq_client::Backoff;
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, Publish, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::Error as MqttError;
use rumqttc::v5::{ConnectionError, Event, EventLoop, StateError};
use rumqttc::Outgoing;
use tokio::sync::mpsc;

use super::outflow::Outflow;
use super::session::Session;

/// What the event loop tells the worker.
pub enum LoopEvent {
    /// Connected; `session_present` false means subscriptions must be made again.
    Connected {
        session_present: bool,
    },
    /// The connection dropped; nothing more arrives until `Connected`.
    ConnectionLost,
    Request(Delivery),
    /// The broker answered a SUBSCRIBE; `accepted` is false if it refused a filter.
    Subscribed {
        accepted: bool,
    },
    Unsubscribed,
    /// Before any connection succeeded, the broker refused the worker in a
    /// way retrying cannot fix (credentials, TLS): start-up fails with this.
    Refused(String),
}

/// A request as delivered: on which connection, and when.
pub struct Delivery {
    pub publish: Box<Publish>,
    pub received_at: Instant,
    /// The connection it arrived on ([`Session::connected`]).
    pub connection: u64,
}

/// Drives the rumqttc event loop in its own task. It never awaits a client
/// call (that can deadlock the loop); it only forwards events. `poll`
/// reconnects on the next call, so failures back off here ([`Backoff`]).
/// Returns once the client has sent DISCONNECT or the worker stopped listening.
/// `events` is bounded: when the worker falls behind, the loop stops reading
/// from the broker (TCP backpressure) instead of buffering without limit.
/// `max_packet` gets the broker's Maximum Packet Size from each CONNACK,
/// capped by `configured_max`. A stall reported on `outflow` drops the
/// connection as if it had failed.
pub async fn drive(
    mut event_loop: EventLoop,
    events: mpsc::Sender<LoopEvent>,
    max_packet: Arc<AtomicU32>,
    configured_max: u32,
    session: Arc<Session>,
    outflow: Arc<Outflow>,
) {
    let mut backoff = Backoff::default();
    let mut connected = false;
    let mut ever_connected = false;
    let mut refusals = RefusalLog::default();
    // One registration with the stall signal for the whole loop, renewed
    // only when it fires: registering anew for every event costs two locks.
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
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let delivery = Delivery {
                    publish: Box::new(publish),
                    received_at: Instant::now(),
                    connection: session.current(),
                };
                if events.send(LoopEvent::Request(delivery)).await.is_err() {
                    return;
                }
            }
            Ok(Event::Outgoing(
                Outgoing::Publish(_) | Outgoing::PubAck(_) | Outgoing::PubRec(_),
            )) => {
                outflow.sent();
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => refusals.note(ack.pkid, ack.reason),
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                outflow.connected();
                connected = true;
                ever_connected = true;
                session.connected();
                let announced = ack.properties.as_ref().and_then(|p| p.max_packet_size);
                let limit = announced.unwrap_or(u32::MAX).min(configured_max);
                max_packet.store(limit, Ordering::Relaxed);
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to the broker"
                );
                let connected = LoopEvent::Connected {
                    session_present: ack.session_present,
                };
                if events.send(connected).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::UnsubAck(_))) => {
                if events.send(LoopEvent::Unsubscribed).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .any(|code| !matches!(code, SubscribeReasonCode::Success(_)));
                if refused {
                    // The worker stays up (the broker may be fixed) but receives nothing.
                    tracing::error!(codes = ?ack.return_codes, "the broker refused a subscription");
                } else {
                    tracing::info!(codes = ?ack.return_codes, "subscribed");
                }
                let subscribed = LoopEvent::Subscribed { accepted: !refused };
                if events.send(subscribed).await.is_err() {
                    return;
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                tracing::info!("disconnected from the broker");
                return;
            }
            Ok(_) => {}
            Err(error) => {
                note_unreadable_refusal(&error);
                if !ever_connected {
                    if let Some(reason) = refusal(&error) {
                        events.send(LoopEvent::Refused(reason)).await.ok();
                        return;
                    }
                }
                if connected {
                    // Refuse this connection's acks, then take any queued
                    // since rumqttc drained its queue at the error: they must
                    // not go out on the next connection (acks are dropped,
                    // PUBRECs kept only for a resumed session). The session
                    // is never resumed (clean start), so nothing drained is
                    // sent again.
                    session.lost();
                    event_loop.clean();
                    event_loop.pending.clear();
                    outflow.forget();
                }
                if events.is_closed() {
                    return;
                }
                if std::mem::take(&mut connected)
                    && events.send(LoopEvent::ConnectionLost).await.is_err()
                {
                    return;
                }
                let retry_in = backoff.next_wait();
                tracing::warn!(%error, ?retry_in, "broker connection lost");
                tokio::time::sleep(retry_in).await;
            }
        }
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
pub(super) fn refusal_label(reason: PubAckReason) -> Option<&'static str> {
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

/// Why the broker refused the worker, when retrying cannot help: a TLS
/// handshake refused by either side, or a CONNACK refusing its credentials.
/// Anything else (refused or dropped connections, timeouts) is retried.
fn refusal(error: &ConnectionError) -> Option<String> {
    let code = match error {
        ConnectionError::ConnectionRefused(code) => Some(code),
        ConnectionError::MqttState(StateError::ConnFail { reason }) => Some(reason),
        _ => None,
    };
    if let Some(code) = code {
        let fatal = matches!(
            code,
            ConnectReturnCode::BadUserNamePassword
                | ConnectReturnCode::NotAuthorized
                | ConnectReturnCode::Banned
                | ConnectReturnCode::BadAuthenticationMethod
                | ConnectReturnCode::ClientIdentifierNotValid
                | ConnectReturnCode::UnsupportedProtocolVersion
        );
        return fatal.then(|| {
            format!("connection refused: {code:?} (check mqtt.username and its password)")
        });
    }
    // A read error inside the MQTT state keeps no source chain; unwrap it by hand.
    if let ConnectionError::MqttState(StateError::Deserialization(MqttError::Io(io))) = error {
        return routemq_gateway::tls::handshake_refusal(io);
    }
    routemq_gateway::tls::handshake_refusal(error)
}
