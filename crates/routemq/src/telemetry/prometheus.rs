//! The worker's HTTP side door for Kubernetes and Prometheus: `/metrics`,
//! `/healthz` (the process is alive) and `/readyz` (it should get traffic).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use fred::prelude::{Client, ClientLike};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Latency buckets in seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the process-wide Prometheus recorder; the gateway's `metrics::`
/// calls are no-ops until it is installed.
pub fn install_prometheus() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)?
        .install_recorder()?;
    routemq_gateway::observe::enable_metrics();
    super::catalog::register();
    Ok(handle)
}

/// What `/readyz` checks. The worker flips the flags as its MQTT session
/// comes and goes and when it starts draining; Redis is asked directly.
#[derive(Default)]
pub struct Readiness {
    /// The connection requests arrive on is up.
    pub mqtt_connected: AtomicBool,
    /// The connection replies leave on (`runtime/replies.rs`) is up.
    pub replies_connected: AtomicBool,
    pub subscribed: AtomicBool,
    pub draining: AtomicBool,
    /// The reply connection stopped taking replies (`runtime/outflow.rs`);
    /// cleared once a new connection is up.
    pub stalled: AtomicBool,
    /// The configuration version the worker runs, reported beside the checks.
    pub config_version: parking_lot::Mutex<String>,
}

impl Readiness {
    pub fn set(&self, flag: &AtomicBool, value: bool) {
        flag.store(value, Ordering::Relaxed);
    }
}

#[derive(Clone)]
struct ProbeState {
    handle: PrometheusHandle,
    readiness: Arc<Readiness>,
    redis: Client,
}

/// Serves the probes and the scrape endpoint on `addr` until `stop`.
pub async fn serve_probes(
    addr: SocketAddr,
    handle: PrometheusHandle,
    readiness: Arc<Readiness>,
    redis: Client,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| anyhow::anyhow!("metrics address {addr}: {error}"))?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    let upkeep = handle.clone();
    let upkeep_stop = stop.clone();
    // Histograms need periodic upkeep (their windows roll over) when no
    // scraper comes by.
    tokio::spawn(async move {
        let mut every = routemq_gateway::Every::new(Duration::from_secs(5), upkeep_stop);
        while every.tick().await {
            upkeep.run_upkeep();
        }
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(ProbeState {
            handle,
            readiness,
            redis,
        });
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "metrics server stopped");
        }
    }))
}

async fn metrics(State(state): State<ProbeState>) -> impl IntoResponse {
    let (ready, _) = readiness_checks(&state);
    metrics::gauge!("routemq_worker_ready").set(if ready { 1.0 } else { 0.0 });
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.handle.render(),
    )
}

async fn readyz(State(state): State<ProbeState>) -> impl IntoResponse {
    let (ready, checks) = readiness_checks(&state);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|(name, ok)| (name.to_string(), json!(ok)))
        .collect();
    let version = state.readiness.config_version.lock().clone();
    (
        status,
        Json(json!({"ready": ready, "checks": body, "config_version": version})),
    )
}

/// Whether the worker should get traffic, and each check behind the answer.
fn readiness_checks(state: &ProbeState) -> (bool, [(&'static str, bool); 6]) {
    let readiness = &state.readiness;
    let checks = [
        (
            "mqtt_connected",
            readiness.mqtt_connected.load(Ordering::Relaxed),
        ),
        (
            "replies_connected",
            readiness.replies_connected.load(Ordering::Relaxed),
        ),
        ("subscribed", readiness.subscribed.load(Ordering::Relaxed)),
        ("redis_connected", state.redis.is_connected()),
        ("not_draining", !readiness.draining.load(Ordering::Relaxed)),
        ("not_stalled", !readiness.stalled.load(Ordering::Relaxed)),
    ];
    let ready = checks.iter().all(|(_, ok)| *ok);
    (ready, checks)
}
