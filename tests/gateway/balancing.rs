//! Load sharing, shared round robin, health probing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use routemq_client::RequestOptions;
use routemq_tests::eventually;
use routemq_tests::upstream;
use serde_json::Value;

use crate::stack::{ask, options, Stack};

#[tokio::test]
async fn two_workers_share_load_and_round_robin_is_exact_across_them() {
    let stack = Stack::start(2).await;
    stack.demo_instances("user-service", 3).await;
    stack.settle().await;
    let client = stack.client().await;
    let mut per_instance: HashMap<String, usize> = HashMap::new();
    for id in 0..30 {
        let request_id = format!("req-{id}");
        let opts = RequestOptions {
            request_id: Some(request_id.clone()),
            headers: vec![
                ("accept-language".into(), "fr".into()),
                ("x-user-id".into(), "admin".into()),
            ],
            ..options()
        };
        let reply = client
            .request(&format!("api/v1/users/get/{id}"), "", &opts)
            .await
            .expect("reply");
        assert_eq!(reply.status, 200, "{:?}", reply.json());
        assert_eq!(reply.content_type.as_deref(), Some("application/json"));
        assert_eq!(reply.property("x-request-id"), Some(request_id.as_str()));
        let body = reply.json();
        assert_eq!(body["status"], "success");
        assert_eq!(body["service"], "user-service");
        assert_eq!(body["request_id"], request_id.as_str());
        assert!(body["processing_time"].as_f64().is_some());
        let data = &body["data"];
        assert_eq!(data["path"], format!("/users/{id}"));
        assert_eq!(data["method"], "GET");
        assert_eq!(
            data["request_id"],
            request_id.as_str(),
            "X-Request-ID reaches the upstream"
        );
        assert_eq!(data["gateway_service"], "user-service");
        assert_eq!(data["accept_language"], "fr", "allowed header forwarded");
        assert_eq!(
            data["user_id"],
            Value::Null,
            "spoofed identity header stripped"
        );
        *per_instance
            .entry(data["instance"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_instance.len(), 3, "{per_instance:?}");
    assert!(
        per_instance.values().all(|&count| count == 10),
        "shared round robin is exact: {per_instance:?}"
    );
    for worker in &stack.workers {
        assert!(
            worker.count_log("request answered") >= 5,
            "worker {} took part: {}",
            worker.id,
            worker.count_log("request answered")
        );
    }
}

#[tokio::test]
async fn leased_round_robin_keeps_the_spread_exact() {
    // Each worker takes 4 counter values per Redis call; requests alternate
    // between the two workers, and every counter value is still used once.
    let stack = Stack::start_with_lease(2, 4).await;
    stack.demo_instances("user-service", 3).await;
    stack.settle().await;
    let client = stack.client().await;
    let mut per_instance: HashMap<String, usize> = HashMap::new();
    for id in 0..24 {
        let reply = ask(&client, &format!("api/v1/users/get/{id}"), "").await;
        assert_eq!(reply.status, 200);
        let instance = reply.json()["data"]["instance"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *per_instance.entry(instance).or_default() += 1;
    }
    assert_eq!(per_instance.len(), 3, "{per_instance:?}");
    assert!(
        per_instance.values().all(|&count| count == 8),
        "{per_instance:?}"
    );
}

#[tokio::test]
async fn concurrent_requests_each_get_their_own_reply() {
    let stack = Stack::start(2).await;
    stack.demo_instances("user-service", 2).await;
    stack.settle().await;
    let client = Arc::new(stack.client().await);
    let mut tasks = Vec::new();
    // 200 over two workers: each stays within its per-service bulkhead (128).
    for id in 0..200 {
        let client = Arc::clone(&client);
        tasks.push(tokio::spawn(async move {
            let reply = ask(&client, &format!("api/v1/users/get/{id}"), "").await;
            (id, reply)
        }));
    }
    for task in tasks {
        let (id, reply) = task.await.expect("task");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["data"]["path"], format!("/users/{id}"));
    }
}

#[tokio::test]
async fn an_unreachable_instance_is_skipped_then_marked_unhealthy() {
    let stack = Stack::start(1).await;
    stack.demo_instances("user-service", 1).await;
    let closed_port = routemq_tests::free_port();
    stack
        .register(
            "user-service",
            "user-service-dead",
            SocketAddr::from(([127, 0, 0, 1], closed_port)),
        )
        .await;
    stack.settle().await;
    let client = stack.client().await;
    for id in 0..6 {
        let reply = ask(&client, &format!("api/v1/users/get/{id}"), "").await;
        assert_eq!(
            reply.status, 200,
            "a refused connection is retried on another instance"
        );
        assert_eq!(reply.json()["data"]["instance"], "user-service-1");
    }
    // The next probe (every 200 ms in the test config) marks it unhealthy.
    eventually("user-service degraded", Duration::from_secs(10), || async {
        let health = ask(&client, "gateway/health", "").await.json();
        match health["services"]["user-service"] == "degraded" {
            true => Ok(()),
            false => Err(health),
        }
    })
    .await;
    let services = ask(&client, "gateway/services", "").await.json();
    let users = services["services"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == "user-service"))
        .cloned()
        .expect("user-service listed");
    assert_eq!(users["total_instances"], 2);
    assert_eq!(users["healthy_instances"], 1);
}

#[tokio::test]
async fn each_instance_is_probed_once_per_interval_across_all_workers() {
    let stack = Stack::start(3).await;
    let probes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let addr = upstream::probe_counter(Arc::clone(&probes)).await;
    stack.register("probed-service", "probed-1", addr).await;
    // Probes are shared over the probers each worker last read (renewed
    // every 5 s): count once every worker has seen all three.
    for worker in &stack.workers {
        worker.sees_live_workers(3, Duration::from_secs(20)).await;
    }
    stack.settle().await;
    let window = Duration::from_secs(3);
    let before = probes.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(window).await;
    let counted = probes.load(std::sync::atomic::Ordering::SeqCst) - before;
    // The test config probes every 200 ms: one prober per interval gives about
    // 15 probes in 3 s; three uncoordinated workers would give about 45. No
    // probe lock is taken: the instance has one owner among the probers.
    let intervals = (window.as_millis() / 200) as usize;
    assert!(counted >= intervals / 3, "probes happen: {counted}");
    assert!(
        counted <= intervals + intervals / 2,
        "coordinated, not one per worker: {counted}"
    );
}

const BURST_ROUTES: &str = r#"
[[groups]]
prefix = "api/burst"
routes = [{ topic = "get/{id}", service = "user-service", method = "GET", path = "/users/{id}" }]
"#;

/// A burst of 1 100 concurrent requests through four workers leasing 16
/// counter values at a time, to two instances: one refill in flight per
/// service per worker, values used in counter order, so the split is exact to
/// within one request per worker and the shared counter advances by the
/// requests plus at most one unused lease per worker (≈ one script call per
/// 16 requests, read from Redis itself).
async fn a_burst_splits_exactly(cluster: bool) {
    const WORKERS: usize = 4;
    const LEASE: u64 = 16;
    const REQUESTS: usize = 1100;
    let mut stack = Stack::start_with(0, LEASE as u32, BURST_ROUTES, cluster, &[]).await;
    // Room for the whole burst: this test is about balancing, not bulkheads.
    let config = std::fs::read_to_string(&stack.config).expect("config");
    let config = config.replacen(
        "[gateway]\n",
        "[gateway]\nservice_max_in_flight = 4096\nservice_max_held = 4096\n",
        1,
    );
    std::fs::write(&stack.config, config).expect("config");
    for index in 0..WORKERS {
        stack.add_worker(&format!("worker-{index}"));
    }
    stack.demo_instances("user-service", 2).await;
    stack.settle().await;
    let client = Arc::new(stack.client().await);
    let counter_key = routemq_gateway::redis::keys::round_robin("user-service");
    let before: u64 = stack.redis_client.get(&counter_key).await.unwrap_or(0);

    let burst = (0..REQUESTS).map(|id| {
        let client = Arc::clone(&client);
        tokio::spawn(async move { ask(&client, &format!("api/burst/get/{id}"), "").await })
    });
    let mut per_instance: HashMap<String, usize> = HashMap::new();
    for reply in futures::future::join_all(burst).await {
        let reply = reply.expect("request task");
        assert_eq!(reply.status, 200, "{:?}", reply.json());
        let instance = reply.json()["data"]["instance"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *per_instance.entry(instance).or_default() += 1;
    }
    let after: u64 = stack.redis_client.get(&counter_key).await.expect("counter");
    let advanced = after - before;
    let counts: Vec<usize> = per_instance.values().copied().collect();
    println!(
        "burst ({}): {per_instance:?}, counter advanced {advanced} for {REQUESTS} requests ({} leases)",
        if cluster { "cluster" } else { "single" },
        advanced / LEASE
    );
    assert_eq!(counts.len(), 2, "{per_instance:?}");
    assert!(
        counts[0].abs_diff(counts[1]) <= WORKERS,
        "split within one request per worker: {per_instance:?}"
    );
    assert!(
        advanced <= REQUESTS as u64 + WORKERS as u64 * LEASE,
        "the counter advanced {advanced} for {REQUESTS} requests: refills were not shared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_splits_exactly_on_one_redis() {
    a_burst_splits_exactly(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_splits_exactly_on_a_redis_cluster() {
    a_burst_splits_exactly(true).await;
}
