use std::sync::Arc;
use std::time::{Duration, Instant};

use routemq_client::BrokerTransport;
use routemq_gateway::{BackgroundTasks, Gateway, GatewayBuilder};
use rumqttc::v5::mqttbytes::v5::Filter;
use rumqttc::v5::{AsyncClient, MqttOptions};
use rumqttc::{NetworkOptions, TlsConfiguration, Transport};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::dispatch::{Capacity, Dispatcher};
use super::event_loop::{drive, LoopEvent};
use super::reload::{self, ConfigSource, Reloader};
use super::replies::{self, Replies};
use super::session::Session;
use crate::config::{MqttSettings, WorkerConfig};
use crate::telemetry::{install_prometheus, serve_probes, Readiness};

/// Events the MQTT loop may hand over before it waits for the worker: a
/// request event holds its payload, so this bounds memory, not throughput
/// (the worker takes each in microseconds).
const EVENT_QUEUE: usize = 32;

/// After the last request of a drain, how long to wait for one more already in transit.
const DRAIN_QUIET_PERIOD: Duration = Duration::from_millis(100);

/// Runs one worker until `shutdown` fires, then drains: it unsubscribes (no
/// new requests), finishes the requests it accepted within the drain timeout,
/// flushes metrics and disconnects cleanly. With a `source`, SIGHUP reloads
/// the configuration from it (see `reload.rs`).
pub async fn run_worker(
    config: WorkerConfig,
    source: Option<ConfigSource>,
    worker_id: String,
    traces: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    preflight(&config)?;
    // Taken before anything else can go wrong: SIGHUP's default action ends the process.
    let hangups = match source {
        Some(_) => Some(signal(SignalKind::hangup())?),
        None => None,
    };
    let reloader = source.map(|source| Reloader::new(source, &config));
    let redis = routemq_gateway::redis::connect(&config.redis).await?;
    routemq_gateway::redis::eviction::refuse_evicting(&redis)
        .await
        .map_err(|message| anyhow::anyhow!(message))?;
    let readiness = Arc::new(Readiness::default());
    let probes_stop = CancellationToken::new();
    let probes = start_probes(config.metrics_addr, &readiness, &redis, &probes_stop).await?;
    let filters = reload::filters(&config.gateway.routes, &config.mqtt.share_group);
    let (drain_timeout, mqtt) = (config.drain_timeout, config.mqtt.clone());
    let (gateway, background) = GatewayBuilder::new(config.gateway, worker_id.clone(), redis)
        .traces(traces)
        .start()
        .await
        .map_err(|message| anyhow::anyhow!(message))?;

    reload::mark_version(None, gateway.version());
    *readiness.config_version.lock() = gateway.version().to_string();
    let mut running = connect(&mqtt, &worker_id, gateway, filters, Arc::clone(&readiness))?;
    running.drain_timeout = drain_timeout;
    running.reload = reloader.zip(hangups);
    tracing::info!(worker_id, filters = ?running.filters.iter().map(|f| &f.path).collect::<Vec<_>>(), "worker started");
    let failed = running.serve_until(&shutdown, background.failed()).await?;
    drain_and_stop(running, &readiness, background).await;
    probes_stop.cancel();
    if let Some(probes) = probes {
        probes.await.ok();
    }
    match failed {
        Some(task) => anyhow::bail!("the {task} task panicked; the worker stopped (see the log)"),
        None => Ok(()),
    }
}

/// Refuses a worker whose secrets are missing; logs the config's warnings.
fn preflight(config: &WorkerConfig) -> anyhow::Result<()> {
    if let Some(secret) = config.missing_secrets().next() {
        anyhow::bail!("a worker needs {secret}");
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    Ok(())
}

/// `/metrics`, `/healthz` and `/readyz`, when the config gives an address.
async fn start_probes(
    addr: Option<std::net::SocketAddr>,
    readiness: &Arc<Readiness>,
    redis: &fred::prelude::Client,
    stop: &CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let probes = serve_probes(
        addr,
        install_prometheus()?,
        Arc::clone(readiness),
        redis.clone(),
        stop.clone(),
    )
    .await?;
    Ok(Some(probes))
}

/// The drain: no new requests, the accepted ones answered within the drain
/// timeout, the background tasks stopped, both connections closed.
async fn drain_and_stop(running: Running, readiness: &Readiness, background: BackgroundTasks) {
    let Running {
        client,
        replies,
        reply_task,
        mut events,
        event_task,
        dispatcher,
        filters,
        connected,
        drain_timeout,
        ..
    } = running;

    readiness.set(&readiness.draining, true);
    tracing::info!(
        in_flight = dispatcher.requests.len(),
        "draining: no new requests"
    );
    for filter in &filters {
        let (client, path) = (client.clone(), filter.path.clone());
        tokio::spawn(async move { client.unsubscribe(path).await.ok() });
    }
    // On a dead connection no UNSUBACK will come, and nothing more can arrive.
    let awaited_unsubacks = if connected { filters.len() } else { 0 };
    drain(
        &dispatcher,
        &mut events,
        &event_task,
        awaited_unsubacks,
        drain_timeout,
    )
    .await;
    background.stop().await;
    client.disconnect().await.ok();
    replies.disconnect().await;
    drop(events);
    let loops = async { tokio::join!(event_task, reply_task) };
    tokio::time::timeout(Duration::from_secs(2), loops)
        .await
        .ok();
}

/// A worker's MQTT side once connected: the client, the events its loop
/// hands over, and the dispatcher that runs each request.
struct Running {
    /// The request connection's client: subscriptions and acks.
    client: AsyncClient,
    replies: Arc<Replies>,
    reply_task: JoinHandle<()>,
    events: mpsc::Receiver<LoopEvent>,
    event_task: JoinHandle<()>,
    dispatcher: Dispatcher,
    filters: Vec<Filter>,
    readiness: Arc<Readiness>,
    /// Stops the reply connection's stall watch with it.
    _watch: tokio_util::sync::DropGuard,
    /// Whether the broker connection is up.
    connected: bool,
    drain_timeout: Duration,
    /// Reloads on each SIGHUP, when the worker knows its configuration file.
    reload: Option<(Reloader, Signal)>,
}

/// Starts the two MQTT connections — requests, and replies
/// (`replies.rs`) — and their event loops for `gateway`.
fn connect(
    mqtt: &MqttSettings,
    worker_id: &str,
    gateway: Arc<Gateway>,
    filters: Vec<Filter>,
    readiness: Arc<Readiness>,
) -> anyhow::Result<Running> {
    let client_id = mqtt
        .client_id
        .clone()
        .unwrap_or_else(|| worker_id.to_string());
    let capacity = Capacity {
        acked: usize::from(mqtt.max_in_flight),
        qos0: usize::from(mqtt.max_in_flight_qos0),
        memory_bytes: mqtt.intake_memory_bytes,
    };
    let options = mqtt_options(mqtt, client_id)?;
    let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
    let reply_setup = replies::Setup {
        options: options.clone(),
        places: capacity.acked + capacity.qos0,
        max_packet_size: mqtt.max_packet_size,
        stall_timeout: mqtt.stall_timeout,
    };
    let started = Replies::start(reply_setup, Arc::clone(&readiness), events_tx.clone());
    let (client, event_loop) = AsyncClient::new(options, client_queue(capacity, filters.len()));
    let session = Arc::new(Session::new(client.clone()));
    let event_task = tokio::spawn(drive(event_loop, events_tx, Arc::clone(&session)));
    let dispatcher = Dispatcher::new(gateway, Arc::clone(&started.replies), session, capacity);
    Ok(Running {
        client,
        replies: started.replies,
        reply_task: started.task,
        events,
        event_task,
        dispatcher,
        filters,
        readiness,
        _watch: started.watch,
        connected: false,
        drain_timeout: Duration::ZERO,
        reload: None,
    })
}

impl Running {
    /// Serves requests until `shutdown`, or until a background task has
    /// panicked (its name is returned, and the worker drains and exits with
    /// an error): (re)subscribes on every clean connection, keeps readiness
    /// true to the connection and reloads the configuration on SIGHUP.
    async fn serve_until(
        &mut self,
        shutdown: &CancellationToken,
        failed: impl std::future::Future<Output = &'static str>,
    ) -> anyhow::Result<Option<&'static str>> {
        let readiness = Arc::clone(&self.readiness);
        let mut connections = 0u64;
        tokio::pin!(failed);
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                task = &mut failed => return Ok(Some(task)),
                Some(()) = hangup(&mut self.reload) => {
                    self.reload();
                    continue;
                }
                event = self.events.recv() => event,
            };
            let event = match event {
                Some(event) => self.dispatcher.dispatch(event).await,
                None => None,
            };
            match event {
                Some(LoopEvent::ConnectionLost) => {
                    self.connected = false;
                    readiness.set(&readiness.mqtt_connected, false);
                    readiness.set(&readiness.subscribed, false);
                }
                Some(LoopEvent::Connected { session_present }) => {
                    self.connected = true;
                    connections += 1;
                    if connections > 1 {
                        metrics::counter!("routemq_mqtt_reconnects_total").increment(1);
                    }
                    readiness.set(&readiness.mqtt_connected, true);
                    if !session_present {
                        subscribe(&self.client, self.filters.clone());
                    }
                }
                Some(LoopEvent::Refused(reason)) => {
                    anyhow::bail!("cannot connect to the broker: {reason}")
                }
                Some(LoopEvent::Subscribed { accepted }) => {
                    readiness.set(&readiness.subscribed, accepted);
                }
                Some(_) => {}
                None if self.event_task.is_finished() => {
                    anyhow::bail!("the MQTT event loop stopped")
                }
                None => {}
            }
        }
    }
}

impl Running {
    /// Applies the configuration file as it is now, or keeps the running one
    /// if the file is refused.
    fn reload(&mut self) {
        let Some((reloader, _)) = &self.reload else {
            return;
        };
        let started = Instant::now();
        let reload = match reloader.prepare(self.dispatcher.gateway()) {
            Ok(reload) => reload,
            Err(refusal) => return reload::refused(&refusal, started.elapsed()),
        };
        let previous = self.dispatcher.gateway().version().to_string();
        let version = reload.gateway.version().to_string();
        let changes = reload::filter_changes(&self.filters, &reload.filters);
        self.dispatcher.replace_gateway(Arc::new(reload.gateway));
        self.filters = reload.filters;
        self.drain_timeout = reload.drain_timeout;
        // Offline, the next connection subscribes `self.filters` whole.
        if self.connected {
            if !changes.0.is_empty() {
                subscribe(&self.client, changes.0.clone());
            }
            for path in changes.1.iter().cloned() {
                let client = self.client.clone();
                tokio::spawn(async move { client.unsubscribe(path).await.ok() });
            }
        }
        *self.readiness.config_version.lock() = version.clone();
        reload::applied(&previous, &version, &changes, started.elapsed());
    }
}

/// The next SIGHUP, if the worker reloads; never otherwise.
async fn hangup(reload: &mut Option<(Reloader, Signal)>) -> Option<()> {
    match reload {
        Some((_, hangups)) => hangups.recv().await,
        None => std::future::pending().await,
    }
}

/// The request connection's client queue: room for an ack per slot, the
/// (un)subscriptions and a disconnect, so an ack never waits for room
/// ([`Session::ack`] queues it without waiting, under a lock).
fn client_queue(capacity: Capacity, filters: usize) -> usize {
    capacity.acked + 2 * filters + 16
}

/// Subscribes from a task of its own: the worker's loop never waits on the
/// client's queue, which only the event loop drains (and the event loop may
/// be waiting for the worker's loop to take its next event).
fn subscribe(client: &AsyncClient, filters: Vec<Filter>) {
    let client = client.clone();
    tokio::spawn(async move {
        if let Err(error) = client.subscribe_many(filters).await {
            tracing::error!(%error, "could not subscribe");
        }
    });
}

pub(crate) fn mqtt_options(mqtt: &MqttSettings, client_id: String) -> anyhow::Result<MqttOptions> {
    let mut options = MqttOptions::new(client_id, mqtt.host.clone(), mqtt.port);
    let tls = || {
        let files = mqtt.tls.clone().unwrap_or_default();
        let config = files
            .client_config()
            .map_err(|error| anyhow::anyhow!("mqtt TLS: {error}"))?;
        anyhow::Ok(TlsConfiguration::Rustls(Arc::new(config)))
    };
    options.set_transport(match mqtt.transport {
        BrokerTransport::Tcp => Transport::Tcp,
        BrokerTransport::Tls => Transport::Tls(tls()?),
        BrokerTransport::Ws => Transport::Ws,
        BrokerTransport::Wss => Transport::Wss(tls()?),
    });
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
    Ok(options)
}

/// Answers every request this connection delivers until the broker has
/// confirmed the unsubscriptions, nothing is in flight and nothing more
/// arrives for a moment — or the deadline passes. A clean-start session's
/// unacked messages are dropped by some brokers at disconnect, so each one
/// the connection accepted is answered before the worker leaves.
async fn drain(
    dispatcher: &Dispatcher,
    events: &mut mpsc::Receiver<LoopEvent>,
    event_task: &JoinHandle<()>,
    mut awaited_unsubacks: usize,
    timeout: Duration,
) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let requests = &dispatcher.requests;
    requests.close();
    loop {
        tokio::select! {
            biased;
            event = events.recv() => {
                let event = match event {
                    Some(event) => dispatcher.dispatch(event).await,
                    None => None,
                };
                match event {
                    Some(LoopEvent::Unsubscribed) => awaited_unsubacks = awaited_unsubacks.saturating_sub(1),
                    Some(LoopEvent::ConnectionLost) => awaited_unsubacks = 0,
                    Some(_) => {}
                    None if event_task.is_finished() => return,
                    None => {}
                }
            },
            _ = requests.wait(), if awaited_unsubacks == 0 => {
                match tokio::time::timeout(DRAIN_QUIET_PERIOD, events.recv()).await {
                    Ok(Some(event)) => {
                        tracing::debug!("request arrived after unsubscribe");
                        dispatcher.dispatch(event).await;
                    }
                    _ => {
                        tracing::info!("drained");
                        return;
                    }
                }
            }
            _ = &mut deadline => {
                tracing::warn!(abandoned = requests.len(), "drain timeout passed");
                return;
            }
        }
    }
}
