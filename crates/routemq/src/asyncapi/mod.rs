//! `routemq asyncapi CONFIG`: the route table as an AsyncAPI 3.0 document,
//! written from the client's side — the client sends each request on its
//! route's channel and receives the reply on the Response Topic it named,
//! matched by its Correlation Data.
//!
//! Built as JSON values (`serde_json`) and printed as YAML
//! (`serde_norway`): the document is data, and the official tooling
//! (`@asyncapi/parser`, run by `.ci/run`) is what validates it.

mod envelopes;

use serde_json::{json, Map, Value};

use routemq_client::BrokerTransport;
use routemq_gateway::middleware::{AuthMethod, Contract, MiddlewareConfigs};
use routemq_gateway::{ErrorKind, RouteTarget};
use routemq_router::Route;

use crate::config::WorkerConfig;

/// The AsyncAPI document of `config`, as YAML, its sections in the
/// order readers expect (JSON objects below them sort their keys).
pub fn document_yaml(config: &WorkerConfig) -> Result<String, String> {
    let document = document(config);
    let ordered = Document {
        asyncapi: &document["asyncapi"],
        info: &document["info"],
        default_content_type: &document["defaultContentType"],
        servers: &document["servers"],
        channels: &document["channels"],
        operations: &document["operations"],
        components: &document["components"],
    };
    serde_norway::to_string(&ordered).map_err(|error| error.to_string())
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    asyncapi: &'a Value,
    info: &'a Value,
    default_content_type: &'a Value,
    servers: &'a Value,
    channels: &'a Value,
    operations: &'a Value,
    components: &'a Value,
}

/// The AsyncAPI document of `config`.
pub fn document(config: &WorkerConfig) -> Value {
    let gateway = &config.gateway;
    let mut channels = Map::new();
    let mut operations = Map::new();
    for route in gateway.routes.routes() {
        let id = channel_id(&route.pattern.to_string());
        let contracts = contracts(route, &gateway.middleware);
        channels.insert(id.clone(), request_channel(route));
        channels.insert(format!("{id}Reply"), reply_channel());
        operations.insert(id.clone(), operation(&id, route, &contracts));
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "RouteMQ Gateway",
            "version": gateway.version,
            "description": envelopes::DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": { "broker": server(config) },
        "channels": channels,
        "operations": operations,
        "components": envelopes::components(),
    })
}

/// A channel or operation id from a route pattern: `api/v1/users/get/{user_id}`
/// → `api_v1_users_get_user_id` (ids must be plain keys).
fn channel_id(pattern: &str) -> String {
    let id: String = pattern
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut squeezed = String::with_capacity(id.len());
    for c in id.chars() {
        if !(c == '_' && squeezed.ends_with('_')) {
            squeezed.push(c);
        }
    }
    squeezed.trim_matches('_').to_string()
}

fn server(config: &WorkerConfig) -> Value {
    let mqtt = &config.mqtt;
    let (protocol, host) = match mqtt.transport {
        BrokerTransport::Tcp => ("mqtt", format!("{}:{}", mqtt.host, mqtt.port)),
        BrokerTransport::Tls => ("mqtts", format!("{}:{}", mqtt.host, mqtt.port)),
        // For WebSocket the host is the whole URL (rumqttc's convention).
        BrokerTransport::Ws => ("ws", ws_host(&mqtt.host)),
        BrokerTransport::Wss => ("wss", ws_host(&mqtt.host)),
    };
    json!({
        "host": host,
        "protocol": protocol,
        "protocolVersion": "5.0",
        "description": "The broker the workers share requests through (the config's mqtt.url); clients connect with MQTT 5 (or 3.1.1, see the info).",
    })
}

fn ws_host(url: &str) -> String {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    without_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn request_channel(route: &Route<RouteTarget>) -> Value {
    let mut parameters = Map::new();
    for name in route.pattern.param_names() {
        parameters.insert(
            name.to_string(),
            json!({ "description": format!("One topic level: `{name}` of the upstream path.") }),
        );
    }
    let mut channel = json!({
        "address": route.pattern.to_string(),
        "messages": { "request": { "$ref": "#/components/messages/request" } },
    });
    if !parameters.is_empty() {
        channel["parameters"] = Value::Object(parameters);
    }
    channel
}

/// Where replies arrive: the Response Topic the request named.
fn reply_channel() -> Value {
    json!({
        "address": null,
        "description": "The request's Response Topic (or payload reply_to). The reply-topic allowlist ([replies] allow) decides which topics a caller may name.",
        "messages": {
            "success": { "$ref": "#/components/messages/success" },
            "error": { "$ref": "#/components/messages/error" },
        },
    })
}

/// What each middleware of the route's chain means to its callers.
fn contracts(
    route: &Route<RouteTarget>,
    middleware: &MiddlewareConfigs,
) -> Vec<(String, Contract)> {
    route
        .middleware
        .iter()
        .map(|name| {
            let contract = middleware
                .get(name)
                .map(|config| config.contract())
                .unwrap_or_default();
            (name.clone(), contract)
        })
        .collect()
}

fn operation(id: &str, route: &Route<RouteTarget>, contracts: &[(String, Contract)]) -> Value {
    let mut operation = json!({
        "action": "send",
        "channel": { "$ref": format!("#/channels/{id}") },
        "summary": summary(route),
        "description": chain_description(contracts),
        "messages": [ { "$ref": format!("#/channels/{id}/messages/request") } ],
        "reply": {
            "address": {
                "location": "$message.header#/responseTopic",
                "description": "The MQTT 5 Response Topic of the request.",
            },
            "channel": { "$ref": format!("#/channels/{id}Reply") },
            "messages": [
                { "$ref": format!("#/channels/{id}Reply/messages/success") },
                { "$ref": format!("#/channels/{id}Reply/messages/error") },
            ],
        },
        "bindings": { "mqtt": { "qos": route.qos as u8, "retain": false, "bindingVersion": "0.2.0" } },
        "x-routemq-errors": route_errors(route, contracts),
    });
    let security = security(contracts);
    if !security.is_empty() {
        operation["security"] = Value::Array(security);
    }
    if let Some(forward) = route.target.forward() {
        operation["x-routemq-chunked-replies"] = json!(forward.chunked_replies.name());
        if let Some(coalesce) = forward.coalesce {
            operation["x-routemq-coalesce"] = json!(coalesce.name());
        }
    }
    operation
}

fn summary(route: &Route<RouteTarget>) -> String {
    match &route.target {
        RouteTarget::Forward(forward) => {
            format!("{} {} on {}", forward.method, forward.path, forward.service)
        }
        RouteTarget::Builtin(builtin) => format!("the gateway's own `{}`", builtin.name()),
    }
}

fn chain_description(contracts: &[(String, Contract)]) -> String {
    if contracts.is_empty() {
        return "No middleware: the request goes straight to its target.".into();
    }
    let lines: Vec<String> = contracts
        .iter()
        .map(|(name, contract)| match contract.kind {
            Some(kind) => format!("- `{name}` ({kind}): {}", contract.effect),
            None => format!("- `{name}`: a custom middleware kind; see its own documentation."),
        })
        .collect();
    format!("Middleware, in the order they run:\n{}", lines.join("\n"))
}

/// The credentials the chain requires: every auth middleware must pass, so
/// a caller needs a method each of them accepts.
fn security(contracts: &[(String, Contract)]) -> Vec<Value> {
    let mut accepted: Option<Vec<AuthMethod>> = None;
    for (_, contract) in contracts.iter().filter(|(_, c)| !c.credentials.is_empty()) {
        accepted = Some(match accepted {
            None => contract.credentials.clone(),
            Some(methods) => methods
                .into_iter()
                .filter(|method| contract.credentials.contains(method))
                .collect(),
        });
    }
    accepted
        .unwrap_or_default()
        .into_iter()
        .map(|method| {
            let scheme = match method {
                AuthMethod::Jwt => "bearerJwt",
                AuthMethod::ApiKey => "apiKey",
            };
            json!({ "$ref": format!("#/components/securitySchemes/{scheme}") })
        })
        .collect()
}

/// The error types a request on this route may get: the ones every route
/// can (bad input, deadlines, the upstream) and its middleware's own.
fn route_errors(route: &Route<RouteTarget>, contracts: &[(String, Contract)]) -> Vec<&'static str> {
    let mut kinds: Vec<ErrorKind> = envelopes::ANY_ROUTE.to_vec();
    if route.target.forward().is_some() {
        kinds.extend(envelopes::FORWARDED);
    }
    for (_, contract) in contracts {
        kinds.extend(contract.errors.iter().copied());
    }
    let mut names: Vec<&'static str> = kinds.into_iter().map(ErrorKind::type_name).collect();
    names.sort_unstable();
    names.dedup();
    names
}

#[cfg(test)]
mod tests;
