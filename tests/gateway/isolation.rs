//! Callers are isolated: no caller reads another's stored reply, opens a
//! shared breaker, aims replies at topics not its own, or escapes its limits
//! by what it claims to be. Real mosquitto, redis-server (and a Redis
//! Cluster where keys changed), worker processes and HTTP upstreams.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use routemq_client::{ClientOptions, RequestClient, RequestOptions};
use routemq_tests::upstream::{counting, switchable, Switch};
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::v5::mqttbytes::QoS;

use crate::mw::{ask_with, bearer, error_type, SECRET};
use crate::stack::{observer, Stack};

const CONFIG: &str = r#"
[auth.jwt]
hs256_secret_file = "{dir}/jwt.secret"
issuer = "routemq-tests"
audience = "gateway"
leeway = "0s"

[auth.api_keys]
refresh_interval = "100ms"

[middleware.auth]

[middleware.keys_only]
kind = "auth"
methods = ["api_key"]

[middleware.anonymous_limit]
kind = "rate_limit"
limit = 3
window = "60s"

[middleware.circuit_breaker]
failure_threshold = 3
failure_window = "60s"
recovery_time = "30s"

[[groups]]
prefix = "api/iso"
routes = [
  { topic = "create",  service = "count-service", method = "POST", path = "/items", middleware = ["auth"] },
  { topic = "anon",    service = "count-service", method = "POST", path = "/items" },
  { topic = "flaky/{id}", service = "flaky-service", method = "GET", path = "/items/{id}", timeout = "5s", middleware = ["circuit_breaker"] },
  { topic = "limited", service = "count-service", method = "GET", path = "/limited", middleware = ["anonymous_limit"] },
  { topic = "keys",    service = "count-service", method = "GET", path = "/keys", middleware = ["auth", "keys_only"] },
]
"#;

struct IsoStack {
    stack: Stack,
    hits: Arc<AtomicUsize>,
    flaky: Arc<Switch>,
}

async fn start(cluster: bool) -> IsoStack {
    let stack = Stack::start_with(1, 1, CONFIG, cluster, &[("jwt.secret", SECRET)]).await;
    let hits = Arc::new(AtomicUsize::new(0));
    stack
        .register(
            "count-service",
            "count-1",
            counting(Arc::clone(&hits)).await,
        )
        .await;
    let flaky = Arc::new(Switch::default());
    stack
        .register(
            "flaky-service",
            "flaky-1",
            switchable(Arc::clone(&flaky)).await,
        )
        .await;
    stack.settle().await;
    IsoStack { stack, hits, flaky }
}

fn with_id(id: &str, headers: &[(&str, &str)]) -> RequestOptions {
    RequestOptions {
        timeout: Duration::from_secs(10),
        request_id: Some(id.to_string()),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..RequestOptions::default()
    }
}

async fn stored_replies_stay_with_their_caller(cluster: bool) {
    let iso = start(cluster).await;
    let client = iso.stack.client().await;
    let (alice, bob) = (bearer("alice", &[]), bearer("bob", &[]));
    // The first attempt's outcome is stored just after its reply goes out:
    // until then a retry is answered 409, as a client would, try again.
    let post = |token: &str, id: &str| {
        let options = with_id(id, &[("authorization", token)]);
        let client = &client;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let reply = client
                    .request("api/iso/create", "{\"n\":1}", &options)
                    .await
                    .expect("reply");
                if reply.status != 409 || std::time::Instant::now() > deadline {
                    return reply;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let first = post(&alice, "shared-id").await;
    assert_eq!(
        (first.status, first.json()["data"]["hit"].as_u64()),
        (201, Some(1))
    );
    // Bob, with Alice's (predictable) id, topic and body, is another request.
    let bobs = post(&bob, "shared-id").await;
    assert_eq!(
        bobs.property("x-replayed"),
        None,
        "{:?}",
        bobs.user_properties
    );
    assert_eq!(
        bobs.json()["data"]["hit"].as_u64(),
        Some(2),
        "the upstream saw Bob"
    );
    // Alice's own retry is still replayed from her record.
    let retry = post(&alice, "shared-id").await;
    assert_eq!(retry.property("x-replayed"), Some("true"));
    assert_eq!(retry.json()["data"]["hit"].as_u64(), Some(1));
    // Anonymous callers get no replay unless the route opts in.
    let anon = with_id("anon-id", &[]);
    for expected in [3, 4] {
        let reply = client
            .request("api/iso/anon", "{}", &anon)
            .await
            .expect("reply");
        assert_eq!(reply.property("x-replayed"), None);
        assert_eq!(reply.json()["data"]["hit"].as_u64(), Some(expected));
    }
    assert_eq!(iso.hits.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn stored_replies_stay_with_their_caller_on_one_redis() {
    stored_replies_stay_with_their_caller(false).await;
}

#[tokio::test]
async fn stored_replies_stay_with_their_caller_on_a_redis_cluster() {
    stored_replies_stay_with_their_caller(true).await;
}

#[tokio::test]
async fn redirects_304s_and_caller_deadlines_never_open_a_breaker() {
    let iso = start(false).await;
    let client = iso.stack.client().await;
    iso.flaky.status.store(302, Ordering::SeqCst);
    for id in 0..6 {
        let reply = ask_with(&client, &format!("api/iso/flaky/{id}"), "", &[]).await;
        assert_eq!(reply.status, 302, "{}", reply.json());
        assert_eq!(reply.property("location"), Some("/elsewhere"));
    }
    iso.flaky.status.store(304, Ordering::SeqCst);
    for id in 0..6 {
        let reply = ask_with(&client, &format!("api/iso/flaky/{id}"), "", &[]).await;
        assert_eq!(reply.status, 304);
        assert_eq!(reply.property("etag"), Some("\"v1\""));
    }
    iso.flaky.status.store(0, Ordering::SeqCst);
    iso.flaky.delay_ms.store(3000, Ordering::SeqCst);
    let short = RequestOptions {
        expiry: Some(Duration::from_secs(1)),
        ..with_id(&uuid::Uuid::new_v4().to_string(), &[])
    };
    for _ in 0..5 {
        let reply = client
            .request(
                "api/iso/flaky/slow",
                "",
                &RequestOptions {
                    request_id: None,
                    ..short.clone()
                },
            )
            .await
            .expect("reply");
        assert_eq!(
            (reply.status, error_type(&reply)),
            (504, "deadline_exceeded".into())
        );
    }
    iso.flaky.delay_ms.store(0, Ordering::SeqCst);
    let reply = ask_with(&client, "api/iso/flaky/after", "", &[]).await;
    assert_eq!(reply.status, 200, "breaker still closed: {}", reply.json());

    // The upstream's own faults still open it — after exactly its threshold
    // of 3, so none of the above counted (each failure is awaited in Redis,
    // where it is written after the reply).
    iso.flaky.failing.store(true, Ordering::SeqCst);
    let mut statuses = Vec::new();
    for id in 0..8 {
        let reply = ask_with(&client, &format!("api/iso/flaky/f{id}"), "", &[]).await;
        statuses.push(error_type(&reply));
        if statuses.last().map(String::as_str) == Some("circuit_open") {
            break;
        }
        crate::mw::failure_recorded(&iso.stack.redis_client, "flaky-service", id + 1).await;
    }
    assert_eq!(
        statuses,
        [
            "upstream_error",
            "upstream_error",
            "upstream_error",
            "circuit_open"
        ],
        "{statuses:?}"
    );
}

#[tokio::test]
async fn replies_go_only_to_reply_topics_bound_to_the_caller() {
    let iso = start(false).await;
    let url = iso.stack.mosquitto.url();
    let (sender, _) = observer(&url, "unused/#").await;
    let (_bobs, mut to_bob) = observer(&url, "replies/bob/#").await;
    let (_devices, mut to_devices) = observer(&url, "devices/#").await;
    let alice = bearer("alice", &[]);
    let aimed = |topic: &str, auth: bool| PublishProperties {
        response_topic: Some(topic.to_string()),
        correlation_data: Some("chosen-by-mallory".into()),
        user_properties: if auth {
            vec![("authorization".to_string(), alice.clone())]
        } else {
            Vec::new()
        },
        ..PublishProperties::default()
    };
    for (topic, auth) in [
        ("replies/bob/inbox", true),
        ("replies/bob/inbox", false),
        ("devices/42/commands", true),
        ("devices/42/commands", false),
    ] {
        sender
            .publish_with_properties(
                "api/iso/create",
                QoS::AtLeastOnce,
                false,
                "{}",
                aimed(topic, auth),
            )
            .await
            .expect("publish");
    }
    let payload_aimed =
        serde_json::json!({"reply_to": "devices/7/commands", "correlation_id": "x"});
    sender
        .publish(
            "api/iso/anon",
            QoS::AtLeastOnce,
            false,
            payload_aimed.to_string(),
        )
        .await
        .expect("publish");
    let worker = &iso.stack.workers[0];
    worker
        .wait_for_log(
            "not bound to the caller's verified identity",
            Duration::from_secs(5),
        )
        .await;
    worker
        .wait_for_log("outside the reply-topic allowlist", Duration::from_secs(5))
        .await;

    // Alice's own namespace works, and so does the anonymous one.
    let options = ClientOptions {
        reply_topic: Some(format!(
            "replies/{}/app",
            routemq_client::reply_level("alice")
        )),
        ..ClientOptions::default()
    };
    let own = RequestClient::connect_with(&url, &options)
        .await
        .expect("connect");
    let reply = ask_with(&own, "api/iso/create", "{}", &[("authorization", &alice)]).await;
    assert_eq!(reply.status, 201);
    let anonymous = iso.stack.client().await;
    assert_eq!(
        ask_with(&anonymous, "api/iso/anon", "{}", &[]).await.status,
        201
    );
    assert!(to_bob.try_recv().is_err(), "nothing reached Bob's replies");
    assert!(
        to_devices.try_recv().is_err(),
        "nothing reached the devices"
    );
    assert_eq!(
        iso.hits.load(Ordering::SeqCst),
        2,
        "refused requests never ran"
    );
}

#[tokio::test]
async fn client_chosen_identities_and_strings_are_bounded() {
    let iso = start(false).await;
    let client = iso.stack.client().await;
    // x-client-id is not trusted: the anonymous client is known by its reply topic.
    let mut statuses = Vec::new();
    for n in 0..5 {
        let id = format!("client-{n}");
        statuses.push(
            ask_with(&client, "api/iso/limited", "", &[("x-client-id", &id)])
                .await
                .status,
        );
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429]);

    // A second auth honours its own methods: a JWT does not pass `keys_only`.
    let alice = bearer("alice", &[]);
    let reply = ask_with(&client, "api/iso/keys", "", &[("authorization", &alice)]).await;
    assert_eq!(
        (reply.status, error_type(&reply)),
        (401, "unauthorized".into())
    );

    // An overlong topic is refused early. (Mosquitto refuses control
    // characters in topics itself; the gateway logs client strings escaped.)
    let long = format!("api/iso/{}", "x".repeat(600));
    let reply = ask_with(&client, &long, "", &[]).await;
    assert_eq!(
        (reply.status, error_type(&reply)),
        (400, "invalid_topic".into())
    );
}
