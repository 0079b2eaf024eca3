//! MQTT 5 request/response client for RouteMQ Gateway.
//!
//! One [`RequestClient`] holds one connection and one private reply topic;
//! [`RequestClient::request`] publishes a request with a Response Topic and
//! Correlation Data and resolves when the matching reply arrives or the
//! timeout passes. Retries reuse the request's `x-request-id`, so a gateway
//! can recognise them.
#![forbid(unsafe_code)]

mod assembly;
mod backoff;
mod broker_url;
mod inbox;
mod strays;

pub use backoff::Backoff;
pub use broker_url::{BrokerTransport, BrokerUrl};

use std::sync::Arc;
use std::time::Duration;

use inbox::Inbox;
use routemq_router::chunk::ACCEPT_CHUNKS;
use strays::Strays;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::NetworkOptions;
use tokio::sync::watch;

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
    /// Part of a chunked reply arrived, not all of it, within the timeout
    /// (the worker sending it may have stopped): never a truncated body.
    #[error("incomplete reply: {received} of {count} chunks within {waited:?}")]
    IncompleteReply {
        received: u32,
        count: u32,
        waited: Duration,
    },
    /// A chunked reply that cannot be put back together: malformed, over
    /// this client's bound, or not matching its checksum.
    #[error("chunked reply refused: {0}")]
    BadChunks(String),
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
    /// A reply with its status read from its `status` user property.
    pub fn new(
        payload: Bytes,
        user_properties: Vec<(String, String)>,
        content_type: Option<String>,
    ) -> Reply {
        let status = user_properties
            .iter()
            .find(|(key, _)| key == "status")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0);
        Reply {
            status,
            payload,
            user_properties,
            content_type,
        }
    }

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
    /// Ask for a reply too large for one packet in chunks
    /// (`x-accept-chunks: 1`), reassembled here: the caller gets one
    /// whole, checksummed [`Reply`]. On by default; off, such a reply is
    /// `502 reply_too_large`.
    pub accept_chunks: bool,
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
            accept_chunks: true,
        }
    }
}

/// The largest chunked reply a client reassembles unless told otherwise.
pub const DEFAULT_MAX_CHUNKED_REPLY_BYTES: u64 = 64 * 1024 * 1024;

/// How to connect. The broker URL may also carry `user:password@`.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub credentials: Option<(String, String)>,
    /// Remember every request's correlation data, so replies that match no
    /// waiting request can be told apart: a second reply to an answered
    /// request (duplicate) or a reply after its request timed out (late).
    /// Costs 16 bytes per request for the client's lifetime: for load tests.
    pub track_stray_replies: bool,
    /// The topic replies come back on. Default:
    /// `replies/anonymous/<client id>`, the anonymous namespace of the
    /// gateway's default reply-topic allowlist. A client with credentials
    /// uses its own namespace, e.g. `replies/<sub>/<anything>` with the
    /// subject encoded by [`reply_level`].
    pub reply_topic: Option<String>,
    /// The largest chunked reply reassembled (a reply that declares more
    /// is refused at its first chunk). Default:
    /// [`DEFAULT_MAX_CHUNKED_REPLY_BYTES`].
    pub max_chunked_reply_bytes: Option<u64>,
}

/// One identity value (a JWT `sub` or `iss`) as the gateway maps it to a
/// reply-topic level: the value itself when it is a safe level (an e-mail
/// address, a UUID), else percent-encoded with upper-case hex, or hashed
/// when long (`docs/protocol.md`, Reply topics).
pub fn reply_level(value: &str) -> String {
    routemq_router::identity_level(value)
}

/// Replies that matched no waiting request (see [`ClientOptions::track_stray_replies`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StrayReplies {
    /// A second (or later) reply to a request already answered.
    pub duplicates: u64,
    /// A reply to a request that had already timed out.
    pub late: u64,
    /// A reply with correlation data this client never sent (or did not track).
    pub unknown: u64,
}

/// A connected request/response client. Cheap to share behind an `Arc`;
/// any number of requests may be outstanding at once.
pub struct RequestClient {
    client: AsyncClient,
    inbox: Arc<Inbox>,
    reply_topic: String,
    /// Whether the reply topic is subscribed on the current connection.
    subscribed: watch::Receiver<bool>,
}

impl RequestClient {
    /// Connects to `mqtt://host:port` and subscribes to a private reply topic.
    pub async fn connect(broker_url: &str) -> Result<RequestClient, ClientError> {
        RequestClient::connect_with(broker_url, &ClientOptions::default()).await
    }

    /// Connects to `mqtt://` or `tcp://` (plain), `mqtts://` or `ssl://`
    /// (TLS, system roots), `ws://` or `wss://` (WebSocket, path kept).
    pub async fn connect_with(
        broker_url: &str,
        client_options: &ClientOptions,
    ) -> Result<RequestClient, ClientError> {
        let broker = BrokerUrl::parse(broker_url)?;
        let client_id = format!("routemq-client-{}", uuid::Uuid::new_v4().simple());
        let transport = broker.rumqttc_transport();
        let mut options = MqttOptions::new(client_id.clone(), broker.host, broker.port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_start(true)
            .set_max_packet_size(Some(16 * 1024 * 1024))
            .set_transport(transport);
        if let Some((user, password)) = client_options.credentials.clone().or(broker.credentials) {
            options.set_credentials(user, password);
        }
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        options.set_network_options(network);
        let (client, event_loop) = AsyncClient::new(options, 1024);
        let strays = Strays::new(client_options.track_stray_replies);
        let max_chunked = client_options
            .max_chunked_reply_bytes
            .unwrap_or(DEFAULT_MAX_CHUNKED_REPLY_BYTES);
        let inbox = Arc::new(Inbox::new(strays, max_chunked));
        let reply_topic = client_options
            .reply_topic
            .clone()
            .unwrap_or_else(|| format!("replies/anonymous/{client_id}"));
        let (ready_tx, mut ready) = watch::channel(false);
        tokio::spawn(drive(
            event_loop,
            client.clone(),
            reply_topic.clone(),
            Arc::clone(&inbox),
            ready_tx,
        ));
        let connect_timeout = Duration::from_secs(10);
        tokio::time::timeout(connect_timeout, ready.wait_for(|ready| *ready))
            .await
            .map_err(|_| ClientError::ConnectTimeout(connect_timeout))?
            .map_err(|_| ClientError::ConnectTimeout(connect_timeout))?;
        Ok(RequestClient {
            client,
            inbox,
            reply_topic,
            subscribed: ready,
        })
    }

    /// Replies that matched no waiting request so far.
    pub fn stray_replies(&self) -> StrayReplies {
        self.inbox.strays().counts()
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
        // After a reconnect, a request sent before the reply topic is
        // subscribed again would be answered into the void.
        let mut subscribed = self.subscribed.clone();
        if !*subscribed.borrow() {
            let waited = tokio::time::timeout(options.timeout, subscribed.wait_for(|up| *up)).await;
            if !matches!(waited, Ok(Ok(_))) {
                return Err(ClientError::Timeout(options.timeout));
            }
        }
        let correlation = Bytes::from(uuid::Uuid::new_v4().as_bytes().to_vec());
        let answered = self.inbox.wait(correlation.clone());
        let mut user_properties = vec![("x-request-id".to_string(), request_id.to_string())];
        if options.accept_chunks {
            user_properties.push((ACCEPT_CHUNKS.to_string(), "1".to_string()));
        }
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
            self.inbox.forget(&correlation);
            return Err(error.into());
        }
        match tokio::time::timeout(options.timeout, answered).await {
            Ok(Ok(answer)) => answer,
            _ => Err(self.inbox.timed_out(correlation, options.timeout)),
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
}

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Runs the event loop: (re)subscribes on every clean connection and hands
/// each reply to the request waiting for its correlation data.
async fn drive(
    mut event_loop: EventLoop,
    client: AsyncClient,
    reply_topic: String,
    inbox: Arc<Inbox>,
    ready: watch::Sender<bool>,
) {
    let mut backoff = Backoff::default();
    loop {
        // The RequestClient is gone: nobody can wait for a reply any more.
        if inbox.is_orphaned() {
            return;
        }
        match event_loop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
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
            Ok(Event::Incoming(Packet::Publish(publish))) => inbox.deliver(publish),
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(error) => {
                ready.send_replace(false);
                let retry_in = backoff.next_wait();
                tracing::debug!(%error, ?retry_in, "broker connection lost, reconnecting");
                tokio::time::sleep(retry_in).await;
            }
        }
    }
}
