//! The `[auth]` and `[middleware.NAME]` sections: raw TOML tables checked
//! against the fields of their kind, then turned into typed specs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use routemq_gateway::middleware::{
    AuthMethod, AuthSpec, BreakerSpec, CorsSpec, FailMode, FallbackSpec, JwtKeys, JwtSettings,
    MiddlewareSpec, RateLimitSpec, TransformSpec,
};
use routemq_gateway::redis::scripts::BreakerLimits;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::raw::{RawApiKeys, RawAuth, RawJwt};

/// Shortest HS256 secret accepted: the hash size (RFC 7518 §3.2).
const MIN_HS256_SECRET_BYTES: usize = 32;

/// Validated `[auth]`.
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

/// Reads secrets and keys named by `[auth]`; relative paths are relative to the config file.
pub fn auth_settings(
    raw: RawAuth,
    config_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AuthSettings, String> {
    let jwt = raw
        .jwt
        .map(|jwt| jwt_settings(jwt, config_dir, env))
        .transpose()?;
    let api_keys_refresh = match raw.api_keys {
        Some(RawApiKeys {
            enabled: Some(false),
            ..
        })
        | None => None,
        Some(keys) => Some(keys.refresh_interval.unwrap_or(Duration::from_secs(1))),
    };
    Ok(AuthSettings {
        jwt,
        api_keys_refresh,
    })
}

fn jwt_settings(
    raw: RawJwt,
    config_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<JwtSettings, String> {
    let read = |file: &str| {
        let path = config_dir.join(file);
        std::fs::read(&path).map_err(|e| format!("auth.jwt: cannot read `{}`: {e}", path.display()))
    };
    let mut keys = JwtKeys::default();
    let secret = match (raw.hs256_secret_env, raw.hs256_secret_file) {
        (Some(_), Some(_)) => {
            return Err("auth.jwt: set hs256_secret_env or hs256_secret_file, not both".into())
        }
        (Some(name), None) => Some(env(&name).ok_or_else(|| {
            format!("auth.jwt.hs256_secret_env: environment variable `{name}` is not set")
        })?),
        (None, Some(file)) => Some(
            String::from_utf8(read(&file)?)
                .map_err(|_| "auth.jwt.hs256_secret_file is not UTF-8".to_string())?,
        ),
        (None, None) => None,
    };
    if let Some(secret) = secret {
        let secret = secret.trim().as_bytes().to_vec();
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(format!(
                "auth.jwt: the HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes"
            ));
        }
        keys.hs256_secret = Some(secret);
    }
    for raw_key in raw.public_keys {
        let algorithm: Algorithm = raw_key.algorithm.parse().map_err(|_| {
            format!(
                "auth.jwt.public_keys: unknown algorithm `{}`",
                raw_key.algorithm
            )
        })?;
        let pem = read(&raw_key.file)?;
        let key = match algorithm {
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 => {
                DecodingKey::from_rsa_pem(&pem)
            }
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
            other => {
                return Err(format!(
                    "auth.jwt.public_keys: {other:?} is not a public-key algorithm"
                ))
            }
        }
        .map_err(|e| format!("auth.jwt.public_keys: `{}`: {e}", raw_key.file))?;
        keys.public_keys.push((algorithm, key));
    }
    if let Some(file) = raw.jwks_file {
        let jwks: JwkSet = serde_json::from_slice(&read(&file)?)
            .map_err(|e| format!("auth.jwt.jwks_file `{file}`: {e}"))?;
        keys.jwks = Some(jwks);
    }
    if keys.is_empty() {
        return Err(
            "auth.jwt: no key: set hs256_secret_env, hs256_secret_file, public_keys or jwks_file"
                .into(),
        );
    }
    Ok(JwtSettings {
        keys,
        issuers: raw.issuer.map(OneOrMany::into_vec).unwrap_or_default(),
        audiences: raw.audience.map(OneOrMany::into_vec).unwrap_or_default(),
        leeway: raw.leeway.unwrap_or(Duration::from_secs(30)),
    })
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthMiddleware {
    methods: Option<Vec<String>>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    limit: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    window: Option<Duration>,
    on_redis_error: Option<String>,
    fallback_limit: Option<u32>,
    #[serde(default)]
    trust_client_id: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransform {
    #[serde(default)]
    rename: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    set: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    add: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    failure_threshold: Option<u32>,
    failure_rate: Option<f64>,
    min_requests: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    failure_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    recovery_time: Option<Duration>,
    half_open_probes: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    probe_timeout: Option<Duration>,
    on_redis_error: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFallback {
    #[serde(default, with = "humantime_serde")]
    cache_ttl: Option<Duration>,
    fallback_service: Option<bool>,
}

fn fields<T: DeserializeOwned>(table: toml::Table, kind: &str) -> Result<T, String> {
    T::deserialize(toml::Value::Table(table)).map_err(|e| format!("{kind} middleware: {e}"))
}

fn fail_mode(raw: Option<String>, default: FailMode) -> Result<FailMode, String> {
    match raw.as_deref() {
        None => Ok(default),
        Some("open") => Ok(FailMode::Open),
        Some("closed") => Ok(FailMode::Closed),
        Some(other) => Err(format!(
            "on_redis_error must be \"open\" or \"closed\", not `{other}`"
        )),
    }
}

fn positive(duration: Duration, field: &str) -> Result<Duration, String> {
    if duration.is_zero() {
        return Err(format!("{field} must be above zero"));
    }
    Ok(duration)
}

/// One `[middleware.NAME]` table. Its `kind` defaults to its name, so
/// `[middleware.cors]` is a CORS middleware and `[middleware.admin_only]`
/// needs `kind = "auth"`.
pub fn middleware_spec(
    name: &str,
    mut table: toml::Table,
    auth: &AuthSettings,
) -> Result<MiddlewareSpec, String> {
    let kind = match table.remove("kind") {
        None => name.to_string(),
        Some(toml::Value::String(kind)) => kind,
        Some(other) => return Err(format!("kind must be a string, not {other}")),
    };
    Ok(match kind.as_str() {
        "cors" => {
            let raw: RawCors = fields(table, &kind)?;
            if raw.allow_origins.is_empty() {
                return Err("cors middleware: allow_origins is empty".into());
            }
            if raw.allow_credentials && raw.allow_origins.iter().any(|o| o == "*") {
                return Err("cors middleware: allow_credentials cannot be combined with the `*` origin".into());
            }
            MiddlewareSpec::Cors(CorsSpec {
                allow_origins: raw.allow_origins,
                allow_methods: raw.allow_methods.unwrap_or_else(|| {
                    ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].map(String::from).into()
                }),
                allow_headers: raw.allow_headers.unwrap_or_else(|| {
                    ["authorization", "content-type", "x-api-key", "x-request-id"]
                        .map(String::from)
                        .into()
                }),
                expose_headers: raw.expose_headers,
                allow_credentials: raw.allow_credentials,
                max_age: raw.max_age.unwrap_or(Duration::from_secs(600)),
            })
        }
        "auth" => {
            let raw: RawAuthMiddleware = fields(table, &kind)?;
            let configured = auth.methods();
            let methods = match raw.methods {
                None => configured.clone(),
                Some(names) => names
                    .iter()
                    .map(|method| match method.as_str() {
                        "jwt" => Ok(AuthMethod::Jwt),
                        "api_key" => Ok(AuthMethod::ApiKey),
                        other => Err(format!(
                            "auth middleware: unknown method `{other}` (known: jwt, api_key)"
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            };
            if let Some(missing) = methods.iter().find(|m| !configured.contains(m)) {
                return Err(format!(
                    "auth middleware: method {missing:?} needs [auth.{}] to be configured",
                    match missing {
                        AuthMethod::Jwt => "jwt",
                        AuthMethod::ApiKey => "api_keys",
                    }
                ));
            }
            if methods.is_empty() {
                return Err("auth middleware: no credentials configured: add [auth.jwt] or [auth.api_keys]".into());
            }
            MiddlewareSpec::Auth(AuthSpec {
                methods,
                scopes: raw.scopes,
                roles: raw.roles,
            })
        }
        "rate_limit" => {
            let raw: RawRateLimit = fields(table, &kind)?;
            let limit = raw.limit.unwrap_or(1000);
            if limit == 0 {
                return Err("rate_limit middleware: limit must be above zero".into());
            }
            MiddlewareSpec::RateLimit(RateLimitSpec {
                limit,
                window: positive(raw.window.unwrap_or(Duration::from_secs(60)), "window")?,
                on_redis_error: fail_mode(raw.on_redis_error, FailMode::Open)?,
                fallback_limit: raw.fallback_limit.map(|cap| cap.max(1)),
                trust_client_id: raw.trust_client_id,
            })
        }
        "transform" => {
            let raw: RawTransform = fields(table, &kind)?;
            MiddlewareSpec::Transform(TransformSpec {
                rename: raw.rename.into_iter().collect(),
                remove: raw.remove,
                set: raw.set.into_iter().collect(),
                add: raw.add.into_iter().collect(),
            })
        }
        "circuit_breaker" => {
            let raw: RawBreaker = fields(table, &kind)?;
            if let Some(rate) = raw.failure_rate {
                if !(rate > 0.0 && rate <= 1.0) {
                    return Err(format!(
                        "circuit_breaker middleware: failure_rate must be above 0 and at most 1, not {rate}"
                    ));
                }
            }
            // With a failure rate the count threshold applies only if written.
            let count_default = if raw.failure_rate.is_some() { 0 } else { 5 };
            if raw.failure_rate.is_none() && raw.failure_threshold == Some(0) {
                return Err("circuit_breaker middleware: failure_threshold 0 needs a failure_rate".into());
            }
            let limits = BreakerLimits {
                failure_threshold: raw.failure_threshold.unwrap_or(count_default),
                failure_rate: raw.failure_rate,
                min_requests: raw.min_requests.unwrap_or(20).max(1),
                failure_window: positive(
                    raw.failure_window.unwrap_or(Duration::from_secs(300)),
                    "failure_window",
                )?,
                recovery: positive(
                    raw.recovery_time.unwrap_or(Duration::from_secs(60)),
                    "recovery_time",
                )?,
                half_open_probes: raw.half_open_probes.unwrap_or(1).max(1),
                probe_lease: positive(
                    raw.probe_timeout.unwrap_or(Duration::from_secs(60)),
                    "probe_timeout",
                )?,
            };
            MiddlewareSpec::CircuitBreaker(BreakerSpec {
                limits,
                on_redis_error: fail_mode(raw.on_redis_error, FailMode::Open)?,
            })
        }
        "fallback" => {
            let raw: RawFallback = fields(table, &kind)?;
            MiddlewareSpec::Fallback(FallbackSpec {
                cache_ttl: raw.cache_ttl.map(|ttl| positive(ttl, "cache_ttl")).transpose()?,
                fallback_service: raw.fallback_service.unwrap_or(true),
            })
        }
        other => {
            return Err(format!(
                "unknown middleware kind `{other}` (known: cors, auth, rate_limit, transform, circuit_breaker, fallback)"
            ))
        }
    })
}

/// Validates every `[middleware.NAME]`.
pub fn middleware_specs(
    raw: BTreeMap<String, toml::Spanned<toml::Table>>,
    auth: &AuthSettings,
) -> Result<HashMap<String, MiddlewareSpec>, (std::ops::Range<usize>, String)> {
    raw.into_iter()
        .map(|(name, table)| {
            let span = table.span();
            middleware_spec(&name, table.into_inner(), auth)
                .map(|spec| (name.clone(), spec))
                .map_err(|message| (span, format!("middleware `{name}`: {message}")))
        })
        .collect()
}
