//! The load-test harness against the real broker and gateway: its counts
//! must add up, and it must see what the gateway does (429s, late replies).

use std::time::Duration;

use routemq_loadtest::mix::Mix;
use routemq_loadtest::report::{markdown, write_svg};
use routemq_loadtest::run::{run, Load, RunConfig};
use routemq_loadtest::stub::{self, StubBehaviour};
use tokio_util::sync::CancellationToken;

use crate::stack::Stack;

const ROUTES: &str = r#"
[middleware.burst_limit]
kind = "rate_limit"
limit = 50
window = "60s"

[[groups]]
prefix = "api/lt"
routes = [
  { topic = "get/{id}",  service = "stub-service", method = "GET", path = "/items/{id}" },
  { topic = "slow/{id}", service = "slow-stub",    method = "GET", path = "/items/{id}" },
  { topic = "limited",   service = "stub-service", method = "GET", path = "/limited", middleware = ["burst_limit"] },
]
"#;

fn config(stack: &Stack, topic: &str, rate: f64, duration: Duration) -> RunConfig {
    RunConfig {
        broker: stack.mosquitto.url(),
        credentials: None,
        connections: 2,
        load: Load::Open { rate },
        duration,
        warmup: Duration::ZERO,
        qos: 1,
        deadline: Duration::from_secs(5),
        retries: 0,
        fault_at: None,
        send_expiry: false,
        mix: Mix::single(topic, "", Vec::new()),
        max_outstanding: 10_000,
        seed: 7,
        progress: false,
        linger: Duration::from_millis(500),
    }
}

async fn start() -> (Stack, CancellationToken) {
    let stack = Stack::start_with(1, 16, ROUTES, false, &[]).await;
    let stop = CancellationToken::new();
    let fast = StubBehaviour {
        latency: Duration::from_millis(1),
        jitter: Duration::from_millis(1),
        ..StubBehaviour::default()
    };
    let slow = StubBehaviour {
        latency: Duration::from_millis(300),
        ..StubBehaviour::default()
    };
    let localhost = "127.0.0.1:0".parse().expect("addr");
    let fast = stub::serve(localhost, fast, stop.clone())
        .await
        .expect("stub");
    let slow = stub::serve(localhost, slow, stop.clone())
        .await
        .expect("stub");
    stack.register("stub-service", "stub-1", fast).await;
    stack.register("slow-stub", "slow-1", slow).await;
    stack.settle().await;
    (stack, stop)
}

#[tokio::test]
async fn open_loop_counts_add_up_and_reports_are_written() {
    let (stack, stop) = start().await;
    let report = run(&config(
        &stack,
        "api/lt/get/{id}",
        200.0,
        Duration::from_secs(2),
    ))
    .await
    .expect("run");
    assert_eq!(report.mode, "open");
    assert!(
        (380..=420).contains(&report.sent),
        "{} sent at 200/s for 2 s",
        report.sent
    );
    assert_eq!(report.replied, report.sent);
    assert_eq!(
        (report.lost, report.duplicate, report.late, report.unknown),
        (0, 0, 0, 0)
    );
    assert_eq!(report.statuses.get(&200).copied(), Some(report.replied));
    assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.max >= report.latency_ms.p99);
    assert!(report.timeline.len() >= 2);
    assert_eq!(
        report.timeline.iter().map(|s| s.replied).sum::<u64>(),
        report.replied
    );

    let dir = tempfile::tempdir().expect("dir");
    let json = dir.path().join("report.json");
    report.write_json(&json).expect("json");
    let parsed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("read")).expect("valid json");
    for key in [
        "sent",
        "replied",
        "lost",
        "duplicate",
        "late",
        "statuses",
        "throughput_rps",
        "latency_ms",
        "timeline",
    ] {
        assert!(parsed.get(key).is_some(), "{key} missing from {parsed}");
    }
    assert!(parsed["latency_ms"]["p999"].is_number());
    let text = markdown(&report);
    assert!(text.contains("| p50 | p90 | p99 | p99.9 | max |"), "{text}");
    let svg = dir.path().join("chart.svg");
    write_svg(&report, &svg).expect("svg");
    let svg = std::fs::read_to_string(svg).expect("read svg");
    assert!(
        svg.contains("<svg") && svg.contains("polyline"),
        "{}",
        &svg[..svg.len().min(300)]
    );
    stop.cancel();
}

#[tokio::test]
async fn a_burst_over_the_rate_limit_is_counted_and_nothing_is_lost() {
    let (stack, stop) = start().await;
    // One connection: an anonymous client is known by its reply topic, and
    // each connection has its own.
    let mut burst = config(&stack, "api/lt/limited", 200.0, Duration::from_secs(1));
    burst.connections = 1;
    let report = run(&burst).await.expect("run");
    assert_eq!(report.lost, 0);
    assert_eq!(report.replied, report.sent);
    assert_eq!(
        report.statuses.get(&200).copied(),
        Some(50),
        "{:?}",
        report.statuses
    );
    assert_eq!(
        report.statuses.get(&429).copied(),
        Some(report.sent - 50),
        "{:?}",
        report.statuses
    );
    assert_eq!(report.errors, report.sent - 50);
    stop.cancel();
}

#[tokio::test]
async fn replies_after_the_deadline_are_lost_then_late() {
    let (stack, stop) = start().await;
    let mut slow = config(&stack, "api/lt/slow/{id}", 20.0, Duration::from_secs(1));
    slow.deadline = Duration::from_millis(100);
    slow.linger = Duration::from_secs(2);
    let report = run(&slow).await.expect("run");
    assert!(report.sent >= 15, "{}", report.sent);
    assert_eq!(report.replied, 0);
    assert_eq!(report.lost, report.sent);
    assert_eq!(
        report.late, report.sent,
        "every reply came after its deadline"
    );
    stop.cancel();
}
