use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use routemq_router::is_mqtt_string;

use crate::{GatewayError, ReplyAddress};

/// What the gateway answers: an HTTP-style status and the JSON payload,
/// already encoded so the upstream's body is copied, not parsed and rebuilt.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub payload: Bytes,
    /// A stored reply sent again for a retried request.
    pub replayed: bool,
    /// Extra user properties for the reply (CORS, rate-limit counters, …).
    pub properties: Vec<(String, String)>,
}

/// Where a success reply's data came from when it was not the upstream itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The last good reply to the same request, cached.
    Cache,
    /// The `<service>-fallback` service.
    Fallback,
}

/// The reference's success envelope.
#[derive(Serialize)]
struct SuccessEnvelope<'a> {
    status: &'static str,
    data: &'a RawValue,
    request_id: &'a str,
    service: &'a str,
    processing_time: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Source>,
}

impl Reply {
    pub fn success(
        status: u16,
        data: &RawValue,
        request_id: &str,
        service: &str,
        seconds: f64,
    ) -> Reply {
        Reply::success_from(status, data, request_id, service, seconds, None)
    }

    /// A success envelope that says where its data came from (`source`).
    pub fn success_from(
        status: u16,
        data: &RawValue,
        request_id: &str,
        service: &str,
        seconds: f64,
        source: Option<Source>,
    ) -> Reply {
        let envelope = SuccessEnvelope {
            status: "success",
            data,
            request_id,
            service,
            processing_time: seconds,
            source,
        };
        Reply {
            status,
            payload: encode(&envelope),
            replayed: false,
            properties: Vec::new(),
        }
    }

    /// A reply whose body is exactly `body` (the built-in gateway routes).
    pub fn raw(status: u16, body: Value) -> Reply {
        Reply {
            status,
            payload: encode(&body),
            replayed: false,
            properties: Vec::new(),
        }
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
        let mut reply = Reply::raw(error.status(), body);
        reply.properties.clone_from(&error.properties);
        reply
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Bytes {
    // Serializing these types cannot fail: no maps with non-string keys, no I/O.
    Bytes::from(serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()))
}

/// A reply ready to publish.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub topic: String,
    pub correlation_data: Option<Bytes>,
    pub payload: Bytes,
    pub user_properties: Vec<(String, String)>,
    pub status: u16,
    /// With the topic and correlation data above, the address again, to
    /// build a smaller reply in its place (see [`Outbound::too_large`]): the
    /// correlation id the body echoes when the address came from the payload.
    payload_address: Option<Option<Bytes>>,
    request_id: String,
}

impl Outbound {
    /// The `502 reply_too_large` error that goes instead of a reply of
    /// `size` bytes the broker would not take (its limit is `limit`), so the
    /// caller still gets exactly one answer.
    pub fn too_large(&self, size: usize, limit: usize) -> Outbound {
        let error = GatewayError::new(
            crate::ErrorKind::ReplyTooLarge,
            format!("the reply of {size} bytes exceeds the broker's packet size of {limit}"),
        );
        let reply = Reply::error(&error, &self.request_id, None);
        let address = match &self.payload_address {
            Some(correlation_data) => ReplyAddress {
                topic: self.topic.clone(),
                correlation_data: correlation_data.clone(),
                from_payload: true,
            },
            None => ReplyAddress {
                topic: self.topic.clone(),
                correlation_data: self.correlation_data.clone(),
                from_payload: false,
            },
        };
        Outbound::new(address, reply, &self.request_id)
    }

    pub(crate) fn new(address: ReplyAddress, reply: Reply, request_id: &str) -> Outbound {
        let (payload, correlation_data, payload_address) = if address.from_payload {
            // MQTT 3.1.1 clients read the correlation id from the body.
            (
                with_correlation_id(reply.payload, address.correlation_data.as_deref()),
                None,
                Some(address.correlation_data),
            )
        } else {
            (reply.payload, address.correlation_data, None)
        };
        let mut user_properties = vec![
            ("status".into(), reply.status.to_string()),
            ("x-request-id".into(), request_id.to_string()),
        ];
        if reply.replayed {
            user_properties.push(("x-replayed".into(), "true".into()));
        }
        let before = user_properties.len() + reply.properties.len();
        // A header an upstream echoed (`location` reflecting a client's
        // query, say) can hold what MQTT forbids; one such property would
        // make the broker drop the connection with every reply on it.
        user_properties.extend(
            reply
                .properties
                .into_iter()
                .filter(|(name, value)| is_mqtt_string(name) && is_mqtt_string(value)),
        );
        let dropped = before - user_properties.len();
        if dropped > 0 {
            metrics::counter!("routemq_reply_properties_dropped_total").increment(dropped as u64);
            tracing::debug!(
                request_id,
                dropped,
                "reply properties MQTT cannot carry were dropped"
            );
        }
        Outbound {
            topic: address.topic,
            correlation_data,
            payload,
            user_properties,
            status: reply.status,
            payload_address,
            request_id: request_id.to_string(),
        }
    }
}

fn with_correlation_id(payload: Bytes, correlation: Option<&[u8]>) -> Bytes {
    let Some(correlation) = correlation else {
        return payload;
    };
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&payload) else {
        return payload;
    };
    body.insert(
        "correlation_id".into(),
        Value::String(String::from_utf8_lossy(correlation).into_owned()),
    );
    encode(&body)
}
