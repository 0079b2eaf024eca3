use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use routemq_gateway::metrics::MetricsRecorder;
use routemq_gateway::registry::{run_health_probes, ProbeSettings, RegistryCache};
use routemq_gateway::{Gateway, GatewayParts};
use rumqttc::v5::mqttbytes::v5::Filter;
use rumqttc::v5::{AsyncClient, MqttOptions};
use rumqttc::NetworkOptions;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::event_loop::{drive, LoopEvent};
use super::message;
use crate::config::WorkerConfig;

/// After the last request of a drain, how long to wait for one more already in transit.
const DRAIN_QUIET_PERIOD: Duration = Duration::from_millis(100);

/// Runs one worker until `shutdown` fires, then drains: it unsubscribes (no
/// new requests), finishes the requests it accepted within the drain timeout,
/// flushes metrics and disconnects cleanly.
pub async fn run_worker(
    config: WorkerConfig,
    worker_id: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let redis = routemq_gateway::redis::connect(&config.redis).await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")?;
    let cache = Arc::new(RegistryCache::default());
    if let Err(error) = cache.refresh(&redis).await {
        tracing::warn!(%error, "registry not readable at start-up, starting with an empty cache");
    }
    let metrics = Arc::new(MetricsRecorder::default());
    let filters: Vec<Filter> = config
        .routes
        .filters()
        .iter()
        .map(|f| {
            Filter::new(
                f.shared(&config.mqtt.share_group),
                message::qos(f.qos as u8),
            )
        })
        .collect();
    let gateway = Arc::new(Gateway::new(GatewayParts {
        routes: config.routes,
        redis: redis.clone(),
        http: http.clone(),
        cache: Arc::clone(&cache),
        metrics: Arc::clone(&metrics),
        limits: config.limits,
        worker_id: worker_id.clone(),
        round_robin_lease: config.round_robin_lease,
        replay_window: Some(config.replay_window),
    }));

    let background_stop = CancellationToken::new();
    let background = TaskTracker::new();
    background.spawn(Arc::clone(&cache).run_refresh(
        redis.clone(),
        config.refresh_interval,
        background_stop.clone(),
    ));
    background.spawn(run_health_probes(
        redis.clone(),
        Arc::clone(&cache),
        http,
        ProbeSettings {
            interval: config.health_check_interval,
            timeout: config.health_check_timeout,
            worker_id: worker_id.clone(),
        },
        background_stop.clone(),
    ));
    {
        let metrics = Arc::clone(&metrics);
        let (redis, interval, stop) = (
            redis.clone(),
            config.metrics_flush_interval,
            background_stop.clone(),
        );
        background.spawn(async move { metrics.run_flush(redis, interval, stop).await });
    }

    let mqtt = &config.mqtt;
    let client_id = mqtt.client_id.clone().unwrap_or_else(|| worker_id.clone());
    let mut options = MqttOptions::new(client_id, mqtt.host.clone(), mqtt.port);
    options
        .set_keep_alive(mqtt.keep_alive)
        .set_clean_start(true)
        .set_manual_acks(true)
        .set_max_packet_size(Some(mqtt.max_packet_size))
        .set_receive_maximum(Some(mqtt.max_in_flight));
    if let Some((user, password)) = &mqtt.credentials {
        options.set_credentials(user.clone(), password.clone());
    }
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    let (client, event_loop) = AsyncClient::new(options, usize::from(mqtt.max_in_flight) * 2 + 16);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let event_task = tokio::spawn(drive(event_loop, events_tx));

    let in_flight = Arc::new(Semaphore::new(usize::from(mqtt.max_in_flight)));
    let requests = TaskTracker::new();
    let dispatch = |event: LoopEvent| -> Option<LoopEvent> {
        let LoopEvent::Request(publish, received_at) = event else {
            return Some(event);
        };
        let (gateway, client, in_flight) =
            (Arc::clone(&gateway), client.clone(), Arc::clone(&in_flight));
        requests.spawn(async move {
            let Ok(_permit) = in_flight.acquire_owned().await else {
                return;
            };
            let inbound = message::inbound(&publish, received_at);
            if let Some(reply) = Box::pin(gateway.handle(inbound)).await {
                let properties = message::reply_properties(&reply);
                let published = client
                    .publish_with_properties(
                        reply.topic,
                        publish.qos,
                        false,
                        reply.payload,
                        properties,
                    )
                    .await;
                if let Err(error) = published {
                    tracing::error!(%error, "could not publish a reply");
                }
            }
            // Acked only now, after the reply is queued ahead of it on the same connection.
            if publish.qos as u8 > 0 {
                if let Err(error) = client.ack(&publish).await {
                    tracing::error!(%error, "could not acknowledge a request");
                }
            }
        });
        None
    };

    tracing::info!(worker_id, filters = ?filters.iter().map(|f| &f.path).collect::<Vec<_>>(), "worker started");
    let mut connected = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = events.recv() => match event.and_then(dispatch) {
                Some(LoopEvent::ConnectionLost) => connected = false,
                Some(LoopEvent::Connected { session_present }) => {
                    connected = true;
                    if session_present {
                        continue;
                    }
                    client.subscribe_many(filters.clone()).await.context("subscribing")?;
                }
                Some(_) => {}
                None if event_task.is_finished() => anyhow::bail!("the MQTT event loop stopped"),
                None => {}
            },
        }
    }

    tracing::info!(in_flight = requests.len(), "draining: no new requests");
    for filter in &filters {
        client.unsubscribe(filter.path.clone()).await.ok();
    }
    // On a dead connection no UNSUBACK will come, and nothing more can arrive.
    let mut unsubscribed = if connected { 0 } else { filters.len() };
    let drain_deadline = tokio::time::sleep(config.drain_timeout);
    tokio::pin!(drain_deadline);
    requests.close();
    // Requests delivered before or even after the UNSUBACKs were accepted by
    // this connection: a clean-start session's unacked messages are dropped by
    // some brokers at disconnect, so each one is answered before we leave.
    loop {
        tokio::select! {
            biased;
            event = events.recv() => match event.and_then(dispatch) {
                Some(LoopEvent::Unsubscribed) => unsubscribed += 1,
                Some(LoopEvent::ConnectionLost) => unsubscribed = filters.len(),
                Some(_) => {}
                None if event_task.is_finished() => break,
                None => {}
            },
            _ = requests.wait(), if unsubscribed >= filters.len() => {
                // Give a message already on the wire a moment to arrive.
                match tokio::time::timeout(DRAIN_QUIET_PERIOD, events.recv()).await {
                    Ok(Some(event)) => {
                        tracing::debug!("request arrived after unsubscribe");
                        dispatch(event);
                    }
                    _ => {
                        tracing::info!("drained");
                        break;
                    }
                }
            }
            _ = &mut drain_deadline => {
                tracing::warn!(abandoned = requests.len(), "drain timeout passed");
                break;
            }
        }
    }
    background_stop.cancel();
    background.close();
    background.wait().await;
    client.disconnect().await.ok();
    drop(events);
    tokio::time::timeout(Duration::from_secs(2), event_task)
        .await
        .ok();
    Ok(())
}
