//! `routemq-loadtest`: a closed-loop load generator for any MQTT 5
//! request/response service, and the trivial baseline responder the
//! benchmark compares the gateway against.
#![forbid(unsafe_code)]

mod generate;
mod otlp_sink;
mod responder;

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "routemq-loadtest",
    version,
    about = "Load tests for RouteMQ Gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send requests with K outstanding and report throughput and latency.
    Run(generate::RunArgs),
    /// The baseline: answer every request at once, optionally after one HTTP GET.
    Responder(responder::ResponderArgs),
    /// An OTLP/gRPC trace receiver that counts spans (for benchmarks with tracing on).
    OtlpSink(otlp_sink::SinkArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => generate::run(args).await,
            Command::Responder(args) => responder::run(args).await,
            Command::OtlpSink(args) => otlp_sink::run(args).await,
        }
    })
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}
