//! The `[auth]` and `[middleware.NAME]` sections: `[auth]` read into the
//! credentials workers check, each middleware table validated by its kind.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use routemq_gateway::middleware::{
    AuthSettings, JwtKeys, JwtSettings, KindContext, MiddlewareConfigs, MiddlewareKinds,
    RemoteJwksSettings,
};
use serde::Deserialize;

use super::raw::{RawApiKeys, RawAuth, RawJwt, RawPublicKey};

/// Shortest HS256 secret accepted: the hash size (RFC 7518 §3.2).
const MIN_HS256_SECRET_BYTES: usize = 32;

/// Reads secrets and keys named by `[auth]`; relative paths are relative to the config file.
pub fn auth_settings(
    raw: RawAuth,
    config_dir: &Path,
    secrets: &mut Secrets<'_>,
) -> Result<AuthSettings, String> {
    let jwt = raw
        .jwt
        .map(|jwt| jwt_settings(jwt, config_dir, secrets))
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
    secrets: &mut Secrets<'_>,
) -> Result<JwtSettings, String> {
    let read = |file: &str| {
        let path = config_dir.join(file);
        std::fs::read(&path).map_err(|e| format!("auth.jwt: cannot read `{}`: {e}", path.display()))
    };
    let mut keys = JwtKeys {
        remote: remote_jwks(&raw, config_dir)?,
        ..JwtKeys::default()
    };
    let secret = secrets.one_of(
        ("auth.jwt.hs256_secret_env", raw.hs256_secret_env),
        ("auth.jwt.hs256_secret_file", raw.hs256_secret_file),
        config_dir,
    )?;
    if let Some(secret) = secret {
        let secret = secret.trim().as_bytes().to_vec();
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(format!(
                "auth.jwt: the HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes"
            ));
        }
        keys.hs256_secret = Some(secret);
    }
    for raw_key in &raw.public_keys {
        keys.public_keys.push(public_key(raw_key, &read)?);
    }
    if let Some(file) = raw.jwks_file {
        let jwks: JwkSet = serde_json::from_slice(&read(&file)?)
            .map_err(|e| format!("auth.jwt.jwks_file `{file}`: {e}"))?;
        keys.jwks = Some(jwks);
    }
    if keys.is_empty() && !secrets.deferred() {
        return Err(
            "auth.jwt: no key: set hs256_secret_env, hs256_secret_file, public_keys, jwks_file or jwks_url"
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

/// One of `auth.jwt.public_keys`: its algorithm and PEM key.
fn public_key(
    raw: &RawPublicKey,
    read: &dyn Fn(&str) -> Result<Vec<u8>, String>,
) -> Result<(Algorithm, DecodingKey), String> {
    let (name, file) = (&raw.algorithm, &raw.file);
    let algorithm: Algorithm = name
        .parse()
        .map_err(|_| format!("auth.jwt.public_keys: unknown algorithm `{name}`"))?;
    let pem = read(file)?;
    let pem = pem.as_slice();
    let key = match algorithm {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 => {
            DecodingKey::from_rsa_pem(pem)
        }
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        other => {
            return Err(format!(
                "auth.jwt.public_keys: {other:?} is not a public-key algorithm"
            ))
        }
    }
    .map_err(|e| format!("auth.jwt.public_keys: `{file}`: {e}"))?;
    Ok((algorithm, key))
}

/// `auth.jwt.jwks_url` and its settings: HTTPS, or HTTP to this host only
/// (a key set read in the clear from elsewhere could be anyone's).
fn remote_jwks(raw: &RawJwt, config_dir: &Path) -> Result<Option<RemoteJwksSettings>, String> {
    let Some(url) = &raw.jwks_url else {
        let set = [
            raw.jwks_ca_file.is_some(),
            raw.jwks_min_refresh.is_some(),
            raw.jwks_max_refresh.is_some(),
            raw.jwks_max_bytes.is_some(),
        ];
        if set.contains(&true) {
            return Err("auth.jwt: the jwks_* settings need jwks_url".into());
        }
        return Ok(None);
    };
    let parsed =
        reqwest::Url::parse(url).map_err(|error| format!("auth.jwt.jwks_url `{url}`: {error}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "auth.jwt.jwks_url `{url}`: use https (http only for a loopback host)"
            ))
        }
        other => {
            return Err(format!(
                "auth.jwt.jwks_url `{url}`: `{other}` is not http(s)"
            ))
        }
    }
    let min_refresh = raw.jwks_min_refresh.unwrap_or(Duration::from_secs(30));
    let max_refresh = raw.jwks_max_refresh.unwrap_or(Duration::from_secs(600));
    if min_refresh.is_zero() || max_refresh < min_refresh {
        return Err(
            "auth.jwt: jwks_min_refresh must be above zero and at most jwks_max_refresh".into(),
        );
    }
    let max_bytes = raw.jwks_max_bytes.unwrap_or(64 * 1024);
    if max_bytes == 0 {
        return Err("auth.jwt.jwks_max_bytes must be above zero".into());
    }
    Ok(Some(RemoteJwksSettings {
        url: url.clone(),
        ca_file: raw.jwks_ca_file.as_ref().map(|file| config_dir.join(file)),
        min_refresh,
        max_refresh,
        max_bytes,
    }))
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

/// Validates every `[middleware.NAME]` with the kinds registered.
pub fn middleware_configs(
    raw: BTreeMap<String, toml::Spanned<toml::Table>>,
    auth: &AuthSettings,
    kinds: &MiddlewareKinds,
) -> Result<MiddlewareConfigs, (std::ops::Range<usize>, String)> {
    let methods = auth.methods();
    let context = KindContext {
        auth_methods: &methods,
    };
    raw.into_iter()
        .map(|(name, table)| {
            let span = table.span();
            kinds
                .configure(&name, table.into_inner(), &context)
                .map(|config| (name.clone(), config))
                .map_err(|message| (span, format!("middleware `{name}`: {message}")))
        })
        .collect()
}

/// A secret the configuration names, and whether it was there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// Where a worker reads it: `environment variable X` or `file P`.
    pub source: String,
    /// The setting that names it.
    pub setting: &'static str,
    pub present: bool,
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.present { "set" } else { "not set here" };
        write!(f, "{} ({}, {state})", self.source, self.setting)
    }
}

/// Reads the secrets a configuration names, and lists them. A worker needs
/// every one; `check-config` and `routes` defer them, so a configuration
/// can be checked where its secrets are not (a CI job, a laptop).
pub struct Secrets<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    required: bool,
    pub named: Vec<Secret>,
}

impl<'a> Secrets<'a> {
    pub fn new(env: &'a dyn Fn(&str) -> Option<String>, required: bool) -> Secrets<'a> {
        Secrets {
            env,
            required,
            named: Vec::new(),
        }
    }

    /// Whether missing secrets are listed instead of refused.
    pub fn deferred(&self) -> bool {
        !self.required
    }

    /// The secret an `…_env` or an `…_file` setting names (at most one may
    /// be set; a relative file is relative to `config_dir`).
    pub fn one_of(
        &mut self,
        (env_setting, env): (&'static str, Option<String>),
        (file_setting, file): (&'static str, Option<String>),
        config_dir: &Path,
    ) -> Result<Option<String>, String> {
        match (env, file) {
            (Some(_), Some(_)) => Err(format!("set {env_setting} or {file_setting}, not both")),
            (Some(name), None) => self.env(env_setting, &name),
            (None, Some(file)) => self.file(file_setting, &config_dir.join(file)),
            (None, None) => Ok(None),
        }
    }

    fn env(&mut self, setting: &'static str, name: &str) -> Result<Option<String>, String> {
        let value = (self.env)(name);
        self.note(setting, format!("environment variable `{name}`"), value)
    }

    fn file(&mut self, setting: &'static str, path: &Path) -> Result<Option<String>, String> {
        let value = match std::fs::read(path) {
            Ok(bytes) => Some(
                String::from_utf8(bytes)
                    .map_err(|_| format!("{setting}: the file is not UTF-8"))?,
            ),
            Err(_) if !self.required => None,
            Err(error) => {
                return Err(format!(
                    "{setting}: cannot read `{}`: {error}",
                    path.display()
                ))
            }
        };
        self.note(setting, format!("file `{}`", path.display()), value)
    }

    fn note(
        &mut self,
        setting: &'static str,
        source: String,
        value: Option<String>,
    ) -> Result<Option<String>, String> {
        if value.is_none() && self.required {
            return Err(format!("{setting}: {source} is not set"));
        }
        self.named.push(Secret {
            source,
            setting,
            present: value.is_some(),
        });
        Ok(value)
    }
}
