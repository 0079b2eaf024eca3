//! The middleware stack the middleware tests share: the reference chains on
//! real routes, credentials from a secret file, and a switchable upstream.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use routemq_client::{Reply, RequestClient};
use routemq_tests::eventually;
use routemq_tests::upstream::{switchable, Switch};
use serde_json::{json, Value};

use crate::stack::Stack;
pub use crate::stack::{ask_with, error_type};

pub const SECRET: &str = "middleware-tests-secret-0123456789abcdef";
/// A P-256 key pair the shared config trusts for ES256 tokens.
pub const EC_PRIVATE: &[u8] =
    include_bytes!("../../crates/routemq-gateway/testdata/ec_private.pem");
pub const EC_PUBLIC: &str = include_str!("../../crates/routemq-gateway/testdata/ec_public.pem");

pub const CONFIG: &str = r#"
[auth.jwt]
hs256_secret_file = "{dir}/jwt.secret"
public_keys = [{ algorithm = "ES256", file = "{dir}/ec_public.pem" }]
issuer = "routemq-tests"
audience = "gateway"
leeway = "0s"

[auth.api_keys]
refresh_interval = "100ms"

[middleware.cors]
allow_origins = ["https://app.example"]
allow_methods = ["GET", "POST"]

[middleware.auth]

[middleware.admin_only]
kind = "auth"
roles = ["admin"]

[middleware.rate_limit]
limit = 1000
window = "60s"

[middleware.tight_limit]
kind = "rate_limit"
limit = 30
window = "60s"

[middleware.burst_limit]
kind = "rate_limit"
algorithm = "gcra"
limit = 10
window = "600s"
burst = 5

[middleware.closed_limit]
kind = "rate_limit"
limit = 1000
on_redis_error = "closed"

[middleware.v2_transform]
kind = "transform"
rename = { user_data = "user" }
set = { api_version = "v2", action = "{action}" }

[middleware.circuit_breaker]
failure_threshold = 3
failure_window = "60s"
recovery_time = "1s"
half_open_probes = 1

[middleware.fallback]
cache_ttl = "1m"
cache_max_entries = 20

[[groups]]
prefix = "api/v1"
middleware = ["cors", "auth", "rate_limit"]

  [[groups.groups]]
  prefix = "users"
  service = "user-service"
  middleware = ["circuit_breaker", "fallback"]
  routes = [
    { topic = "get/{user_id}",    method = "GET",    path = "/users/{user_id}" },
    { topic = "delete/{user_id}", method = "DELETE", path = "/users/{user_id}", middleware = ["admin_only"] },
  ]

  [[groups.groups]]
  prefix = "flaky"
  service = "flaky-service"
  middleware = ["circuit_breaker", "fallback"]
  routes = [
    { topic = "get/{id}", method = "GET", path = "/items/{id}", timeout = "5s" },
  ]

[[groups]]
prefix = "api/v2"
middleware = ["cors", "auth", "rate_limit"]
routes = [
  { topic = "users/{action}", service = "user-service", method = "POST", path = "/v2/users/{action}", middleware = ["v2_transform"] },
]

[[groups]]
prefix = "api/limited"
middleware = ["auth", "tight_limit"]
routes = [{ topic = "ping", service = "user-service", method = "GET", path = "/ping" }]

[[groups]]
prefix = "api/burst"
middleware = ["auth", "burst_limit"]
routes = [{ topic = "ping", service = "user-service", method = "GET", path = "/ping" }]

[[groups]]
prefix = "api/strict"
middleware = ["auth", "closed_limit"]
routes = [{ topic = "ping", service = "user-service", method = "GET", path = "/ping" }]

[[groups]]
prefix = "gateway"
routes = [
  { topic = "services", handler = "services" },
  { topic = "metrics",  handler = "metrics" },
]
"#;

pub struct MwStack {
    pub stack: Stack,
    pub flaky: Arc<Switch>,
}

/// `workers` gateway workers over one Redis or a 3-node Redis Cluster, with
/// demo `user-service` instances and the switchable `flaky-service`.
pub async fn start(workers: usize, cluster: bool) -> MwStack {
    let stack = Stack::start_with(
        workers,
        1,
        CONFIG,
        cluster,
        &[("jwt.secret", SECRET), ("ec_public.pem", EC_PUBLIC)],
    )
    .await;
    with_upstreams(stack).await
}

/// [`start`] with one worker on one Redis, started with extra environment
/// (a metrics address, say).
pub async fn start_one_with_env(env: &[(&str, &str)]) -> MwStack {
    let mut stack = Stack::start_with(
        0,
        1,
        CONFIG,
        false,
        &[("jwt.secret", SECRET), ("ec_public.pem", EC_PUBLIC)],
    )
    .await;
    stack.add_worker_with_env("worker-0", env);
    with_upstreams(stack).await
}

pub async fn with_upstreams(stack: Stack) -> MwStack {
    stack.demo_instances("user-service", 1).await;
    let flaky = Arc::new(Switch::default());
    let addr = switchable(Arc::clone(&flaky)).await;
    stack.register("flaky-service", "flaky-1", addr).await;
    stack.settle().await;
    MwStack { stack, flaky }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Claims the gateway accepts; tests break them one at a time.
pub fn claims(subject: &str, roles: &[&str]) -> Value {
    json!({
        "sub": subject,
        "exp": now() + 600,
        "iss": "routemq-tests",
        "aud": "gateway",
        "roles": roles,
    })
}

pub fn sign(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("token encodes")
}

pub fn bearer(subject: &str, roles: &[&str]) -> String {
    format!(
        "Bearer {}",
        sign(&claims(subject, roles), SECRET.as_bytes())
    )
}

/// One request with these user properties.
pub async fn limited_pings(client: &Arc<RequestClient>, token: &str, count: usize) -> Vec<Reply> {
    pings(client, "api/limited/ping", token, count).await
}

/// `count` requests to `topic` at once, as `token`'s caller.
pub async fn pings(
    client: &Arc<RequestClient>,
    topic: &str,
    token: &str,
    count: usize,
) -> Vec<Reply> {
    let requests = (0..count)
        .map(|_| async move { ask_with(client, topic, "", &[("authorization", token)]).await });
    futures::future::join_all(requests).await
}

/// Waits until the `count`th failure of `service` is recorded (failures are
/// written after the reply), or the breaker has opened (which clears them).
pub async fn failure_recorded(redis: &fred::prelude::Client, service: &str, count: i64) {
    use fred::prelude::*;
    use routemq_gateway::redis::scripts;
    let failures = routemq_gateway::redis::keys::breaker_failures(service);
    let what = format!("failure {count} of {service} recorded");
    eventually(&what, Duration::from_secs(10), || async {
        let recorded: i64 = redis.zcard(&failures).await.expect("zcard");
        let state = scripts::breaker_state(redis, service).await.expect("state");
        (recorded >= count || state.as_deref() == Some("open")).then_some(())
    })
    .await;
}
