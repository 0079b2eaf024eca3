use routemq_gateway::RouteTarget;

use super::{parse, WorkerConfig};

const SHIPPED: &str = include_str!("../../../../deploy/gateway.toml");

/// The environment the shipped config needs: its JWT secret.
fn no_env(name: &str) -> Option<String> {
    (name == "ROUTEMQ_JWT_HS256_SECRET").then(|| "test-secret-test-secret-test-secret".to_string())
}

/// Parses with a short secret in the environment, so secret checks can be tested.
fn parse_text(text: &str) -> Result<WorkerConfig, String> {
    let env = |name: &str| (name == "ROUTEMQ_JWT_HS256_SECRET").then(|| "short".to_string());
    parse(text, "test.toml", &env).map_err(|error| error.to_string())
}

/// The reference design's route table, which the shipped config reproduces.
const REFERENCE_ROUTES: [&str; 21] = [
    "api/v1/users/create",
    "api/v1/users/get/{user_id}",
    "api/v1/users/update/{user_id}",
    "api/v1/users/delete/{user_id}",
    "api/v1/users/list",
    "api/v1/orders/create",
    "api/v1/orders/get/{order_id}",
    "api/v1/orders/update/{order_id}",
    "api/v1/orders/cancel/{order_id}",
    "api/v1/orders/list/{user_id}",
    "api/v1/payments/process",
    "api/v1/payments/refund/{payment_id}",
    "api/v1/payments/status/{payment_id}",
    "api/v1/notifications/send",
    "api/v1/notifications/templates/{template_id}",
    "api/v2/users/{action}",
    "api/v2/orders/{action}",
    "api/v2/users/get/{user_id}",
    "gateway/health",
    "gateway/services",
    "gateway/metrics",
];

/// `api/v1/users/get/{user_id}` forwards to user-service with the full chain.
fn assert_users_get_is_the_reference_chain(config: &WorkerConfig) {
    let found = config
        .gateway
        .routes
        .find("api/v1/users/get/42")
        .expect("matches");
    let RouteTarget::Forward(route) = &found.route.target else {
        panic!("users/get forwards");
    };
    assert_eq!(route.service, "user-service");
    assert_eq!(route.method, reqwest::Method::GET);
    assert_eq!(route.timeout, std::time::Duration::from_secs(30));
    assert_eq!(
        found.route.middleware,
        [
            "cors",
            "auth",
            "rate_limit",
            "transform",
            "circuit_breaker",
            "fallback"
        ]
    );
}

#[test]
fn the_shipped_config_reproduces_the_reference_route_table() {
    let config = parse(SHIPPED, "gateway.toml", &no_env).expect("shipped config is valid");
    let patterns: Vec<String> = config
        .gateway
        .routes
        .routes()
        .iter()
        .map(|r| r.pattern.to_string())
        .collect();
    for expected in REFERENCE_ROUTES {
        assert!(
            patterns.contains(&expected.to_string()),
            "missing {expected}"
        );
    }
    assert_eq!(patterns.len(), 21);
    assert_users_get_is_the_reference_chain(&config);
    let v2 = config
        .gateway
        .routes
        .find("api/v2/users/create")
        .expect("matches");
    assert_eq!(
        v2.route.middleware,
        ["cors", "auth", "rate_limit", "v2_transform"]
    );
    let health = config
        .gateway
        .routes
        .find("gateway/health")
        .expect("matches");
    assert!(health.route.middleware.is_empty());
    assert!(config.gateway.auth.jwt.is_some() && config.gateway.auth.api_keys_refresh.is_some());
    let filters: Vec<String> = config
        .gateway
        .routes
        .filters()
        .iter()
        .map(|f| f.shared("gw"))
        .collect();
    assert_eq!(filters, ["$share/gw/api/#", "$share/gw/gateway/#"]);
}

#[test]
fn environment_overrides_the_addresses() {
    let env = |name: &str| match name {
        "ROUTEMQ_MQTT_URL" => Some("mqtt://broker.example:1999".to_string()),
        "ROUTEMQ_REDIS_URL" => Some("redis://cache.example:7000".to_string()),
        other => no_env(other),
    };
    let config = parse(SHIPPED, "gateway.toml", &env).expect("valid");
    assert_eq!(
        (config.mqtt.host.as_str(), config.mqtt.port),
        ("broker.example", 1999)
    );
    assert_eq!(config.redis.url, "redis://cache.example:7000");
}

/// Broken files and what their error must say, file and line first where known.
const ERROR_CASES: [(&str, &str); 16] = [
    (
        "[[routes]]\ntopic = \"a\"\nhandler = \"health\"\n\n[[routes]]\ntopic = \"a\"\nhandler = \"metrics\"\n",
        "test.toml:5: route `a` conflicts with route `a`",
    ),
    (
        "[[groups]]\nprefix = \"api\"\nservice = \"s\"\nroutes = [\n  { topic = \"get/{id}\", path = \"/x/{other}\" },\n]\n",
        "test.toml:5: route `api/get/{id}`: path parameter `{other}` is not in the topic",
    ),
    (
        "[[groups]]\nprefix = \"api\"\nroutes = [\n  { topic = \"x\", path = \"/x\" },\n]\n",
        "test.toml:4: route `api/x`: no `service`",
    ),
    (
        "[[groups]]\nprefix = \"api\"\nservice = \"s\"\nroutes = [\n\n  { topic = \"a/+\", path = \"/x\" },\n]\n",
        "test.toml:6: topic pattern `api/a/+` is invalid",
    ),
    ("[mqtt]\nkeep_alive = \"soon\"\n", "test.toml:2:"),
    ("[mqtt]\nunknown = 1\n", "test.toml:2: unknown field `unknown`"),
    (
        "[[groups]]\nprefix = \"api\"\nmiddleware = [\"auth\"]\nroutes = [{ topic = \"x\", handler = \"health\" }]\n",
        "test.toml:1: group `api`: middleware `auth` is not defined",
    ),
    (
        "[middleware.rl]\nkind = \"rate_limit\"\nlimitt = 5\n[[routes]]\ntopic = \"x\"\nhandler = \"health\"\n",
        "middleware `rl`: rate_limit middleware: unknown field `limitt`",
    ),
    (
        "[middleware.auth]\n[[routes]]\ntopic = \"x\"\nhandler = \"health\"\n",
        "middleware `auth`: auth middleware: no credentials configured",
    ),
    (
        "[middleware.strange]\n[[routes]]\ntopic = \"x\"\nhandler = \"health\"\n",
        "unknown middleware kind `strange`",
    ),
    (
        "[auth.jwt]\nhs256_secret_env = \"NOT_SET_ANYWHERE\"\n[[routes]]\ntopic = \"x\"\nhandler = \"health\"\n",
        "environment variable `NOT_SET_ANYWHERE` is not set",
    ),
    (
        "[auth.jwt]\nhs256_secret_env = \"ROUTEMQ_JWT_HS256_SECRET\"\n[[routes]]\ntopic = \"x\"\nhandler = \"health\"\n",
        "the HS256 secret must be at least 32 bytes",
    ),
    (
        "[middleware.cb]\nkind = \"circuit_breaker\"\non_redis_error = \"maybe\"\n[[routes]]\ntopic = \"x\"\nhandler = \"health\"\n",
        "on_redis_error must be",
    ),
    (
        "[[routes]]\ntopic = \"a\"\nservice = \"s\"\npath = \"/a\"\nforward_headers = [\"x-user-id\"]\n",
        "header `x-user-id` is never forwarded",
    ),
    ("[[routes]]\ntopic = \"a\"\nhandler = \"health\"\nqos = 3\n", "qos must be 0, 1 or 2"),
    ("", "no routes are configured"),
];

#[test]
fn errors_name_the_file_and_line() {
    for (text, expected) in ERROR_CASES {
        let error = parse_text(text).expect_err(text);
        assert!(
            error.contains(expected),
            "expected `{expected}` in `{error}`"
        );
    }
}

#[test]
fn telemetry_settings_and_their_environment_override() {
    let text = "[telemetry]\nmetrics_addr = \"127.0.0.1:9464\"\nrequest_log_length = 50\n[[routes]]\ntopic = \"x\"\nhandler = \"health\"\n";
    let config = parse(text, "test.toml", &no_env).expect("valid");
    assert_eq!(
        config.metrics_addr.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9464")
    );
    assert_eq!(config.gateway.request_log_length, Some(50));
    let env = |name: &str| (name == "ROUTEMQ_METRICS_ADDR").then(|| "0.0.0.0:9500".to_string());
    let config = parse(text, "test.toml", &env).expect("valid");
    assert_eq!(config.metrics_addr.map(|a| a.port()), Some(9500));
    let off = "[telemetry]\nrequest_log = false\n[[routes]]\ntopic = \"x\"\nhandler = \"health\"\n";
    let config = parse(off, "test.toml", &no_env).expect("valid");
    assert_eq!(
        (config.metrics_addr, config.gateway.request_log_length),
        (None, None)
    );
    let broken = "[telemetry]\nmetrics_addr = \"nine-four\"\n[[routes]]\ntopic = \"x\"\nhandler = \"health\"\n";
    let error = parse(broken, "test.toml", &no_env).expect_err("invalid address");
    assert!(
        error
            .to_string()
            .contains("telemetry.metrics_addr `nine-four`"),
        "{error}"
    );
}

#[test]
fn isolation_settings_are_validated() {
    let config = parse(SHIPPED, "gateway.toml", &no_env).expect("shipped config is valid");
    assert_eq!(config.mqtt.max_in_flight_qos0, 512);
    assert_eq!(config.mqtt.intake_memory_bytes, 128 << 20);
    let bulkheads = &config.gateway.service_limits;
    assert_eq!(bulkheads.default_max_in_flight, 1024);
    assert_eq!(
        (bulkheads.initial_in_flight, bulkheads.max_held),
        (128, 1536)
    );
    assert_eq!(bulkheads.queue_timeout, std::time::Duration::from_secs(2));
    let gateway_routes = ["gateway/services", "gateway/metrics"];
    for route in config.gateway.routes.routes() {
        let admin = route.middleware.iter().any(|m| m == "admin_only");
        if gateway_routes.contains(&route.pattern.to_string().as_str()) {
            assert!(admin, "{} needs the admin role", route.pattern);
        }
    }

    let route = r#"
[[routes]]
topic = "api/x"
service = "x"
path = "/x"
timeout = "90s"
middleware = ["circuit_breaker"]
"#;
    let breaker = "[middleware.circuit_breaker]\nprobe_timeout = \"60s\"\n";
    let error = parse_text(&format!("{breaker}{route}")).expect_err("probe lease below timeout");
    assert!(
        error.contains("probe_timeout 1m below the route's timeout 1m 30s"),
        "{error}"
    );
    let ok = "[middleware.circuit_breaker]\nprobe_timeout = \"2m\"\n";
    assert!(parse_text(&format!("{ok}{route}")).is_ok());

    for (table, expected) in [
        (
            "[middleware.circuit_breaker]\nfailure_rate = 1.5\n",
            "failure_rate must be above 0",
        ),
        (
            "[middleware.circuit_breaker]\nfailure_threshold = 0\n",
            "needs a failure_rate",
        ),
        (
            "[replies]\nallow = [\"a/#/b\"]\n",
            "`#` must be the last level",
        ),
        ("[replies]\nallow = []\n", "allowlist is empty"),
    ] {
        let error = parse_text(&format!("{table}{route}")).expect_err(table);
        assert!(error.contains(expected), "{table}: {error}");
    }
    parse_text(&format!(
        "[middleware.circuit_breaker]\nfailure_rate = 0.5\nprobe_timeout = \"2m\"\n{route}"
    ))
    .expect("rate mode");
}

#[test]
fn a_jwks_url_must_be_https_or_loopback_http_with_sane_bounds() {
    let with = |jwt: &str| {
        let text = SHIPPED.replace(
            "hs256_secret_env = \"ROUTEMQ_JWT_HS256_SECRET\"",
            &format!("hs256_secret_env = \"ROUTEMQ_JWT_HS256_SECRET\"\n{jwt}"),
        );
        parse(&text, "gateway.toml", &no_env).map_err(|error| error.to_string())
    };
    for accepted in [
        "jwks_url = \"https://idp.example/jwks.json\"",
        "jwks_url = \"http://127.0.0.1:8080/jwks\"",
        "jwks_url = \"http://localhost/jwks\"",
    ] {
        let config = with(accepted).expect(accepted);
        let jwt = config.gateway.auth.jwt.expect("jwt");
        let remote = jwt.keys.remote.expect("remote");
        assert_eq!(remote.min_refresh, std::time::Duration::from_secs(30));
        assert_eq!(remote.max_bytes, 65_536);
    }
    for (refused, says) in [
        ("jwks_url = \"http://idp.example/jwks\"", "use https"),
        ("jwks_url = \"ftp://idp.example/jwks\"", "is not http(s)"),
        (
            "jwks_url = \"https://idp.example/j\"\njwks_min_refresh = \"5m\"\njwks_max_refresh = \"1m\"",
            "at most jwks_max_refresh",
        ),
        ("jwks_max_bytes = 10", "need jwks_url"),
    ] {
        let error = with(refused).expect_err(refused);
        assert!(error.contains(says), "{refused}: {error}");
    }
}

/// The forwarding route `topic` names in `config`.
fn forward_route<'c>(
    config: &'c WorkerConfig,
    topic: &'c str,
) -> &'c routemq_gateway::ForwardRoute {
    let found = config.gateway.routes.find(topic).expect("matches");
    found.route.target.forward().expect("a forwarding route")
}

#[test]
fn deadline_headers_chunking_and_coalescing_follow_gateway_group_and_route() {
    use routemq_gateway::{ChunkedReplies, Coalesce};
    let text = r#"
[gateway]
deadline_header = "x-budget-ms"

[[groups]]
prefix = "api"
service = "s"
chunked_replies = "always"
routes = [
  { topic = "a", method = "GET", path = "/a" },
  { topic = "b", method = "GET", path = "/b", deadline_header = "", chunked_replies = "never", coalesce = true },
  { topic = "c", method = "GET", path = "/c", coalesce = true, coalesce_across_callers = true },
]
"#;
    let config = parse_text(text).expect("valid");
    let a = forward_route(&config, "api/a");
    assert_eq!(
        a.deadline_header.as_ref().map(|h| h.as_str()),
        Some("x-budget-ms")
    );
    assert_eq!(a.chunked_replies, ChunkedReplies::Always);
    assert_eq!(a.coalesce, None);
    let b = forward_route(&config, "api/b");
    assert_eq!(b.deadline_header, None);
    assert_eq!(b.chunked_replies, ChunkedReplies::Never);
    assert_eq!(b.coalesce, Some(Coalesce::PerCaller));
    let c = forward_route(&config, "api/c");
    assert_eq!(c.coalesce, Some(Coalesce::AcrossCallers));

    let plain =
        parse_text("[[routes]]\ntopic = \"x\"\nservice = \"s\"\npath = \"/x\"\n").expect("valid");
    let x = forward_route(&plain, "x");
    assert_eq!(
        x.deadline_header.as_ref().map(|h| h.as_str()),
        Some("x-request-timeout-ms"),
        "the default"
    );
    assert_eq!(x.chunked_replies, ChunkedReplies::OnRequest);
}

#[test]
fn route_options_that_cannot_work_are_refused_on_their_line() {
    let route = |options: &str| {
        format!("[[routes]]\ntopic = \"x\"\nservice = \"s\"\npath = \"/x\"\n{options}\n")
    };
    for (options, expected) in [
        (
            "method = \"POST\"\ncoalesce = true",
            "coalesce is for GET routes",
        ),
        ("coalesce_across_callers = true", "needs coalesce = true"),
        (
            "chunked_replies = \"sometimes\"",
            "on_request, always or never",
        ),
        (
            "deadline_header = \"bad header\"",
            "not an HTTP header name",
        ),
        (
            "deadline_header = \"x-request-id\"",
            "the gateway sets itself",
        ),
        ("deadline_header = \"X-User-Id\"", "the gateway sets itself"),
    ] {
        let error = parse_text(&route(options)).expect_err(options);
        assert!(error.contains(expected), "{options}: {error}");
        assert!(error.starts_with("test.toml:1:"), "{error}");
    }
}
