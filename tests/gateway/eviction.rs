//! Shared state that client traffic cannot evict: a Redis that may evict
//! any key is refused at start-up (on every primary of a cluster), and a
//! full Redis under `noeviction` costs cached replies, counted, not answers.

use std::time::Duration;

use fred::prelude::*;
use routemq_tests::{eventually, upstream, Probes, Worker};

use crate::stack::{ask, under_test, Stack, Store};

const ROUTES: &str = r#"
[middleware.cache]
kind = "fallback"
cache_ttl = "1m"

[[groups]]
prefix = "api/e"
service = "ok-service"
routes = [
  { topic = "cached/{id}", method = "GET", path = "/items/{id}", middleware = ["cache"] },
  { topic = "plain/{id}",  method = "GET", path = "/items/{id}" },
]
"#;

async fn config_set(redis: &Client, name: &str, value: &str) {
    redis
        .custom::<(), _>(fred::cmd!("CONFIG"), vec!["SET", name, value])
        .await
        .unwrap_or_else(|error| panic!("CONFIG SET {name} {value}: {error}"));
}

/// Starts a worker that is expected to stop at once, and returns its log.
async fn refused_start(stack: &Stack) -> String {
    let mut worker = Worker::spawn(
        &under_test(),
        &stack.config,
        "refused",
        &stack.mosquitto.url(),
        &stack.store.url(),
        &[],
    );
    let status = worker.process.wait_exit(Duration::from_secs(20));
    let log = worker.log_lines().join("\n");
    assert!(
        status.is_some_and(|status| !status.success()),
        "the worker kept running:\n{log}"
    );
    log
}

#[tokio::test]
async fn a_redis_that_may_evict_any_key_is_refused_at_start_up() {
    let stack = Stack::start_with(0, 1, ROUTES, false, &[]).await;
    let redis = &stack.redis_client;
    config_set(redis, "maxmemory", "2mb").await;
    config_set(redis, "maxmemory-policy", "allkeys-lru").await;
    let log = refused_start(&stack).await;
    assert!(log.contains("may evict any key"), "{log}");
    assert!(log.contains("maxmemory-policy noeviction"), "{log}");

    // volatile-* evicts only keys with a ttl: allowed, with a warning.
    config_set(redis, "maxmemory-policy", "volatile-lru").await;
    let worker = Worker::start(
        &under_test(),
        &stack.config,
        "warned",
        &stack.mosquitto.url(),
        &stack.store.url(),
    );
    assert_eq!(worker.count_log("evicts keys with a ttl"), 1);
}

#[tokio::test]
async fn every_primary_of_a_cluster_is_checked() {
    let stack = Stack::start_with(0, 1, ROUTES, true, &[]).await;
    let Store::Cluster(cluster) = &stack.store else {
        panic!("a cluster");
    };
    let last = *cluster.ports.last().expect("nodes");
    let node = fred::prelude::Builder::from_config(
        Config::from_url(&format!("redis://127.0.0.1:{last}")).expect("url"),
    )
    .build()
    .expect("client");
    node.init().await.expect("node up");
    config_set(&node, "maxmemory", "2mb").await;
    config_set(&node, "maxmemory-policy", "allkeys-random").await;
    let log = refused_start(&stack).await;
    assert!(
        log.contains(&format!("127.0.0.1:{last}")) && log.contains("allkeys-random"),
        "{log}"
    );
}

#[tokio::test]
async fn a_full_redis_costs_cached_replies_not_answers() {
    let mut stack = Stack::start_with(0, 1, ROUTES, false, &[]).await;
    let probes = Probes::new();
    stack.add_worker_with_env("worker-0", &[probes.env()]);
    stack
        .register("ok-service", "ok-1", upstream::fixed_status(200).await)
        .await;
    stack.settle().await;
    let client = stack.client().await;
    assert_eq!(ask(&client, "api/e/cached/1", "").await.status, 200);
    // Redis full under noeviction: every write is refused with OOM.
    let redis = &stack.redis_client;
    config_set(redis, "maxmemory", "1").await;
    for _ in 0..3 {
        assert_eq!(ask(&client, "api/e/cached/2", "").await.status, 200);
    }
    eventually(
        "a refused cache write counted",
        Duration::from_secs(10),
        || async { (probes.metric("routemq_redis_oom_total", &[]).await >= 1.0).then_some(()) },
    )
    .await;
    assert_eq!(ask(&client, "api/e/plain/3", "").await.status, 200);
    config_set(redis, "maxmemory", "0").await;
}
