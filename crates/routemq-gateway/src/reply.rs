use bytes::Bytes;
use serde_json::{json, Value};

use crate::{GatewayError, ReplyAddress};

/// What the gateway answers: an HTTP-style status, a JSON body and the reply
/// user properties beyond `status` and `x-request-id`.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The reference's success envelope.
    pub fn success(
        status: u16,
        data: Value,
        request_id: &str,
        service: &str,
        seconds: f64,
    ) -> Reply {
        Reply {
            status,
            body: json!({
                "status": "success",
                "data": data,
                "request_id": request_id,
                "service": service,
                "processing_time": seconds,
            }),
        }
    }

    /// A reply whose body is exactly `body` (the built-in gateway routes).
    pub fn raw(status: u16, body: Value) -> Reply {
        Reply { status, body }
    }

    /// The error envelope: `error: {code, type, message}`.
    pub fn error(error: &GatewayError, request_id: &str, service: Option<&str>) -> Reply {
        let mut body = json!({
            "status": "error",
            "error": {
                "code": error.status(),
                "type": error.kind.type_name(),
                "message": error.message,
            },
            "request_id": request_id,
        });
        if let Some(service) = service {
            body["service"] = json!(service);
        }
        if let Some(upstream_body) = &error.upstream_body {
            body["data"] = upstream_body.clone();
        }
        Reply {
            status: error.status(),
            body,
        }
    }
}

/// A reply ready to publish.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub topic: String,
    pub correlation_data: Option<Bytes>,
    pub payload: Bytes,
    pub user_properties: Vec<(String, String)>,
    pub status: u16,
}

impl Outbound {
    pub(crate) fn new(address: ReplyAddress, mut reply: Reply, request_id: &str) -> Outbound {
        if address.from_payload {
            if let (Some(correlation), Some(body)) =
                (&address.correlation_data, reply.body.as_object_mut())
            {
                body.insert(
                    "correlation_id".into(),
                    Value::String(String::from_utf8_lossy(correlation).into_owned()),
                );
            }
        }
        let payload = serde_json::to_vec(&reply.body).unwrap_or_else(|_| b"{}".to_vec());
        Outbound {
            topic: address.topic,
            correlation_data: if address.from_payload {
                None
            } else {
                address.correlation_data
            },
            payload: Bytes::from(payload),
            user_properties: vec![
                ("status".into(), reply.status.to_string()),
                ("x-request-id".into(), request_id.to_string()),
            ],
            status: reply.status,
        }
    }
}
