//! CORS for MQTT: browsers behind an MQTT-over-WebSocket bridge send their
//! origin as the `origin` user property; the access-control values come back
//! as reply user properties. A request whose `method` property is `OPTIONS`
//! is a preflight and is answered here, without the upstream.

use serde_json::json;

use super::spec::CorsSpec;
use super::{Flow, Middleware, RequestContext};
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
