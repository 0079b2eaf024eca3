use std::sync::Arc;
use std::time::Instant;

use routemq_client::Backoff;
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::Error as MqttError;
use rumqttc::v5::{ConnectionError, Event, EventLoop, StateError};
use rumqttc::Outgoing;
use tokio::sync::mpsc;

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

/// Drives the request connection's rumqttc event loop in its own task. It
/// never awaits a client call (that can deadlock the loop); it only forwards
/// events. `poll` reconnects on the next call, so failures back off here
/// ([`Backoff`]). Returns once the client has sent DISCONNECT or the worker
/// stopped listening. `events` is bounded: when the worker falls behind (its
/// intake budget spent), the loop stops reading from the broker (TCP
/// backpressure) instead of buffering without limit. Nothing the worker
/// waits for needs this loop: replies leave on their own connection
/// (`replies.rs`), and acks are queued without waiting.
pub async fn drive(
    mut event_loop: EventLoop,
    events: mpsc::Sender<LoopEvent>,
    session: Arc<Session>,
) {
    let mut link = Link::default();
    loop {
        let event = match event_loop.poll().await {
            Ok(Event::Incoming(packet)) => link.incoming(packet, &session),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                tracing::info!("disconnected from the broker");
                return;
            }
            Ok(_) => None,
            Err(error) => {
                if !link.failed(error, &mut event_loop, &events, &session).await {
                    return;
                }
                None
            }
        };
        if let Some(event) = event {
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// The request connection as the loop follows it.
#[derive(Default)]
struct Link {
    backoff: Backoff,
    connected: bool,
    ever_connected: bool,
}

impl Link {
    /// What an incoming packet tells the worker, if anything.
    fn incoming(&mut self, packet: Packet, session: &Session) -> Option<LoopEvent> {
        match packet {
            Packet::Publish(publish) => Some(LoopEvent::Request(Delivery {
                publish: Box::new(publish),
                received_at: Instant::now(),
                connection: session.current(),
            })),
            Packet::ConnAck(ack) => {
                self.backoff.reset();
                self.connected = true;
                self.ever_connected = true;
                session.connected();
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to the broker"
                );
                Some(LoopEvent::Connected {
                    session_present: ack.session_present,
                })
            }
            Packet::UnsubAck(_) => Some(LoopEvent::Unsubscribed),
            Packet::SubAck(ack) => {
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
                Some(LoopEvent::Subscribed { accepted: !refused })
            }
            _ => None,
        }
    }

    /// A failed poll: a refusal ends the loop before the first connection;
    /// otherwise the connection's acks are dropped, the worker told, and
    /// the next attempt waits its backoff. `false`: the loop should end.
    async fn failed(
        &mut self,
        error: ConnectionError,
        event_loop: &mut EventLoop,
        events: &mpsc::Sender<LoopEvent>,
        session: &Session,
    ) -> bool {
        if !self.ever_connected {
            if let Some(reason) = refusal(&error) {
                events.send(LoopEvent::Refused(reason)).await.ok();
                return false;
            }
        }
        if self.connected {
            // Refuse this connection's acks, then take any queued
            // since rumqttc drained its queue at the error: they must
            // not go out on the next connection (acks are dropped,
            // PUBRECs kept only for a resumed session). The session
            // is never resumed (clean start), so nothing drained is
            // sent again.
            session.lost();
            event_loop.clean();
            event_loop.pending.clear();
        }
        if events.is_closed() {
            return false;
        }
        if std::mem::take(&mut self.connected)
            && events.send(LoopEvent::ConnectionLost).await.is_err()
        {
            return false;
        }
        let retry_in = self.backoff.next_wait();
        tracing::warn!(%error, ?retry_in, "broker connection lost");
        tokio::time::sleep(retry_in).await;
        true
    }
}

/// Why the broker refused the worker, when retrying cannot help: a TLS
/// handshake refused by either side, or a CONNACK refusing its credentials.
/// Anything else (refused or dropped connections, timeouts) is retried.
pub(super) fn refusal(error: &ConnectionError) -> Option<String> {
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
