//! Bursts without false refusals: requests beyond a service's concurrency
//! limit wait their turn instead of being refused, and the limit follows
//! the service's latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{any, get};
use axum::{Json, Router};
use futures::future::join_all;
use routemq_client::RequestOptions;
use routemq_tests::{eventually, upstream, Probes};
use serde_json::json;

use crate::stack::{error_type, Stack};

const ROUTES: &str = r#"
[[groups]]
prefix = "api/b"
routes = [{ topic = "get/{id}", service = "burst-service", method = "GET", path = "/items/{id}" }]
"#;

/// One worker with probes, and `burst-service` answering after `delay_ms`.
pub async fn start(delay_ms: Arc<AtomicU64>) -> (Stack, Probes) {
    let mut stack = Stack::start_with(0, 1, ROUTES, false, &[]).await;
    let probes = Probes::new();
    stack.add_worker_with_env("worker-0", &[probes.env()]);
    let service = upstream::serve(
        Router::new()
            .route("/health", get(|| async { "ok" }))
            .fallback(any(move || {
                let delay = Duration::from_millis(delay_ms.load(Ordering::Relaxed));
                async move {
                    tokio::time::sleep(delay).await;
                    Json(json!({"ok": true}))
                }
            })),
    )
    .await;
    stack.register("burst-service", "burst-1", service).await;
    stack.settle().await;
    (stack, probes)
}

async fn burst(
    client: &Arc<routemq_client::RequestClient>,
    count: usize,
) -> Vec<routemq_client::Reply> {
    let options = RequestOptions {
        timeout: Duration::from_secs(30),
        ..RequestOptions::default()
    };
    let requests = (0..count).map(|id| {
        let (client, options) = (Arc::clone(client), options.clone());
        async move {
            client
                .request(&format!("api/b/get/{id}"), "", &options)
                .await
                .expect("every request is answered")
        }
    });
    join_all(requests).await
}

const LIMIT: &str = "routemq_service_concurrency_limit";
const SERVICE: &str = r#"service="burst-service""#;

#[tokio::test]
async fn a_burst_of_1000_from_one_caller_is_served_whole() {
    let (stack, _probes) = start(Arc::new(AtomicU64::new(50))).await;
    let client = Arc::new(stack.client().await);
    // One call first: the service's latency is known before the burst.
    assert_eq!(burst(&client, 1).await[0].status, 200);

    // 1000 at once from one caller, eight times the service's starting limit.
    let started = std::time::Instant::now();
    let replies = burst(&client, 1000).await;
    eprintln!("1000 at once answered in {:?}", started.elapsed());
    let refused: Vec<String> = replies
        .iter()
        .filter(|reply| reply.status != 200)
        .map(|reply| format!("{} {}", reply.status, error_type(reply)))
        .collect();
    assert!(
        refused.is_empty(),
        "{} refused: {:?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );
}

/// The limit rises above its start while a burst finds the service's
/// latency steady, and falls when the latency grows tenfold. A 200 ms
/// service, so the test machine's own load does not read as the service
/// slowing down.
#[tokio::test]
async fn the_limit_follows_the_services_latency() {
    let delay_ms = Arc::new(AtomicU64::new(200));
    let (stack, probes) = start(Arc::clone(&delay_ms)).await;
    let client = Arc::new(stack.client().await);
    assert_eq!(burst(&client, 1).await[0].status, 200);
    let burst_done = tokio::spawn({
        let client = Arc::clone(&client);
        async move { burst(&client, 1000).await }
    });
    let risen = eventually(
        "the limit rose above 128",
        Duration::from_secs(30),
        || async {
            let now = probes.metric(LIMIT, &[SERVICE]).await;
            (now > 128.0).then_some(now)
        },
    )
    .await;
    let replies = burst_done.await.expect("task");
    assert!(replies.iter().all(|r| r.status == 200));

    // The service slows tenfold: the limit falls.
    delay_ms.store(2000, Ordering::Relaxed);
    let slow = tokio::spawn({
        let client = Arc::clone(&client);
        async move { burst(&client, 200).await }
    });
    eventually("the limit fell", Duration::from_secs(30), || async {
        let now = probes.metric(LIMIT, &[SERVICE]).await;
        (now < risen / 2.0).then_some(())
    })
    .await;
    let answered = slow.await.expect("task");
    assert!(
        answered
            .iter()
            .all(|r| r.status == 200 || error_type(r) == "service_overloaded"),
        "answered or refused at the bulkhead, nothing else"
    );
}

/// 1 100 GETs at once from one caller through four workers on a 3-node
/// Redis Cluster, with the 1000-per-minute limit of the shared middleware
/// stack: exactly 1 000 answered and 100 refused by the limit, none by a
/// bulkhead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_through_four_workers_meets_only_the_rate_limit() {
    let stack = crate::mw::start(4, true).await;
    let client = Arc::new(stack.stack.client().await);
    let token = crate::mw::bearer("herd", &[]);
    let options = RequestOptions {
        timeout: Duration::from_secs(60),
        headers: vec![("authorization".into(), token)],
        ..RequestOptions::default()
    };
    let replies = join_all((0..1100).map(|id| {
        let (client, options) = (Arc::clone(&client), options.clone());
        async move {
            client
                .request(&format!("api/v1/users/get/{id}"), "", &options)
                .await
                .expect("every request is answered")
        }
    }))
    .await;
    let mut statuses = std::collections::BTreeMap::new();
    for reply in &replies {
        *statuses
            .entry((reply.status, error_type(reply)))
            .or_insert(0) += 1;
    }
    assert_eq!(
        statuses.get(&(200, String::new())).copied(),
        Some(1000),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.get(&(429, "rate_limited".to_string())).copied(),
        Some(100),
        "{statuses:?}"
    );
}
