//! Draining, restarts and outages of the broker and Redis, cluster-wide metrics.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use routemq_client::RequestOptions;
use routemq_gateway::redis::keys;
use routemq_tests::eventually;

use crate::stack::{ask, Stack};

#[tokio::test]
async fn sigterm_under_load_loses_no_accepted_request() {
    let mut stack = Stack::start(2).await;
    stack.demo_instances("user-service", 2).await;
    stack.settle().await;
    let client = Arc::new(stack.client().await);
    let total = 600;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for id in 0..total {
        let permit = Arc::clone(&in_flight)
            .acquire_owned()
            .await
            .expect("permit");
        let client = Arc::clone(&client);
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let opts = RequestOptions {
                qos: 1,
                timeout: Duration::from_secs(20),
                ..RequestOptions::default()
            };
            client
                .request(&format!("api/v1/users/get/{id}"), "", &opts)
                .await
        }));
        if id == total / 3 {
            stack.workers[0].process.signal("TERM");
        }
    }
    let mut answered = 0;
    for task in tasks {
        let reply = match task.await.expect("task") {
            Ok(reply) => reply,
            Err(error) => panic!(
                "every request is answered: {error}\n{}\n---\n{}",
                stack.workers[0].log_lines().join("\n"),
                stack.workers[1].log_lines().join("\n")
            ),
        };
        assert_eq!(reply.status, 200);
        answered += 1;
    }
    assert_eq!(answered, total);
    let status = stack.workers[0]
        .process
        .wait_exit(Duration::from_secs(15))
        .expect("worker exits");
    assert!(status.success(), "clean exit after drain: {status:?}");
    stack.workers[0]
        .wait_for_log("drained", Duration::from_secs(1))
        .await;
    assert!(stack.workers[1].count_log("request answered") > 0);
}

#[tokio::test]
async fn gateway_metrics_are_cluster_wide() {
    let stack = Stack::start(2).await;
    stack.demo_instances("user-service", 1).await;
    stack.settle().await;
    let client = stack.client().await;
    for id in 0..10 {
        assert_eq!(
            ask(&client, &format!("api/v1/users/get/{id}"), "")
                .await
                .status,
            200
        );
    }
    assert_eq!(
        ask(&client, "api/v1/users/create", "{oops").await.status,
        400
    );
    // Counters reach Redis with the worker's next flush.
    eventually("11 requests flushed", Duration::from_secs(10), || async {
        let total: Option<i64> = stack
            .redis_client
            .hget(keys::METRICS, "gateway:total_requests")
            .await
            .expect("metrics hash");
        match total == Some(11) {
            true => Ok(()),
            false => Err(format!("flushed total {total:?}")),
        }
    })
    .await;
    let report = ask(&client, "gateway/metrics", "").await.json();
    assert_eq!(report["gateway"]["total_requests"], 11, "{report}");
    assert_eq!(report["gateway"]["successful_requests"], 10);
    assert_eq!(report["gateway"]["failed_requests"], 1);
    assert_eq!(report["services"]["user-service"]["total_requests"], 10);
    assert_eq!(report["services"]["user-service"]["error_rate"], 0.0);
    assert!(
        report["services"]["user-service"]["avg_response_time"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
}

#[tokio::test]
async fn a_redis_outage_does_not_stop_forwarding() {
    let mut stack = Stack::start(1).await;
    stack.demo_instances("user-service", 2).await;
    stack.settle().await;
    let client = stack.client().await;
    assert_eq!(ask(&client, "api/v1/users/get/1", "").await.status, 200);
    stack.redis().kill();
    let mut instances = std::collections::HashSet::new();
    for id in 0..6 {
        let reply = ask(&client, &format!("api/v1/users/get/{id}"), "").await;
        assert_eq!(
            reply.status,
            200,
            "served from the cached registry: {:?}",
            reply.json()
        );
        instances.insert(reply.json()["data"]["instance"].to_string());
    }
    assert_eq!(
        instances.len(),
        2,
        "the local round robin still spreads load"
    );
    let health = ask(&client, "gateway/health", "").await.json();
    assert_eq!(health["redis"], "unhealthy");
    assert_eq!(health["status"], "degraded");

    // Redis comes back empty: the worker reconnects by itself.
    stack.redis().restart();
    let mut healthy = false;
    for _ in 0..50 {
        if ask(&client, "gateway/health", "").await.json()["redis"] == "healthy" {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "the worker reconnected to Redis");
}

/// A broker down for a few seconds (a restart, a node replaced): the worker
/// answers again within about a second of it being back, for a new client
/// and for a client that was connected through the outage. (The earlier
/// backoff, 0.1 s doubling to 5 s, made its next attempt 3.2 s after the
/// 3.1 s one.)
#[tokio::test]
async fn answers_resume_within_a_second_of_a_broker_restart() {
    const OUTAGE: Duration = Duration::from_millis(3300);
    let mut stack = Stack::start(1).await;
    stack.demo_instances("user-service", 1).await;
    stack.settle().await;
    let survivor = stack.client().await;
    assert_eq!(ask(&survivor, "api/v1/users/get/1", "").await.status, 200);
    stack.mosquitto.stop();
    // The outage itself: a fault held for a fixed time, not a wait for a fact.
    tokio::time::sleep(OUTAGE).await;
    stack.mosquitto.start_again();
    let back = std::time::Instant::now();
    let quick = routemq_client::RequestOptions {
        timeout: Duration::from_millis(250),
        ..routemq_client::RequestOptions::default()
    };
    let url = stack.mosquitto.url();
    let fresh =
        routemq_tests::eventually("a new client answered", Duration::from_millis(2500), || {
            let (url, quick) = (url.clone(), quick.clone());
            async move {
                let client = routemq_client::RequestClient::connect(&url).await.ok()?;
                let reply = client
                    .request("api/v1/users/get/2", "", &quick)
                    .await
                    .ok()?;
                client.disconnect().await;
                (reply.status == 200).then(|| back.elapsed())
            }
        })
        .await;
    let kept = routemq_tests::eventually(
        "the kept client answered",
        Duration::from_millis(2500),
        || async {
            let reply = survivor
                .request("api/v1/users/get/3", "", &quick)
                .await
                .ok()?;
            (reply.status == 200).then(|| back.elapsed())
        },
    )
    .await;
    eprintln!(
        "after the broker was back: a new client answered in {fresh:?}, the kept one in {kept:?}"
    );
}

#[tokio::test]
async fn workers_reconnect_and_resubscribe_after_a_broker_restart() {
    let mut stack = Stack::start(2).await;
    stack.demo_instances("user-service", 1).await;
    stack.settle().await;
    assert_eq!(
        ask(&stack.client().await, "api/v1/users/get/1", "")
            .await
            .status,
        200
    );
    stack.mosquitto.restart();
    for worker in &stack.workers {
        worker
            .wait_for_log_count("subscribed", 2, Duration::from_secs(15))
            .await;
    }
    let client = stack.client().await;
    for id in 0..10 {
        assert_eq!(
            ask(&client, &format!("api/v1/users/get/{id}"), "")
                .await
                .status,
            200
        );
    }
}
