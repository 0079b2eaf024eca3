use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use routemq_client::{ClientError, RequestClient, RequestOptions};
use serde_json::json;

#[derive(Args)]
pub struct RunArgs {
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    /// Requests outstanding at any time (closed loop).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// MQTT connections the requests are spread over.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    #[arg(long, value_parser = crate::parse_duration, default_value = "10s")]
    duration: Duration,
    #[arg(long, value_parser = crate::parse_duration, default_value = "2s")]
    warmup: Duration,
    /// Topic; `{id}` is replaced by a random number per request.
    #[arg(long, default_value = "api/v1/users/get/{id}")]
    topic: String,
    #[arg(long, default_value = "")]
    payload: String,
    #[arg(long, default_value_t = 1)]
    qos: u8,
    /// A user property sent with every request, `NAME=VALUE` (repeatable),
    /// e.g. `authorization=Bearer <token>` or `x-api-key=<key>`.
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// A request without a reply by then counts as lost.
    #[arg(long, value_parser = crate::parse_duration, default_value = "10s")]
    timeout: Duration,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

struct Tally {
    latency_us: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    lost: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
            statuses: BTreeMap::new(),
            lost: 0,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latency_us.add(&other.latency_us).ok();
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.lost += other.lost;
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        clients.push(Arc::new(RequestClient::connect(&args.broker).await?));
    }
    let options = RequestOptions {
        qos: args.qos,
        timeout: args.timeout,
        headers: args.headers.clone(),
        ..RequestOptions::default()
    };
    let started = Instant::now();
    let measure_from = started + args.warmup;
    let stop_at = measure_from + args.duration;
    let mut workers = Vec::new();
    for index in 0..args.concurrency {
        let client = Arc::clone(&clients[index % clients.len()]);
        let (topic, payload, options) = (args.topic.clone(), args.payload.clone(), options.clone());
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let mut sequence: u64 = index as u64 * 1_000_003;
            while Instant::now() < stop_at {
                sequence = sequence
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let topic = topic.replace("{id}", &(sequence % 1_000_000).to_string());
                let sent = Instant::now();
                let outcome = client.request(&topic, payload.clone(), &options).await;
                if sent < measure_from {
                    continue;
                }
                match outcome {
                    Ok(reply) => {
                        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                        tally.latency_us.saturating_record(micros.max(1));
                        *tally.statuses.entry(reply.status).or_default() += 1;
                    }
                    Err(ClientError::Timeout(_)) => tally.lost += 1,
                    Err(error) => return Err(anyhow::anyhow!(error)),
                }
            }
            anyhow::Ok(tally)
        }));
    }
    let mut total = Tally::new();
    for worker in workers {
        total.merge(worker.await??);
    }
    for client in &clients {
        client.disconnect().await;
    }
    report(&args, &total)
}

fn report(args: &RunArgs, tally: &Tally) -> anyhow::Result<()> {
    let replied = tally.latency_us.len();
    let seconds = args.duration.as_secs_f64();
    let ms = |quantile: f64| tally.latency_us.value_at_quantile(quantile) as f64 / 1000.0;
    let errors: u64 = tally
        .statuses
        .iter()
        .filter(|(s, _)| **s >= 400)
        .map(|(_, n)| n)
        .sum();
    let summary = json!({
        "topic": args.topic,
        "concurrency": args.concurrency,
        "duration_s": seconds,
        "replied": replied,
        "lost": tally.lost,
        "errors": errors,
        "statuses": tally.statuses,
        "throughput_rps": replied as f64 / seconds,
        "latency_ms": {
            "p50": ms(0.50), "p90": ms(0.90), "p99": ms(0.99), "p999": ms(0.999),
            "max": tally.latency_us.max() as f64 / 1000.0,
        },
    });
    println!(
        "{:>10.0} req/s  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  replied {}  lost {}  errors {}",
        replied as f64 / seconds,
        ms(0.50),
        ms(0.99),
        tally.latency_us.max() as f64 / 1000.0,
        replied,
        tally.lost,
        errors
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)?;
    }
    Ok(())
}

fn parse_header(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(name, value)| (name.trim().to_string(), value.to_string()))
        .ok_or_else(|| format!("`{raw}` is not NAME=VALUE"))
}
