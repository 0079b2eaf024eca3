use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use clap::Args;
use fred::prelude::ClientLike;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::NetworkOptions;

/// The baseline the gateway is measured against: the least work an MQTT
/// request/response service can do, with the same connection settings.
#[derive(Args)]
pub struct ResponderArgs {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 1883)]
    port: u16,
    #[arg(long, default_value = "$share/bench/api/#")]
    filter: String,
    /// Before replying, GET this URL (several: round robin), as the gateway would forward.
    #[arg(long)]
    http: Vec<String>,
    /// Before replying, also run one Redis script (the gateway's rate-limit
    /// script, under a limit never reached): the baseline for the middleware chain.
    #[arg(long)]
    redis: Option<String>,
}

pub async fn run(args: ResponderArgs) -> anyhow::Result<()> {
    let mut options = MqttOptions::new(
        format!("bench-responder-{}", uuid::Uuid::new_v4().simple()),
        args.host,
        args.port,
    );
    options
        .set_manual_acks(true)
        .set_max_packet_size(Some(1 << 20))
        .set_receive_maximum(Some(256));
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    let (client, mut event_loop) = AsyncClient::new(options, 1024);
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let urls = Arc::new(args.http);
    let next = Arc::new(AtomicUsize::new(0));
    let filter = args.filter;
    let redis = match &args.redis {
        Some(url) => {
            let redis = routemq_gateway::redis::connect(
                &routemq_gateway::redis::RedisSettings::new(url.as_str()),
            )
            .await?;
            redis.wait_for_connect().await?;
            Some(redis)
        }
        None => None,
    };
    let attempts = Arc::new(AtomicUsize::new(0));
    loop {
        match event_loop.poll().await? {
            Event::Incoming(Packet::ConnAck(_)) => {
                client.try_subscribe_many(vec![Filter::new(filter.clone(), QoS::AtLeastOnce)])?;
            }
            Event::Incoming(Packet::Publish(publish)) => {
                let (client, http, urls, next, redis, attempts) = (
                    client.clone(),
                    http.clone(),
                    Arc::clone(&urls),
                    Arc::clone(&next),
                    redis.clone(),
                    Arc::clone(&attempts),
                );
                tokio::spawn(async move {
                    let mut body = Bytes::from_static(b"{\"status\":\"success\"}");
                    if let Some(redis) = &redis {
                        let attempt = attempts.fetch_add(1, Ordering::Relaxed).to_string();
                        routemq_gateway::redis::scripts::rate_limit(
                            redis,
                            &routemq_gateway::redis::clock::RedisClock::default(),
                            "{bench:responder}",
                            u32::MAX,
                            std::time::Duration::from_secs(1),
                            &attempt,
                        )
                        .await
                        .ok();
                    }
                    if !urls.is_empty() {
                        let url = &urls[next.fetch_add(1, Ordering::Relaxed) % urls.len()];
                        if let Ok(response) = http.get(url).send().await {
                            body = response.bytes().await.unwrap_or_default();
                        }
                    }
                    let request = publish.properties.clone().unwrap_or_default();
                    if let Some(topic) = request.response_topic {
                        let properties = PublishProperties {
                            correlation_data: request.correlation_data,
                            user_properties: vec![("status".into(), "200".into())],
                            content_type: Some("application/json".into()),
                            ..PublishProperties::default()
                        };
                        client
                            .publish_with_properties(topic, publish.qos, false, body, properties)
                            .await
                            .ok();
                    }
                    client.ack(&publish).await.ok();
                });
            }
            _ => {}
        }
    }
}
