use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::{ErrorKind, GatewayError};

/// A PUBLISH as the MQTT runtime received it, before any validation.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// Raw topic bytes: the gateway, not the runtime, decides what is valid.
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: u8,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(String, String)>,
    /// MQTT 5 Message Expiry Interval as delivered (the broker has already
    /// subtracted the time the message waited).
    pub message_expiry: Option<Duration>,
    pub received_at: Instant,
}

impl Inbound {
    /// The point after which the client no longer waits for an answer.
    pub fn deadline(&self) -> Option<Instant> {
        self.message_expiry.map(|expiry| self.received_at + expiry)
    }
}

/// Where a reply goes: the MQTT 5 Response Topic and Correlation Data, or
/// their JSON-payload equivalents for MQTT 3.1.1 clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyAddress {
    pub topic: String,
    pub correlation_data: Option<Bytes>,
    /// True when the address came from the payload (`reply_to`), so the
    /// correlation id is echoed in the reply body too.
    pub from_payload: bool,
}

/// Request headers: MQTT 5 user properties with lower-cased names. Lookups
/// return the first value, so a repeated property cannot override an earlier one.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    pairs: Vec<(String, String)>,
}

impl Headers {
    pub fn from_properties(properties: &[(String, String)]) -> Self {
        Headers {
            pairs: properties
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A request id is echoed into logs, upstream headers and replies, so only a
/// short run of safe characters is accepted from the client.
pub(crate) fn is_acceptable_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// An empty payload is an empty object, so bodiless requests (`get`, `list`) need no `{}`.
pub(crate) fn parse_payload(payload: &[u8]) -> Result<Value, GatewayError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(payload).map_err(|error| {
        GatewayError::new(
            ErrorKind::InvalidJson,
            format!("payload is not valid JSON: {error}"),
        )
    })
}

/// MQTT 3.1.1 clients have no Response Topic: they put `reply_to` and
/// `correlation_id` in the payload, which are removed before forwarding.
pub(crate) fn take_payload_address(body: &mut Value) -> Option<ReplyAddress> {
    let object = body.as_object_mut()?;
    let Some(Value::String(topic)) = object.remove("reply_to") else {
        return None;
    };
    let correlation_data = match object.remove("correlation_id") {
        Some(Value::String(id)) => Some(Bytes::from(id)),
        Some(Value::Number(number)) => Some(Bytes::from(number.to_string())),
        _ => None,
    };
    Some(ReplyAddress {
        topic,
        correlation_data,
        from_payload: true,
    })
}

/// Bodiless methods carry a JSON object's scalar fields as the query string.
pub(crate) fn query_pairs(body: &Value) -> Vec<(String, String)> {
    let Some(object) = body.as_object() else {
        return Vec::new();
    };
    object
        .iter()
        .filter_map(|(key, value)| match value {
            Value::String(text) => Some((key.clone(), text.clone())),
            Value::Number(number) => Some((key.clone(), number.to_string())),
            Value::Bool(flag) => Some((key.clone(), flag.to_string())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
