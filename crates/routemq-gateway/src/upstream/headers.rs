use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::{ErrorKind, GatewayError, Headers};

/// Client headers never sent upstream whatever the route allows: hop-by-hop
/// headers, those the HTTP client sets itself, the ones the gateway sets, and
/// identity headers, which only the gateway's own authentication may assert.
pub const NEVER_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-type",
    "x-request-id",
    "x-gateway-service",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-real-ip",
];

/// `x-user-*` carries the identity the gateway verified (`x-user-id`, scopes, roles).
const NEVER_FORWARDED_PREFIXES: &[&str] = &["x-user-", "x-consumer-", "x-authenticated-"];

/// Whether a header name may ever be forwarded.
pub fn is_forwardable(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !NEVER_FORWARDED.contains(&name.as_str())
        && !NEVER_FORWARDED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The client headers a route lets through, checked once at start-up.
#[derive(Debug, Clone, Default)]
pub struct HeaderPolicy {
    allowed: Vec<HeaderName>,
}

impl HeaderPolicy {
    /// Fails on a name that is not a valid header or may never be forwarded.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut allowed = Vec::new();
        for name in names {
            if !is_forwardable(name) {
                return Err(format!("header `{name}` is never forwarded upstream"));
            }
            let header = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("`{name}` is not a valid HTTP header name"))?;
            allowed.push(header);
        }
        Ok(HeaderPolicy { allowed })
    }

    /// Copies the allowed client headers into `out`.
    pub fn apply(&self, headers: &Headers, out: &mut HeaderMap) -> Result<(), GatewayError> {
        for name in &self.allowed {
            let Some(value) = headers.get(name.as_str()) else {
                continue;
            };
            let value = HeaderValue::from_str(value).map_err(|_| {
                GatewayError::new(
                    ErrorKind::InvalidHeader,
                    format!("header `{name}` has characters not allowed in HTTP"),
                )
            })?;
            out.insert(name.clone(), value);
        }
        Ok(())
    }
}
