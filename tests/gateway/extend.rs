//! Extending the gateway: a user's own middleware kind running in a real
//! worker (the `custom_middleware` example binary), and the response side
//! of transformation.

use std::path::Path;

use routemq_tests::{upstream, Worker};
use serde_json::json;

use crate::mw::ask_with;
use crate::stack::{ask, error_type, Stack};

const EXAMPLE_BIN: &str = env!("CARGO_BIN_EXE_custom-middleware-example");

const TENANT_ROUTES: &str = r#"
[middleware.tenant]
kind = "require_tenant"
property = "x-tenant"

[[routes]]
topic = "api/orders/create"
service = "order-service"
method = "POST"
path = "/orders"
middleware = ["tenant"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_own_middleware_kind_runs_in_a_real_worker() {
    let mut stack = Stack::start_with(0, 1, TENANT_ROUTES, false, &[]).await;
    stack.demo_instances("order-service", 1).await;
    // The example binary: the whole CLI with one kind registered beside the built-in ones.
    let worker = Worker::start_with_env(
        Path::new(EXAMPLE_BIN),
        &stack.config,
        "custom-0",
        &stack.mosquitto.url(),
        &stack.store.url(),
        &[],
    );
    stack.workers.push(worker);
    let client = stack.client().await;

    let refused = ask(&client, "api/orders/create", r#"{"item": "tea"}"#).await;
    assert_eq!(refused.status, 403, "{}", refused.json());
    assert_eq!(error_type(&refused), "forbidden");

    let accepted = ask_with(
        &client,
        "api/orders/create",
        r#"{"item": "tea"}"#,
        &[("x-tenant", "acme")],
    )
    .await;
    assert_eq!(accepted.status, 201, "{}", accepted.json());
    assert_eq!(
        accepted.json()["data"]["received"],
        json!({"item": "tea", "tenant": "acme"}),
        "the kind's request filter rewrote the body"
    );

    // The stock binary does not know the kind, and says which it knows.
    let stock = routemq_tests::routemq(
        Path::new(crate::stack::BIN),
        &["check-config", &stack.config.display().to_string()],
        &stack.store.url(),
    )
    .expect_err("unknown kind");
    assert!(
        stock.contains("unknown middleware kind `require_tenant`"),
        "{stock}"
    );
}

const RESPONSE_ROUTES: &str = r#"
[middleware.v2_response]
kind = "response_transform"
rename = { user_id = "caller" }
remove = ["instance"]
set = { api_version = "v2", echoed = "{id}" }

[[groups]]
prefix = "api/v2"
middleware = ["v2_response"]
routes = [
  { topic = "users/get/{id}", service = "user-service", method = "GET", path = "/v2/users/{id}" },
  { topic = "ghost/{id}",     service = "ghost-service", method = "GET", path = "/x" },
  { topic = "e404/{id}",      service = "e404-service",  method = "GET", path = "/x" },
]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_transform_rewrites_the_upstreams_reply_and_never_an_error() {
    let mut stack = Stack::start_with(0, 1, RESPONSE_ROUTES, false, &[]).await;
    stack.demo_instances("user-service", 1).await;
    stack
        .register("e404-service", "e404-1", upstream::fixed_status(404).await)
        .await;
    stack.add_worker("worker-0");
    let client = stack.client().await;

    let reply = ask(&client, "api/v2/users/get/7", "").await;
    assert_eq!(reply.status, 200, "{}", reply.json());
    let data = &reply.json()["data"];
    assert_eq!(data["api_version"], "v2");
    assert_eq!(data["echoed"], "7", "set values render topic params");
    assert_eq!(data["path"], "/v2/users/7");
    assert!(data.get("instance").is_none(), "{data}");
    assert!(
        data.get("user_id").is_none() && data.get("caller").is_some(),
        "{data}"
    );

    // The gateway's own error envelope is never rewritten …
    let missing = ask(&client, "api/v2/ghost/7", "").await;
    assert_eq!(missing.status, 503, "{}", missing.json());
    assert!(missing.json().get("api_version").is_none());
    assert!(missing.json()["error"].get("api_version").is_none());
    // … nor an upstream's refusal.
    let refused = ask(&client, "api/v2/e404/7", "").await;
    assert_eq!(refused.status, 404, "{}", refused.json());
    let body = refused.json().to_string();
    assert!(!body.contains("api_version"), "{body}");
    assert!(body.contains("fixed 404"), "{body}");
}

/// `routemq asyncapi` publishes what a user's own kind says of itself.
#[test]
fn a_users_own_kind_is_published_in_the_asyncapi_document() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = routemq_tests::write_config(dir.path(), 1, TENANT_ROUTES);
    let config = config.to_str().expect("a UTF-8 path");
    let document = routemq_tests::routemq(Path::new(EXAMPLE_BIN), &["asyncapi", config], "")
        .expect("the document");
    assert!(
        document.contains("address: api/orders/create"),
        "{document}"
    );
    assert!(
        document.contains(
            "`tenant` (require_tenant): requires the x-tenant user property and passes it upstream as the body's `tenant`"
        ),
        "{document}"
    );
}
