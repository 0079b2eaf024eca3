//! Authentication (JWT bearer token or API key) and authorization (scopes, roles).

use std::sync::Arc;

use super::jwt::{JwtSettings, JwtVerifier};
use super::spec::AuthSpec;
use super::{ApiKeys, Flow, Identity, Middleware, RequestContext};
use crate::{ErrorKind, GatewayError};

/// How a client proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Jwt,
    ApiKey,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "user",
            AuthMethod::ApiKey => "key",
        }
    }
}

/// The credentials every auth middleware of a worker checks against.
pub struct Authenticator {
    jwt: Option<JwtVerifier>,
    api_keys: Option<Arc<ApiKeys>>,
}

impl Authenticator {
    pub fn new(jwt: Option<JwtSettings>, api_keys: Option<Arc<ApiKeys>>) -> Authenticator {
        Authenticator {
            jwt: jwt.map(JwtVerifier::new),
            api_keys,
        }
    }

    /// Verifies the request's credentials. A request that presents
    /// credentials of a method the route does not accept is refused rather
    /// than treated as anonymous.
    fn authenticate(
        &self,
        ctx: &RequestContext<'_>,
        methods: &[AuthMethod],
    ) -> Result<Identity, GatewayError> {
        if let Some(authorization) = ctx.headers.get("authorization") {
            let verifier = self
                .jwt
                .as_ref()
                .filter(|_| methods.contains(&AuthMethod::Jwt));
            let Some(verifier) = verifier else {
                return Err(unauthorized("bearer tokens are not accepted here"));
            };
            let token = authorization
                .strip_prefix("Bearer ")
                .or_else(|| authorization.strip_prefix("bearer "))
                .map(str::trim)
                .ok_or_else(|| unauthorized("authorization must be `Bearer <token>`"))?;
            return verifier.verify(token).map_err(|e| {
                unauthorized(e.to_string())
                    .with_property("www-authenticate", "Bearer error=\"invalid_token\"")
            });
        }
        if let Some(key) = ctx.headers.get("x-api-key") {
            let keys = self
                .api_keys
                .as_ref()
                .filter(|_| methods.contains(&AuthMethod::ApiKey));
            let Some(keys) = keys else {
                return Err(unauthorized("API keys are not accepted here"));
            };
            let record = keys
                .lookup(key)
                .ok_or_else(|| unauthorized("unknown or revoked API key"))?;
            return Ok(Identity {
                subject: record.id,
                method: AuthMethod::ApiKey,
                scopes: record.scopes,
                roles: record.roles,
            });
        }
        Err(unauthorized(
            "credentials required: `authorization: Bearer <token>` or `x-api-key`",
        ))
    }
}

fn unauthorized(message: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::Unauthorized, message).with_property("www-authenticate", "Bearer")
}

/// Requires verified credentials and, optionally, scopes (all of them) or
/// roles (any of them). A second auth middleware on the same request reuses
/// the identity the first established and only checks its own requirements.
pub struct Auth {
    name: String,
    authenticator: Arc<Authenticator>,
    spec: AuthSpec,
}

impl Auth {
    pub fn new(name: String, authenticator: Arc<Authenticator>, spec: AuthSpec) -> Auth {
        Auth {
            name,
            authenticator,
            spec,
        }
    }

    fn authorize(&self, identity: &Identity) -> Result<(), GatewayError> {
        if let Some(missing) = self
            .spec
            .scopes
            .iter()
            .find(|scope| !identity.scopes.contains(scope))
        {
            return Err(GatewayError::new(
                ErrorKind::Forbidden,
                format!("scope `{missing}` required"),
            ));
        }
        if !self.spec.roles.is_empty()
            && !self
                .spec
                .roles
                .iter()
                .any(|role| identity.roles.contains(role))
        {
            return Err(GatewayError::new(
                ErrorKind::Forbidden,
                format!("one of the roles {:?} required", self.spec.roles),
            ));
        }
        Ok(())
    }
}

impl Middleware for Auth {
    fn name(&self) -> &str {
        &self.name
    }

    fn request_filter(&self, ctx: &mut RequestContext<'_>) -> Result<Flow, GatewayError> {
        if ctx.identity.is_none() {
            ctx.identity = Some(self.authenticator.authenticate(ctx, &self.spec.methods)?);
        }
        if let Some(identity) = &ctx.identity {
            self.authorize(identity)?;
        }
        Ok(Flow::Continue)
    }
}
