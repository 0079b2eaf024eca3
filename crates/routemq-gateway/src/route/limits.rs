//! Bounds every request must stay within before any work is done on it:
//! beyond them it gets a typed error, before anything runs.

use routemq_router::Params;

use crate::upstream::BodyLimits;
use crate::{ErrorKind, GatewayError, Headers, Inbound};

/// Bounds on what a request may carry; beyond them it gets a typed error.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_payload_bytes: usize,
    pub max_user_properties: usize,
    /// Sum of user-property names and values.
    pub max_header_bytes: usize,
    pub max_param_bytes: usize,
    pub max_response_bytes: usize,
    /// An upstream body for a caller that takes chunked replies.
    pub max_chunked_reply_bytes: usize,
    /// Bodies over `max_response_bytes` a worker holds at once.
    pub max_large_replies: usize,
    /// Request and reply topics; a longer request topic gets 400, a longer
    /// reply topic is refused.
    pub max_topic_bytes: usize,
    /// Levels of a reply topic: a deeper one is refused before anything
    /// runs (Mosquitto disconnects a publisher beyond 200, EMQX's default
    /// `max_topic_levels` is 128).
    pub max_topic_levels: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 256 * 1024,
            max_user_properties: 64,
            max_header_bytes: 16 * 1024,
            max_param_bytes: 256,
            max_response_bytes: 4 * 1024 * 1024,
            max_chunked_reply_bytes: 16 * 1024 * 1024,
            max_large_replies: 4,
            max_topic_bytes: 512,
            max_topic_levels: 128,
        }
    }
}

impl Limits {
    /// The bounds of an upstream response body.
    pub fn body_limits(&self) -> BodyLimits {
        BodyLimits {
            max_response_bytes: self.max_response_bytes,
            max_chunked_reply_bytes: self.max_chunked_reply_bytes,
            max_large_replies: self.max_large_replies,
        }
    }

    pub(crate) fn check_request(
        &self,
        inbound: &Inbound,
        headers: &Headers,
    ) -> Result<(), GatewayError> {
        let limits = self;
        if inbound.topic.len() > limits.max_topic_bytes {
            return Err(GatewayError::new(
                ErrorKind::InvalidTopic,
                format!(
                    "topic of {} bytes exceeds the limit of {}",
                    inbound.topic.len(),
                    limits.max_topic_bytes
                ),
            ));
        }
        if inbound.payload.len() > limits.max_payload_bytes {
            return Err(GatewayError::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "payload of {} bytes exceeds the limit of {}",
                    inbound.payload.len(),
                    limits.max_payload_bytes
                ),
            ));
        }
        if headers.len() > limits.max_user_properties {
            return Err(GatewayError::new(
                ErrorKind::HeadersTooLarge,
                format!(
                    "{} user properties exceed the limit of {}",
                    headers.len(),
                    limits.max_user_properties
                ),
            ));
        }
        let header_bytes: usize = headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        if header_bytes > limits.max_header_bytes {
            return Err(GatewayError::new(
                ErrorKind::HeadersTooLarge,
                format!(
                    "user properties of {header_bytes} bytes exceed the limit of {}",
                    limits.max_header_bytes
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn check_params(&self, params: &Params<'_>) -> Result<(), GatewayError> {
        for (name, value) in params.iter() {
            if value.len() > self.max_param_bytes {
                return Err(GatewayError::new(
                    ErrorKind::InvalidParam,
                    format!(
                        "parameter `{name}` is longer than {} bytes",
                        self.max_param_bytes
                    ),
                ));
            }
            if value.chars().any(char::is_control) {
                return Err(GatewayError::new(
                    ErrorKind::InvalidParam,
                    format!("parameter `{name}` contains control characters"),
                ));
            }
        }
        Ok(())
    }
}
