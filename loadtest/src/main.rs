//! `routemq-loadtest`: the load-test harness for any MQTT 5
//! request/response service, the upstream stub, the baseline responder the
//! benchmark compares the gateway against, and a counting OTLP sink.
#![forbid(unsafe_code)]

mod otlp_sink;
mod responder;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use routemq_loadtest::mix::Mix;
use routemq_loadtest::report::{markdown, write_svg};
use routemq_loadtest::run::{run, Load, RunConfig};
use routemq_loadtest::stub::{self, StubBehaviour};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "routemq-loadtest",
    version,
    about = "Load tests for RouteMQ Gateway (or any MQTT 5 request/response service)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send requests (open loop with --rate, closed loop with --concurrency) and report.
    Run(Box<RunArgs>),
    /// An upstream HTTP service with a set latency distribution and error rate.
    Upstream(UpstreamArgs),
    /// The baseline: answer every request at once, optionally after one HTTP GET.
    Responder(responder::ResponderArgs),
    /// An OTLP/gRPC trace receiver that counts spans (for benchmarks with tracing on).
    OtlpSink(otlp_sink::SinkArgs),
}

#[derive(Args)]
struct RunArgs {
    /// `mqtt://`, `mqtts://` (TLS), `ws://`, `wss://`; `user:password@` allowed.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    #[arg(long, env = "ROUTEMQ_LOADTEST_USERNAME")]
    username: Option<String>,
    #[arg(long, env = "ROUTEMQ_LOADTEST_PASSWORD", requires = "username")]
    password: Option<String>,
    /// Open loop: start this many requests per second, whatever the replies do.
    #[arg(long, conflicts_with_all = ["concurrency", "burst"])]
    rate: Option<f64>,
    /// Closed loop: keep this many requests outstanding (default 64 without --rate).
    #[arg(long, conflicts_with = "burst")]
    concurrency: Option<usize>,
    /// Burst: every connection sends this many requests at once (a reconnect
    /// herd with --connections); the run lasts until each is answered or
    /// lost, and the report's duration is the time to drain.
    #[arg(long)]
    burst: Option<usize>,
    /// MQTT connections the requests are spread over.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    warmup: Duration,
    /// Topic; `{id}` is replaced by a random number per request.
    #[arg(
        long,
        default_value = "api/v1/users/get/{id}",
        conflicts_with = "scenario"
    )]
    topic: String,
    #[arg(long, default_value = "", conflicts_with = "scenario")]
    payload: String,
    /// A TOML file with a weighted mix of `[[requests]]` (topic, payload, weight, headers).
    #[arg(long)]
    scenario: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    qos: u8,
    /// A user property sent with every request, `NAME=VALUE` (repeatable).
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Sent as `authorization: Bearer TOKEN`.
    #[arg(long, env = "ROUTEMQ_LOADTEST_TOKEN")]
    token: Option<String>,
    /// Sent as `x-api-key`.
    #[arg(long, env = "ROUTEMQ_LOADTEST_API_KEY")]
    api_key: Option<String>,
    /// A request without a reply by then counts as lost.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    deadline: Duration,
    /// Also send the deadline as the MQTT message expiry (the gateway then stops waiting too).
    #[arg(long)]
    expiry: bool,
    /// Retry a request this many times after its deadline, with the same request id.
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// When a fault is injected (after the warm-up), to report the recovery time.
    #[arg(long, value_parser = humantime::parse_duration)]
    fault_at: Option<Duration>,
    /// Open loop: skip (and count) new requests beyond this many outstanding.
    #[arg(long, default_value_t = 20_000)]
    max_outstanding: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the report as Markdown.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Write the latency and throughput timeline as an SVG chart.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// After the run, how long to keep listening for late and duplicate replies.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    linger: Duration,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct UpstreamArgs {
    #[arg(long, default_value = "127.0.0.1:8200")]
    listen: SocketAddr,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0ms")]
    latency: Duration,
    /// Added uniformly at random, 0 to this.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0ms")]
    jitter: Duration,
    /// The latency of the slow tail.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0ms")]
    tail_latency: Duration,
    /// Share of requests in the slow tail (0–1).
    #[arg(long, default_value_t = 0.0)]
    tail_fraction: f64,
    /// Share of requests answered 500 (0–1).
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Serve at most this many requests at once; the rest queue (a service
    /// with this many worker threads).
    #[arg(long)]
    capacity: Option<usize>,
    /// Register the stub in the gateway's registry under this service name.
    #[arg(long)]
    register: Option<String>,
    #[arg(
        long,
        env = "ROUTEMQ_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis: String,
}

fn parse_header(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(name, value)| (name.trim().to_string(), value.to_string()))
        .ok_or_else(|| format!("`{raw}` is not NAME=VALUE"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run_command(*args).await,
            Command::Upstream(args) => upstream_command(args).await,
            Command::Responder(args) => responder::run(args).await,
            Command::OtlpSink(args) => otlp_sink::run(args).await,
        }
    })
}

async fn run_command(args: RunArgs) -> anyhow::Result<()> {
    let mut headers = args.headers.clone();
    if let Some(token) = &args.token {
        headers.push(("authorization".into(), format!("Bearer {token}")));
    }
    if let Some(key) = &args.api_key {
        headers.push(("x-api-key".into(), key.clone()));
    }
    let mix = match &args.scenario {
        Some(path) => {
            let mut mix = Mix::load(path, &|name| std::env::var(name).ok())?;
            mix.add_headers(&headers);
            mix
        }
        None => Mix::single(&args.topic, &args.payload, headers),
    };
    let load = match (args.rate, args.burst, args.concurrency) {
        (Some(rate), _, _) => Load::Open { rate },
        (None, Some(each), _) => Load::Burst { each },
        (None, None, concurrency) => Load::Closed {
            concurrency: concurrency.unwrap_or(64),
        },
    };
    let config = RunConfig {
        broker: args.broker,
        credentials: args
            .username
            .map(|user| (user, args.password.unwrap_or_default())),
        connections: args.connections,
        load,
        duration: args.duration,
        warmup: args.warmup,
        qos: args.qos,
        deadline: args.deadline,
        retries: args.retries,
        fault_at: args.fault_at,
        send_expiry: args.expiry,
        mix,
        max_outstanding: args.max_outstanding,
        seed: args.seed,
        progress: !args.quiet,
        linger: args.linger,
    };
    let report = run(&config).await?;
    println!("{}", report.summary());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, markdown(&report))?;
    }
    if let Some(path) = &args.svg {
        write_svg(&report, path)?;
    }
    Ok(())
}

async fn upstream_command(args: UpstreamArgs) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let behaviour = StubBehaviour {
        latency: args.latency,
        jitter: args.jitter,
        tail_latency: args.tail_latency,
        tail_fraction: args.tail_fraction,
        error_rate: args.error_rate,
        seed: args.seed,
        capacity: args.capacity,
    };
    let addr = stub::serve(args.listen, behaviour, stop.clone()).await?;
    println!("upstream stub on http://{addr}");
    let registered = match &args.register {
        Some(service) => Some(stub::register(&args.redis, service, addr).await?),
        None => None,
    };
    tokio::signal::ctrl_c().await.ok();
    if let Some(registration) = registered {
        registration.deregister().await;
    }
    stop.cancel();
    Ok(())
}
