use std::sync::Arc;
use std::time::Instant;

use routemq_gateway::Gateway;
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::AsyncClient;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::event_loop::LoopEvent;
use super::message;

/// Turns each delivered request into a task: gateway pipeline, reply, then
/// the acknowledgement. At most `max_in_flight` run at once.
pub struct Dispatcher {
    gateway: Arc<Gateway>,
    client: AsyncClient,
    in_flight: Arc<Semaphore>,
    /// Requests being handled, for Prometheus.
    in_flight_gauge: metrics::Gauge,
    pub requests: TaskTracker,
}

impl Dispatcher {
    pub fn new(gateway: Arc<Gateway>, client: AsyncClient, max_in_flight: u16) -> Dispatcher {
        Dispatcher {
            gateway,
            client,
            in_flight: Arc::new(Semaphore::new(usize::from(max_in_flight))),
            in_flight_gauge: metrics::gauge!("routemq_requests_in_flight"),
            requests: TaskTracker::new(),
        }
    }

    /// Starts handling a request event; any other event is handed back.
    pub fn dispatch(&self, event: LoopEvent) -> Option<LoopEvent> {
        let LoopEvent::Request(publish, received_at) = event else {
            return Some(event);
        };
        let (gateway, client, in_flight, gauge) = (
            Arc::clone(&self.gateway),
            self.client.clone(),
            Arc::clone(&self.in_flight),
            self.in_flight_gauge.clone(),
        );
        self.requests.spawn(async move {
            let Ok(_permit) = in_flight.acquire_owned().await else {
                return;
            };
            gauge.increment(1.0);
            handle(&gateway, &client, &publish, received_at).await;
            gauge.decrement(1.0);
        });
        None
    }
}

async fn handle(gateway: &Gateway, client: &AsyncClient, publish: &Publish, received_at: Instant) {
    let inbound = message::inbound(publish, received_at);
    if let Some(reply) = Box::pin(gateway.handle(inbound)).await {
        let properties = message::reply_properties(&reply);
        let published = client
            .publish_with_properties(reply.topic, publish.qos, false, reply.payload, properties)
            .await;
        if let Err(error) = published {
            tracing::error!(%error, "could not publish a reply");
        }
    }
    // Acked only now, after the reply is queued ahead of it on the same connection.
    if publish.qos as u8 > 0 {
        if let Err(error) = client.ack(publish).await {
            tracing::error!(%error, "could not acknowledge a request");
        }
    }
}
