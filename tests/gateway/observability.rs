//! Traces from the MQTT publisher through two workers to the upstream, read
//! back from a real OTLP receiver (one worker exports over gRPC, the other
//! over HTTP); Prometheus, health probes and the Redis request logs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use fred::prelude::{ClientLike, ListInterface};
use routemq_client::RequestOptions;
use routemq_tests::eventually;
use routemq_tests::otlp::{OtlpReceiver, ReceivedSpan};
use routemq_tests::{free_port, upstream};
use serde_json::json;

use crate::stack::Stack;

const ROUTES: &str = r#"
[middleware.rate_limit]
limit = 1000

[[groups]]
prefix = "api/t"
service = "traced-service"
middleware = ["rate_limit"]
routes = [
  { topic = "ok/{id}", method = "GET", path = "/ok/{id}" },
  { topic = "fail",    method = "GET", path = "/fail" },
]
"#;

/// What the upstream saw of each request: `traceparent` and `x-request-id`.
type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

async fn recording_upstream(seen: Seen) -> std::net::SocketAddr {
    let record = move |headers: HeaderMap| {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        seen.lock()
            .expect("seen lock")
            .push((header("traceparent"), header("x-request-id")));
    };
    let (ok, fail) = (record.clone(), record);
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/ok/{id}",
            get(move |headers: HeaderMap| async move {
                ok(headers);
                Json(json!({"ok": true}))
            }),
        )
        .route(
            "/fail",
            get(move |headers: HeaderMap| async move {
                fail(headers);
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"ok": false})),
                )
            }),
        );
    upstream::serve(router).await
}

fn random_hex(bytes: usize) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..bytes * 2].to_string()
}

async fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    eventually(
        what,
        Duration::from_secs(20),
        || std::future::ready(probe()),
    )
    .await
}

#[tokio::test]
async fn one_trace_from_publisher_through_either_worker_to_the_upstream() {
    let receiver = OtlpReceiver::start().await;
    let mut stack = Stack::start_with(0, 1, ROUTES, false, &[]).await;
    let grpc = format!("http://{}", receiver.grpc);
    let http = format!("http://{}", receiver.http);
    let common = [
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
    ];
    let mut grpc_env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", grpc.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_SERVICE_NAME", "gateway-grpc"),
        // The gateway crate's logs at warn must not drop its spans (the
        // runtime stays at info only so the test sees it subscribe).
        (
            "RUST_LOG",
            "warn,routemq=info,routemq_gateway::registry=debug",
        ),
    ];
    grpc_env.extend(common);
    let mut http_env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", http.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_SERVICE_NAME", "gateway-http"),
        ("ROUTEMQ_LOG_FORMAT", "json"),
        ("RUST_LOG", "info,routemq_gateway=debug"),
    ];
    http_env.extend(common);
    stack.add_worker_with_env("traced-grpc", &grpc_env);
    stack.add_worker_with_env("traced-http", &http_env);
    let seen: Seen = Arc::default();
    let addr = recording_upstream(Arc::clone(&seen)).await;
    stack.register("traced-service", "traced-1", addr).await;
    stack.settle().await;
    let client = stack.client().await;

    // Four successes and two errors: the shared subscription alternates workers.
    let mut sent = Vec::new();
    for index in 0..6 {
        let (trace_id, parent_id) = (random_hex(16), random_hex(8));
        let request_id = format!("trace-test-{index}");
        let topic = if index < 4 {
            format!("api/t/ok/{index}")
        } else {
            "api/t/fail".to_string()
        };
        let options = RequestOptions {
            timeout: Duration::from_secs(10),
            request_id: Some(request_id.clone()),
            headers: vec![
                (
                    "traceparent".into(),
                    format!("00-{trace_id}-{parent_id}-01"),
                ),
                ("tracestate".into(), "vendor=test".into()),
            ],
            ..RequestOptions::default()
        };
        let reply = client.request(&topic, "", &options).await.expect("reply");
        assert_eq!(reply.status, if index < 4 { 200 } else { 502 });
        assert_eq!(reply.property("x-request-id"), Some(request_id.as_str()));
        assert_eq!(reply.property("x-trace-id"), Some(trace_id.as_str()));
        sent.push((trace_id, parent_id, request_id, index < 4));
    }

    for (trace_id, parent_id, request_id, success) in &sent {
        let spans = || -> Vec<ReceivedSpan> {
            receiver
                .spans
                .all()
                .into_iter()
                .filter(|span| &span.trace_id == trace_id)
                .collect()
        };
        // The gateway's span continues the publisher's.
        let server = wait_for("the gateway span", || {
            spans()
                .into_iter()
                .find(|s| s.kind == 5 && &s.parent_span_id == parent_id)
        })
        .await;
        assert_eq!(server.attributes["messaging.system"], "mqtt");
        assert_eq!(server.attributes["request_id"], *request_id);
        // Recorded once the sampler kept the span; per-span extras are off.
        assert!(server.attributes["messaging.destination.name"].starts_with("api/t/"));
        assert!(
            !server.attributes.contains_key("code.file.path"),
            "{:?}",
            server.attributes
        );
        let expected_name = if *success {
            "process api/t/ok/{id}"
        } else {
            "process api/t/fail"
        };
        assert_eq!(server.name, expected_name);
        assert_eq!(server.status_code, if *success { 0 } else { 2 });
        // The HTTP call is its descendant, and the upstream got that span as parent.
        let client_span = wait_for("the upstream call span", || {
            spans()
                .into_iter()
                .find(|s| s.kind == 3 && s.attributes.contains_key("http.request.method"))
        })
        .await;
        assert!(
            spans()
                .iter()
                .any(|s| s.span_id == client_span.parent_span_id),
            "the HTTP span's parent is in the trace"
        );
        let upstream_saw = seen
            .lock()
            .expect("seen lock")
            .iter()
            .find(|(_, id)| id.as_deref() == Some(request_id.as_str()))
            .cloned()
            .expect("the upstream got the request");
        let traceparent = upstream_saw.0.expect("traceparent sent upstream");
        assert_eq!(
            traceparent,
            format!("00-{trace_id}-{}-01", client_span.span_id),
            "same trace, parented to the gateway's HTTP span"
        );
        // The middleware and its Redis script are children in the same trace.
        let trace = spans();
        let admit = trace
            .iter()
            .find(|s| s.name == "rate_limit admit")
            .expect("middleware span");
        assert_eq!(admit.parent_span_id, server.span_id);
        let script = trace
            .iter()
            .find(|s| s.name == "EVALSHA rate_limit")
            .expect("redis span");
        assert_eq!(script.parent_span_id, admit.span_id);
        assert_eq!(script.attributes["db.system.name"], "redis");
        assert!(trace.iter().all(|s| s.service_name == server.service_name));
    }
    let protocols: Vec<&str> = receiver.spans.all().iter().map(|s| s.protocol).collect();
    assert!(
        protocols.contains(&"grpc") && protocols.contains(&"http"),
        "both workers exported"
    );

    // JSON logs carry request_id and trace_id on request lines.
    let http_worker = &stack.workers[1];
    let answered: Vec<serde_json::Value> = http_worker
        .log_lines()
        .iter()
        .filter(|line| line.contains("request answered"))
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    assert!(!answered.is_empty(), "{:?}", http_worker.log_lines());
    for line in &answered {
        assert!(line["fields"]["request_id"].is_string(), "{line}");
        assert!(line["fields"]["trace_id"].is_string(), "{line}");
    }

    // A publisher that did not sample its trace: the gateway records nothing
    // but still passes the (unsampled) context on.
    let unsampled = random_hex(16);
    let options = RequestOptions {
        timeout: Duration::from_secs(10),
        request_id: Some("trace-test-unsampled".into()),
        headers: vec![(
            "traceparent".into(),
            format!("00-{unsampled}-{}-00", random_hex(8)),
        )],
        ..RequestOptions::default()
    };
    let reply = client
        .request("api/t/ok/7", "", &options)
        .await
        .expect("reply");
    assert_eq!(reply.status, 200);

    // A graceful stop flushes the last batch: a worker that would export
    // only every 10 minutes still delivers its spans when it is stopped.
    for worker in &mut stack.workers {
        worker.process.signal("TERM");
    }
    for worker in &mut stack.workers {
        assert!(worker.process.wait_exit(Duration::from_secs(20)).is_some());
    }
    assert!(
        receiver.spans.all().iter().all(|s| s.trace_id != unsampled),
        "an unsampled trace exports no span"
    );
    let upstream_traceparent = seen
        .lock()
        .expect("seen lock")
        .iter()
        .find(|(_, id)| id.as_deref() == Some("trace-test-unsampled"))
        .and_then(|(traceparent, _)| traceparent.clone())
        .expect("traceparent sent upstream");
    assert!(
        upstream_traceparent.starts_with(&format!("00-{unsampled}-"))
            && upstream_traceparent.ends_with("-00"),
        "{upstream_traceparent}"
    );
    let slow_env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", grpc.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_SERVICE_NAME", "gateway-slow-batch"),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
    ];
    stack.add_worker_with_env("traced-slow", &slow_env);
    let reply = client
        .request("api/t/ok/9", "", &crate::stack::options())
        .await
        .expect("reply");
    assert_eq!(reply.status, 200, "{}", reply.json());
    let exported = || {
        receiver
            .spans
            .all()
            .iter()
            .filter(|s| s.service_name == "gateway-slow-batch")
            .count()
    };
    assert_eq!(exported(), 0, "nothing exported before the stop");
    let slow = stack.workers.last_mut().expect("slow worker");
    slow.process.signal("TERM");
    assert!(slow.process.wait_exit(Duration::from_secs(20)).is_some());
    assert!(
        exported() > 0,
        "spans flushed at shutdown; log:\n{}",
        slow.log_lines().join("\n")
    );
}

#[tokio::test]
async fn prometheus_probes_and_request_logs() {
    let mut stack = Stack::start_with(0, 1, ROUTES, false, &[]).await;
    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    stack.add_worker_with_env(
        "metered",
        &[("ROUTEMQ_METRICS_ADDR", metrics_addr.as_str())],
    );
    let seen: Seen = Arc::default();
    let addr = recording_upstream(seen).await;
    stack.register("traced-service", "traced-1", addr).await;
    stack.settle().await;
    let client = stack.client().await;
    for index in 0..3 {
        let reply = crate::stack::ask(&client, &format!("api/t/ok/{index}"), "").await;
        assert_eq!(reply.status, 200);
    }
    let failed = crate::stack::ask(&client, "api/t/fail", "").await;
    assert_eq!(failed.status, 502);

    let http = reqwest::Client::new();
    let get = |path: &str| {
        let url = format!("http://{metrics_addr}{path}");
        let http = http.clone();
        async move {
            let response = http.get(url).send().await.expect("probe answers");
            (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            )
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    let (status, ready) = get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let (_, metrics) = get("/metrics").await;
    for expected in [
        r#"routemq_requests_total{route="api/t/ok/{id}",service="traced-service",status="200"} 3"#,
        r#"routemq_requests_total{route="api/t/fail",service="traced-service",status="502"} 1"#,
        "routemq_request_duration_seconds_bucket",
        "routemq_upstream_duration_seconds_bucket",
        "routemq_requests_in_flight",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }

    // The reference's logs: capped Redis lists, written in batches.
    let redis = &stack.redis_client;
    let requests: Vec<String> = wait_for_list(redis, "{routemq}:logs:requests", 4).await;
    assert!(requests.iter().all(|entry| entry.contains("request_id")));
    let errors: Vec<String> = wait_for_list(redis, "{routemq}:logs:errors", 1).await;
    assert!(errors[0].contains("\"status\":502"), "{errors:?}");

    // Redis gone: not ready; back: ready.
    stack.redis().kill();
    eventually("unready", Duration::from_secs(20), || async {
        (get("/readyz").await.0 == 503).then_some(())
    })
    .await;
    stack.redis().restart();
    eventually("ready again", Duration::from_secs(20), || async {
        (get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    stack.redis_client.wait_for_connect().await.ok();
}

async fn wait_for_list(redis: &fred::prelude::Client, key: &str, at_least: usize) -> Vec<String> {
    let what = format!("{at_least} entries in {key}");
    eventually(&what, Duration::from_secs(10), || async {
        let entries: Vec<String> = redis.lrange(key, 0, -1).await.unwrap_or_default();
        match entries.len() >= at_least {
            true => Ok(entries),
            false => Err(format!("{entries:?}")),
        }
    })
    .await
}
