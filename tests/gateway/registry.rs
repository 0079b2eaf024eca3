//! Workers follow the registry from its version token instead of re-reading
//! it: what changes reaches every worker, what does not change costs nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;
use routemq_gateway::redis::scripts::Registration;
use routemq_gateway::registry;
use routemq_tests::eventually;
use routemq_tests::upstream::{self, Switch};

use crate::faults::until_traffic;
use crate::stack::{ask, Stack};

async fn user_service_instances(client: &routemq_client::RequestClient) -> usize {
    let services = ask(client, "gateway/services", "").await.json();
    services["services"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == "user-service"))
        .and_then(|users| users["total_instances"].as_u64())
        .unwrap_or(0) as usize
}

/// Two workers, three instances. Heartbeats make no worker re-read anything
/// (counted by Redis: not one HGETALL); an instance whose ttl runs out is
/// removed by one worker and leaves both workers' caches; an instance
/// turning sick is probed and written by one worker and avoided by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_follow_registry_changes_without_re_reading_it() {
    let stack = Stack::start(2).await;
    for worker in &stack.workers {
        worker.sees_live_workers(2, Duration::from_secs(20)).await;
    }
    let (steady, flaky) = (Arc::new(Switch::default()), Arc::new(Switch::default()));
    let steady_addr = upstream::switchable(Arc::clone(&steady)).await;
    let flaky_addr = upstream::switchable(Arc::clone(&flaky)).await;
    stack
        .register("user-service", "steady-1", steady_addr)
        .await;
    stack.register("user-service", "flaky-1", flaky_addr).await;
    let (url, health) = (
        format!("http://{steady_addr}"),
        format!("http://{steady_addr}/health"),
    );
    let beating = Registration {
        service: "user-service",
        instance_id: "beating-1",
        url: &url,
        health_check_url: &health,
        ttl: Some(Duration::from_secs(1)),
    };
    registry::register(&stack.redis_client, &beating)
        .await
        .expect("register");
    stack.settle().await;
    let client = stack.client().await;
    assert_eq!(user_service_instances(&client).await, 3);

    let redis = &stack.redis_client;
    let _: () = redis
        .custom(fred::cmd!("CONFIG"), vec!["RESETSTAT"])
        .await
        .expect("resetstat");
    let mut last_beat = Instant::now();
    for _ in 0..10 {
        registry::heartbeat(redis, "user-service", "beating-1")
            .await
            .expect("heartbeat");
        last_beat = Instant::now();
        // The service's own heartbeat pace.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.settle().await;
    let stats: String = redis
        .info(Some(fred::types::InfoKind::CommandStats))
        .await
        .expect("info");
    assert!(
        !stats.contains("cmdstat_hgetall:"),
        "heartbeats made a worker re-read instances: {stats}"
    );

    eventually(
        "the expired instance unlisted",
        Duration::from_secs(10),
        || async { (user_service_instances(&client).await == 2).then_some(()) },
    )
    .await;
    println!(
        "an instance whose 1 s ttl ran out left the cache {:?} after its last heartbeat",
        last_beat.elapsed()
    );
    stack.settle().await;
    for _ in 0..10 {
        assert_eq!(
            user_service_instances(&client).await,
            2,
            "every worker re-read it"
        );
    }
    let reaped: usize = stack
        .workers
        .iter()
        .map(|worker| worker.count_log("expired instances removed"))
        .sum();
    assert_eq!(
        reaped, 1,
        "one worker removes a service's expired instances"
    );

    // After the expiry, so nothing else makes a worker re-read (and prune)
    // the service first: the reaper is the only remover above.
    flaky.sick.store(true, Ordering::SeqCst);
    until_traffic(&client, &flaky, false, Duration::from_secs(10)).await;
    let written: usize = stack
        .workers
        .iter()
        .map(|worker| worker.count_log("instance health changed"))
        .sum();
    assert_eq!(written, 1, "one worker probes and writes each instance");
}
