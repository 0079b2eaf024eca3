//! Identical concurrent GETs on a coalescing route share one upstream
//! call; each still gets its own reply, and callers never share a reply
//! that may depend on who asks.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::join_all;
use routemq_client::{Reply, RequestClient, RequestOptions};
use routemq_tests::upstream;

use crate::stack::{options, Stack};

const ROUTES: &str = r#"
[[groups]]
prefix = "api/k"
service = "gated-service"
routes = [
  { topic = "item/{id}",   method = "GET", path = "/items/{id}", coalesce = true },
  { topic = "public/{id}", method = "GET", path = "/public/{id}", coalesce = true, coalesce_across_callers = true },
]
"#;

/// `count` requests for `topic` at once from `client`, each with its own
/// request id `{prefix}-{n}`.
async fn burst(client: &RequestClient, topic: &str, prefix: &str, count: usize) -> Vec<Reply> {
    join_all((0..count).map(|index| async move {
        let options = RequestOptions {
            request_id: Some(format!("{prefix}-{index}")),
            timeout: Duration::from_secs(30),
            ..options()
        };
        client.request(topic, "{}", &options).await.expect("reply")
    }))
    .await
}

async fn coalesced(stack: &Stack, route: &str, count: f64) {
    let label = format!("route=\"{route}\"");
    stack.workers[0]
        .metric_reaches(
            "routemq_coalesced_requests_total",
            &[&label],
            count,
            Duration::from_secs(20),
        )
        .await;
}

#[tokio::test]
async fn a_hundred_identical_gets_make_one_upstream_call_and_a_hundred_replies() {
    let stack = Stack::start_with(1, 1, ROUTES, false, &[]).await;
    let (addr, gate) = upstream::gated().await;
    stack.register("gated-service", "gated-1", addr).await;
    stack.settle().await;
    let client = stack.client().await;

    let replies = burst(&client, "api/k/item/7", "poll", 100);
    let release = async {
        // The upstream holds its answer until all 100 have arrived: one
        // made the call, 99 joined it.
        coalesced(&stack, "api/k/item/{id}", 99.0).await;
        gate.open();
    };
    let (replies, ()) = tokio::join!(replies, release);

    assert_eq!(gate.hits.load(Ordering::SeqCst), 1, "one upstream call");
    assert!(replies.iter().all(|reply| reply.status == 200));
    let ids: HashSet<_> = replies
        .iter()
        .map(|reply| reply.property("x-request-id").expect("id").to_string())
        .collect();
    let expected: HashSet<_> = (0..100).map(|index| format!("poll-{index}")).collect();
    assert_eq!(ids, expected, "each reply has its own request's id");
    for reply in &replies {
        let body = reply.json();
        assert_eq!(
            body["request_id"],
            reply.property("x-request-id").expect("id")
        );
        assert_eq!(body["data"]["hit"], 1, "the one call's answer");
    }
    let leader = &replies[0].json()["data"]["request_id"];
    assert!(
        replies
            .iter()
            .all(|reply| &reply.json()["data"]["request_id"] == leader),
        "the upstream saw the first request's id"
    );
}

#[tokio::test]
async fn two_callers_share_a_call_only_where_the_route_says_the_reply_is_the_same_for_all() {
    let stack = Stack::start_with(1, 1, ROUTES, false, &[]).await;
    let (addr, gate) = upstream::gated().await;
    stack.register("gated-service", "gated-1", addr).await;
    stack.settle().await;
    let (alice, bob) = (stack.client().await, stack.client().await);

    let per_caller = async {
        tokio::join!(
            burst(&alice, "api/k/item/1", "alice", 10),
            burst(&bob, "api/k/item/1", "bob", 10),
        )
    };
    let release = async {
        coalesced(&stack, "api/k/item/{id}", 18.0).await;
        gate.open();
    };
    let ((from_alice, from_bob), ()) = tokio::join!(per_caller, release);
    assert_eq!(gate.hits.load(Ordering::SeqCst), 2, "one call per caller");
    for (replies, caller) in [(&from_alice, "alice"), (&from_bob, "bob")] {
        for reply in replies {
            let seen = reply.json()["data"]["request_id"].clone();
            let seen = seen.as_str().expect("the upstream's echo");
            assert!(
                seen.starts_with(caller),
                "{caller} got an answer made for {seen}"
            );
        }
    }

    let across = async {
        tokio::join!(
            burst(&alice, "api/k/public/1", "alice-public", 10),
            burst(&bob, "api/k/public/1", "bob-public", 10),
        )
    };
    let before = gate.hits.load(Ordering::SeqCst);
    let ((from_alice, from_bob), ()) =
        tokio::join!(across, coalesced(&stack, "api/k/public/{id}", 19.0));
    assert_eq!(
        gate.hits.load(Ordering::SeqCst) - before,
        1,
        "a caller-independent route shares one call"
    );
    assert!(from_alice
        .iter()
        .chain(&from_bob)
        .all(|reply| reply.status == 200));
}
