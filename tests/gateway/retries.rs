//! Retries with the same `x-request-id` are safe: a POST runs once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use routemq_client::{Reply, RequestClient, RequestOptions};
use routemq_tests::upstream;

use crate::stack::{error_type, options, Stack};

/// Sends until the answer is not `409 request_in_progress`: the first
/// attempt's outcome is recorded just after its reply goes out.
async fn settled(client: &RequestClient, topic: &str, id: &str) -> Reply {
    settled_with(client, topic, "{}", id).await
}

async fn settled_with(client: &RequestClient, topic: &str, payload: &str, id: &str) -> Reply {
    for _ in 0..100 {
        let reply = client
            .request(topic, payload.to_string(), &with_id(id))
            .await
            .expect("reply");
        if reply.status != 409 {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{topic} {id} stayed in progress");
}

/// Registers an upstream for `api/t/count` and returns its request counter.
async fn counted_service(stack: &Stack) -> Arc<AtomicUsize> {
    let hits = Arc::new(AtomicUsize::new(0));
    let addr = upstream::counting(Arc::clone(&hits)).await;
    stack.register("count-service", "count-1", addr).await;
    stack.settle().await;
    hits
}

fn with_id(id: &str) -> RequestOptions {
    RequestOptions {
        request_id: Some(id.to_string()),
        ..options()
    }
}

#[tokio::test]
async fn a_retried_post_runs_once_and_gets_the_first_reply_again() {
    let stack = Stack::start(2).await;
    let hits = counted_service(&stack).await;
    let client = stack.client().await;

    let first = client
        .request("api/t/count", "{}", &with_id("order-7"))
        .await
        .expect("reply");
    assert_eq!(first.status, 201);
    assert_eq!(first.property("x-replayed"), None);
    for _ in 0..3 {
        // Two workers share the load, so the retries reach both.
        let retry = settled(&client, "api/t/count", "order-7").await;
        assert_eq!(retry.status, 201);
        assert_eq!(retry.property("x-replayed"), Some("true"));
        assert_eq!(
            retry.payload, first.payload,
            "the first reply, byte for byte"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the upstream ran it once");

    let other = client
        .request("api/t/count", "{}", &with_id("order-8"))
        .await
        .expect("reply");
    assert_eq!(other.json()["data"]["hit"], 2, "another id runs again");
}

#[tokio::test]
async fn a_retry_while_the_first_attempt_runs_gets_409() {
    let stack = Stack::start(1).await;
    let addr = upstream::slow(Duration::from_secs(2)).await;
    stack.register("slow-service", "slow-1", addr).await;
    stack.settle().await;
    let client = Arc::new(stack.client().await);
    // Both copies overlap the 2 s upstream call: whichever claims the id
    // first runs, the other is told to retry later.
    let attempts: Vec<_> = (0..2)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                let reply = client
                    .request("api/t/slow-post", "{}", &with_id("pay-1"))
                    .await
                    .expect("reply");
                (reply.status, error_type(&reply))
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for attempt in attempts {
        outcomes.push(attempt.await.expect("task"));
    }
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            (200, String::new()),
            (409, "request_in_progress".to_string())
        ]
    );
}

#[tokio::test]
async fn an_upstream_failure_is_not_replayed() {
    let stack = Stack::start(1).await;
    stack
        .register("e500-service", "e500-1", upstream::fixed_status(500).await)
        .await;
    stack.settle().await;
    let client = stack.client().await;
    for _ in 0..2 {
        let reply = settled(&client, "api/t/e500-post", "try-again").await;
        assert_eq!(reply.status, 502);
        assert_eq!(
            reply.property("x-replayed"),
            None,
            "a 5xx releases the claim"
        );
    }
}

#[tokio::test]
async fn an_id_reused_for_a_different_payload_is_refused() {
    let stack = Stack::start(1).await;
    let hits = counted_service(&stack).await;
    let client = stack.client().await;
    let first = client
        .request("api/t/count", r#"{"amount":5,"to":"a"}"#, &with_id("pay-9"))
        .await
        .expect("reply");
    assert_eq!(first.status, 201);
    // Key order does not make a different request.
    let same = settled_with(&client, "api/t/count", r#"{"to":"a","amount":5}"#, "pay-9").await;
    assert_eq!(same.property("x-replayed"), Some("true"));
    let other = settled_with(&client, "api/t/count", r#"{"amount":6,"to":"a"}"#, "pay-9").await;
    assert_eq!(
        (other.status, error_type(&other).as_str()),
        (422, "request_id_reused")
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

/// A reply above `gateway.replay_max_reply_bytes` is answered but not kept,
/// and says so; its retries get `410 reply_not_kept` — never a second run.
#[tokio::test]
async fn a_reply_too_large_to_keep_is_answered_once_and_never_run_again() {
    let mut stack = Stack::start(0).await;
    let text = std::fs::read_to_string(&stack.config).expect("config");
    let text = text.replacen("[gateway]\n", "[gateway]\nreplay_max_reply_bytes = 16\n", 1);
    std::fs::write(&stack.config, text).expect("config");
    stack.add_worker("worker-0");
    stack.add_worker("worker-1");
    let hits = counted_service(&stack).await;
    let client = stack.client().await;

    let first = client
        .request("api/t/count", "{}", &with_id("big-1"))
        .await
        .expect("reply");
    assert_eq!(first.status, 201);
    assert_eq!(first.property("x-replay"), Some("not-kept"));
    for _ in 0..3 {
        let retry = settled(&client, "api/t/count", "big-1").await;
        assert_eq!(retry.status, 410, "{}", retry.json());
        assert_eq!(error_type(&retry), "reply_not_kept");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the upstream ran it once");
}
