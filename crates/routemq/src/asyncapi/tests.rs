use serde_json::Value;

use super::{channel_id, document};
use crate::config::parse;

const SHIPPED: &str = include_str!("../../../../deploy/gateway.toml");

/// The shipped config, with the JWT secret it names in the environment.
fn shipped_config() -> crate::config::WorkerConfig {
    let env = |name: &str| {
        (name == "ROUTEMQ_JWT_HS256_SECRET").then(|| "test-secret-test-secret-test-secret".into())
    };
    parse(SHIPPED, "gateway.toml", &env).expect("the shipped config")
}

fn shipped() -> Value {
    document(&shipped_config())
}

#[test]
fn every_route_is_a_channel_with_its_parameters_and_an_operation_with_a_reply() {
    let doc = shipped();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let channel = &doc["channels"]["api_v1_users_get_user_id"];
    assert_eq!(channel["address"], "api/v1/users/get/{user_id}");
    assert!(channel["parameters"]["user_id"].is_object());
    let operation = &doc["operations"]["api_v1_users_get_user_id"];
    assert_eq!(operation["action"], "send");
    assert_eq!(operation["summary"], "GET /users/{user_id} on user-service");
    assert_eq!(
        operation["reply"]["address"]["location"],
        "$message.header#/responseTopic"
    );
    assert_eq!(operation["bindings"]["mqtt"]["qos"], 1);
    let routes = doc["operations"].as_object().expect("operations").len();
    assert_eq!(routes, 21, "one operation per route of the reference table");
}

#[test]
fn security_and_errors_follow_each_routes_chain() {
    let doc = shipped();
    let users = &doc["operations"]["api_v1_users_get_user_id"];
    let schemes: Vec<&str> = users["security"]
        .as_array()
        .expect("a secured route")
        .iter()
        .filter_map(|scheme| scheme["$ref"].as_str())
        .collect();
    assert_eq!(
        schemes,
        [
            "#/components/securitySchemes/bearerJwt",
            "#/components/securitySchemes/apiKey"
        ]
    );
    let errors = users["x-routemq-errors"].as_array().expect("errors");
    for expected in [
        "rate_limited",
        "unauthorized",
        "circuit_open",
        "no_healthy_instance",
    ] {
        assert!(
            errors.iter().any(|e| e == expected),
            "{expected}: {errors:?}"
        );
    }
    let health = &doc["operations"]["gateway_health"];
    assert!(health.get("security").is_none(), "public");
    let errors = health["x-routemq-errors"].as_array().expect("errors");
    assert!(!errors.iter().any(|e| e == "no_healthy_instance"));
}

#[test]
fn channel_ids_are_plain_keys() {
    assert_eq!(channel_id("api/v2/users/{action}"), "api_v2_users_action");
    assert_eq!(channel_id("gateway/health"), "gateway_health");
}

/// `docs/asyncapi.yaml` is what `routemq asyncapi deploy/gateway.toml` prints.
#[test]
fn the_published_document_is_current() {
    let generated = super::document_yaml(&shipped_config()).expect("yaml");
    let published = include_str!("../../../../docs/asyncapi.yaml");
    assert!(
        generated == published,
        "docs/asyncapi.yaml is stale: run `cargo run -p routemq -- asyncapi deploy/gateway.toml > docs/asyncapi.yaml`"
    );
}
