//! The `routemq` command line against a real redis-server.

use std::path::Path;
use std::time::Duration;

use routemq_tests::{routemq, routemq_with_env, Redis};

const BIN: &str = env!("CARGO_BIN_EXE_routemq-under-test");

fn run(args: &[&str], redis: &Redis) -> Result<String, String> {
    routemq(Path::new(BIN), args, &redis.url())
}

fn shipped_config() -> String {
    format!("{}/../deploy/gateway.toml", env!("CARGO_MANIFEST_DIR"))
}

const SECRET: (&str, &str) = (
    "ROUTEMQ_JWT_HS256_SECRET",
    "cli-test-secret-cli-test-secret-0123",
);

#[test]
fn check_config_and_routes_read_the_shipped_file() {
    let redis = Redis::start();
    let config = shipped_config();
    // Validated without its secret, which is named as one a worker needs.
    let checked = run(&["check-config", &config], &redis).expect("valid without the secret");
    assert!(checked.contains("ok, 21 routes"), "{checked}");
    assert!(
        checked.contains(
            "environment variable `ROUTEMQ_JWT_HS256_SECRET` (auth.jwt.hs256_secret_env, not set here)"
        ),
        "{checked}"
    );
    let with_secret =
        |args: &[&str]| routemq_with_env(Path::new(BIN), args, &redis.url(), &[SECRET]);
    let checked = with_secret(&["check-config", &config]).expect("valid");
    assert!(
        checked.contains("(auth.jwt.hs256_secret_env, set)"),
        "{checked}"
    );
    // A worker does not start without it.
    let worker = run(&["worker", "--config", &config], &redis).expect_err("secret required");
    assert!(
        worker.contains("environment variable `ROUTEMQ_JWT_HS256_SECRET` is not set"),
        "{worker}"
    );
    let token = with_secret(&[
        "token", "--config", &config, "--sub", "ann", "--roles", "admin",
    ])
    .expect("token minted");
    assert_eq!(token.trim().split('.').count(), 3, "{token}");
    let routes = run(&["routes", &config], &redis).expect("prints without the secret");
    let line = routes
        .lines()
        .find(|line| line.starts_with("api/v1/users/get/{user_id} "))
        .unwrap_or_else(|| panic!("{routes}"));
    assert!(line.contains("user-service"), "{line}");
    assert!(line.contains("GET /users/{user_id}"), "{line}");
    assert!(line.contains("circuit_breaker, fallback"), "{line}");
    assert!(
        routes.contains("subscribes $share/gw/api/# (qos 2)"),
        "{routes}"
    );
}

#[test]
fn generate_config_prints_the_shipped_config_which_checks() {
    let redis = Redis::start();
    let generated = run(&["generate-config"], &redis).expect("printed");
    let shipped = std::fs::read_to_string(shipped_config()).expect("shipped config");
    assert_eq!(generated, shipped);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, &generated).expect("write");
    let checked = run(&["check-config", &file.display().to_string()], &redis).expect("valid");
    assert!(checked.contains("ok, 21 routes"), "{checked}");
}

#[test]
fn check_config_names_the_file_and_line_of_a_problem() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("broken.toml");
    std::fs::write(
        &file,
        "[[routes]]\ntopic = \"a/{id}\"\nhandler = \"health\"\n\n[[routes]]\ntopic = \"a/list\"\nhandler = \"metrics\"\n",
    )
    .expect("write");
    let error = run(&["check-config", &file.display().to_string()], &redis).expect_err("invalid");
    assert!(
        error.contains(&format!(
            "{}:5: route `a/list` conflicts with route `a/{{id}}`",
            file.display()
        )),
        "{error}"
    );
}

#[test]
fn services_register_heartbeat_expire_and_deregister() {
    let redis = Redis::start();
    let registered = run(
        &[
            "services",
            "register",
            "--service",
            "user-service",
            "--url",
            "http://127.0.0.1:9001",
            "--instance-id",
            "u1",
            "--ttl",
            "1s",
        ],
        &redis,
    )
    .expect("register");
    assert!(registered.contains("registered u1 of user-service"));
    let listing = run(&["services", "list"], &redis).expect("list");
    assert!(
        listing.contains("u1") && listing.contains("http://127.0.0.1:9001"),
        "{listing}"
    );

    run(
        &[
            "services",
            "heartbeat",
            "--service",
            "user-service",
            "--instance-id",
            "u1",
        ],
        &redis,
    )
    .expect("alive");
    // Without further heartbeats its ttl runs out (listing does not extend it).
    wait_until("the instance expired", Duration::from_secs(10), || {
        !run(&["services", "list"], &redis)
            .expect("list")
            .contains("u1")
    });
    let error = run(
        &[
            "services",
            "heartbeat",
            "--service",
            "user-service",
            "--instance-id",
            "u1",
        ],
        &redis,
    )
    .expect_err("expired");
    assert!(error.contains("not registered"), "{error}");

    run(
        &[
            "services",
            "register",
            "--service",
            "user-service",
            "--url",
            "http://127.0.0.1:9002",
            "--instance-id",
            "u2",
        ],
        &redis,
    )
    .expect("register without ttl");
    let json = run(&["services", "list", "--json"], &redis).expect("list");
    let listing: serde_json::Value = serde_json::from_str(&json).expect("json");
    let instances = listing["user-service"].as_array().expect("instances");
    assert_eq!(instances.len(), 1, "the expired instance is gone: {json}");
    assert_eq!(instances[0]["instance_id"], "u2");
    assert_eq!(
        instances[0]["health_check_url"],
        "http://127.0.0.1:9002/health"
    );

    run(
        &[
            "services",
            "deregister",
            "--service",
            "user-service",
            "--instance-id",
            "u2",
        ],
        &redis,
    )
    .expect("deregister");
    let listing = run(&["services", "list", "--json"], &redis).expect("list");
    assert_eq!(listing.trim(), "{}");
}

#[test]
fn services_commands_fail_clearly_without_redis() {
    let mut redis = Redis::start();
    redis.kill();
    let error = run(&["services", "list"], &redis).expect_err("no redis");
    assert!(error.contains("cannot reach Redis"), "{error}");
}

/// `redis-cli` against the test's redis-server.
fn redis_cli(redis: &Redis, args: &[&str]) -> String {
    let output = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli is installed (apt-get install redis-tools)");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Polls `check` every 50 ms until it holds, or panics naming `what`.
fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    routemq_tests::eventually_blocking(what, timeout, || check().then_some(()));
}

/// A window of refused writes long enough for the instance's ttl to lapse:
/// the heartbeat keeps running, and once Redis takes writes again the
/// instance is registered again as it was.
#[test]
fn heartbeats_outlive_a_redis_hiccup_and_re_register_a_lapsed_instance() {
    let redis = Redis::start();
    let register = [
        "services",
        "register",
        "--service",
        "hb-service",
        "--url",
        "http://127.0.0.1:9005",
        "--instance-id",
        "hb1",
        "--ttl",
        "1s",
    ];
    run(&register, &redis).expect("register");
    let mut heartbeat = std::process::Command::new(BIN)
        .args([
            "services",
            "heartbeat",
            "--service",
            "hb-service",
            "--instance-id",
            "hb1",
        ])
        .args(["--every", "200ms"])
        .env("ROUTEMQ_REDIS_URL", redis.url())
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("heartbeat runs");
    let key = routemq_gateway::redis::keys::instance("hb-service", "hb1");
    // Redis refuses every write (NOREPLICAS) until told otherwise.
    assert_eq!(
        redis_cli(&redis, &["CONFIG", "SET", "min-replicas-to-write", "1"]),
        "OK"
    );
    wait_until("the instance's ttl lapsed", Duration::from_secs(10), || {
        redis_cli(&redis, &["EXISTS", &key]) == "0"
    });
    assert!(
        heartbeat.try_wait().expect("status").is_none(),
        "the heartbeat gave up"
    );
    assert_eq!(
        redis_cli(&redis, &["CONFIG", "SET", "min-replicas-to-write", "0"]),
        "OK"
    );
    wait_until(
        "the instance registered again",
        Duration::from_secs(10),
        || run(&["services", "list"], &redis).is_ok_and(|listing| listing.contains("hb1")),
    );
    assert_eq!(
        redis_cli(&redis, &["HGET", &key, "url"]),
        "http://127.0.0.1:9005"
    );
    assert!(
        heartbeat.try_wait().expect("status").is_none(),
        "the heartbeat is still running"
    );
    heartbeat.kill().ok();
    let output = heartbeat.wait_with_output().expect("output");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("heartbeat failed; retrying"), "{log}");
    assert!(log.contains("re-registered"), "{log}");
}

/// `check-config` refuses the values that used to pass and then panic a
/// background task or the MQTT client, naming their line.
#[test]
fn check_config_refuses_settings_the_runtime_cannot_run() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let route = "\n[[routes]]\ntopic = \"gateway/health\"\nhandler = \"health\"\n";
    for (settings, expected) in [
        (
            "[auth.api_keys]\nrefresh_interval = \"0s\"\n",
            ":2: auth.api_keys.refresh_interval must be above zero",
        ),
        (
            "[registry]\nrefresh_interval = \"0s\"\n",
            ":2: registry.refresh_interval must be above zero",
        ),
        (
            "[registry]\nhealth_check_interval = \"0s\"\n",
            ":2: registry.health_check_interval must be above zero",
        ),
        (
            "[metrics]\nflush_interval = \"0s\"\n",
            ":2: metrics.flush_interval must be above zero",
        ),
        (
            "[mqtt]\nkeep_alive = \"500ms\"\n",
            ":2: mqtt.keep_alive must be between 5s",
        ),
    ] {
        let file = dir.path().join("bounded.toml");
        std::fs::write(&file, format!("{settings}{route}")).expect("write");
        let path = file.display().to_string();
        let error = run(&["check-config", &path], &redis).expect_err(settings);
        assert!(
            error.contains(&format!("{path}{expected}")),
            "{settings}: {error}"
        );
        assert!(!error.contains("panicked"), "{error}");
    }
}
