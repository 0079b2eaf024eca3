//! The bytes a worker may hold for the requests it has taken in.
//!
//! The receive maximum (`mqtt.max_in_flight`) bounds how many QoS 1/2
//! requests the broker hands over, not how large they are: 2 048 requests of
//! 256 KiB would be half a gigabyte. So every request also takes its size
//! (payload, topic, properties, plus a fixed allowance for its task) from
//! this budget before it runs, and gives it back once its reply is written.
//! The payload counts [`PAYLOAD_COPIES`] times. When the budget is spent, a QoS 1/2 request waits for it *before* the worker
//! reads the next event — the MQTT loop then stops reading from the socket
//! and the broker keeps the rest (TCP backpressure); a QoS 0 request is shed.
//! Requests never need the worker's loop to finish, so the wait always ends.

use std::sync::Arc;

use rumqttc::v5::mqttbytes::v5::Publish;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a request's task, its parsed form and its reply cost beyond the
/// bytes it carries.
const PER_REQUEST_BYTES: usize = 4096;

/// How many times a request's payload counts. Measured, not derived: with
/// 4 096 requests of 256 KiB at once (`loadtest/overload.sh`, memory), the
/// worker's resident memory grew by about five payloads per request held —
/// as received (and the read buffer it shares), parsed, as the upstream's
/// body, and the allocator's slack — plus read buffers the budget does not
/// see. Six let it grow by 123–136 MiB over three runs against a 128 MiB
/// budget; seven keeps it within.
const PAYLOAD_COPIES: usize = 7;

/// The budget, counted in KiB.
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    total_kib: u32,
    held: metrics::Gauge,
}

/// A request's share of the budget, returned when dropped.
pub struct Held {
    _permit: OwnedSemaphorePermit,
    bytes: f64,
    held: metrics::Gauge,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.held.decrement(self.bytes);
    }
}

impl MemoryBudget {
    pub fn new(bytes: usize) -> MemoryBudget {
        let total_kib = u32::try_from((bytes / 1024).max(1)).unwrap_or(u32::MAX);
        metrics::gauge!("routemq_intake_memory_budget_bytes").set(f64::from(total_kib) * 1024.0);
        MemoryBudget {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            held: metrics::gauge!("routemq_intake_memory_bytes"),
        }
    }

    /// What `publish` costs, in KiB; never more than the whole budget, so
    /// one request can always run.
    fn cost(&self, publish: &Publish) -> u32 {
        let properties = publish.properties.as_ref().map_or(0, |p| {
            let users: usize = p
                .user_properties
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum();
            users
                + p.response_topic.as_ref().map_or(0, String::len)
                + p.correlation_data.as_ref().map_or(0, |c| c.len())
        });
        let bytes = PER_REQUEST_BYTES
            + publish.topic.len()
            + PAYLOAD_COPIES * publish.payload.len()
            + properties;
        u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib)
    }

    fn held(&self, permit: OwnedSemaphorePermit, kib: u32) -> Held {
        let bytes = f64::from(kib) * 1024.0;
        self.held.increment(bytes);
        Held {
            _permit: permit,
            bytes,
            held: self.held.clone(),
        }
    }

    /// Waits until `publish` fits in the budget (without touching the
    /// scheduler when it fits at once).
    pub async fn take(&self, publish: &Publish) -> Option<Held> {
        let kib = self.cost(publish);
        let permit = match Arc::clone(&self.permits).try_acquire_many_owned(kib) {
            Ok(permit) => permit,
            Err(_) => Arc::clone(&self.permits)
                .acquire_many_owned(kib)
                .await
                .ok()?,
        };
        Some(self.held(permit, kib))
    }

    /// `publish`'s share if it fits now.
    pub fn try_take(&self, publish: &Publish) -> Option<Held> {
        let kib = self.cost(publish);
        let permit = Arc::clone(&self.permits).try_acquire_many_owned(kib).ok()?;
        Some(self.held(permit, kib))
    }
}

#[cfg(test)]
mod tests {
    use rumqttc::v5::mqttbytes::QoS;

    use super::*;

    fn request(payload: usize) -> Publish {
        Publish::new("api/x", QoS::AtLeastOnce, vec![0u8; payload], None)
    }

    #[tokio::test]
    async fn requests_take_their_size_and_give_it_back() {
        let budget = MemoryBudget::new(64 * 1024);
        let big = budget.try_take(&request(6 * 1024)).expect("fits");
        assert!(budget.try_take(&request(6 * 1024)).is_none(), "over budget");
        let small = budget
            .try_take(&request(1))
            .expect("a small one still fits");
        let third = request(6 * 1024);
        let waiting = budget.take(&third);
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        drop(big);
        let _third = waiting.await.expect("fits once the big one is back");
        drop(small);
        // One request larger than the whole budget still runs, alone.
        let huge = budget.try_take(&request(10 << 20));
        assert!(huge.is_none(), "the third one still holds its share");
    }
}
