//! Real HTTP upstreams for the tests: the demo service, plus instances that
//! fail in chosen ways.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

/// Serves `router` on a free loopback port until the test process ends, on
/// the [`upstreams`] runtime.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let listener = listener.into_std().expect("std listener");
    upstreams().spawn(async move {
        let listener = TcpListener::from_std(listener).expect("listener");
        axum::serve(listener, router).await.ok()
    });
    addr
}

/// The runtime every test upstream runs on, apart from the tests' own: a test
/// blocks its runtime while it starts a worker process, and an upstream on
/// that runtime would then miss health probes and be marked unhealthy.
pub fn upstreams() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-upstreams")
            .enable_all()
            .build()
            .expect("upstream runtime")
    })
}

/// An upstream whose `/health` is fine but whose every other path answers
/// `status` with a JSON body.
pub async fn fixed_status(status: u16) -> SocketAddr {
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback(any(move || async move {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, Json(json!({"detail": format!("fixed {status}")})))
        }));
    serve(router).await
}

/// An upstream that answers after `delay`.
pub async fn slow(delay: Duration) -> SocketAddr {
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback(any(move || async move {
            tokio::time::sleep(delay).await;
            Json(json!({"slow": true}))
        }));
    serve(router).await
}

/// An upstream that counts the health probes it receives.
pub async fn probe_counter(probes: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> SocketAddr {
    let router = Router::new().route(
        "/health",
        get(move || {
            let probes = std::sync::Arc::clone(&probes);
            async move {
                probes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "ok"
            }
        }),
    );
    serve(router).await
}

/// An upstream that counts the requests it serves and answers each with the
/// count so far (201, like a create).
pub async fn counting(hits: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> SocketAddr {
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback(any(move || {
            let hits = std::sync::Arc::clone(&hits);
            async move {
                let hit = hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                (StatusCode::CREATED, Json(json!({"hit": hit})))
            }
        }));
    serve(router).await
}

/// How a [`switchable`] upstream behaves, changeable while it runs.
#[derive(Default)]
pub struct Switch {
    pub failing: std::sync::atomic::AtomicBool,
    /// Delay before answering, in ms.
    pub delay_ms: std::sync::atomic::AtomicU64,
    /// Requests served (health probes excluded).
    pub hits: std::sync::atomic::AtomicUsize,
    /// A status to answer with instead of 200 (0: none), with `location`
    /// and `etag` headers: redirects and `304 Not Modified`.
    pub status: std::sync::atomic::AtomicU16,
    /// `/health` answers 503 while set.
    pub sick: std::sync::atomic::AtomicBool,
}

/// An upstream that answers 200 with the path it was asked for, or 500 while
/// its switch says failing, after the switch's delay.
pub async fn switchable(switch: std::sync::Arc<Switch>) -> SocketAddr {
    use std::sync::atomic::Ordering;
    let health = std::sync::Arc::clone(&switch);
    let router = Router::new()
        .route(
            "/health",
            get(move || {
                let sick = health.sick.load(Ordering::SeqCst);
                async move {
                    if sick {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        )
        .fallback(any(move |uri: axum::http::Uri| {
            let switch = std::sync::Arc::clone(&switch);
            async move {
                switch.hits.fetch_add(1, Ordering::SeqCst);
                let delay = switch.delay_ms.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                let headers = [("location", "/elsewhere"), ("etag", "\"v1\"")];
                let chosen = switch.status.load(Ordering::SeqCst);
                if let Some(code) = StatusCode::from_u16(chosen).ok().filter(|_| chosen > 0) {
                    return (code, headers, Json(json!({"path": uri.path()})));
                }
                if switch.failing.load(Ordering::SeqCst) {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        headers,
                        Json(json!({"detail": "failing"})),
                    )
                } else {
                    (StatusCode::OK, headers, Json(json!({"path": uri.path()})))
                }
            }
        }));
    serve(router).await
}

/// One request a [`journal`] upstream received.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub request_id: String,
    /// `x-request-attempt`, 0 when absent.
    pub attempt: u64,
    pub started: std::time::Instant,
    /// When it answered; `None` while the call runs.
    pub finished: Option<std::time::Instant>,
}

/// Every request a [`journal`] upstream received, in arrival order.
pub type Journal = std::sync::Arc<std::sync::Mutex<Vec<Receipt>>>;

/// An upstream that records each request's `x-request-id` and
/// `x-request-attempt`, answers 201 after `delay`, and records when.
pub async fn journal(delay: Duration) -> (SocketAddr, Journal) {
    let journal: Journal = Default::default();
    let log = std::sync::Arc::clone(&journal);
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback(any(move |headers: axum::http::HeaderMap| {
            let log = std::sync::Arc::clone(&log);
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let receipt = Receipt {
                    request_id: header("x-request-id"),
                    attempt: header("x-request-attempt").parse().unwrap_or(0),
                    started: std::time::Instant::now(),
                    finished: None,
                };
                let index = {
                    let mut log = log.lock().expect("journal lock");
                    log.push(receipt);
                    log.len() - 1
                };
                tokio::time::sleep(delay).await;
                log.lock().expect("journal lock")[index].finished = Some(std::time::Instant::now());
                (StatusCode::CREATED, Json(json!({"created": true})))
            }
        }));
    (serve(router).await, journal)
}

/// The headers of every request a [`recorder`] upstream received, in order.
pub type Recorded = std::sync::Arc<std::sync::Mutex<Vec<axum::http::HeaderMap>>>;

/// An upstream that records each request's headers and answers 200.
pub async fn recorder() -> (SocketAddr, Recorded) {
    recorder_after(Duration::ZERO).await
}

/// A [`recorder`] that answers `delay` after recording a request.
pub async fn recorder_after(delay: Duration) -> (SocketAddr, Recorded) {
    let recorded: Recorded = Default::default();
    let log = std::sync::Arc::clone(&recorded);
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback(any(move |headers: axum::http::HeaderMap| {
            let log = std::sync::Arc::clone(&log);
            async move {
                log.lock().expect("recorder lock").push(headers);
                tokio::time::sleep(delay).await;
                Json(json!({"recorded": true}))
            }
        }));
    (serve(router).await, recorded)
}

/// The JSON document a [`large`] upstream answers: `{"blob": "..."}` of
/// about `bytes` bytes, not one repeated byte (so a misplaced chunk shows).
pub fn large_document(bytes: usize) -> serde_json::Value {
    let blob: String = (0..bytes)
        .map(|index| {
            char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(index * 7 + index / 36) % 36])
        })
        .collect();
    json!({ "blob": blob })
}

/// An upstream whose every path answers [`large_document`] of `bytes`.
pub async fn large(bytes: usize) -> SocketAddr {
    let body = std::sync::Arc::new(serde_json::to_vec(&large_document(bytes)).expect("json"));
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback(any(move || {
            let body = std::sync::Arc::clone(&body);
            async move {
                (
                    [("content-type", "application/json")],
                    body.as_ref().clone(),
                )
            }
        }));
    serve(router).await
}

/// What a [`gated`] upstream has seen, and the gate its answers wait on.
pub struct Gate {
    /// Requests received (health probes excluded).
    pub hits: std::sync::atomic::AtomicUsize,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    fn closed() -> std::sync::Arc<Gate> {
        let (open, _) = tokio::sync::watch::channel(false);
        std::sync::Arc::new(Gate {
            hits: Default::default(),
            open,
        })
    }

    /// Lets every held answer (and every later one) go.
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}

/// An upstream that holds every answer until its gate opens, then answers
/// 200 with the `x-request-id` and `x-user-id` it was sent and its hit count.
pub async fn gated() -> (SocketAddr, std::sync::Arc<Gate>) {
    use std::sync::atomic::Ordering;
    let gate = Gate::closed();
    let state = std::sync::Arc::clone(&gate);
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback(any(move |headers: axum::http::HeaderMap| {
            let gate = std::sync::Arc::clone(&state);
            async move {
                let hit = gate.hits.fetch_add(1, Ordering::SeqCst) + 1;
                let mut open = gate.open.subscribe();
                open.wait_for(|open| *open).await.ok();
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_string)
                };
                Json(json!({
                    "request_id": header("x-request-id"),
                    "user": header("x-user-id"),
                    "hit": hit,
                }))
            }
        }));
    (serve(router).await, gate)
}

/// An upstream that answers a JSON document of about `first + rest` bytes,
/// sending the first `first` bytes at once and the rest only once its gate
/// opens: a large body held part way, for as long as a test needs.
pub async fn held_midway(first: usize, rest: usize) -> (SocketAddr, std::sync::Arc<Gate>) {
    use std::sync::atomic::Ordering;
    let gate = Gate::closed();
    let state = std::sync::Arc::clone(&gate);
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback(any(move || {
            let gate = std::sync::Arc::clone(&state);
            async move {
                gate.hits.fetch_add(1, Ordering::SeqCst);
                let head = format!("{{\"blob\":\"{}", "a".repeat(first));
                let tail = format!("{}\"}}", "b".repeat(rest));
                let mut open = gate.open.subscribe();
                let rest = futures::stream::once(async move {
                    open.wait_for(|open| *open).await.ok();
                    Ok(tail)
                });
                let head = futures::stream::iter([Ok::<_, std::io::Error>(head)]);
                let parts = futures::StreamExt::chain(head, rest);
                (
                    [("content-type", "application/json")],
                    axum::body::Body::from_stream(parts),
                )
            }
        }));
    (serve(router).await, gate)
}
