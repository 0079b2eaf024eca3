//! Transport security for real: a Mosquitto TLS listener that requires
//! client certificates and a password, a redis-server on a TLS port that
//! requires client certificates and `requirepass`, certificates made by the
//! test. A worker serves through both; each refused credential or
//! certificate stops start-up at once with a clear message; an unreachable
//! broker or Redis is retried while `/readyz` says 503.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fred::prelude::*;
use routemq_gateway::redis::scripts::Registration;
use routemq_gateway::redis::{connect, RedisSettings};
use routemq_gateway::registry;
use routemq_gateway::tls::TlsFiles;
use routemq_tests::tls::{mosquitto_tls_listeners, Authority, Pem, TlsRedis};
use routemq_tests::upstream::fixed_status;
use routemq_tests::{free_port, routemq_with_env, Mosquitto, Worker};
use serde_json::Value;

use crate::stack::{ask, under_test};

const MQTT_PASSWORD: &str = "broker-secret";
const REDIS_PASSWORD: &str = "redis-secret";

/// The broker, Redis and the files a worker's configuration points at.
struct Secured {
    dir: tempfile::TempDir,
    mosquitto: Mosquitto,
    tls_port: u16,
    wss_port: u16,
    redis: TlsRedis,
    ca: PathBuf,
    authority: Authority,
    client: Pem,
}

impl Secured {
    fn start() -> Secured {
        let dir = tempfile::tempdir().expect("temp dir");
        let authority = Authority::new(dir.path(), "test-ca");
        let server = authority.server("server");
        let client = authority.client("worker", false);
        let passwords = dir.path().join("passwd");
        let status = std::process::Command::new("mosquitto_passwd")
            .arg("-c")
            .arg("-b")
            .arg(&passwords)
            .args(["gateway", MQTT_PASSWORD])
            .status()
            .expect("mosquitto_passwd runs");
        assert!(status.success());
        let (tls_port, wss_port) = (free_port(), free_port());
        let mosquitto = Mosquitto::start_with(&mosquitto_tls_listeners(
            tls_port,
            wss_port,
            &authority.ca,
            &server,
            &passwords,
        ));
        let redis = TlsRedis::start(dir.path(), &authority.ca, &server, REDIS_PASSWORD);
        std::fs::write(
            dir.path().join("redis.password"),
            format!("{REDIS_PASSWORD}\n"),
        )
        .expect("password file");
        Secured {
            ca: authority.ca.clone(),
            dir,
            mosquitto,
            tls_port,
            wss_port,
            redis,
            authority,
            client,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A configuration whose `[mqtt.tls]` and `[redis.tls]` use these files.
    fn config(&self, name: &str, mqtt_tls: &TlsFiles, redis_tls: &TlsFiles) -> PathBuf {
        let table = |files: &TlsFiles| {
            let mut lines = String::new();
            if let Some(ca) = &files.ca_file {
                lines += &format!("ca_file = {:?}\n", ca.display().to_string());
            }
            if let Some((cert, key)) = &files.client_auth {
                lines += &format!(
                    "cert_file = {:?}\nkey_file = {:?}\n",
                    cert.display().to_string(),
                    key.display().to_string()
                );
            }
            lines
        };
        let text = format!(
            r#"[mqtt]
username = "gateway"
password_env = "TEST_MQTT_PASSWORD"

[mqtt.tls]
{}
[redis]
password_file = "redis.password"

[redis.tls]
{}
[registry]
refresh_interval = "100ms"
health_check_interval = "200ms"

[[groups]]
prefix = "api/tls"
routes = [{{ topic = "echo", service = "echo-service", method = "GET", path = "/x" }}]

[[groups]]
prefix = "gateway"
routes = [{{ topic = "health", handler = "health" }}]
"#,
            table(mqtt_tls),
            table(redis_tls),
        );
        let path = self.path(name);
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn trusted(&self, client: Option<&Pem>) -> TlsFiles {
        TlsFiles {
            ca_file: Some(self.ca.clone()),
            client_auth: client.map(|pem| (pem.cert.clone(), pem.key.clone())),
        }
    }

    fn mqtts(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.tls_port)
    }

    fn spawn(&self, config: &Path, mqtt_url: &str, redis_url: &str, password: &str) -> Worker {
        Worker::spawn(
            &under_test(),
            config,
            "tls-worker",
            mqtt_url,
            redis_url,
            &[("TEST_MQTT_PASSWORD", password)],
        )
    }
}

#[tokio::test]
async fn a_worker_serves_through_mutual_tls_with_passwords_from_env_and_file() {
    let secured = Secured::start();
    let files = secured.trusted(Some(&secured.client));
    let mut settings = RedisSettings::new(secured.redis.url());
    settings.tls = Some(files.clone());
    settings.password = Some(REDIS_PASSWORD.into());
    let redis = connect(&settings).await.expect("test client over TLS");
    redis.wait_for_connect().await.expect("redis up");
    let upstream = fixed_status(200).await;
    let (url, health) = (
        format!("http://{upstream}"),
        format!("http://{upstream}/health"),
    );
    let registration = Registration {
        service: "echo-service",
        instance_id: "echo-1",
        url: &url,
        health_check_url: &health,
        ttl: None,
    };
    registry::register(&redis, &registration)
        .await
        .expect("register");

    let config = secured.config("good.toml", &files, &files);
    let wss = format!("wss://127.0.0.1:{}/mqtt", secured.wss_port);
    let client = routemq_client::RequestClient::connect(&secured.mosquitto.url())
        .await
        .expect("plain client");
    for (transport, url) in [("mqtts", secured.mqtts()), ("wss", wss)] {
        let mut worker = secured.spawn(&config, &url, &secured.redis.url(), MQTT_PASSWORD);
        worker
            .wait_for_log("subscribed", Duration::from_secs(20))
            .await;
        worker
            .wait_for_log("registry refreshed", Duration::from_secs(10))
            .await;
        let reply = ask(&client, "gateway/health", "").await;
        let body: Value = serde_json::from_slice(&reply.payload).expect("json");
        assert_eq!(body["redis"], "healthy", "{transport}: {body}");
        let reply = ask(&client, "api/tls/echo", "").await;
        assert_eq!(
            reply.status, 200,
            "{transport}: forwarded through the TLS-read registry"
        );
        assert!(
            !worker
                .log_lines()
                .iter()
                .any(|line| line.contains("credentials inside the URL")),
            "no warning when no credential is in a URL"
        );
        worker.process.signal("TERM");
        assert!(worker.process.wait_exit(Duration::from_secs(20)).is_some());
    }
}

/// Spawns a worker that must stop at once, and returns its log.
fn refused(worker: &mut Worker) -> String {
    let status = worker.process.wait_exit(Duration::from_secs(20));
    let log = worker.log_lines().join("\n");
    match status {
        Some(status) => assert!(!status.success(), "a refused worker fails: {log}"),
        None => panic!("the worker kept running:\n{log}"),
    }
    log
}

#[tokio::test]
async fn refused_certificates_and_passwords_stop_start_up_with_a_clear_message() {
    let secured = Secured::start();
    let other = Authority::new(secured.dir.path(), "other-ca");
    // From the CA the servers trust, but valid only in 2020.
    let expired_client = secured.authority.client("expired", true);
    let good = secured.trusted(Some(&secured.client));
    let (mqtts, rediss) = (secured.mqtts(), secured.redis.url());
    let wrong_ca = TlsFiles {
        ca_file: Some(other.ca.clone()),
        ..good.clone()
    };
    let cases: Vec<(&str, TlsFiles, TlsFiles, &str, &str)> = vec![
        (
            "mqtt-wrong-ca",
            wrong_ca.clone(),
            good.clone(),
            MQTT_PASSWORD,
            "the server's TLS certificate was refused",
        ),
        (
            "mqtt-expired",
            secured.trusted(Some(&expired_client)),
            good.clone(),
            MQTT_PASSWORD,
            "the server refused the TLS handshake",
        ),
        (
            "mqtt-no-cert",
            secured.trusted(None),
            good.clone(),
            MQTT_PASSWORD,
            "the server refused the TLS handshake",
        ),
        (
            "mqtt-password",
            good.clone(),
            good.clone(),
            "wrong",
            "connection refused",
        ),
        (
            "redis-wrong-ca",
            good.clone(),
            wrong_ca,
            MQTT_PASSWORD,
            "the server's TLS certificate was refused",
        ),
    ];
    for (name, mqtt_tls, redis_tls, password, message) in cases {
        let config = secured.config(&format!("{name}.toml"), &mqtt_tls, &redis_tls);
        let mut worker = secured.spawn(&config, &mqtts, &rediss, password);
        let log = refused(&mut worker);
        assert!(
            log.contains(message),
            "{name}: expected `{message}` in:\n{log}"
        );
        eprintln!("{name}: {}", log.lines().last().unwrap_or_default());
    }
    std::fs::write(secured.path("redis.password"), "wrong\n").expect("password file");
    let config = secured.config("redis-password.toml", &good, &good);
    let mut worker = secured.spawn(&config, &mqtts, &rediss, MQTT_PASSWORD);
    let log = refused(&mut worker);
    assert!(
        log.contains("authentication refused"),
        "redis password: {log}"
    );
}

#[tokio::test]
async fn an_unreachable_broker_and_redis_are_retried_while_readyz_says_503() {
    let secured = Secured::start();
    let good = secured.trusted(Some(&secured.client));
    let config = secured.config("unreachable.toml", &good, &good);
    let metrics = format!("127.0.0.1:{}", free_port());
    let worker = Worker::spawn(
        &under_test(),
        &config,
        "patient-worker",
        &format!("mqtts://127.0.0.1:{}", free_port()),
        &format!("rediss://127.0.0.1:{}", free_port()),
        &[
            ("TEST_MQTT_PASSWORD", MQTT_PASSWORD),
            ("ROUTEMQ_METRICS_ADDR", metrics.as_str()),
        ],
    );
    worker
        .wait_for_log_count("broker connection lost", 3, Duration::from_secs(20))
        .await;
    worker
        .wait_for_log("redis not reachable yet", Duration::from_secs(1))
        .await;
    let readyz = reqwest::get(format!("http://{metrics}/readyz"))
        .await
        .expect("readyz answers");
    assert_eq!(readyz.status().as_u16(), 503);
    let body: Value = readyz.json().await.expect("json");
    assert_eq!(body["checks"]["mqtt_connected"], false);
    assert_eq!(body["checks"]["redis_connected"], false);
}

/// The admin commands read a worker's `[redis]` section with `--config`:
/// TLS files, client certificate and password file, as the worker does —
/// and nothing else in it (the broker password it names is not set).
#[tokio::test]
async fn admin_commands_reach_a_mutual_tls_redis_through_the_workers_config() {
    let secured = Secured::start();
    let files = secured.trusted(Some(&secured.client));
    let config = secured.config("admin.toml", &files, &files);
    let config = config.display().to_string();
    let (bin, url) = (under_test(), secured.redis.url());
    let admin = |args: &[&str]| routemq_with_env(&bin, args, &url, &[]);

    let refused = admin(&["services", "list"]).expect_err("no CA, no certificate, no password");
    assert!(refused.contains("TLS certificate was refused"), "{refused}");
    let register = [
        "services",
        "register",
        "--config",
        &config,
        "--service",
        "admin-service",
        "--instance-id",
        "admin-1",
        "--url",
        "http://127.0.0.1:9",
    ];
    admin(&register).expect("registered over mutual TLS");
    let listed = admin(&["services", "list", "--json", "--config", &config]).expect("listed");
    assert!(listed.contains("admin-1"), "{listed}");
    let created = admin(&["api-keys", "create", "--name", "ops", "--config", &config])
        .expect("a key created");
    let keys = admin(&["api-keys", "list", "--config", &config]).expect("keys listed");
    assert!(keys.contains("ops"), "{created}\n{keys}");

    // An explicit --redis replaces the URL (the TLS files still apply).
    let elsewhere = format!("rediss://127.0.0.1:{}", free_port());
    let moved = admin(&[
        "services", "list", "--config", &config, "--redis", &elsewhere,
    ])
    .expect_err("nothing listens there");
    assert!(moved.contains("cannot reach Redis"), "{moved}");
}
