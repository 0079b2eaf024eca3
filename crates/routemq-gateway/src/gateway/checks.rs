//! Bounds every request must stay within before any work is done on it.

use routemq_router::Params;

use super::Gateway;
use crate::{ErrorKind, GatewayError, Headers, Inbound};

impl Gateway {
    pub(super) fn check_limits(
        &self,
        inbound: &Inbound,
        headers: &Headers,
    ) -> Result<(), GatewayError> {
        let limits = &self.limits;
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

    pub(super) fn check_params(&self, params: &Params<'_>) -> Result<(), GatewayError> {
        for (name, value) in params.iter() {
            if value.len() > self.limits.max_param_bytes {
                return Err(GatewayError::new(
                    ErrorKind::InvalidParam,
                    format!(
                        "parameter `{name}` is longer than {} bytes",
                        self.limits.max_param_bytes
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
