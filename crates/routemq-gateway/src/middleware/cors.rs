//! CORS for MQTT: browsers behind an MQTT-over-WebSocket bridge send their
//! origin as the `origin` user property; the access-control values come back
//! as reply user properties. A request whose `method` property is `OPTIONS`
//! is a preflight and is answered here, without the upstream.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::kinds::validated;
use super::{
    Contract, Flow, Middleware, MiddlewareConfig, MiddlewareKind, RequestContext, Resources,
};
use crate::{ErrorKind, GatewayError, Reply};

pub struct Cors {
    name: String,
    spec: CorsSpec,
}

impl Cors {
    pub fn new(name: String, spec: CorsSpec) -> Cors {
        Cors { name, spec }
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.spec
            .allow_origins
            .iter()
            .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    }

    fn preflight(&self, ctx: &mut RequestContext<'_>) -> Result<Flow, GatewayError> {
        if let Some(method) = ctx.headers.get("access-control-request-method") {
            if !self
                .spec
                .allow_methods
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(method))
            {
                return Err(GatewayError::new(
                    ErrorKind::Forbidden,
                    format!("method `{method}` is not allowed by CORS"),
                ));
            }
        }
        if let Some(requested) = ctx.headers.get("access-control-request-headers") {
            if let Some(refused) = requested.split(',').map(str::trim).find(|header| {
                !header.is_empty()
                    && !self
                        .spec
                        .allow_headers
                        .iter()
                        .any(|allowed| allowed.eq_ignore_ascii_case(header))
            }) {
                return Err(GatewayError::new(
                    ErrorKind::Forbidden,
                    format!("header `{refused}` is not allowed by CORS"),
                ));
            }
        }
        let properties = [
            (
                "access-control-allow-methods",
                self.spec.allow_methods.join(", "),
            ),
            (
                "access-control-allow-headers",
                self.spec.allow_headers.join(", "),
            ),
            (
                "access-control-max-age",
                self.spec.max_age.as_secs().to_string(),
            ),
        ];
        ctx.reply_properties
            .extend(properties.map(|(name, value)| (name.to_string(), value)));
        Ok(Flow::Respond(Reply::raw(
            204,
            json!({"status": "success", "request_id": ctx.request_id, "preflight": true}),
        )))
    }
}

impl Middleware for Cors {
    fn name(&self) -> &str {
        &self.name
    }

    fn request_filter(&self, ctx: &mut RequestContext<'_>) -> Result<Flow, GatewayError> {
        let Some(origin) = ctx.headers.get("origin") else {
            return Ok(Flow::Continue);
        };
        if !self.origin_allowed(origin) {
            return Err(GatewayError::new(
                ErrorKind::Forbidden,
                format!("origin `{origin}` is not allowed"),
            ));
        }
        let allow_origin =
            if self.spec.allow_origins.iter().any(|o| o == "*") && !self.spec.allow_credentials {
                "*".to_string()
            } else {
                origin.to_string()
            };
        ctx.reply_properties
            .push(("access-control-allow-origin".into(), allow_origin));
        ctx.reply_properties.push(("vary".into(), "origin".into()));
        if self.spec.allow_credentials {
            ctx.reply_properties
                .push(("access-control-allow-credentials".into(), "true".into()));
        }
        if !self.spec.expose_headers.is_empty() {
            ctx.reply_properties.push((
                "access-control-expose-headers".into(),
                self.spec.expose_headers.join(", "),
            ));
        }
        let is_preflight = ctx
            .headers
            .get("method")
            .is_some_and(|method| method.eq_ignore_ascii_case("options"));
        if is_preflight {
            return self.preflight(ctx);
        }
        Ok(Flow::Continue)
    }
}

#[derive(Debug, Clone)]
pub struct CorsSpec {
    /// Allowed origins; `*` allows any.
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age: Duration,
}

impl MiddlewareConfig for CorsSpec {
    fn build(&self, name: &str, _: &Resources) -> Arc<dyn Middleware> {
        Arc::new(Cors::new(name.to_string(), self.clone()))
    }

    fn contract(&self) -> Contract {
        Contract {
            kind: Some("cors"),
            effect: "checks the origin user property; a request with the user property method: OPTIONS is a preflight, answered 204".into(),
            credentials: Vec::new(),
            errors: vec![ErrorKind::Forbidden],
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    #[serde(default)]
    allow_origins: Vec<String>,
    allow_methods: Option<Vec<String>>,
    allow_headers: Option<Vec<String>>,
    #[serde(default)]
    expose_headers: Vec<String>,
    #[serde(default)]
    allow_credentials: bool,
    #[serde(default, with = "humantime_serde")]
    max_age: Option<Duration>,
}

fn validate(raw: RawCors) -> Result<CorsSpec, String> {
    if raw.allow_origins.is_empty() {
        return Err("allow_origins is empty".into());
    }
    if raw.allow_credentials && raw.allow_origins.iter().any(|o| o == "*") {
        return Err("allow_credentials cannot be combined with the `*` origin".into());
    }
    let strings = |names: &[&str]| names.iter().map(|name| name.to_string()).collect();
    Ok(CorsSpec {
        allow_origins: raw.allow_origins,
        allow_methods: raw
            .allow_methods
            .unwrap_or_else(|| strings(&["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])),
        allow_headers: raw.allow_headers.unwrap_or_else(|| {
            strings(&["authorization", "content-type", "x-api-key", "x-request-id"])
        }),
        expose_headers: raw.expose_headers,
        allow_credentials: raw.allow_credentials,
        max_age: raw.max_age.unwrap_or(Duration::from_secs(600)),
    })
}

pub(super) fn kind() -> Arc<dyn MiddlewareKind> {
    validated("cors", validate)
}
