//! Sending the load: open loop (constant arrival rate) or closed loop (K
//! outstanding), over any number of MQTT connections.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

use routemq_client::{ClientError, ClientOptions, RequestClient, RequestOptions, StrayReplies};
use tokio::task::JoinSet;

use crate::mix::Mix;
use crate::report::Report;
use crate::tally::Tally;

/// The shape of the load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Requests started at a constant rate per second, whatever the replies do.
    Open { rate: f64 },
    /// This many requests outstanding at all times.
    Closed { concurrency: usize },
    /// Every connection sends this many requests at once, as a fleet does
    /// after a broker restart; the run lasts until each is answered or lost.
    Burst { each: usize },
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    /// `mqtt://`, `mqtts://`, `ws://`, `wss://`, with optional `user:password@`.
    pub broker: String,
    pub credentials: Option<(String, String)>,
    pub connections: usize,
    pub load: Load,
    pub duration: Duration,
    /// Sent but not counted: lets connections, pools and caches warm up.
    pub warmup: Duration,
    pub qos: u8,
    /// A request without a reply by then counts as lost (and its reply, if it
    /// comes later, as late). Also sent as the MQTT message expiry when set.
    pub deadline: Duration,
    /// Retries after a deadline passes without a reply, each with the same
    /// request id (as a client of a gateway should); lost only when all fail.
    pub retries: u32,
    /// When the caller injects a fault, after the warm-up: the report then
    /// says how long the gateway took to recover.
    pub fault_at: Option<Duration>,
    pub send_expiry: bool,
    pub mix: Mix,
    /// Open loop: beyond this many outstanding requests new ones are skipped
    /// (and counted) rather than queued in the load generator.
    pub max_outstanding: usize,
    /// Seed of the request mix and `{id}` values, for repeatable runs.
    pub seed: u64,
    /// Print a progress line every second.
    pub progress: bool,
    /// After the last deadline, how long to keep listening for late and
    /// duplicate replies before counting them.
    pub linger: Duration,
}

/// Everything measured while the run goes, shared by the request tasks.
struct Shared {
    tally: Mutex<Tally>,
    /// Start of the measured window (after the warm-up).
    measure_from: Instant,
}

impl Shared {
    fn tally(&self) -> parking_lot::MutexGuard<'_, Tally> {
        self.tally.lock()
    }

    /// Records one request meant to start at `intended`.
    async fn request(
        &self,
        client: &RequestClient,
        topic: &str,
        payload: String,
        options: &RequestOptions,
        intended: Instant,
    ) -> Result<(), ClientError> {
        let measured = intended >= self.measure_from;
        if measured {
            self.tally().sent(intended - self.measure_from);
        }
        let outcome = client.request(topic, payload, options).await;
        if !measured {
            return match outcome {
                Ok(_) | Err(ClientError::Timeout(_)) => Ok(()),
                Err(error) => Err(error),
            };
        }
        match outcome {
            Ok(reply) => {
                let now = Instant::now();
                self.tally()
                    .replied(now - self.measure_from, now - intended, reply.status);
                Ok(())
            }
            Err(ClientError::Timeout(_)) => {
                self.tally().lost();
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

/// Runs the load and reports what happened.
pub async fn run(config: &RunConfig) -> anyhow::Result<Report> {
    let client_options = ClientOptions {
        credentials: config.credentials.clone(),
        track_stray_replies: true,
        reply_topic: None,
        max_chunked_reply_bytes: None,
    };
    let mut clients = Vec::new();
    for _ in 0..config.connections.max(1) {
        clients.push(Arc::new(
            RequestClient::connect_with(&config.broker, &client_options).await?,
        ));
    }
    let started = Instant::now();
    let warmup = match config.load {
        Load::Burst { .. } => Duration::ZERO,
        _ => config.warmup,
    };
    let shared = Arc::new(Shared {
        tally: Mutex::new(Tally::new()),
        measure_from: started + warmup,
    });
    let stop_at = shared.measure_from + config.duration;
    let progress = config.progress.then(|| {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move { print_progress(&shared, stop_at).await })
    });
    match config.load {
        Load::Open { rate } => open_loop(config, &clients, &shared, rate, stop_at).await?,
        Load::Closed { concurrency } => {
            closed_loop(config, &clients, &shared, concurrency, stop_at).await?
        }
        Load::Burst { each } => burst(config, &clients, &shared, each).await?,
    }
    let measured = match config.load {
        Load::Burst { .. } => shared.measure_from.elapsed(),
        _ => config.duration,
    };
    if let Some(progress) = progress {
        progress.abort();
    }
    // Replies still on their way after the last deadline are strays: wait for them.
    tokio::time::sleep(config.linger).await;
    let strays = clients.iter().map(|client| client.stray_replies()).fold(
        StrayReplies::default(),
        |sum, s| StrayReplies {
            duplicates: sum.duplicates + s.duplicates,
            late: sum.late + s.late,
            unknown: sum.unknown + s.unknown,
        },
    );
    for client in &clients {
        client.disconnect().await;
    }
    let tally = std::mem::replace(&mut *shared.tally(), Tally::new());
    Ok(Report::new(config, measured, &tally, strays))
}

fn request_options(config: &RunConfig, headers: &[(String, String)]) -> RequestOptions {
    RequestOptions {
        qos: config.qos,
        timeout: config.deadline,
        headers: headers.to_vec(),
        expiry: config.send_expiry.then_some(config.deadline),
        retries: config.retries,
        ..RequestOptions::default()
    }
}

/// Starts request `i` at `start + i / rate`. Each request is its own task, so
/// a slow reply never delays the next send, and its latency is measured from
/// the intended send time.
async fn open_loop(
    config: &RunConfig,
    clients: &[Arc<RequestClient>],
    shared: &Arc<Shared>,
    rate: f64,
    stop_at: Instant,
) -> anyhow::Result<()> {
    anyhow::ensure!(rate > 0.0, "the rate must be above 0");
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let mut tasks = JoinSet::new();
    let mut index: u64 = 0;
    loop {
        let intended = start + interval.mul_f64(index as f64);
        if intended >= stop_at {
            break;
        }
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        while let Some(finished) = tasks.try_join_next() {
            finished??;
        }
        index += 1;
        if tasks.len() >= config.max_outstanding {
            if intended >= shared.measure_from {
                shared.tally().skipped += 1;
            }
            continue;
        }
        let drawn = config.mix.draw(&mut rng);
        let (topic, payload) = (drawn.topic, drawn.payload);
        let options = request_options(config, &drawn.template.headers);
        let client = Arc::clone(&clients[(index as usize) % clients.len()]);
        let shared = Arc::clone(shared);
        tasks.spawn(async move {
            shared
                .request(&client, &topic, payload, &options, intended)
                .await
        });
    }
    while let Some(finished) = tasks.join_next().await {
        finished??;
    }
    Ok(())
}

/// `concurrency` loops, each sending its next request when the last is answered.
async fn closed_loop(
    config: &RunConfig,
    clients: &[Arc<RequestClient>],
    shared: &Arc<Shared>,
    concurrency: usize,
    stop_at: Instant,
) -> anyhow::Result<()> {
    let mut tasks = JoinSet::new();
    for worker in 0..concurrency.max(1) {
        let client = Arc::clone(&clients[worker % clients.len()]);
        let shared = Arc::clone(shared);
        let config = config.clone();
        tasks.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(config.seed.wrapping_add(worker as u64));
            while Instant::now() < stop_at {
                let drawn = config.mix.draw(&mut rng);
                let options = request_options(&config, &drawn.template.headers);
                shared
                    .request(
                        &client,
                        &drawn.topic,
                        drawn.payload,
                        &options,
                        Instant::now(),
                    )
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(finished) = tasks.join_next().await {
        finished??;
    }
    Ok(())
}

/// Every connection sends `each` requests at once, all meant to start now.
async fn burst(
    config: &RunConfig,
    clients: &[Arc<RequestClient>],
    shared: &Arc<Shared>,
    each: usize,
) -> anyhow::Result<()> {
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let mut tasks = JoinSet::new();
    let intended = Instant::now();
    for client in clients {
        for _ in 0..each {
            let drawn = config.mix.draw(&mut rng);
            let options = request_options(config, &drawn.template.headers);
            let (client, shared) = (Arc::clone(client), Arc::clone(shared));
            tasks.spawn(async move {
                shared
                    .request(&client, &drawn.topic, drawn.payload, &options, intended)
                    .await
            });
        }
    }
    while let Some(finished) = tasks.join_next().await {
        finished??;
    }
    Ok(())
}

/// One line a second on stderr: the last second's rate, p50, p99 and errors.
async fn print_progress(shared: &Shared, stop_at: Instant) {
    let mut ticker = tokio::time::interval_at(
        (shared.measure_from + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    while Instant::now() < stop_at + Duration::from_secs(1) {
        ticker.tick().await;
        let elapsed = shared.measure_from.elapsed().as_secs();
        let tally = shared.tally();
        let Some(second) = elapsed
            .checked_sub(1)
            .and_then(|index| tally.timeline.get(index as usize))
        else {
            continue;
        };
        let ms = |q: f64| second.latency_us.value_at_quantile(q) as f64 / 1000.0;
        eprintln!(
            "[{elapsed:>4}s] {:>8} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {:>5}  lost so far {}",
            second.replied,
            ms(0.5),
            ms(0.99),
            second.errors,
            tally.lost
        );
    }
}
