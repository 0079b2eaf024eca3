//! Every kind of bad input gets one clear answer, or none where none may be sent.

use std::time::Duration;

use routemq_client::RequestOptions;
use routemq_tests::upstream;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::{json, Value};

use crate::stack::{ask, error_type, observer, options, Stack};

/// Topic, payload, headers, expected status and error type.
type ErrorCase<'a> = (&'a str, &'a str, Vec<(String, String)>, u16, &'a str);

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
    let cases: [ErrorCase; 11] = [
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
        (504, "deadline_exceeded".into()),
        "the caller's own deadline, not the upstream's fault"
    );

    let reply = ask(&client, "api/v1/users/get/after-all-that", "").await;
    assert_eq!(reply.status, 200, "worker still serves");
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
        .wait_for_log(
            "falls under a filter the gateway serves",
            Duration::from_secs(5),
        )
        .await;
    worker
        .wait_for_log("empty or contains a wildcard", Duration::from_secs(5))
        .await;
    // A later request's round trip through the same worker and broker: a
    // looped publish, had there been one, would have arrived before it.
    let client = stack.client().await;
    assert_eq!(
        ask(&client, "api/v1/users/create", "{}").await.status,
        201,
        "worker unaffected"
    );
    assert!(
        looped.try_recv().is_err(),
        "nothing published to a served topic"
    );
}

#[tokio::test]
async fn mqtt_311_clients_put_the_reply_address_in_the_payload() {
    let stack = Stack::start(1).await;
    stack.demo_instances("user-service", 1).await;
    stack.settle().await;
    let (client, mut replies) =
        observer(&stack.mosquitto.url(), "replies/anonymous/legacy-7").await;
    let request =
        json!({"name": "Ada", "reply_to": "replies/anonymous/legacy-7", "correlation_id": "corr-7"})
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
            "replies/anonymous/rr",
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
