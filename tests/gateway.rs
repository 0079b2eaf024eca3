//! End-to-end tests: real mosquitto, real redis-server, real worker processes,
//! real HTTP upstreams. Nothing is mocked.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use routemq_client::{Reply, RequestClient, RequestOptions};
use routemq_gateway::redis::scripts::Registration;
use routemq_gateway::redis::{connect, RedisSettings};
use routemq_gateway::registry;
use routemq_tests::{upstream, write_config, Mosquitto, Redis, Worker};
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_routemq-under-test");

const ROUTES: &str = r#"
[[groups]]
prefix = "api/v1"
forward_headers = ["accept-language"]

  [[groups.groups]]
  prefix = "users"
  service = "user-service"
  routes = [
    { topic = "get/{user_id}", method = "GET",  path = "/users/{user_id}", qos = 1 },
    { topic = "create",        method = "POST", path = "/users",           qos = 2 },
  ]

[[groups]]
prefix = "api/t"
routes = [
  { topic = "ghost",     service = "ghost-service",   method = "GET", path = "/x" },
  { topic = "e404",      service = "e404-service",    method = "GET", path = "/x" },
  { topic = "e500",      service = "e500-service",    method = "GET", path = "/x" },
  { topic = "slow",      service = "slow-service",    method = "GET", path = "/x", timeout = "300ms" },
  { topic = "glacial",   service = "glacial-service", method = "GET", path = "/x", timeout = "60s" },
]

[[groups]]
prefix = "gateway"
routes = [
  { topic = "health",   handler = "health",   qos = 0 },
  { topic = "services", handler = "services" },
  { topic = "metrics",  handler = "metrics" },
]
"#;

struct Stack {
    mosquitto: Mosquitto,
    redis: Redis,
    redis_client: Client,
    config: PathBuf,
    workers: Vec<Worker>,
    stop_upstreams: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Stack {
    async fn start(worker_count: usize) -> Stack {
        Stack::start_with_lease(worker_count, 1).await
    }

    async fn start_with_lease(worker_count: usize, round_robin_lease: u32) -> Stack {
        let mosquitto = Mosquitto::start();
        let redis = Redis::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = write_config(dir.path(), round_robin_lease, ROUTES);
        let redis_client = connect(&RedisSettings::new(redis.url()))
            .await
            .expect("redis client");
        redis_client.wait_for_connect().await.expect("redis up");
        let mut stack = Stack {
            mosquitto,
            redis,
            redis_client,
            config,
            workers: Vec::new(),
            stop_upstreams: CancellationToken::new(),
            _dir: dir,
        };
        for index in 0..worker_count {
            stack.add_worker(&format!("worker-{index}"));
        }
        stack
    }

    fn add_worker(&mut self, id: &str) {
        let worker = Worker::start(
            std::path::Path::new(BIN),
            &self.config,
            id,
            &self.mosquitto.url(),
            &self.redis.url(),
        );
        self.workers.push(worker);
    }

    async fn register(&self, service: &str, instance_id: &str, addr: SocketAddr) {
        let url = format!("http://{addr}");
        let health = format!("{url}/health");
        let registration = Registration {
            service,
            instance_id,
            url: &url,
            health_check_url: &health,
            ttl: None,
        };
        registry::register(&self.redis_client, &registration)
            .await
            .expect("register");
    }

    /// Starts demo instances of `service` and registers them.
    async fn demo_instances(&self, service: &str, count: usize) {
        for index in 1..=count {
            let id = format!("{service}-{index}");
            let bind = "127.0.0.1:0".parse().expect("addr");
            let instance =
                routemq::demo::start_instance(service, &id, bind, self.stop_upstreams.clone())
                    .await
                    .expect("demo instance");
            self.register(service, &id, instance.addr).await;
        }
    }

    async fn client(&self) -> RequestClient {
        RequestClient::connect(&self.mosquitto.url())
            .await
            .expect("client connects")
    }

    /// Waits until every worker's registry cache has caught up (refresh is 100 ms).
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop_upstreams.cancel();
    }
}

fn options() -> RequestOptions {
    RequestOptions {
        timeout: Duration::from_secs(10),
        ..RequestOptions::default()
    }
}

async fn ask(client: &RequestClient, topic: &str, payload: &str) -> Reply {
    match client.request(topic, payload.to_string(), &options()).await {
        Ok(reply) => reply,
        Err(error) => panic!("{topic}: {error}"),
    }
}

fn error_type(reply: &Reply) -> String {
    reply.json()["error"]["type"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn two_workers_share_load_and_round_robin_is_exact_across_them() {
    let stack = Stack::start(2).await;
    stack.demo_instances("user-service", 3).await;
    stack.settle().await;
    let client = stack.client().await;
    let mut per_instance: HashMap<String, usize> = HashMap::new();
    for id in 0..30 {
        let request_id = format!("req-{id}");
        let opts = RequestOptions {
            request_id: Some(request_id.clone()),
            headers: vec![
                ("accept-language".into(), "fr".into()),
                ("x-user-id".into(), "admin".into()),
            ],
            ..options()
        };
        let reply = client
            .request(&format!("api/v1/users/get/{id}"), "", &opts)
            .await
            .expect("reply");
        assert_eq!(reply.status, 200, "{:?}", reply.json());
        assert_eq!(reply.content_type.as_deref(), Some("application/json"));
        assert_eq!(reply.property("x-request-id"), Some(request_id.as_str()));
        let body = reply.json();
        assert_eq!(body["status"], "success");
        assert_eq!(body["service"], "user-service");
        assert_eq!(body["request_id"], request_id.as_str());
        assert!(body["processing_time"].as_f64().is_some());
        let data = &body["data"];
        assert_eq!(data["path"], format!("/users/{id}"));
        assert_eq!(data["method"], "GET");
        assert_eq!(
            data["request_id"],
            request_id.as_str(),
            "X-Request-ID reaches the upstream"
        );
        assert_eq!(data["gateway_service"], "user-service");
        assert_eq!(data["accept_language"], "fr", "allowed header forwarded");
        assert_eq!(
            data["user_id"],
            Value::Null,
            "spoofed identity header stripped"
        );
        *per_instance
            .entry(data["instance"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_instance.len(), 3, "{per_instance:?}");
    assert!(
        per_instance.values().all(|&count| count == 10),
        "shared round robin is exact: {per_instance:?}"
    );
    for worker in &stack.workers {
        assert!(
            worker.count_log("request answered") >= 5,
            "worker {} took part: {}",
            worker.id,
            worker.count_log("request answered")
        );
    }
}

#[tokio::test]
async fn leased_round_robin_keeps_the_spread_exact() {
    // Each worker takes 4 counter values per Redis call; requests alternate
    // between the two workers, and every counter value is still used once.
    let stack = Stack::start_with_lease(2, 4).await;
    stack.demo_instances("user-service", 3).await;
    stack.settle().await;
    let client = stack.client().await;
    let mut per_instance: HashMap<String, usize> = HashMap::new();
    for id in 0..24 {
        let reply = ask(&client, &format!("api/v1/users/get/{id}"), "").await;
        assert_eq!(reply.status, 200);
        let instance = reply.json()["data"]["instance"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *per_instance.entry(instance).or_default() += 1;
    }
    assert_eq!(per_instance.len(), 3, "{per_instance:?}");
    assert!(
        per_instance.values().all(|&count| count == 8),
        "{per_instance:?}"
    );
}

#[tokio::test]
async fn concurrent_requests_each_get_their_own_reply() {
    let stack = Stack::start(2).await;
    stack.demo_instances("user-service", 2).await;
    stack.settle().await;
    let client = Arc::new(stack.client().await);
    let mut tasks = Vec::new();
    for id in 0..300 {
        let client = Arc::clone(&client);
        tasks.push(tokio::spawn(async move {
            let reply = ask(&client, &format!("api/v1/users/get/{id}"), "").await;
            (id, reply)
        }));
    }
    for task in tasks {
        let (id, reply) = task.await.expect("task");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["data"]["path"], format!("/users/{id}"));
    }
}

#[tokio::test]
async fn bad_input_gets_typed_error_replies_and_the_worker_keeps_going() {
    let stack = Stack::start(1).await;
    stack.demo_instances("user-service", 1).await;
    stack
        .register("e404-service", "e404-1", upstream::fixed_status(404).await)
        .await;
    stack
        .register("e500-service", "e500-1", upstream::fixed_status(500).await)
        .await;
    stack
        .register(
            "slow-service",
            "slow-1",
            upstream::slow(Duration::from_secs(3)).await,
        )
        .await;
    stack
        .register(
            "glacial-service",
            "glacial-1",
            upstream::slow(Duration::from_secs(60)).await,
        )
        .await;
    stack.settle().await;
    let client = stack.client().await;

    let big = format!("{{\"blob\":\"{}\"}}", "x".repeat(5000));
    let long_param = format!("api/v1/users/get/{}", "9".repeat(65));
    let many_headers: Vec<(String, String)> =
        (0..20).map(|i| (format!("h{i}"), "v".into())).collect();
    let huge_header = vec![("authorization".to_string(), "y".repeat(3000))];
    let cases: [(&str, &str, Vec<(String, String)>, u16, &str); 11] = [
        (
            "api/v1/users/create",
            "{not json",
            vec![],
            400,
            "invalid_json",
        ),
        ("api/v1/users/unknown", "{}", vec![], 404, "route_not_found"),
        (
            "api/v1/users/create",
            &big,
            vec![],
            413,
            "payload_too_large",
        ),
        (
            "api/v1/users/get/1",
            "",
            many_headers,
            431,
            "headers_too_large",
        ),
        (
            "api/v1/users/get/1",
            "",
            huge_header,
            431,
            "headers_too_large",
        ),
        ("api/v1/users/get/..", "", vec![], 400, "invalid_param"),
        ("api/v1/users/get/.", "", vec![], 400, "invalid_param"),
        (&long_param, "", vec![], 400, "invalid_param"),
        ("api/t/ghost", "", vec![], 503, "no_healthy_instance"),
        ("api/t/e500", "", vec![], 502, "upstream_error"),
        ("api/t/slow", "", vec![], 504, "upstream_timeout"),
    ];
    for (topic, payload, headers, status, kind) in cases {
        let opts = RequestOptions {
            headers,
            ..options()
        };
        let reply = match client.request(topic, payload.to_string(), &opts).await {
            Ok(reply) => reply,
            Err(error) => panic!(
                "{topic}: {error}\n{}",
                stack.workers[0].log_lines().join("\n")
            ),
        };
        assert_eq!(
            (reply.status, error_type(&reply).as_str()),
            (status, kind),
            "{topic}"
        );
        let body = reply.json();
        assert_eq!(body["status"], "error");
        assert_eq!(body["error"]["code"], status);
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert_eq!(
            Some(body["request_id"].as_str().unwrap_or_default()),
            reply.property("x-request-id")
        );
    }

    for (param, path) in [
        ("%2F", "/users/%252F"),
        ("a?b=1", "/users/a%3Fb%3D1"),
        ("..%2Fadmin", "/users/..%252Fadmin"),
    ] {
        let reply = ask(&client, &format!("api/v1/users/get/{param}"), "").await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.json()["data"]["path"],
            path,
            "param {param} stays inside its segment"
        );
    }

    let reply = ask(&client, "api/t/e404", "").await;
    assert_eq!(
        (reply.status, error_type(&reply).as_str()),
        (404, "upstream_rejected")
    );
    assert_eq!(
        reply.json()["data"]["detail"],
        "fixed 404",
        "upstream 4xx body passed through"
    );

    // A 1 s message expiry caps the 60 s route timeout: the reply comes long
    // before the client's 10 s timeout and the upstream's 60 s delay.
    let expiring = RequestOptions {
        expiry: Some(Duration::from_secs(1)),
        ..options()
    };
    let reply = client
        .request("api/t/glacial", "", &expiring)
        .await
        .expect("reply");
    assert_eq!(
        (reply.status, error_type(&reply)),
        (504, "upstream_timeout".into())
    );

    let reply = ask(&client, "api/v1/users/get/after-all-that", "").await;
    assert_eq!(reply.status, 200, "worker still serves");
}

#[tokio::test]
async fn an_unreachable_instance_is_skipped_then_marked_unhealthy() {
    let stack = Stack::start(1).await;
    stack.demo_instances("user-service", 1).await;
    let closed_port = routemq_tests::free_port();
    stack
        .register(
            "user-service",
            "user-service-dead",
            SocketAddr::from(([127, 0, 0, 1], closed_port)),
        )
        .await;
    stack.settle().await;
    let client = stack.client().await;
    for id in 0..6 {
        let reply = ask(&client, &format!("api/v1/users/get/{id}"), "").await;
        assert_eq!(
            reply.status, 200,
            "a refused connection is retried on another instance"
        );
        assert_eq!(reply.json()["data"]["instance"], "user-service-1");
    }
    let reply = ask(&client, "gateway/health", "").await;
    assert_eq!(reply.json()["services"]["user-service"], "degraded");
    let services = ask(&client, "gateway/services", "").await.json();
    let users = services["services"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == "user-service"))
        .cloned()
        .expect("user-service listed");
    assert_eq!(users["total_instances"], 2);
    assert_eq!(users["healthy_instances"], 1);
}

/// A raw MQTT 5 client that records what arrives on `filter`.
async fn observer(
    url: &str,
    filter: &str,
) -> (
    AsyncClient,
    mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Publish>,
) {
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let mut options = MqttOptions::new(
        format!("observer-{}", uuid::Uuid::new_v4().simple()),
        "127.0.0.1",
        port,
    );
    options.set_max_packet_size(Some(1 << 20));
    let (client, mut event_loop) = AsyncClient::new(options, 64);
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    tokio::spawn(async move {
        while let Ok(event) = event_loop.poll().await {
            match event {
                Event::Incoming(Packet::Publish(publish)) => {
                    tx.send(publish).ok();
                }
                Event::Incoming(Packet::SubAck(_)) => {
                    subscribed_tx.send(()).ok();
                }
                _ => {}
            }
        }
    });
    subscribed.recv().await.expect("suback");
    (client, rx)
}

#[tokio::test]
async fn replies_never_loop_into_served_topics_or_wildcards() {
    let stack = Stack::start(1).await;
    stack.demo_instances("user-service", 1).await;
    stack.settle().await;
    let (sender, _) = observer(&stack.mosquitto.url(), "unused/#").await;
    let (_watch, mut looped) = observer(&stack.mosquitto.url(), "api/v1/users/get/#").await;

    let properties = PublishProperties {
        response_topic: Some("api/v1/users/get/loop".into()),
        correlation_data: Some("c1".into()),
        ..PublishProperties::default()
    };
    sender
        .publish_with_properties(
            "api/v1/users/create",
            QoS::AtLeastOnce,
            false,
            "{}",
            properties,
        )
        .await
        .expect("publish");
    let wildcard = json!({"reply_to": "replies/+", "correlation_id": "c2"}).to_string();
    sender
        .publish("api/v1/users/create", QoS::AtLeastOnce, false, wildcard)
        .await
        .expect("publish");
    let wildcard_property = PublishProperties {
        response_topic: Some("replies/#".into()),
        ..PublishProperties::default()
    };
    sender
        .publish_with_properties(
            "api/v1/users/create",
            QoS::AtLeastOnce,
            false,
            "{}",
            wildcard_property,
        )
        .await
        .expect("publish");
    let worker = &stack.workers[0];
    worker
        .wait_for_log("payload reply_to refused", Duration::from_secs(5))
        .await;
    worker
        .wait_for_log(
            "falls under a filter the gateway serves",
            Duration::from_secs(5),
        )
        .await;
    worker
        .wait_for_log("empty or contains a wildcard", Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        looped.try_recv().is_err(),
        "nothing published to a served topic"
    );

    let client = stack.client().await;
    assert_eq!(
        ask(&client, "api/v1/users/get/1", "").await.status,
        200,
        "worker unaffected"
    );
}

#[tokio::test]
async fn mqtt_311_clients_put_the_reply_address_in_the_payload() {
    let stack = Stack::start(1).await;
    stack.demo_instances("user-service", 1).await;
    stack.settle().await;
    let (client, mut replies) = observer(&stack.mosquitto.url(), "legacy/replies/7").await;
    let request =
        json!({"name": "Ada", "reply_to": "legacy/replies/7", "correlation_id": "corr-7"})
            .to_string();
    client
        .publish("api/v1/users/create", QoS::AtLeastOnce, false, request)
        .await
        .expect("publish");
    let reply = tokio::time::timeout(Duration::from_secs(10), replies.recv())
        .await
        .expect("reply in time")
        .expect("reply");
    let body: Value = serde_json::from_slice(&reply.payload).expect("json");
    assert_eq!(body["status"], "success");
    assert_eq!(body["correlation_id"], "corr-7");
    assert_eq!(
        body["data"]["received"],
        json!({"name": "Ada"}),
        "reply address stripped before forwarding"
    );
    assert_eq!(body["data"]["method"], "POST");
}

#[tokio::test]
async fn a_request_without_a_reply_address_is_processed_and_logged() {
    let stack = Stack::start(1).await;
    stack.demo_instances("user-service", 1).await;
    stack.settle().await;
    let (client, _) = observer(&stack.mosquitto.url(), "unused").await;
    client
        .publish(
            "api/v1/users/create",
            QoS::AtLeastOnce,
            false,
            "{\"fire\":\"and forget\"}",
        )
        .await
        .expect("publish");
    stack.workers[0]
        .wait_for_log(
            "request processed without a reply address",
            Duration::from_secs(10),
        )
        .await;
    let line = stack.workers[0]
        .log_lines()
        .into_iter()
        .find(|line| line.contains("without a reply address"))
        .expect("logged");
    assert!(line.contains("status=201"), "{line}");
}

#[tokio::test]
async fn mosquitto_rr_gets_a_reply() {
    let stack = Stack::start(1).await;
    stack.demo_instances("user-service", 1).await;
    stack.settle().await;
    let port = stack.mosquitto.port.to_string();
    let output = tokio::process::Command::new("mosquitto_rr")
        .args([
            "-p",
            &port,
            "-V",
            "5",
            "-t",
            "api/v1/users/get/42",
            "-e",
            "rr/replies",
            "-m",
            "",
            "-W",
            "10",
        ])
        .output()
        .await
        .expect("mosquitto_rr is installed (apt-get install mosquitto-clients)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let body: Value = serde_json::from_slice(&output.stdout).expect("json reply");
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"]["path"], "/users/42");
}

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
    tokio::time::sleep(Duration::from_millis(500)).await;
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
    stack.redis.kill();
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
    stack.redis.restart();
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
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while worker.count_log("subscribed") < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "worker {} resubscribed",
                worker.id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

#[tokio::test]
async fn each_instance_is_probed_once_per_interval_across_all_workers() {
    let stack = Stack::start(3).await;
    let probes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let addr = upstream::probe_counter(Arc::clone(&probes)).await;
    stack.register("probed-service", "probed-1", addr).await;
    stack.settle().await;
    let window = Duration::from_secs(3);
    let before = probes.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(window).await;
    let counted = probes.load(std::sync::atomic::Ordering::SeqCst) - before;
    // The test config probes every 200 ms: one prober per interval gives about
    // 15 probes in 3 s; three uncoordinated workers would give about 45.
    let intervals = (window.as_millis() / 200) as usize;
    assert!(counted >= intervals / 3, "probes happen: {counted}");
    assert!(
        counted <= intervals + intervals / 2,
        "coordinated, not one per worker: {counted}"
    );
}
