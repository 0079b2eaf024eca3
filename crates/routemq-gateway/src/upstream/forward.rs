use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::Url;
use serde_json::value::RawValue;

use super::body::{encoded_body, LargeReplies, LargeReply};
use super::http_error::classify;
use super::prepared::PreparedCall;
use crate::{ErrorKind, GatewayError};

/// One attempt: a prepared call sent to one upstream instance.
#[derive(Debug)]
pub struct UpstreamRequest<'a> {
    pub call: &'a PreparedCall,
    /// The instance's parsed base URL (parsed once per registry refresh, not per request).
    pub base_url: &'a Url,
    /// The call's headers with this attempt's trace context and deadline.
    pub headers: HeaderMap,
    /// What is left of the call's time when this attempt starts.
    pub timeout: std::time::Duration,
    pub bodies: &'a LargeReplies,
}

/// A 2xx or 3xx answer: its status and body, kept encoded (the body as sent
/// when it is JSON, else as a JSON string), and the response headers a caller
/// needs to act on it (`location` of a redirect, `etag` for conditional GETs).
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub status: u16,
    pub body: Box<RawValue>,
    /// Passed to the caller as reply user properties.
    pub properties: Vec<(String, String)>,
    /// The worker's slot for a body over `max_response_bytes`.
    pub large: Option<LargeReply>,
}

/// Response headers passed to the caller as reply user properties.
const PASSED_HEADERS: [reqwest::header::HeaderName; 3] = [
    reqwest::header::LOCATION,
    reqwest::header::ETAG,
    reqwest::header::LAST_MODIFIED,
];

/// Sends the request and maps every failure to the error a client should see:
/// 2xx and 3xx (a redirect, `304 Not Modified`) passed through with their
/// status, upstream 4xx passed through with its body, 5xx → 502, timeout → 504,
/// connection refused → 503 (kind `UpstreamUnavailable`, safe to retry elsewhere
/// because the request never reached the instance).
pub async fn forward(
    client: &reqwest::Client,
    request: UpstreamRequest<'_>,
) -> Result<UpstreamResponse, GatewayError> {
    let call = request.call;
    let url = build_url(request.base_url, &call.path, &call.query);
    let mut builder = client
        .request(call.method.clone(), url)
        .headers(request.headers)
        .timeout(request.timeout);
    if let Some(body) = &call.body {
        builder = builder
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone());
    }
    let mut response = builder.send().await.map_err(classify)?;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("json"));
    let properties: Vec<(String, String)> = PASSED_HEADERS
        .iter()
        .filter_map(|name| {
            let value = response.headers().get(name)?.to_str().ok()?;
            Some((name.as_str().to_string(), value.to_string()))
        })
        .collect();
    // Only an answer that becomes the reply may be large: an error's body
    // keeps the single-packet bound, and takes no large-body slot.
    let answers = status.is_success() || status.is_redirection();
    let (raw, large) = request
        .bodies
        .read(&mut response, call.accepts_chunks && answers)
        .await?;
    let body = encoded_body(raw, is_json);
    if answers {
        return Ok(UpstreamResponse {
            status: status.as_u16(),
            body,
            properties,
            large,
        });
    }
    if status.is_client_error() {
        let mut error = GatewayError::new(
            ErrorKind::UpstreamRejected(status.as_u16()),
            format!("upstream answered {status}"),
        );
        error.upstream_body = Some(body);
        return Err(error);
    }
    Err(GatewayError::new(
        ErrorKind::UpstreamError,
        format!("upstream answered {status}"),
    ))
}

/// Appends the rendered path to the base URL's path. Only the path and query
/// are touched: the host was parsed when the instance entered the cache.
fn build_url(base: &Url, path: &str, query: &[(String, String)]) -> Url {
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url.set_query(None);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    url
}
