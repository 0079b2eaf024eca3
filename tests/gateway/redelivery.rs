//! Delivery faults between a worker and its broker, made by the MQTT-aware
//! proxy: DUP copies of requests (as EMQX resends after `retry_interval`),
//! delays and cut connections. After each, every request is answered once,
//! runs upstream once (unless it was lost and retried), the worker keeps its
//! connection, and no ack answers the wrong message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use routemq_client::{ClientOptions, RequestClient, RequestOptions};
use routemq_tests::eventually;
use routemq_tests::mqtt_proxy::MqttProxy;
use routemq_tests::upstream::{self, Journal};

use crate::stack::Stack;

const ROUTES: &str = r#"
[[groups]]
prefix = "api/r"
routes = [
  { topic = "once/{id}",    service = "journal-service", method = "GET", path = "/x/{id}", timeout = "20s", qos = 1 },
  { topic = "exactly/{id}", service = "journal-service", method = "GET", path = "/x/{id}", timeout = "20s", qos = 2 },
]
"#;

/// One worker connected through the proxy, and an upstream answering after `delay`.
async fn proxied(delay: Duration) -> (Stack, MqttProxy, Journal) {
    let mut stack = Stack::start_with(0, 1, ROUTES, false, &[]).await;
    let proxy = MqttProxy::start(stack.mosquitto.port).await;
    // The runtime's debug lines say which copies and acks it held back.
    let log = [("RUST_LOG", "info,routemq=debug,routemq_gateway=debug")];
    stack.add_worker_on("worker-0", &proxy.url(), &log);
    let (addr, journal) = upstream::journal(delay).await;
    stack.register("journal-service", "journal-1", addr).await;
    stack.settle().await;
    (stack, proxy, journal)
}

async fn tracking_client(stack: &Stack) -> Arc<RequestClient> {
    let options = ClientOptions {
        track_stray_replies: true,
        ..ClientOptions::default()
    };
    Arc::new(
        RequestClient::connect_with(&stack.mosquitto.url(), &options)
            .await
            .expect("client"),
    )
}

/// Sends `count` requests at once to `route/<prefix>-<n>` (QoS `qos`) and
/// returns their statuses by request id; each is retried after 5 s without an answer.
async fn burst(
    client: &Arc<RequestClient>,
    route: &str,
    prefix: &str,
    count: usize,
    qos: u8,
) -> HashMap<String, u16> {
    let requests = (0..count).map(|index| {
        let client = Arc::clone(client);
        let id = format!("{prefix}-{index}");
        let topic = format!("{route}/{id}");
        async move {
            let options = RequestOptions {
                qos,
                timeout: Duration::from_secs(5),
                retries: 3,
                request_id: Some(id.clone()),
                ..RequestOptions::default()
            };
            let status = client
                .request(&topic, "", &options)
                .await
                .map_or(0, |reply| reply.status);
            (id, status)
        }
    });
    join_all(requests).await.into_iter().collect()
}

/// How often each request id reached the upstream.
fn upstream_calls(journal: &Journal, prefix: &str) -> HashMap<String, usize> {
    let mut calls = HashMap::new();
    for receipt in journal.lock().expect("journal").iter() {
        if receipt.request_id.starts_with(&format!("{prefix}-")) {
            *calls.entry(receipt.request_id.clone()).or_default() += 1;
        }
    }
    calls
}

fn assert_all_ok(statuses: &HashMap<String, u16>) {
    let failed: Vec<_> = statuses
        .iter()
        .filter(|(_, s)| !(200..300).contains(*s))
        .collect();
    assert!(failed.is_empty(), "requests without a 2xx: {failed:?}");
}

/// DUP copies arriving while the first copy runs, and after it was answered
/// (the copy crossing our ack), on QoS 1 and QoS 2 routes: each request runs
/// once, is answered once, and the worker never drops its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_a_delivery_run_once_and_keep_the_connection() {
    let (stack, proxy, journal) = proxied(Duration::from_millis(300)).await;
    let client = tracking_client(&stack).await;
    let mut copies = 0;
    for (copy_after, phase) in [(100, "during"), (900, "after")] {
        proxy.duplicate_publishes(Some(Duration::from_millis(copy_after)));
        for (route, qos) in [("api/r/once", 1), ("api/r/exactly", 2)] {
            let prefix = format!("{phase}-q{qos}");
            let statuses = burst(&client, route, &prefix, 20, qos).await;
            assert_all_ok(&statuses);
            // Count once the worker has dealt with every copy of this round.
            copies += 20;
            eventually("every copy skipped", Duration::from_secs(10), || async {
                let injected = proxy.journal().iter().filter(|seen| seen.injected).count();
                let skipped = stack.workers[0].count_log("not run again");
                match injected >= copies && skipped >= injected {
                    true => Ok(()),
                    false => Err(format!("{skipped} of {injected} copies skipped")),
                }
            })
            .await;
            let calls = upstream_calls(&journal, &prefix);
            let repeated: Vec<_> = calls.iter().filter(|(_, n)| **n != 1).collect();
            assert!(
                repeated.is_empty(),
                "{prefix}: run more than once: {repeated:?}"
            );
            assert_eq!(calls.len(), 20, "{prefix}: every request ran");
        }
    }
    proxy.duplicate_publishes(None);
    let strays = client.stray_replies();
    assert_eq!(
        strays.duplicates, 0,
        "a request was answered twice: {strays:?}"
    );
    assert_eq!(proxy.connections(), 1, "the worker kept its connection");
    assert!(
        proxy.misdirected_acks().is_empty(),
        "{:?}",
        proxy.misdirected_acks()
    );
}

/// A cut while requests run upstream: the worker reconnects, the late
/// handlers answer their callers but ack nothing on the new connection, and
/// requests on the new connection (whose packet ids repeat the old ones) are
/// each acked once, by their own handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_finishing_after_a_reconnect_never_acks_the_new_session() {
    let (stack, proxy, journal) = proxied(Duration::from_millis(1500)).await;
    let client = tracking_client(&stack).await;
    let first = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { burst(&client, "api/r/once", "cut", 20, 1).await })
    };
    eventually(
        "requests at the upstream",
        Duration::from_secs(10),
        || async { (upstream_calls(&journal, "cut").len() >= 20).then_some(()) },
    )
    .await;
    proxy.cut();
    eventually(
        "the worker reconnected",
        Duration::from_secs(10),
        || async { (proxy.connections() >= 2).then_some(()) },
    )
    .await;
    // Subscribed again on the new connection (clean start).
    eventually("subscribed again", Duration::from_secs(10), || async {
        (stack.workers[0].count_log("subscribed codes") >= 2).then_some(())
    })
    .await;
    // New deliveries while the old handlers are still running.
    let second = burst(&client, "api/r/once", "after-cut", 20, 1).await;
    assert_all_ok(&second);
    assert_all_ok(&first.await.expect("first burst"));
    assert!(
        proxy.misdirected_acks().is_empty(),
        "acks for the wrong message: {:?}",
        proxy.misdirected_acks()
    );
    let stale = stack.workers[0].count_log("not acked on the new one");
    assert!(stale > 0, "late handlers finished after the reconnect");
}

/// Broker → worker traffic delayed: slower, nothing else changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_changes_nothing_but_latency() {
    let (stack, proxy, journal) = proxied(Duration::from_millis(50)).await;
    let client = tracking_client(&stack).await;
    proxy.delay(Duration::from_millis(150));
    let statuses = burst(&client, "api/r/exactly", "slow", 20, 2).await;
    assert_all_ok(&statuses);
    assert!(upstream_calls(&journal, "slow").values().all(|n| *n == 1));
    assert_eq!(proxy.connections(), 1);
    assert!(
        proxy.misdirected_acks().is_empty(),
        "{:?}",
        proxy.misdirected_acks()
    );
}
