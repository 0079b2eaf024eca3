//! Acknowledgements belong to the connection their request arrived on.
//!
//! Packet ids are per session: after a clean-start reconnect the broker
//! reuses them for other messages, so a handler that finishes late must not
//! ack its old id on the new connection — that would acknowledge a different
//! message, unanswered. And a broker may send a PUBLISH again (DUP) while the
//! first copy is still being handled (EMQX resends unacknowledged QoS 1/2
//! deliveries after `retry_interval` on a live connection): the copy must
//! not run the request a second time, nor ack a second time (a second PUBREC
//! for a finished QoS 2 exchange makes the broker answer with a PUBREL that
//! rumqttc takes as unsolicited, and it disconnects).
//!
//! Each connection gets a number from [`Session::connected`]; the event loop
//! stamps every delivery with it. [`Session::ack`] queues an ack only while
//! that connection is up, and under the same lock the event loop uses to mark
//! it lost — after which it drains rumqttc's request queue — so no stale ack
//! can reach a later connection. [`Session::arrival`] tells first deliveries
//! from copies.

use fixedbitset::FixedBitSet;
use parking_lot::Mutex;
use parking_lot::MutexGuard;

use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;

struct State {
    /// The current connection's number (1 for the first); 0 before any.
    connection: u64,
    up: bool,
    /// Packet ids delivered on the current connection (running or answered):
    /// one bit per possible id, 8 KiB, no hashing on the request path.
    delivered: FixedBitSet,
}

impl Default for State {
    fn default() -> State {
        State {
            connection: 0,
            up: false,
            delivered: FixedBitSet::with_capacity(usize::from(u16::MAX) + 1),
        }
    }
}

/// One worker's MQTT session, as acks and redeliveries see it.
pub struct Session {
    client: AsyncClient,
    state: Mutex<State>,
}

/// Whether a delivery is new on this connection (it runs) or a copy of
/// one it already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    New,
    /// A DUP copy of a delivery this connection already has: the first
    /// copy's ack covers it.
    Duplicate,
}

/// What became of an ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    Queued,
    /// The request's connection is gone; its ids mean nothing now.
    Stale,
    Failed,
}

impl Session {
    pub fn new(client: AsyncClient) -> Session {
        Session {
            client,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// A new connection is up (CONNACK); returns its number.
    pub fn connected(&self) -> u64 {
        let mut state = self.lock();
        state.connection += 1;
        state.up = true;
        state.delivered.clear();
        state.connection
    }

    /// The connection dropped: from now on its acks are refused. The caller
    /// then drains the client's request queue (`EventLoop::clean`).
    pub fn lost(&self) {
        self.lock().up = false;
    }

    /// The number of the connection deliveries arrive on now.
    pub fn current(&self) -> u64 {
        self.lock().connection
    }

    /// Whether a delivery on `connection` runs. A late event from an earlier
    /// connection runs (its caller still gets an answer) but is never acked.
    pub fn arrival(&self, publish: &Publish, connection: u64) -> Arrival {
        if publish.qos == QoS::AtMostOnce {
            return Arrival::New;
        }
        let mut state = self.lock();
        if connection != state.connection {
            return Arrival::New;
        }
        let first = !state.delivered.put(usize::from(publish.pkid));
        // Without DUP the broker sends a new message under an id it got our
        // ack for; with DUP it is a copy of one we have (or, on a resumed
        // session, one delivered before the reconnect: then it runs).
        if publish.dup && !first {
            Arrival::Duplicate
        } else {
            Arrival::New
        }
    }

    /// Acknowledges `publish` if its connection (`connection`) is still up.
    pub fn ack(&self, publish: &Publish, connection: u64) -> Acked {
        let state = self.lock();
        if !state.up || state.connection != connection {
            return Acked::Stale;
        }
        // Queued without waiting, under the lock: the queue has room for an
        // ack per slot (see `worker::client_queue`), and nothing else the
        // worker queues there waits on the broker.
        match self.client.try_ack(publish) {
            Ok(()) => Acked::Queued,
            Err(error) => {
                tracing::error!(%error, "could not acknowledge a request");
                Acked::Failed
            }
        }
    }
}

#[cfg(test)]
mod tests;
