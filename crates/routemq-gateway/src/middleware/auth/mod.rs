//! Authentication (JWT bearer token or API key) and authorization (scopes, roles).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

mod api_keys;
mod config;
mod jwt;
mod remote_jwks;

pub use api_keys::{hash_api_key, ApiKeyRecord, ApiKeyStore, ApiKeys};
pub(super) use config::kind;
pub use config::AuthSpec;
pub(crate) use jwt::JwtVerifier;
pub use jwt::{JwtKeys, JwtSettings};
pub use remote_jwks::{RemoteJwks, RemoteJwksSettings};

use crate::middleware::{Flow, Identity, Middleware, RequestContext};
use crate::{ErrorKind, GatewayError, Headers};

/// How a client proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Jwt,
    ApiKey,
}

impl AuthMethod {
    /// The prefix of a caller key (`user:…`, `key:…`); `X-User-Auth` upstream.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "user",
            AuthMethod::ApiKey => "key",
        }
    }

    /// As the configuration names it.
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::ApiKey => "api_key",
        }
    }
}

/// The credentials every auth middleware of a worker checks against.
pub struct Authenticator {
    jwt: Option<JwtVerifier>,
    api_keys: Option<Arc<ApiKeys>>,
}

impl Authenticator {
    /// `remote` is the identity provider's fetched key set, shared by every
    /// configuration a worker runs (it outlives reloads).
    pub fn new(
        jwt: Option<JwtSettings>,
        api_keys: Option<Arc<ApiKeys>>,
        remote: Option<Arc<RemoteJwks>>,
    ) -> Authenticator {
        Authenticator {
            jwt: jwt.map(|settings| JwtVerifier::new(settings, remote)),
            api_keys,
        }
    }

    /// Verifies the request's credentials by the methods given. A request
    /// that presents credentials of a method not among them is refused
    /// rather than treated as anonymous.
    fn authenticate(
        &self,
        headers: &Headers,
        methods: &[AuthMethod],
    ) -> Result<Identity, GatewayError> {
        if let Some(authorization) = headers.get("authorization") {
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
                if e.unavailable {
                    // The keys are being fetched: retry, not re-authenticate.
                    return GatewayError::new(ErrorKind::AuthUnavailable, e.message)
                        .with_property("retry-after", "1");
                }
                // One challenge (RFC 6750 §3), naming why the token failed.
                GatewayError::new(ErrorKind::Unauthorized, e.message)
                    .with_property("www-authenticate", "Bearer error=\"invalid_token\"")
            });
        }
        if let Some(key) = headers.get("x-api-key") {
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
                issuer: None,
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

/// One request's credentials, verified at most once however many ask: the
/// reply-address check (to bind `{sub}` topics) and every auth middleware
/// of the chain read the same verification.
pub struct Credentials<'r> {
    authenticator: &'r Authenticator,
    headers: &'r Headers,
    /// The verification by every configured method.
    verified: OnceLock<Result<Identity, GatewayError>>,
}

impl<'r> Credentials<'r> {
    pub fn new(authenticator: &'r Authenticator, headers: &'r Headers) -> Credentials<'r> {
        Credentials {
            authenticator,
            headers,
            verified: OnceLock::new(),
        }
    }

    fn verified(&self) -> &Result<Identity, GatewayError> {
        const ALL: [AuthMethod; 2] = [AuthMethod::Jwt, AuthMethod::ApiKey];
        self.verified
            .get_or_init(|| self.authenticator.authenticate(self.headers, &ALL))
    }

    /// The caller's verified identity by any configured method, if its
    /// credentials verify; the reply-topic check binds placeholders to it.
    pub fn identity(&self) -> Option<&Identity> {
        self.verified().as_ref().ok()
    }

    /// The identity, if the credentials presented are of a method in
    /// `methods` and verify: what an auth middleware requires.
    pub fn verify(&self, methods: &[AuthMethod]) -> Result<Identity, GatewayError> {
        let authenticator = self.authenticator;
        if self.headers.get("authorization").is_some() {
            if !(methods.contains(&AuthMethod::Jwt) && authenticator.jwt.is_some()) {
                return Err(unauthorized("bearer tokens are not accepted here"));
            }
        } else if self.headers.get("x-api-key").is_some()
            && !(methods.contains(&AuthMethod::ApiKey) && authenticator.api_keys.is_some())
        {
            return Err(unauthorized("API keys are not accepted here"));
        }
        self.verified().clone()
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
    spec: AuthSpec,
}

impl Auth {
    pub fn new(name: String, spec: AuthSpec) -> Auth {
        Auth { name, spec }
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
        match &ctx.identity {
            // An identity an earlier auth established counts only if it was
            // proven by a method this one accepts.
            Some(identity) if !self.spec.methods.contains(&identity.method) => {
                return Err(unauthorized(format!(
                    "credentials of kind `{}` are not accepted here",
                    identity.method.name()
                )));
            }
            Some(_) => {}
            None => {
                ctx.identity = Some(ctx.credentials.verify(&self.spec.methods)?);
            }
        }
        if let Some(identity) = &ctx.identity {
            self.authorize(identity)?;
        }
        Ok(Flow::Continue)
    }
}

/// Validated `[auth]`: the credentials workers accept.
#[derive(Clone, Default)]
pub struct AuthSettings {
    pub jwt: Option<JwtSettings>,
    /// How often workers reload API keys; `None` when API keys are off.
    pub api_keys_refresh: Option<Duration>,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are secrets: only say which are configured.
        f.debug_struct("AuthSettings")
            .field("jwt", &self.jwt.is_some())
            .field("api_keys_refresh", &self.api_keys_refresh)
            .finish()
    }
}

impl AuthSettings {
    pub fn methods(&self) -> Vec<AuthMethod> {
        let mut methods = Vec::new();
        if self.jwt.is_some() {
            methods.push(AuthMethod::Jwt);
        }
        if self.api_keys_refresh.is_some() {
            methods.push(AuthMethod::ApiKey);
        }
        methods
    }
}
