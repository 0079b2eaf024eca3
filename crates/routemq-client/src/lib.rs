//! MQTT 5 request/response client for RouteMQ Gateway.
//!
//! One [`RequestClient`] holds one connection and one private reply topic;
//! [`RequestClient::request`] publishes a request with a Response Topic and
//! Correlation Data and resolves when the matching reply arrives or the
//! timeout passes. Retries reuse the request's `x-request-id`, so a gateway
//! can recognise them.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::NetworkOptions;
use tokio::sync::{oneshot, watch};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("could not connect to the broker within {0:?}")]
    ConnectTimeout(Duration),
    #[error("mqtt client: {0}")]
    Mqtt(Box<rumqttc::v5::ClientError>),
    #[error("invalid broker url `{0}`")]
    Url(String),
}

impl From<rumqttc::v5::ClientError> for ClientError {
    fn from(error: rumqttc::v5::ClientError) -> Self {
        ClientError::Mqtt(Box::new(error))
    }
}

/// A reply as the gateway sent it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The `status` user property (0 if absent).
    pub status: u16,
    pub payload: Bytes,
    pub user_properties: Vec<(String, String)>,
    pub content_type: Option<String>,
}

impl Reply {
    /// The payload parsed as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        self.user_properties
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// How to send one request.
#[derive(Debug, Clone)]
pub struct RequestOptions {
    pub qos: u8,
    pub timeout: Duration,
    /// Extra user properties (headers) such as `authorization`.
    pub headers: Vec<(String, String)>,
    /// Default: a new UUID per request (kept across retries).
    pub request_id: Option<String>,
    /// MQTT Message Expiry Interval; the gateway treats it as the deadline.
    pub expiry: Option<Duration>,
    /// Retries after a timeout, each with the same request id.
    pub retries: u32,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions {
            qos: 1,
            timeout: Duration::from_secs(10),
            headers: Vec::new(),
            request_id: None,
            expiry: None,
            retries: 0,
        }
    }
}

type Pending = Arc<Mutex<HashMap<Bytes, oneshot::Sender<Reply>>>>;

/// A connected request/response client. Cheap to share behind an `Arc`;
/// any number of requests may be outstanding at once.
pub struct RequestClient {
    client: AsyncClient,
    pending: Pending,
    reply_topic: String,
}

impl RequestClient {
    /// Connects to `mqtt://host:port` and subscribes to a private reply topic.
    pub async fn connect(broker_url: &str) -> Result<RequestClient, ClientError> {
        let (host, port) = parse_broker_url(broker_url)?;
        let client_id = format!("routemq-client-{}", uuid::Uuid::new_v4().simple());
        let mut options = MqttOptions::new(client_id.clone(), host, port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_start(true)
            .set_max_packet_size(Some(16 * 1024 * 1024));
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        options.set_network_options(network);
        let (client, event_loop) = AsyncClient::new(options, 1024);
        let pending: Pending = Arc::default();
        let reply_topic = format!("routemq/replies/{client_id}");
        let (ready_tx, mut ready) = watch::channel(false);
        tokio::spawn(drive(
            event_loop,
            client.clone(),
            reply_topic.clone(),
            Arc::clone(&pending),
            ready_tx,
        ));
        let connect_timeout = Duration::from_secs(10);
        tokio::time::timeout(connect_timeout, ready.wait_for(|ready| *ready))
            .await
            .map_err(|_| ClientError::ConnectTimeout(connect_timeout))?
            .map_err(|_| ClientError::ConnectTimeout(connect_timeout))?;
        Ok(RequestClient {
            client,
            pending,
            reply_topic,
        })
    }

    /// The topic this client's replies arrive on.
    pub fn reply_topic(&self) -> &str {
        &self.reply_topic
    }

    /// Sends a request and waits for its reply, retrying after timeouts.
    pub async fn request(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        options: &RequestOptions,
    ) -> Result<Reply, ClientError> {
        let payload = payload.into();
        let request_id = options
            .request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut attempt = 0;
        loop {
            match self
                .request_once(topic, payload.clone(), options, &request_id)
                .await
            {
                Err(ClientError::Timeout(_)) if attempt < options.retries => attempt += 1,
                other => return other,
            }
        }
    }

    async fn request_once(
        &self,
        topic: &str,
        payload: Bytes,
        options: &RequestOptions,
        request_id: &str,
    ) -> Result<Reply, ClientError> {
        let correlation = Bytes::from(uuid::Uuid::new_v4().as_bytes().to_vec());
        let (reply_tx, reply_rx) = oneshot::channel();
        self.lock_pending().insert(correlation.clone(), reply_tx);
        let mut user_properties = vec![("x-request-id".to_string(), request_id.to_string())];
        user_properties.extend(options.headers.iter().cloned());
        let properties = PublishProperties {
            response_topic: Some(self.reply_topic.clone()),
            correlation_data: Some(correlation.clone()),
            user_properties,
            message_expiry_interval: options
                .expiry
                .map(|e| e.as_secs().try_into().unwrap_or(u32::MAX)),
            content_type: Some("application/json".into()),
            ..PublishProperties::default()
        };
        let sent = self
            .client
            .publish_with_properties(topic, qos(options.qos), false, payload, properties)
            .await;
        if let Err(error) = sent {
            self.lock_pending().remove(&correlation);
            return Err(error.into());
        }
        match tokio::time::timeout(options.timeout, reply_rx).await {
            Ok(Ok(reply)) => Ok(reply),
            _ => {
                self.lock_pending().remove(&correlation);
                Err(ClientError::Timeout(options.timeout))
            }
        }
    }

    /// Publishes without waiting for anything: for requests that carry their
    /// own reply address (or none).
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos_level: u8,
        properties: PublishProperties,
    ) -> Result<(), ClientError> {
        self.client
            .publish_with_properties(topic, qos(qos_level), false, payload.into(), properties)
            .await?;
        Ok(())
    }

    pub async fn disconnect(&self) {
        self.client.disconnect().await.ok();
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<Bytes, oneshot::Sender<Reply>>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// `mqtt://host:port` or `tcp://host:port` (port defaults to 1883).
fn parse_broker_url(url: &str) -> Result<(String, u16), ClientError> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(|| ClientError::Url(url.to_string()))?;
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse()
                .map_err(|_| ClientError::Url(url.to_string()))?;
            Ok((host.to_string(), port))
        }
        None => Ok((rest.to_string(), 1883)),
    }
}

/// Runs the event loop: (re)subscribes on every clean connection and hands
/// each reply to the request waiting for its correlation data.
async fn drive(
    mut event_loop: EventLoop,
    client: AsyncClient,
    reply_topic: String,
    pending: Pending,
    ready: watch::Sender<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        // The RequestClient is gone: nobody can wait for a reply any more.
        if Arc::strong_count(&pending) == 1 {
            return;
        }
        match event_loop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(50);
                if !ack.session_present {
                    // try_subscribe: awaiting a client call inside the poll loop can deadlock.
                    if let Err(error) = client.try_subscribe(reply_topic.clone(), QoS::AtLeastOnce)
                    {
                        tracing::error!(%error, "could not subscribe to the reply topic");
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                ready.send_replace(true);
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let properties = publish.properties.unwrap_or_default();
                let Some(correlation) = properties.correlation_data else {
                    continue;
                };
                let waiter = pending
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .remove(&correlation);
                if let Some(waiter) = waiter {
                    let status = properties
                        .user_properties
                        .iter()
                        .find(|(key, _)| key == "status")
                        .and_then(|(_, value)| value.parse().ok())
                        .unwrap_or(0);
                    waiter
                        .send(Reply {
                            status,
                            payload: publish.payload,
                            user_properties: properties.user_properties,
                            content_type: properties.content_type,
                        })
                        .ok();
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "broker connection lost, reconnecting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_broker_url;

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_broker_url("mqtt://127.0.0.1:1884").ok(),
            Some(("127.0.0.1".into(), 1884))
        );
        assert_eq!(
            parse_broker_url("tcp://broker").ok(),
            Some(("broker".into(), 1883))
        );
        assert!(parse_broker_url("http://x").is_err());
        assert!(parse_broker_url("mqtt://x:notaport").is_err());
    }
}
