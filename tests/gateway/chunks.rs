//! Replies larger than the broker's packet size reach callers that take
//! them in chunks, whole and checksummed; other callers get `502
//! reply_too_large`; nothing else in flight notices.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use routemq_client::{ClientError, RequestOptions};
use routemq_router::chunk::{sha256_hex, ChunkHeader, Split};
use routemq_tests::{upstream, Mosquitto};
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::v5::mqttbytes::QoS;

use crate::stack::{error_type, observer, options, Stack};

const ROUTES: &str = r#"
[[groups]]
prefix = "api/c"
routes = [
  { topic = "big",       service = "big-service",  method = "GET", path = "/big" },
  { topic = "never",     service = "big-service",  method = "GET", path = "/big", chunked_replies = "never" },
  { topic = "fast/{id}", service = "fast-service", method = "GET", path = "/fast/{id}" },
  { topic = "medium",    service = "medium-service", method = "GET", path = "/medium" },
]
"#;

const FIVE_MIB: usize = 5 << 20;

fn patient(accept_chunks: bool) -> RequestOptions {
    RequestOptions {
        timeout: Duration::from_secs(60),
        accept_chunks,
        ..options()
    }
}

#[tokio::test]
async fn a_5_mib_reply_reaches_an_opted_in_client_whole_through_a_broker_limited_to_256_kib() {
    let broker = Mosquitto::start_with("max_packet_size 262144\n");
    let stack = Stack::start_on(broker, 1, 1, ROUTES, false, &[]).await;
    stack
        .register("big-service", "big-1", upstream::large(FIVE_MIB).await)
        .await;
    stack.demo_instances("fast-service", 1).await;
    stack.settle().await;
    let client = Arc::new(stack.client().await);

    let fast = join_all((0..20).map(|id| {
        let client = Arc::clone(&client);
        async move {
            let topic = format!("api/c/fast/{id}");
            client.request(&topic, "{}", &options()).await
        }
    }));
    let (takes_chunks, whole_only) = (patient(true), patient(false));
    let (whole, refused, never, fast) = tokio::join!(
        client.request("api/c/big", "{}", &takes_chunks),
        client.request("api/c/big", "{}", &whole_only),
        client.request("api/c/never", "{}", &takes_chunks),
        fast,
    );

    let whole = whole.expect("the chunked reply, reassembled");
    assert_eq!(whole.status, 200);
    assert!(
        whole.payload.len() > FIVE_MIB,
        "{} bytes",
        whole.payload.len()
    );
    assert_eq!(
        whole.json()["data"],
        upstream::large_document(FIVE_MIB),
        "whole and in order"
    );
    assert_eq!(
        whole.property("x-chunk-index"),
        None,
        "no chunk header left"
    );
    for (reply, why) in [(refused, "did not opt in"), (never, "the route says never")] {
        let reply = reply.expect("an answer");
        assert_eq!(
            (reply.status, error_type(&reply).as_str()),
            (502, "reply_too_large"),
            "{why}"
        );
    }
    assert!(
        fast.iter()
            .all(|reply| reply.as_ref().is_ok_and(|reply| reply.status == 200)),
        "the requests in flight beside it are answered"
    );
    let worker = &stack.workers[0];
    let metrics = worker.probes();
    assert_eq!(
        metrics.metric("routemq_chunked_replies_total", &[]).await,
        1.0
    );
    let chunks = metrics.metric("routemq_reply_chunks_total", &[]).await;
    assert!(chunks >= (FIVE_MIB / (256 << 10)) as f64, "{chunks} chunks");
    assert_eq!(worker.count_log("broker connection lost"), 0);
}

/// The chunks of `payload` as a worker publishes them, `size` bytes each.
fn chunks_of(payload: &[u8], size: usize) -> Vec<(Bytes, Vec<(String, String)>)> {
    Split::new(payload.len(), size, sha256_hex(payload))
        .map(|(header, range)| {
            let mut properties = vec![("status".to_string(), "200".to_string())];
            properties.extend(header.properties());
            (Bytes::copy_from_slice(&payload[range]), properties)
        })
        .collect()
}

/// A chunked reply that stops part way (its worker died) ends in a clear
/// incomplete-reply error with how many chunks came, never a truncated
/// body; chunks a broker delivers twice or out of order are reassembled
/// once. The chunks come from a responder of the test's own, through the
/// real broker, so exactly which chunks arrive is chosen.
#[tokio::test]
async fn a_client_reports_a_reply_cut_short_and_reassembles_repeated_chunks() {
    let broker = Mosquitto::start();
    let client = routemq_client::RequestClient::connect(&broker.url())
        .await
        .expect("client");
    let (responder, mut requests) = observer(&broker.url(), "api/c/fake").await;
    let payload: Vec<u8> = (0..40_000u32).map(|i| (i % 241) as u8).collect();
    let chunks = chunks_of(&payload, 10_000);
    let cut_short = vec![0, 0, 1];
    let repeated_out_of_order = vec![3, 0, 2, 2, 1, 3];
    let plans = [cut_short, repeated_out_of_order];
    let answering = tokio::spawn(async move {
        for plan in plans {
            let request = requests.recv().await.expect("a request");
            let properties = request.properties.expect("MQTT 5 properties");
            let topic = properties.response_topic.expect("a response topic");
            for index in plan {
                let (payload, user_properties) = chunks[index].clone();
                let properties = PublishProperties {
                    correlation_data: properties.correlation_data.clone(),
                    user_properties,
                    ..PublishProperties::default()
                };
                responder
                    .publish_with_properties(&topic, QoS::AtLeastOnce, false, payload, properties)
                    .await
                    .expect("publish");
            }
        }
    });
    let quick = RequestOptions {
        timeout: Duration::from_secs(3),
        ..options()
    };
    match client.request("api/c/fake", "{}", &quick).await {
        Err(ClientError::IncompleteReply {
            received, count, ..
        }) => assert_eq!((received, count), (2, 4)),
        other => panic!("expected an incomplete reply, got {other:?}"),
    }
    let reply = client
        .request("api/c/fake", "{}", &options())
        .await
        .expect("reassembled");
    assert_eq!(reply.payload, payload);
    assert_eq!(reply.status, 200);
    answering.await.expect("responder");
}

/// A worker holds at most `max_large_replies` bodies over
/// `max_response_bytes` at once: past that, a large answer is refused `503
/// overloaded` at once rather than held, and the slot comes back once the
/// reply holding it is written.
#[tokio::test]
async fn large_bodies_beyond_the_workers_slots_are_refused_and_the_slot_comes_back() {
    let broker = Mosquitto::start_with("max_packet_size 65536\n");
    let mut stack = Stack::start_on(broker, 0, 1, ROUTES, false, &[]).await;
    let text = std::fs::read_to_string(&stack.config).expect("config");
    let limits = "max_param_bytes = 64\nmax_response_bytes = 100000\nmax_large_replies = 1";
    let text = text.replace("max_param_bytes = 64", limits);
    std::fs::write(&stack.config, text).expect("config");
    stack.add_worker("worker-0");
    let (addr, gate) = upstream::held_midway(150_000, 50_000).await;
    stack.register("big-service", "big-1", addr).await;
    stack.settle().await;
    let client = stack.client().await;
    let worker = &stack.workers[0];

    let takes_chunks = patient(true);
    let held = client.request("api/c/big", "{}", &takes_chunks);
    let refused = async {
        // The first body is past max_response_bytes and waits for the rest.
        worker
            .metric_reaches(
                "routemq_large_replies_held",
                &[],
                1.0,
                Duration::from_secs(20),
            )
            .await;
        let refused = client.request("api/c/big", "{}", &takes_chunks).await;
        gate.open();
        refused
    };
    let (held, refused) = tokio::join!(held, refused);
    let refused = refused.expect("an answer");
    assert_eq!(
        (refused.status, error_type(&refused).as_str()),
        (503, "overloaded")
    );
    let held = held.expect("the first, whole");
    assert_eq!(held.status, 200);
    assert_eq!(
        held.json()["data"]["blob"].as_str().map(str::len),
        Some(200_000)
    );
    eventually_slot_free(worker).await;
    let again = client
        .request("api/c/big", "{}", &patient(true))
        .await
        .expect("an answer");
    assert_eq!(again.status, 200, "the slot came back");
    assert_eq!(
        worker
            .probes()
            .metric("routemq_large_replies_refused_total", &[])
            .await,
        1.0
    );
}

async fn eventually_slot_free(worker: &routemq_tests::Worker) {
    routemq_tests::eventually(
        "the large-body slot given back",
        Duration::from_secs(20),
        || async {
            let held = worker
                .probes()
                .metric("routemq_large_replies_held", &[])
                .await;
            (held == 0.0).then_some(())
        },
    )
    .await;
}

/// A device with a small buffer names its own packet size
/// (`x-accept-chunks: 4096`): its reply comes in chunks that each fit it,
/// though the broker would take the reply whole.
#[tokio::test]
async fn a_caller_that_names_its_packet_size_gets_chunks_that_fit_it() {
    let stack = Stack::start_with(1, 1, ROUTES, false, &[]).await;
    let medium = upstream::large(100_000).await;
    stack.register("medium-service", "medium-1", medium).await;
    stack.settle().await;
    let client = stack.client().await;
    let (_watcher, mut seen) = observer(&stack.mosquitto.url(), client.reply_topic()).await;
    let small_buffer = RequestOptions {
        accept_chunks: false,
        headers: vec![("x-accept-chunks".into(), "4096".into())],
        ..options()
    };
    let reply = client
        .request("api/c/medium", "{}", &small_buffer)
        .await
        .expect("reassembled");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["data"], upstream::large_document(100_000));
    let mut packets = Vec::new();
    let mut count = usize::MAX;
    while packets.len() < count {
        let publish = tokio::time::timeout(Duration::from_secs(20), seen.recv())
            .await
            .expect("the watcher sees every chunk")
            .expect("watching");
        let properties = publish.properties.clone().unwrap_or_default();
        let header = ChunkHeader::parse(&properties.user_properties)
            .expect("a chunk")
            .expect("well formed");
        count = header.count as usize;
        packets.push(publish.size());
    }
    assert!(count >= 25, "{count} chunks of at most 4 KiB for 100 kB");
    assert!(
        packets.iter().all(|size| *size <= 4096),
        "packet sizes {packets:?}"
    );
}
