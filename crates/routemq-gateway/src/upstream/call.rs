use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::Method;

use super::{forward, UpstreamRequest, UpstreamResponse};
use crate::registry::Balancer;
use crate::{ErrorKind, GatewayError};

/// An upstream call with everything but the instance decided: built once per
/// request, then sent to the service (and, if that fails, to its fallback).
#[derive(Debug, Clone)]
pub struct PreparedCall {
    pub method: Method,
    /// Rendered and percent-encoded.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<Bytes>,
    pub headers: HeaderMap,
    pub timeout: Duration,
}

/// Sends prepared calls to round-robin-balanced healthy instances.
pub struct Forwarder {
    http: reqwest::Client,
    balancer: Arc<Balancer>,
    max_response_bytes: usize,
}

impl Forwarder {
    pub fn new(http: reqwest::Client, balancer: Arc<Balancer>, max_response_bytes: usize) -> Self {
        Forwarder {
            http,
            balancer,
            max_response_bytes,
        }
    }

    /// Calls one instance of `service`. A refused connection never reached
    /// the instance, so it alone is retried, once, on another instance.
    pub async fn call(
        &self,
        service: &str,
        call: &PreparedCall,
    ) -> Result<UpstreamResponse, GatewayError> {
        let mut refused_instance: Option<String> = None;
        loop {
            let instance = self
                .balancer
                .pick(service, refused_instance.as_deref())
                .await?;
            let request = UpstreamRequest {
                method: call.method.clone(),
                base_url: &instance.base_url,
                path: &call.path,
                query: &call.query,
                body: call.body.clone(),
                headers: call.headers.clone(),
                timeout: call.timeout,
                max_response_bytes: self.max_response_bytes,
            };
            // Boxed: the HTTP client's future is large, and moving it through every
            // enclosing state machine showed up as memcpy in profiles.
            match Box::pin(forward(&self.http, request)).await {
                Err(error)
                    if error.kind == ErrorKind::UpstreamUnavailable
                        && refused_instance.is_none() =>
                {
                    tracing::debug!(instance = %instance.instance_id, "connection refused, trying another instance");
                    refused_instance = Some(instance.instance_id.clone());
                }
                result => return result,
            }
        }
    }

    /// Whether `service` has a healthy instance right now (registry cache, no I/O).
    pub fn has_healthy_instance(&self, service: &str) -> bool {
        self.balancer.has_healthy_instance(service)
    }
}
