//! Hot reload: SIGHUP applies a changed configuration file to running
//! workers under load, with nothing lost, and refuses a broken one or one
//! that needs a restart while the last good configuration keeps serving.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use parking_lot::Mutex;
use routemq_client::{RequestClient, RequestOptions};
use routemq_tests::free_port;
use routemq_tests::upstream::serve;
use serde_json::{json, Value};

use crate::stack::{ask, error_type, Stack};

const V1: &str = r#"
[middleware.loose]
kind = "rate_limit"
limit = 100000

[middleware.limited]
kind = "rate_limit"
limit = 1000

[[groups]]
prefix = "api/r"
routes = [
  { topic = "color",   service = "blue-service", method = "GET", path = "/color", middleware = ["loose"] },
  { topic = "limited", service = "blue-service", method = "GET", path = "/color", middleware = ["limited"] },
  { topic = "old",     service = "blue-service", method = "GET", path = "/color" },
]

[[groups]]
prefix = "legacy"
routes = [{ topic = "gone", service = "blue-service", method = "GET", path = "/color" }]

[[groups]]
prefix = "gateway"
routes = [{ topic = "health", handler = "health" }]
"#;

/// `color` moves to another service, `limited` allows 2 a minute, `old`
/// and the whole `legacy` filter are gone and `beta/new` appears.
const V2: &str = r#"
[middleware.loose]
kind = "rate_limit"
limit = 100000

[middleware.limited]
kind = "rate_limit"
limit = 2

[[groups]]
prefix = "api/r"
routes = [
  { topic = "color",   service = "green-service", method = "GET", path = "/color", middleware = ["loose"] },
  { topic = "limited", service = "green-service", method = "GET", path = "/color", middleware = ["limited"] },
]

[[groups]]
prefix = "beta"
routes = [{ topic = "new", service = "green-service", method = "GET", path = "/color" }]

[[groups]]
prefix = "gateway"
routes = [{ topic = "health", handler = "health" }]
"#;

/// An upstream answering `{"color": color}`.
async fn colored(color: &'static str) -> std::net::SocketAddr {
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/color",
            get(move || async move { Json(json!({"color": color})) }),
        );
    serve(router).await
}

fn color(reply: &routemq_client::Reply) -> String {
    let body: Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
    body["data"]["color"].as_str().unwrap_or("?").to_string()
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    sent: AtomicUsize,
    answered: AtomicUsize,
    green: AtomicUsize,
    /// Anything but a 200 from blue or green, or no answer at all.
    failures: Mutex<Vec<String>>,
}

/// Keeps `lanes` requests to `api/r/color` in flight until `stop`.
fn load(
    client: Arc<RequestClient>,
    lanes: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<Tally>, Vec<tokio::task::JoinHandle<()>>) {
    let tally = Arc::new(Tally::default());
    let tasks = (0..lanes)
        .map(|_| {
            let (client, stop, tally) =
                (Arc::clone(&client), Arc::clone(&stop), Arc::clone(&tally));
            tokio::spawn(async move {
                let options = RequestOptions {
                    qos: 1,
                    timeout: Duration::from_secs(20),
                    ..RequestOptions::default()
                };
                while !stop.load(Ordering::Relaxed) {
                    tally.sent.fetch_add(1, Ordering::Relaxed);
                    match client.request("api/r/color", "", &options).await {
                        Ok(reply) if reply.status == 200 => {
                            tally.answered.fetch_add(1, Ordering::Relaxed);
                            match color(&reply).as_str() {
                                "green" => {
                                    tally.green.fetch_add(1, Ordering::Relaxed);
                                }
                                "blue" => {}
                                other => tally.failures.lock().push(format!("color {other}")),
                            }
                        }
                        Ok(reply) => {
                            tally.answered.fetch_add(1, Ordering::Relaxed);
                            tally
                                .failures
                                .lock()
                                .push(format!("status {}", reply.status));
                        }
                        Err(error) => tally.failures.lock().push(format!("lost: {error}")),
                    }
                }
            })
        })
        .collect();
    (tally, tasks)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every worker's answer to `gateway/health` names `version`.
async fn health_versions(client: &RequestClient, asks: usize) -> Vec<String> {
    let mut versions = Vec::new();
    for _ in 0..asks {
        let reply = ask(client, "gateway/health", "").await;
        let body: Value = serde_json::from_slice(&reply.payload).expect("json");
        versions.push(
            body["worker"]["config_version"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    versions
}

/// Reloads by result, as each worker counts them.
const RELOADS: &str = "routemq_config_reloads_total";

#[tokio::test]
async fn sighup_under_load_applies_a_new_config_and_keeps_the_last_good_one() {
    let mut stack = Stack::start_with(0, 1, V1, false, &[]).await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    stack.add_worker_with_env(
        "worker-0",
        &[("ROUTEMQ_METRICS_ADDR", metrics_addr.as_str())],
    );
    stack.add_worker("worker-1");
    stack
        .register("blue-service", "blue-1", colored("blue").await)
        .await;
    stack
        .register("green-service", "green-1", colored("green").await)
        .await;
    stack.settle().await;
    let v1 = routemq::config::version_of(&std::fs::read_to_string(&stack.config).expect("config"));
    let client = Arc::new(stack.client().await);
    assert_eq!(color(&ask(&client, "api/r/color", "").await), "blue");
    assert_eq!(ask(&client, "api/r/old", "").await.status, 200);
    assert_eq!(ask(&client, "legacy/gone", "").await.status, 200);
    assert_eq!(health_versions(&client, 4).await, vec![v1.clone(); 4]);

    let stop = Arc::new(AtomicBool::new(false));
    let (tally, lanes) = load(Arc::clone(&client), 16, Arc::clone(&stop));
    wait_until("load before the reload", || {
        tally.answered.load(Ordering::Relaxed) >= 200
    })
    .await;

    let text = std::fs::read_to_string(&stack.config)
        .expect("config")
        .replace(V1, V2);
    std::fs::write(&stack.config, &text).expect("write v2");
    let v2 = routemq::config::version_of(&text);
    for worker in &stack.workers {
        worker.process.signal("HUP");
    }
    for worker in &stack.workers {
        worker
            .metric_reaches(
                RELOADS,
                &[r#"result="applied""#],
                1.0,
                Duration::from_secs(10),
            )
            .await;
    }
    wait_until("green replies", || tally.green.load(Ordering::Relaxed) > 0).await;
    let settled = tally.answered.load(Ordering::Relaxed);
    wait_until("load after the reload", || {
        tally.answered.load(Ordering::Relaxed) >= settled + 200
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for lane in lanes {
        lane.await.expect("lane");
    }
    let (sent, answered) = (
        tally.sent.load(Ordering::Relaxed),
        tally.answered.load(Ordering::Relaxed),
    );
    eprintln!(
        "reload under load: sent {sent}, answered {answered}, lost {}",
        sent - answered
    );
    assert!(
        tally.failures.lock().is_empty(),
        "failures: {:?}",
        tally.failures.lock()
    );
    assert_eq!(sent, answered, "every request answered");

    // Every request dispatched after the reload runs on the new configuration.
    for _ in 0..10 {
        assert_eq!(color(&ask(&client, "api/r/color", "").await), "green");
    }
    let limited: Vec<u16> = statuses(&client, "api/r/limited", 3).await;
    assert_eq!(limited, vec![200, 200, 429], "the new limit applies");
    assert_eq!(
        color(&ask(&client, "beta/new", "").await),
        "green",
        "a new filter is subscribed"
    );
    let removed = ask(&client, "api/r/old", "").await;
    assert_eq!(error_type(&removed), "route_not_found", "a removed route");
    let unsubscribed = RequestOptions {
        timeout: Duration::from_secs(2),
        ..RequestOptions::default()
    };
    let gone = client.request("legacy/gone", "", &unsubscribed).await;
    assert!(gone.is_err(), "a removed filter is unsubscribed: {gone:?}");
    assert_eq!(health_versions(&client, 4).await, vec![v2.clone(); 4]);
    let http = reqwest::Client::new();
    let readyz: Value = http
        .get(format!("http://{metrics_addr}/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("readyz json");
    assert_eq!(readyz["config_version"], json!(v2));

    // A broken file is refused whole; the last good configuration serves on.
    std::fs::write(
        &stack.config,
        format!("{text}\n[limits]\nmax_payload_bytes = \"lots\"\n"),
    )
    .expect("write");
    stack.workers[0].process.signal("HUP");
    stack.workers[0]
        .metric_reaches(
            RELOADS,
            &[r#"result="invalid""#],
            1.0,
            Duration::from_secs(10),
        )
        .await;
    // A restart-only setting is refused with its name, and not half-applied.
    std::fs::write(
        &stack.config,
        text.replace(
            "[[groups]]\nprefix = \"beta\"",
            "[mqtt]\nshare_group = \"other\"\n\n[[groups]]\nprefix = \"beta\"",
        ),
    )
    .expect("write");
    stack.workers[0].process.signal("HUP");
    stack.workers[0]
        .wait_for_log("restart required: mqtt changed", Duration::from_secs(10))
        .await;
    for _ in 0..6 {
        assert_eq!(color(&ask(&client, "api/r/color", "").await), "green");
    }
    assert_eq!(
        error_type(&ask(&client, "api/r/limited", "").await),
        "rate_limited"
    );
    assert_eq!(color(&ask(&client, "beta/new", "").await), "green");
    let metrics = http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    for series in [
        format!("routemq_config_info{{version=\"{v2}\"}} 1"),
        format!("routemq_config_info{{version=\"{v1}\"}} 0"),
        "routemq_config_reloads_total{result=\"applied\"} 1".to_string(),
        "routemq_config_reloads_total{result=\"invalid\"} 1".to_string(),
        "routemq_config_reloads_total{result=\"restart_required\"} 1".to_string(),
        "routemq_config_last_reload_successful 0".to_string(),
    ] {
        assert!(metrics.contains(&series), "{series} in:\n{metrics}");
    }
    let reloaded = stack.workers[0]
        .log_lines()
        .into_iter()
        .find(|line| line.contains("configuration reloaded"))
        .unwrap_or_default();
    eprintln!("{reloaded}");
}

/// The statuses of `count` requests to `topic`, one after another.
async fn statuses(client: &RequestClient, topic: &str, count: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..count {
        statuses.push(ask(client, topic, "").await.status);
    }
    statuses
}
