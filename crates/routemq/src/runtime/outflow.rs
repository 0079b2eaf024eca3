//! Whether what the worker hands to its MQTT client actually leaves.
//!
//! rumqttc reads its request queue only while the broker's receive maximum
//! leaves room for another outgoing QoS 1/2 PUBLISH. A slot the broker never
//! frees (a PUBREC refusal rumqttc 0.25.1 does not handle, an ack lost on the
//! way, a packet-id collision) stops everything behind it — replies and acks
//! alike — while the connection itself looks healthy: no error, pings answered.
//!
//! So each reply and ack handed to the client is stamped, in order, and each
//! one rumqttc writes out (its `Outgoing` event, in the same order) takes
//! the oldest stamp away. When the oldest stamp is older than the stall
//! timeout, the session is stuck: `/readyz` turns 503 and the event loop
//! drops the connection to start a fresh one. A request waiting on a slow
//! upstream hands nothing over, so it never looks like a stall.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::telemetry::Readiness;

/// Hand-offs to the MQTT client not yet written to the broker, oldest first.
#[derive(Default)]
pub struct Outflow {
    waiting: Mutex<VecDeque<Instant>>,
    /// Wakes the event loop to drop a stuck connection.
    pub stalled: Notify,
}

impl Outflow {
    /// A reply or an ack is about to be queued on the client.
    pub fn handing(&self) {
        self.waiting.lock().push_back(Instant::now());
    }

    /// The hand-off just announced did not reach the client's queue.
    pub fn not_handed(&self) {
        self.waiting.lock().pop_back();
    }

    /// rumqttc wrote one of them (a PUBLISH, PUBACK or PUBREC) to the network.
    pub fn sent(&self) {
        self.waiting.lock().pop_front();
    }

    /// The connection was dropped and the client's queue drained with it:
    /// nothing handed so far will be sent. A stamp taken in the instant
    /// between the drain and this call is lost, which only delays detection.
    pub fn forget(&self) {
        self.waiting.lock().clear();
    }

    /// A connection is up: what was handed while there was none has waited
    /// for the broker, not on it, so its clock starts now.
    pub fn connected(&self) {
        let now = Instant::now();
        self.waiting
            .lock()
            .iter_mut()
            .for_each(|stamp| *stamp = now);
    }

    /// How long the oldest hand-off has waited.
    fn oldest_wait(&self) -> Option<Duration> {
        self.waiting.lock().front().map(Instant::elapsed)
    }
}

/// Checks the outflow a few times per `timeout` until `stop`; a stall is
/// counted, logged, shown on `/readyz` and ends the connection.
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
        let connected = readiness.mqtt_connected.load(Ordering::Relaxed);
        if waited < timeout || !connected || readiness.stalled.load(Ordering::Relaxed) {
            continue;
        }
        metrics::counter!("routemq_mqtt_stalls_total").increment(1);
        tracing::error!(
            waited = ?waited,
            "the broker connection stopped taking replies and acks; reconnecting"
        );
        readiness.set(&readiness.stalled, true);
        outflow.stalled.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_unsent_hand_off_is_measured_in_order() {
        let outflow = Outflow::default();
        assert_eq!(outflow.oldest_wait(), None);
        outflow.handing();
        std::thread::sleep(Duration::from_millis(5));
        outflow.handing();
        let first = outflow.oldest_wait().expect("waiting");
        outflow.sent();
        let second = outflow.oldest_wait().expect("still one");
        assert!(second < first, "{second:?} < {first:?}");
        outflow.handing();
        outflow.not_handed();
        outflow.sent();
        assert_eq!(outflow.oldest_wait(), None);
        outflow.sent();
        outflow.handing();
        outflow.forget();
        assert_eq!(outflow.oldest_wait(), None);
    }
}
