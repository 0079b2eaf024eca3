//! The upstream call, built once per request from the route and what the
//! request filters made of the request: path, query or body (encoded here,
//! once), and headers, including the identity the chain verified.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT};
use reqwest::Method;
use routemq_router::Params;

use crate::middleware::{Identity, RequestContext};
use crate::request::query_pairs;
use crate::route::ForwardRoute;
use crate::upstream::{Caller, PreparedCall};
use crate::{ErrorKind, GatewayError};

/// Builds the upstream call once: path, query or body, and headers,
/// including the identity the chain verified.
pub(super) fn prepare(
    route: &ForwardRoute,
    ctx: &RequestContext<'_>,
    deadline: Option<Instant>,
    accepts_chunks: bool,
) -> Result<PreparedCall, GatewayError> {
    let params: &Params<'_> = ctx.params;
    let timeout = upstream_timeout(route.timeout, deadline);
    let path = route.path.render(|name| params.get(name))?;
    let sends_body = !matches!(route.method, Method::GET | Method::HEAD | Method::DELETE);
    let (body, query) = if sends_body {
        let mut bytes = serde_json::to_vec(&ctx.body)
            .map_err(|error| GatewayError::new(ErrorKind::Internal, error.to_string()))?;
        // The vector grew by doubling; the body lives for the whole call
        // (and its retries), so it keeps only what it holds.
        bytes.shrink_to_fit();
        (Some(Bytes::from(bytes)), Vec::new())
    } else {
        let query = query_pairs(&ctx.body);
        refuse_overlong_query(&path, &query)?;
        (None, query)
    };
    let headers = headers(route, ctx)?;
    Ok(PreparedCall {
        method: route.method.clone(),
        path,
        query,
        body,
        headers,
        timeout,
        deadline_bound: timeout < route.timeout,
        deadline_header: route.deadline_header.clone(),
        accepts_chunks,
        caller: caller(ctx),
    })
}

/// The headers the upstream gets: those the route forwards, the request
/// id, the service, and the identity the chain verified.
fn headers(route: &ForwardRoute, ctx: &RequestContext<'_>) -> Result<HeaderMap, GatewayError> {
    let mut headers = HeaderMap::new();
    route.headers.apply(ctx.headers, &mut headers)?;
    headers.insert(
        HeaderName::from_static("x-request-id"),
        header_value(ctx.request_id)?,
    );
    headers.insert(
        HeaderName::from_static("x-gateway-service"),
        header_value(&route.service)?,
    );
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(identity) = &ctx.identity {
        identity_headers(identity, &mut headers)?;
    }
    Ok(headers)
}

/// `X-User-ID`, `X-User-Auth`, `X-User-Scopes`, `X-User-Roles`.
fn identity_headers(identity: &Identity, headers: &mut HeaderMap) -> Result<(), GatewayError> {
    let identity_header = |value: &str| {
        header_value(value).map_err(|_| {
            GatewayError::new(
                ErrorKind::Unauthorized,
                "credential claims contain characters not allowed in HTTP headers",
            )
        })
    };
    headers.insert(
        HeaderName::from_static("x-user-id"),
        identity_header(&identity.subject)?,
    );
    headers.insert(
        HeaderName::from_static("x-user-auth"),
        HeaderValue::from_static(identity.method.as_str()),
    );
    if !identity.scopes.is_empty() {
        headers.insert(
            HeaderName::from_static("x-user-scopes"),
            identity_header(&identity.scopes.join(" "))?,
        );
    }
    if !identity.roles.is_empty() {
        headers.insert(
            HeaderName::from_static("x-user-roles"),
            identity_header(&identity.roles.join(","))?,
        );
    }
    Ok(())
}

/// The longest path and query an upstream URL may have: the HTTP client
/// cannot build a longer one (`http::Uri` takes at most 65 534 bytes; this
/// leaves 534 for the scheme, the authority and a base path), so such a
/// request is the caller's error.
const MAX_PATH_AND_QUERY: usize = 65_000;

/// Refuses a query string that would make the URL too long, before any
/// call (an upstream's own, smaller limit still answers its own 414).
/// Measured exactly only when the worst case (each byte percent-encoded)
/// might not fit.
fn refuse_overlong_query(path: &str, query: &[(String, String)]) -> Result<(), GatewayError> {
    let raw: usize = query
        .iter()
        .map(|(key, value)| key.len() + value.len() + 2)
        .sum();
    if path.len() + 3 * raw <= MAX_PATH_AND_QUERY {
        return Ok(());
    }
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    if path.len() + 1 + encoded.len() <= MAX_PATH_AND_QUERY {
        return Ok(());
    }
    Err(GatewayError::new(
        ErrorKind::UriTooLong,
        format!(
            "the payload makes a query string of {} bytes; a GET's URL may have at most {MAX_PATH_AND_QUERY}",
            encoded.len()
        ),
    ))
}

/// The caller's key for turns at a bulkhead: its verified identity, or
/// for an anonymous caller its reply topic (what the rate limiter keys it by).
fn caller(ctx: &RequestContext<'_>) -> Caller {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match &ctx.identity {
        Some(identity) => (identity.issuer.as_deref(), identity.subject.as_str()).hash(&mut hasher),
        None => ctx.response_topic.hash(&mut hasher),
    }
    hasher.finish()
}

/// The smaller of the route's timeout and the time the client still waits.
fn upstream_timeout(route_timeout: Duration, deadline: Option<Instant>) -> Duration {
    match deadline {
        Some(deadline) => route_timeout.min(deadline.saturating_duration_since(Instant::now())),
        None => route_timeout,
    }
}

fn header_value(value: &str) -> Result<reqwest::header::HeaderValue, GatewayError> {
    reqwest::header::HeaderValue::from_str(value).map_err(|_| {
        GatewayError::new(ErrorKind::InvalidHeader, "header value not allowed in HTTP")
    })
}
