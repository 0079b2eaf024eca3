//! One poison message or one broker refusal must not cost other callers
//! their answers: reply strings the broker would call malformed are refused
//! before anything runs, replies the broker refuses are counted and never
//! freeze the session, and a session that stops sending is replaced.

use std::time::Duration;

use axum::http::header::{ETAG, LOCATION};
use axum::routing::{any, get};
use axum::{Json, Router};
use bytes::Bytes;
use routemq_client::{ClientOptions, RequestClient, RequestOptions};
use routemq_tests::mqtt_proxy::MqttProxy;
use routemq_tests::{eventually, upstream, Mosquitto, Probes};
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::json;

use crate::stack::{ask, observer, Stack};

const ROUTES: &str = r#"
[replies]
allow = ["replies/anonymous/#", "replies/denied/#"]

[[groups]]
prefix = "api/p"
routes = [
  { topic = "ok",      service = "ok-service",      method = "GET", path = "/x", qos = 2 },
  { topic = "reflect", service = "reflect-service", method = "GET", path = "/x" },
  { topic = "big",     service = "reflect-service", method = "GET", path = "/big" },
]
"#;

/// A stack of one worker with probes, on `mosquitto`, reached at `mqtt_url`
/// (the broker's own, or a proxy's), with both upstreams registered.
async fn start(mosquitto: Mosquitto, extra: &str, proxy: Option<&MqttProxy>) -> (Stack, Probes) {
    let routes = format!("{extra}\n{ROUTES}");
    let mut stack = Stack::start_on(mosquitto, 0, 1, &routes, false, &[]).await;
    let probes = Probes::new();
    let url = proxy.map_or_else(|| stack.mosquitto.url(), MqttProxy::url);
    stack.add_worker_on("worker-0", &url, &[probes.env()]);
    let ok = upstream::fixed_status(200).await;
    // An upstream echoing a client's text into `location`, as redirects do.
    let reflect = upstream::serve(
        Router::new()
            .route("/health", get(|| async { "ok" }))
            .route(
                "/big",
                get(|| async { Json(json!({"text": "b".repeat(8000)})) }),
            )
            .fallback(any(|| async {
                (
                    [(LOCATION, "/next\tpage"), (ETAG, "\"v1\"")],
                    Json(json!({"ok": true})),
                )
            })),
    )
    .await;
    stack.register("ok-service", "ok-1", ok).await;
    stack
        .register("reflect-service", "reflect-1", reflect)
        .await;
    stack.settle().await;
    (stack, probes)
}

/// `levels` levels under `replies/anonymous/`.
fn deep(levels: usize) -> String {
    let mut topic = "replies/anonymous".to_string();
    for _ in 2..levels {
        topic.push_str("/x");
    }
    topic
}

#[tokio::test]
async fn poisoned_reply_addresses_are_refused_and_the_worker_keeps_its_connection() {
    let (stack, probes) = start(Mosquitto::start(), "", None).await;
    let victim = stack.client().await;
    assert_eq!(ask(&victim, "api/p/ok", "").await.status, 200);
    let (poisoner, mut answers) = observer(&stack.mosquitto.url(), "replies/anonymous/#").await;
    let send = |properties: PublishProperties, payload: String| {
        let poisoner = poisoner.clone();
        async move {
            poisoner
                .publish_with_properties("api/p/ok", QoS::AtLeastOnce, false, payload, properties)
                .await
                .expect("publish");
        }
    };
    // Response Topics Mosquitto takes from a client but refuses from a
    // publisher: too deep for it (240) or EMQX (129), too long for the limit.
    let by_property = [deep(129), deep(240), "r".repeat(513), "r".repeat(65_535)];
    for topic in &by_property {
        let properties = PublishProperties {
            response_topic: Some(topic.clone()),
            correlation_data: Some(Bytes::from_static(b"poison")),
            ..PublishProperties::default()
        };
        send(properties, String::new()).await;
    }
    // MQTT 3.1.1 addresses in the payload: JSON can spell any character.
    let by_payload = [
        r"a\u0001b",
        r"tab\there",
        r"\u0000",
        r"del\u007f",
        r"c1\u0085",
        r"\u009f",
        r"\ufdd0",
        r"\uffff",
        r"\ud83f\udffe",
    ];
    let mut payloads: Vec<String> = by_payload
        .iter()
        .map(|level| {
            format!(r#"{{"reply_to": "replies/anonymous/{level}", "correlation_id": "p"}}"#)
        })
        .collect();
    payloads.push(json!({"reply_to": deep(129)}).to_string());
    payloads.push(json!({"reply_to": deep(240)}).to_string());
    let refused = by_property.len() + payloads.len();
    // A lone surrogate is not JSON at all: 400, with no address to send it to.
    payloads.push(r#"{"reply_to": "replies/anonymous/\ud800", "correlation_id": "p"}"#.into());
    for payload in payloads {
        send(PublishProperties::default(), payload).await;
    }
    eventually(
        "every poisoned address refused",
        Duration::from_secs(10),
        || async {
            let counted = probes
                .metric("routemq_reply_topic_refused_total", &[])
                .await;
            (counted as usize == refused).then_some(())
        },
    )
    .await;

    // Addresses at the edge of what MQTT allows are answered.
    let edges = [
        deep(128),
        "replies/anonymous/nbsp\u{a0}".to_string(),
        "replies/anonymous/\u{fffd}\u{fdcf}\u{fdf0}😀 space".to_string(),
    ];
    for (index, topic) in edges.iter().enumerate() {
        let properties = PublishProperties {
            response_topic: Some(topic.clone()),
            correlation_data: Some(Bytes::from(format!("edge-{index}"))),
            ..PublishProperties::default()
        };
        send(properties, String::new()).await;
    }
    for _ in &edges {
        let reply = tokio::time::timeout(Duration::from_secs(10), answers.recv())
            .await
            .expect("an edge address is answered")
            .expect("observer open");
        let topic = String::from_utf8_lossy(&reply.topic).into_owned();
        assert!(edges.contains(&topic), "{topic}");
        assert!(reply.payload.is_empty() || reply.payload.starts_with(b"{"));
    }

    // Headers MQTT cannot carry are left out of the reply, the rest kept.
    let reflected = ask(&victim, "api/p/reflect", "").await;
    assert_eq!(reflected.status, 200, "{}", reflected.json());
    assert_eq!(reflected.property("location"), None);
    assert_eq!(reflected.property("etag"), Some("\"v1\""));
    assert!(
        probes
            .metric("routemq_reply_properties_dropped_total", &[])
            .await
            >= 1.0
    );

    assert_eq!(ask(&victim, "api/p/ok", "").await.status, 200);
    let worker = &stack.workers[0];
    assert_eq!(
        worker.count_log("broker connection lost"),
        0,
        "{}",
        worker.log_lines().join("\n")
    );
    assert_eq!(worker.count_log("connected to the broker"), 1);
}

/// Mosquitto refuses replies under `replies/denied/` (its ACL lets clients
/// read there, not write), though the gateway's allowlist names it.
const ACL: &str =
    "topic readwrite api/#\ntopic readwrite replies/anonymous/#\ntopic read replies/denied/#\n";

#[tokio::test]
async fn replies_the_broker_refuses_are_counted_and_never_freeze_the_worker() {
    // Mosquitto's default receive maximum (20); restarted to read its ACL.
    let mut broker = Mosquitto::start();
    let acl = broker.dir().join("acl");
    std::fs::write(&acl, ACL).expect("acl");
    let extra = format!("acl_file {}\nmax_inflight_messages 20\n", acl.display());
    std::fs::write(broker.dir().join("extra.conf"), extra).expect("extra");
    broker.restart();
    let (stack, probes) = start(broker, "", None).await;
    let qos2 = RequestOptions {
        qos: 2,
        timeout: Duration::from_secs(10),
        ..RequestOptions::default()
    };
    let victim = stack.client().await;
    for _ in 0..3 {
        let reply = victim
            .request("api/p/ok", String::new(), &qos2)
            .await
            .expect("answered");
        assert_eq!(reply.status, 200);
    }
    // Requests at QoS 2 whose replies the broker refuses: more of them than
    // the broker's receive maximum (20).
    let (poisoner, _answers) = observer(&stack.mosquitto.url(), "replies/anonymous/#").await;
    for index in 0..25 {
        let properties = PublishProperties {
            response_topic: Some(format!("replies/denied/{index}")),
            correlation_data: Some(Bytes::from_static(b"denied")),
            ..PublishProperties::default()
        };
        poisoner
            .publish_with_properties("api/p/ok", QoS::ExactlyOnce, false, "", properties)
            .await
            .expect("publish");
    }
    eventually("25 refusals counted", Duration::from_secs(10), || async {
        let refused = probes
            .metric(
                "routemq_replies_failed_total",
                &[r#"reason="not_authorized""#],
            )
            .await;
        (refused >= 25.0).then_some(())
    })
    .await;
    for _ in 0..5 {
        let reply = victim
            .request("api/p/ok", String::new(), &qos2)
            .await
            .expect("answered");
        assert_eq!(reply.status, 200);
    }
    assert_eq!(probes.ready_status().await, 200);
}

#[tokio::test]
async fn a_session_that_stops_sending_is_replaced() {
    // A broker whose acks never come back: after its receive maximum (4)
    // of unacknowledged replies, nothing more can be sent on the connection.
    let broker = Mosquitto::start_with("max_inflight_messages 4\n");
    let proxy = MqttProxy::start(broker.port).await;
    let (stack, probes) = start(broker, "[mqtt]\nstall_timeout = \"1s\"\n", Some(&proxy)).await;
    let victim = RequestClient::connect_with(&stack.mosquitto.url(), &ClientOptions::default())
        .await
        .expect("client");
    assert_eq!(ask(&victim, "api/p/ok", "").await.status, 200);
    proxy.swallow_pubacks_on_current_connection();
    let quick = RequestOptions {
        timeout: Duration::from_secs(2),
        ..RequestOptions::default()
    };
    let stuck = (0..8).map(|_| victim.request("api/p/ok", String::new(), &quick));
    let answered = futures::future::join_all(stuck).await;
    assert!(
        answered.iter().filter(|reply| reply.is_ok()).count() <= 4,
        "at most the receive maximum got out"
    );
    eventually("the stall counted", Duration::from_secs(10), || async {
        (probes.metric("routemq_mqtt_stalls_total", &[]).await >= 1.0).then_some(())
    })
    .await;
    // Replies leave on their own connection: that is the one replaced.
    eventually("a new connection", Duration::from_secs(10), || async {
        (proxy.reply_connections() >= 2 && probes.ready_status().await == 200).then_some(())
    })
    .await;
    assert_eq!(ask(&victim, "api/p/ok", "").await.status, 200);
    let worker = &stack.workers[0];
    assert!(worker.count_log("stopped taking replies") >= 1);
}

/// Mosquitto's `message_size_limit` is not announced in CONNACK, and its
/// PUBACK refusal (0x95) is one rumqttc cannot read: such a reply costs the
/// connection, counted and explained, and the worker is back at once. With
/// `mqtt.max_packet_size` matched to the broker, as documented, the caller
/// gets `502 reply_too_large` instead and the connection stays.
#[tokio::test]
async fn a_reply_over_an_unannounced_broker_limit_is_counted_and_the_worker_recovers() {
    let broker = Mosquitto::start_with("message_size_limit 5000\n");
    let (stack, probes) = start(broker, "", None).await;
    let client = stack.client().await;
    let quick = RequestOptions {
        timeout: Duration::from_secs(2),
        ..RequestOptions::default()
    };
    assert!(
        client.request("api/p/big", "", &quick).await.is_err(),
        "the broker dropped it"
    );
    eventually("the refusal counted", Duration::from_secs(10), || async {
        let counted = probes
            .metric(
                "routemq_replies_failed_total",
                &[r#"reason="packet_too_large""#],
            )
            .await;
        (counted >= 1.0).then_some(())
    })
    .await;
    assert_eq!(ask(&client, "api/p/ok", "").await.status, 200);

    let matched = "[mqtt]\nmax_packet_size = 5000\n";
    let (stack, _probes) = start(
        Mosquitto::start_with("message_size_limit 5000\n"),
        matched,
        None,
    )
    .await;
    let client = stack.client().await;
    let reply = crate::stack::ask_whole(&client, "api/p/big").await;
    assert_eq!(
        (reply.status, crate::stack::error_type(&reply).as_str()),
        (502, "reply_too_large")
    );
    assert_eq!(ask(&client, "api/p/ok", "").await.status, 200);
    assert_eq!(stack.workers[0].count_log("broker connection lost"), 0);
}
