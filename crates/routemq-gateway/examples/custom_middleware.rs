//! A custom middleware: refuse requests without an `x-tenant` user property,
//! and pass the tenant on to the upstream in the body. Run it with
//! `cargo run -p routemq-gateway --example custom_middleware`.
//!
//! A worker builds chains from configuration; this example drives one chain
//! by hand to show the phases a middleware can implement.

use routemq_gateway::middleware::{Chain, Flow, Middleware, RequestContext};
use routemq_gateway::{ErrorKind, GatewayError, Headers};
use routemq_router::{Group, Qos, RouteTable};
use serde_json::{json, Value};
use std::sync::Arc;

struct RequireTenant;

impl Middleware for RequireTenant {
    fn name(&self) -> &str {
        "require_tenant"
    }

    /// Runs in chain order before anything is sent upstream; an error becomes the reply.
    fn request_filter(&self, ctx: &mut RequestContext<'_>) -> Result<Flow, GatewayError> {
        let Some(tenant) = ctx.headers.get("x-tenant") else {
            return Err(GatewayError::new(
                ErrorKind::Forbidden,
                "the x-tenant user property is required",
            ));
        };
        if let Some(body) = ctx.body.as_object_mut() {
            body.insert("tenant".into(), Value::String(tenant.to_string()));
        }
        Ok(Flow::Continue)
    }
}

fn run(chain: &Chain, properties: &[(&str, &str)]) {
    let table = RouteTable::build(Group::root().route("api/orders/{id}", Qos::AtLeastOnce, ()))
        .expect("one route");
    let found = table.find("api/orders/7").expect("matches");
    let headers = Headers::from_properties(
        &properties
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect::<Vec<_>>(),
    );
    let mut ctx = RequestContext {
        request_id: "example-1",
        topic: "api/orders/7",
        params: &found.params,
        headers: &headers,
        response_topic: Some("clients/42/replies"),
        route: None,
        body: json!({"quantity": 2}),
        identity: None,
        reply_properties: Vec::new(),
    };
    match chain.request_filter(&mut ctx) {
        Ok(_) => println!("forwarded with body {}", ctx.body),
        Err(error) => println!("answered {} {}", error.status(), error),
    }
}

fn main() {
    let chain = Chain::new(vec![Arc::new(RequireTenant)]);
    run(&chain, &[]);
    run(&chain, &[("x-tenant", "acme")]);
}
