//! The shipped deployment files, run for real: `deploy/gateway.toml` guards
//! the admin routes and confines replies, and `deploy/mosquitto/acl` confines
//! the gateway's and each client's broker rights.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use routemq_client::{ClientOptions, RequestClient};
use routemq_tests::{Mosquitto, Redis, Worker};
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::json;

use crate::mw::{ask_with, error_type};
use crate::stack::BIN;

const SECRET: &str = "shipped-config-test-secret-0123456789";

fn deploy(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

/// A token the shipped config accepts (its issuer and audience).
fn token(subject: &str, roles: &[&str]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = json!({
        "sub": subject, "exp": now + 600, "iss": "routemq", "aud": "routemq-gateway", "roles": roles,
    });
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token");
    format!("Bearer {token}")
}

fn shipped_worker(mqtt_url: &str, redis: &Redis) -> Worker {
    Worker::start_with_env(
        std::path::Path::new(BIN),
        &deploy("gateway.toml"),
        "shipped-0",
        mqtt_url,
        &redis.url(),
        &[("ROUTEMQ_JWT_HS256_SECRET", SECRET)],
    )
}

async fn client_as(
    url: &str,
    credentials: Option<(&str, &str)>,
    reply: Option<String>,
) -> RequestClient {
    let options = ClientOptions {
        credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
        reply_topic: reply,
        ..ClientOptions::default()
    };
    RequestClient::connect_with(url, &options)
        .await
        .expect("connect")
}

#[tokio::test]
async fn the_shipped_config_guards_admin_routes_and_tells_health_only_status() {
    let (mosquitto, redis) = (Mosquitto::start(), Redis::start());
    let _worker = shipped_worker(&mosquitto.url(), &redis);
    let url = mosquitto.url();
    let anonymous = client_as(&url, None, None).await;
    let health = ask_with(&anonymous, "gateway/health", "", &[]).await;
    assert_eq!(health.status, 200);
    let text = health.json().to_string();
    assert!(!text.contains("url") && !text.contains("http://"), "{text}");
    for topic in ["gateway/services", "gateway/metrics"] {
        let reply = ask_with(&anonymous, topic, "", &[]).await;
        assert_eq!(
            (reply.status, error_type(&reply)),
            (401, "unauthorized".into()),
            "{topic}"
        );
    }
    let user = client_as(&url, None, Some("replies/user-1/app".into())).await;
    let user_token = token("user-1", &["user"]);
    let reply = ask_with(
        &user,
        "gateway/services",
        "",
        &[("authorization", &user_token)],
    )
    .await;
    assert_eq!(reply.status, 403);
    let ops = client_as(&url, None, Some("replies/ops-1/console".into())).await;
    let admin = token("ops-1", &["admin"]);
    for topic in ["gateway/services", "gateway/metrics"] {
        let reply = ask_with(&ops, topic, "", &[("authorization", &admin)]).await;
        assert_eq!(reply.status, 200, "{topic}: {}", reply.json());
    }
}

fn passwords(dir: &std::path::Path, users: &[(&str, &str)]) -> PathBuf {
    let file = dir.join("passwd");
    for (index, (user, password)) in users.iter().enumerate() {
        let mut command = Command::new("mosquitto_passwd");
        if index == 0 {
            command.arg("-c");
        }
        let status = command
            .arg("-b")
            .arg(&file)
            .args([user, password])
            .status()
            .expect("mosquitto_passwd runs");
        assert!(status.success());
    }
    file
}

/// Mosquitto with the shipped ACL and a password file (`routemq-gateway`
/// and `users`, all with password `pw`), Redis, and a worker on the shipped
/// config connected as `routemq-gateway`.
struct Secured {
    mosquitto: Mosquitto,
    _redis: Redis,
    _worker: Worker,
    _dir: tempfile::TempDir,
}

impl Secured {
    fn start(users: &[&str]) -> Secured {
        let dir = tempfile::tempdir().expect("dir");
        let mut all = vec![("routemq-gateway", "pw")];
        all.extend(users.iter().map(|user| (*user, "pw")));
        let passwd = passwords(dir.path(), &all);
        let mosquitto = Mosquitto::start_with(&format!(
            "allow_anonymous false\npassword_file {}\nacl_file {}\n",
            passwd.display(),
            deploy("mosquitto/acl").display()
        ));
        let redis = Redis::start();
        let gateway_url = format!("mqtt://routemq-gateway:pw@127.0.0.1:{}", mosquitto.port);
        let worker = shipped_worker(&gateway_url, &redis);
        Secured {
            mosquitto,
            _redis: redis,
            _worker: worker,
            _dir: dir,
        }
    }
}

/// Connects as `user` and reports whether the broker accepted a QoS 1
/// PUBLISH to `topic` (Mosquitto answers a denied one with a failure PUBACK).
async fn may_publish(port: u16, user: &str, topic: &str) -> bool {
    let mut options = MqttOptions::new(format!("{user}-probe"), "127.0.0.1", port);
    options.set_credentials(user, "pw");
    let (client, mut event_loop) = AsyncClient::new(options, 16);
    client
        .publish(topic, QoS::AtLeastOnce, false, "probe")
        .await
        .expect("publish");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, event_loop.poll())
            .await
            .expect("broker answers")
            .expect("connected");
        if let Event::Incoming(Packet::PubAck(ack)) = event {
            client.disconnect().await.ok();
            return matches!(ack.reason, PubAckReason::Success);
        }
    }
}

#[tokio::test]
async fn the_shipped_mosquitto_acl_confines_the_gateway_and_each_client() {
    let secured = Secured::start(&["alice", "bob", "routemq-gateway-probe"]);
    let mosquitto = &secured.mosquitto;

    let alice_url = format!("mqtt://alice:pw@127.0.0.1:{}", mosquitto.port);
    let alice = client_as(&alice_url, None, Some("replies/alice/app".into())).await;

    // Bob subscribes to Alice's replies and his own: the broker delivers
    // him only his own. His reply is published after Alice's, and a broker
    // delivers to one client in order, so once his arrives, hers would have.
    let mut options = MqttOptions::new("bob-1", "127.0.0.1", mosquitto.port);
    options.set_credentials("bob", "pw");
    let (bob, mut bob_events) = AsyncClient::new(options, 16);
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let (suback_tx, mut subacks) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = bob_events.poll().await {
            match event {
                Event::Incoming(Packet::Publish(publish)) => {
                    seen_tx
                        .send(String::from_utf8_lossy(&publish.topic).into_owned())
                        .ok();
                }
                Event::Incoming(Packet::SubAck(_)) => {
                    suback_tx.send(()).ok();
                }
                _ => {}
            }
        }
    });
    for filter in ["replies/alice/#", "replies/bob/#"] {
        bob.subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        subacks.recv().await.expect("suback");
    }
    // Alice, known to the broker and the gateway as `alice`, is answered in her namespace.
    let reply = ask_with(
        &alice,
        "gateway/health",
        "",
        &[("authorization", &token("alice", &[]))],
    )
    .await;
    assert_eq!(reply.status, 200);
    let properties = rumqttc::v5::mqttbytes::v5::PublishProperties {
        response_topic: Some("replies/bob/raw".into()),
        user_properties: vec![("authorization".into(), token("bob", &[]))],
        ..Default::default()
    };
    bob.publish_with_properties("gateway/health", QoS::AtLeastOnce, false, "", properties)
        .await
        .expect("publish");
    let first = tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .expect("bob's reply")
        .expect("open");
    assert_eq!(
        first, "replies/bob/raw",
        "bob received another caller's reply first"
    );

    // Clients publish requests, never replies; the gateway publishes replies only.
    assert!(may_publish(mosquitto.port, "bob", "api/v1/users/get/1").await);
    assert!(!may_publish(mosquitto.port, "bob", "replies/alice/app").await);
    assert!(may_publish(mosquitto.port, "routemq-gateway", "replies/bob/raw").await);
    assert!(
        !may_publish(mosquitto.port, "routemq-gateway", "devices/42/commands").await,
        "the gateway cannot publish outside the reply namespace"
    );
}

/// Subjects that are e-mail addresses (ASCII or not) are their own reply
/// level, so the shipped ACL's `replies/%u/#` lets such a user read its
/// replies. (The older encoded level, still accepted while
/// `replies.legacy_levels` is on, is no topic this ACL lets them read; the
/// unit tests of `reply_topics` cover it.)
#[tokio::test]
async fn an_email_subject_is_answered_under_its_user_name_with_the_shipped_acl() {
    let users = ["ada.lovelace@example.com", "josé@example.com"];
    let secured = Secured::start(&users);
    let url = format!("mqtt://127.0.0.1:{}", secured.mosquitto.port);
    for user in users {
        let level = routemq_client::reply_level(user);
        assert_eq!(level, user, "a safe level is used as it is");
        let client = client_as(
            &url,
            Some((user, "pw")),
            Some(format!("replies/{level}/app")),
        )
        .await;
        let reply = ask_with(
            &client,
            "gateway/health",
            "",
            &[("authorization", &token(user, &[]))],
        )
        .await;
        assert_eq!(reply.status, 200, "{user}: {}", reply.json());
    }
}
