//! Measurements for the README and closing notes, not pass/fail tests: run
//! with `cargo test --release -p routemq-tests --test gateway measure --
//! --ignored --nocapture`, and with `ROUTEMQ_UNDER_TEST=<other routemq
//! binary>` to measure another build through the same harness.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use routemq_client::RequestOptions;
use routemq_tests::Mosquitto;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::Outgoing;

use crate::intake::{peak_rss_kib, send_flood, stack_on};
use crate::stack::Stack;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Mosquitto with an unbounded per-client queue, as in
/// `intake::a_qos0_flood_is_shed_and_the_worker_stays_bounded_and_responsive`.
async fn stack(max_payload: usize, hang: Duration) -> Stack {
    let payload = format!("max_payload_bytes = {max_payload}");
    stack_on(
        Mosquitto::start_with("max_queued_messages 0\n"),
        &[("max_payload_bytes = 4096", payload.as_str())],
        hang,
    )
    .await
}

#[tokio::test]
#[ignore = "a measurement: run with --ignored"]
async fn measure_qos0_flood() {
    let count = env_number("FLOOD_COUNT", 20_000);
    let stack = stack(65536, Duration::from_secs(60)).await;
    let before = peak_rss_kib(stack.workers[0].process.pid()) / 1024;
    let mut options = MqttOptions::new("flooder", "127.0.0.1", stack.mosquitto.port);
    options.set_max_packet_size(Some(1 << 20));
    let (flooder, mut event_loop) = AsyncClient::new(options, 256);
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        send_flood(&flooder, count).await;
        flooder
    });
    // The flood has stopped once every PUBLISH was written to the socket.
    let mut written = 0;
    while written < count {
        if let Ok(Event::Outgoing(Outgoing::Publish(_))) = event_loop.poll().await {
            written += 1;
        }
    }
    let flood_took = started.elapsed();
    let _flooder = sender.await.expect("sender");
    tokio::spawn(async move { while event_loop.poll().await.is_ok() {} });
    let client = stack.client().await;
    let asked = Instant::now();
    let answer = client
        .request(
            "api/in/fast/1",
            "",
            &RequestOptions {
                timeout: Duration::from_secs(120),
                ..RequestOptions::default()
            },
        )
        .await;
    let answered = asked.elapsed();
    let peak = peak_rss_kib(stack.workers[0].process.pid()) / 1024;
    println!(
        "MEASURE qos0 flood of {count} x 60 KB (sent in {flood_took:?}): worker RSS {before} MiB before, peak {peak} MiB; next request {} after the flood stopped",
        match answer {
            Ok(reply) => format!("answered {} in {answered:?}", reply.status),
            Err(error) => format!("not answered ({error})"),
        }
    );
}

#[tokio::test]
#[ignore = "a measurement: run with --ignored"]
async fn measure_healthy_service_while_another_hangs() {
    let hanging = env_number("HANGING", 600);
    let stack = stack(4096, Duration::from_secs(10)).await;
    let client = Arc::new(stack.client().await);
    let patient = RequestOptions {
        timeout: Duration::from_secs(30),
        ..RequestOptions::default()
    };
    let hang = join_all((0..hanging).map(|_| {
        let (client, patient) = (Arc::clone(&client), patient.clone());
        async move { client.request("api/in/hang", "", &patient).await.ok() }
    }));
    // Open loop: a healthy request every 20 ms for 4 s, each timed on its own,
    // so a request stuck behind the hanging ones cannot hide the others.
    let healthy = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut sent = Vec::new();
        for id in 0..200 {
            let (client, patient) = (Arc::clone(&client), patient.clone());
            sent.push(tokio::spawn(async move {
                let started = Instant::now();
                let reply = client
                    .request(&format!("api/in/fast/{id}"), "", &patient)
                    .await;
                (started.elapsed(), reply.map(|r| r.status).unwrap_or(0))
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut latencies = Vec::new();
        for task in sent {
            latencies.push(task.await.expect("task"));
        }
        latencies
    };
    let (hang, mut latencies) = tokio::join!(hang, healthy);
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].0;
    let refused = hang.iter().flatten().filter(|r| r.status == 503).count();
    println!(
        "MEASURE healthy service while {hanging} requests hang 10 s: p50 {:?}, p99 {:?}, max {:?}; {} of 200 answered 200; {refused} hanging requests refused 503",
        at(0.5),
        at(0.99),
        latencies.last().map(|l| l.0).unwrap_or_default(),
        latencies.iter().filter(|l| l.1 == 200).count(),
    );
}
