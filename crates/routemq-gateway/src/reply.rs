use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use routemq_router::is_mqtt_string;

use crate::upstream::LargeReply;
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
    /// The worker's slot for a body over `max_response_bytes`, held until
    /// the reply is written.
    pub large: Option<LargeReply>,
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

/// The reference's error envelope; fields in the order `json!` wrote them
/// before (alphabetical), so replies stay byte for byte what they were.
#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    error: ErrorBody<'a>,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    status: &'static str,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: u16,
    message: &'a str,
    r#type: &'a str,
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
            large: None,
        }
    }

    /// A reply whose body is exactly `body` (the built-in gateway routes).
    pub fn raw(status: u16, body: Value) -> Reply {
        Reply {
            status,
            payload: encode(&body),
            replayed: false,
            properties: Vec::new(),
            large: None,
        }
    }

    /// The error envelope: `error: {code, type, message}`.
    pub fn error(error: &GatewayError, request_id: &str, service: Option<&str>) -> Reply {
        let envelope = ErrorEnvelope {
            data: error.upstream_body.as_deref(),
            error: ErrorBody {
                code: error.status(),
                message: &error.message,
                r#type: error.kind.type_name(),
            },
            request_id,
            service,
            status: "error",
        };
        Reply {
            status: error.status(),
            payload: encode(&envelope),
            replayed: false,
            properties: error.properties.clone(),
            large: None,
        }
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Bytes {
    // Serializing these types cannot fail: no maps with non-string keys, no I/O.
    Bytes::from(serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()))
}

/// A reply ready to publish, with its address kept whole (so a smaller
/// reply can go in its place, see [`Outbound::too_large`]).
#[derive(Debug, Clone)]
pub struct Outbound {
    pub address: ReplyAddress,
    pub payload: Bytes,
    pub user_properties: Vec<(String, String)>,
    pub status: u16,
    /// The caller takes this reply in chunks, in packets of at most this
    /// many bytes (`usize::MAX`: as large as the broker takes), when one
    /// packet would be larger; `None`: whole or `502 reply_too_large`.
    pub chunks: Option<usize>,
    /// See [`Reply::large`].
    pub large: Option<LargeReply>,
    request_id: String,
}

impl Outbound {
    /// The `502 reply_too_large` error that goes instead of a reply of
    /// `size` bytes the broker would not take (its limit is `limit`), so the
    /// caller still gets exactly one answer.
    pub fn too_large(&self, size: usize, limit: usize) -> Outbound {
        let error = GatewayError::new(
            crate::ErrorKind::ReplyTooLarge,
            format!(
                "the reply of {size} bytes exceeds the largest packet it may go in ({limit} bytes)"
            ),
        );
        let reply = Reply::error(&error, &self.request_id, None);
        Outbound::new(self.address.clone(), reply, &self.request_id)
    }

    /// The topic the reply is published to.
    pub fn topic(&self) -> &str {
        &self.address.topic
    }

    /// The MQTT 5 Correlation Data property: the request's, unless its
    /// address came from the payload (then the body carries the id).
    pub fn correlation_data(&self) -> Option<&Bytes> {
        match self.address.from_payload {
            true => None,
            false => self.address.correlation_data.as_ref(),
        }
    }

    pub fn new(address: ReplyAddress, reply: Reply, request_id: &str) -> Outbound {
        let payload = match address.from_payload {
            // MQTT 3.1.1 clients read the correlation id from the body.
            true => with_correlation_id(reply.payload, address.correlation_data.as_deref()),
            false => reply.payload,
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
            address,
            payload,
            user_properties,
            status: reply.status,
            chunks: None,
            large: reply.large,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Reply;
    use crate::{ErrorKind, GatewayError};

    /// The envelope is the reference's, byte for byte as `json!` wrote it
    /// (keys in alphabetical order), with an upstream body copied in as it came.
    #[test]
    fn an_error_envelope_carries_the_upstream_body_as_it_came() {
        let mut error =
            GatewayError::new(ErrorKind::UpstreamRejected(404), "upstream answered 404");
        let body = r#"{"detail":"no such user","id":[4,2]}"#;
        error.upstream_body = serde_json::value::RawValue::from_string(body.into()).ok();
        let reply = Reply::error(&error, "req-1", Some("user-service"));
        let expected = json!({
            "status": "error",
            "error": {"code": 404, "type": error.kind.type_name(), "message": error.message},
            "request_id": "req-1",
            "service": "user-service",
            "data": {"detail": "no such user", "id": [4, 2]},
        });
        assert_eq!(reply.payload, serde_json::to_vec(&expected).expect("json"));
        assert_eq!(reply.status, 404);

        let plain = Reply::error(
            &GatewayError::new(ErrorKind::RouteNotFound, "no"),
            "r",
            None,
        );
        let expected = json!({
            "status": "error",
            "error": {"code": 404, "type": "route_not_found", "message": "no"},
            "request_id": "r",
        });
        assert_eq!(plain.payload, serde_json::to_vec(&expected).expect("json"));
    }
}
