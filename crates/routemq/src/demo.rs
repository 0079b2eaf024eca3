//! Demo microservices for the quickstart, the tests and the load tests: small
//! HTTP JSON services whose every reply names the instance that served it.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The services of the reference design.
pub const DEMO_SERVICES: &[&str] = &[
    "user-service",
    "order-service",
    "payment-service",
    "notification-service",
    "user-service-v2",
    "order-service-v2",
];

#[derive(Clone)]
struct Identity {
    service: String,
    instance: String,
}

/// A running demo instance.
#[derive(Debug, Clone)]
pub struct DemoInstance {
    pub service: String,
    pub instance_id: String,
    pub addr: SocketAddr,
    /// The host name others reach it by, when not its bind address (containers).
    pub advertised_host: Option<String>,
}

impl DemoInstance {
    pub fn url(&self) -> String {
        match &self.advertised_host {
            Some(host) => format!("http://{host}:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }
}

/// Binds one instance (port 0 picks a free one) and serves it until `stop`.
pub async fn start_instance(
    service: &str,
    instance_id: &str,
    bind: SocketAddr,
    stop: CancellationToken,
) -> std::io::Result<DemoInstance> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let identity = Identity {
        service: service.to_string(),
        instance: instance_id.to_string(),
    };
    let app = Router::new()
        .route("/health", get(health))
        .fallback(echo)
        .with_state(identity);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "demo service stopped");
        }
    });
    Ok(DemoInstance {
        service: service.to_string(),
        instance_id: instance_id.to_string(),
        addr,
        advertised_host: None,
    })
}

async fn health(State(identity): State<Identity>) -> Json<Value> {
    Json(json!({"status": "ok", "service": identity.service, "instance": identity.instance}))
}

/// Answers any path with what it received: resource-style POSTs get 201.
async fn echo(
    State(identity): State<Identity>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let received: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // Identity headers as the upstream sees them: only what the gateway asserted.
    let identity_headers: HashMap<&str, &str> = headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name.starts_with("x-user-")
                || name.starts_with("x-consumer-")
                || name.starts_with("x-authenticated-")
        })
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let status = if method == Method::POST {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let reply = json!({
        "service": identity.service,
        "instance": identity.instance,
        "method": method.as_str(),
        "path": uri.path(),
        "query": query,
        "request_id": header("x-request-id"),
        "gateway_service": header("x-gateway-service"),
        "user_id": header("x-user-id"),
        "identity_headers": identity_headers,
        "accept_language": header("accept-language"),
        "received": received,
    });
    (status, Json(reply))
}
