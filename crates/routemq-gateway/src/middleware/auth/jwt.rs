//! JWT bearer-token verification with `jsonwebtoken`.
//!
//! Each configured key is bound to the algorithms of its own kind, so a token
//! cannot pick how it is checked: `alg: none` does not parse, an HS256 token
//! is never checked against an RSA public key taken as an HMAC secret
//! (algorithm confusion), and a key id that is not in the JWKS is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde::Deserialize;

use super::remote_jwks::{RemoteJwks, RemoteJwksSettings};
use super::AuthMethod;
use crate::middleware::Identity;

/// Verification keys, from the environment or files, never from the config.
#[derive(Clone, Default)]
pub struct JwtKeys {
    /// HS256 shared secret.
    pub hs256_secret: Option<Vec<u8>>,
    /// PEM public keys with the algorithm each verifies (RS256, ES256, …).
    pub public_keys: Vec<(Algorithm, DecodingKey)>,
    /// A JSON Web Key Set; tokens name their key with `kid`.
    pub jwks: Option<JwkSet>,
    /// A key set fetched from the identity provider (`remote_jwks.rs`).
    pub remote: Option<RemoteJwksSettings>,
}

impl JwtKeys {
    pub fn is_empty(&self) -> bool {
        self.hs256_secret.is_none()
            && self.public_keys.is_empty()
            && self.jwks.is_none()
            && self.remote.is_none()
    }
}

/// What a valid token must also satisfy.
#[derive(Clone, Default)]
pub struct JwtSettings {
    pub keys: JwtKeys,
    /// Accepted `iss` values; empty accepts any.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty skips the audience check.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

/// The claims the gateway reads. `scope` (OAuth, space separated) and
/// `scopes` (array) are both accepted, as are `roles` (array) and `role`.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    /// Checked by `jsonwebtoken`; read again to know how long a verified
    /// token may be remembered.
    exp: u64,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    role: Option<String>,
}

/// Why a token was refused; the message goes back to the client.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TokenRejected {
    pub message: String,
    /// The keys that could verify it are not loaded (yet): retryable, and
    /// not the caller's fault.
    pub unavailable: bool,
}

fn rejected(message: String) -> TokenRejected {
    TokenRejected {
        message,
        unavailable: false,
    }
}

fn unavailable(message: String) -> TokenRejected {
    TokenRejected {
        message,
        unavailable: true,
    }
}

pub struct JwtVerifier {
    settings: JwtSettings,
    /// The identity provider's fetched keys, when configured.
    remote: Option<Arc<RemoteJwks>>,
    /// Tokens that passed every check, by the token itself, with the unix
    /// second after which they no longer would (`exp` plus the leeway): a
    /// client that sends the same token on every request pays for one
    /// signature check, not one per request. Only valid tokens get in, and
    /// a new configuration builds a new verifier, so a changed issuer or
    /// audience never meets a remembered verdict; a token verified with a
    /// fetched key is checked again once the fetched set has changed, so a
    /// withdrawn key's tokens are refused.
    verified: Mutex<HashMap<Box<str>, Verified>>,
}

struct Verified {
    identity: Identity,
    valid_until: u64,
    /// The fetched set's generation, when a fetched key verified it.
    generation: Option<u64>,
}

/// Verified tokens remembered at most; beyond it the expired are dropped,
/// then all. Bounded memory: this many tokens of at most
/// `limits.max_header_bytes` each.
const MAX_REMEMBERED: usize = 4096;

impl JwtVerifier {
    pub fn new(settings: JwtSettings, remote: Option<Arc<RemoteJwks>>) -> JwtVerifier {
        JwtVerifier {
            settings,
            remote,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a remembered verdict still stands for keys of `generation`.
    fn current(&self, generation: Option<u64>) -> bool {
        match (generation, &self.remote) {
            (Some(generation), Some(remote)) => remote.generation() == generation,
            _ => true,
        }
    }

    /// Verifies signature, `exp`, `nbf`, `iss` and `aud`, and returns who the
    /// token speaks for; a token verified before is answered from memory
    /// until its `exp` (plus the leeway) passes.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenRejected> {
        let now = crate::clock::unix_time().as_secs();
        if let Some(known) = self.verified.lock().get(token) {
            if now <= known.valid_until && self.current(known.generation) {
                return Ok(known.identity.clone());
            }
        }
        let (identity, exp, generation) = self.check(token)?;
        let mut verified = self.verified.lock();
        if verified.len() >= MAX_REMEMBERED {
            verified.retain(|_, known| now <= known.valid_until);
            if verified.len() >= MAX_REMEMBERED {
                verified.clear();
            }
        }
        let valid_until = exp.saturating_add(self.settings.leeway.as_secs());
        verified.insert(
            token.into(),
            Verified {
                identity: identity.clone(),
                valid_until,
                generation,
            },
        );
        Ok(identity)
    }

    /// Every check on `token`; who it speaks for, its `exp`, and the
    /// fetched set's generation when a fetched key verified it.
    fn check(&self, token: &str) -> Result<(Identity, u64, Option<u64>), TokenRejected> {
        let header = decode_header(token).map_err(|e| rejected(format!("malformed token: {e}")))?;
        let (key, generation) = self.key_for(header.alg, header.kid.as_deref())?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        // jsonwebtoken checks `iss` and `aud` only when a token has them:
        // a configured one must also be present, or a token signed by a
        // trusted key for another audience (or none) would pass.
        let mut required = vec!["exp", "sub"];
        if !self.settings.issuers.is_empty() {
            required.push("iss");
        }
        if !self.settings.audiences.is_empty() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        if !self.settings.issuers.is_empty() {
            validation.set_issuer(&self.settings.issuers);
        }
        if self.settings.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.settings.audiences);
        }
        let data = decode::<Claims>(token, &key, &validation)
            .map_err(|e| rejected(format!("invalid token: {}", describe(&e))))?;
        let claims = data.claims;
        let mut scopes = claims.scopes;
        if let Some(scope) = claims.scope {
            scopes.extend(scope.split_whitespace().map(str::to_string));
        }
        let mut roles = claims.roles;
        roles.extend(claims.role);
        let identity = Identity {
            subject: claims.sub,
            issuer: claims.iss,
            method: AuthMethod::Jwt,
            scopes,
            roles,
        };
        Ok((identity, claims.exp, generation))
    }

    /// The one key that may verify a token with this header, and the
    /// fetched set's generation when it comes from there.
    fn key_for(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<(DecodingKey, Option<u64>), TokenRejected> {
        let keys = &self.settings.keys;
        if alg == Algorithm::HS256 {
            return keys
                .hs256_secret
                .as_deref()
                .map(|secret| (DecodingKey::from_secret(secret), None))
                .ok_or_else(|| rejected("HS256 tokens are not accepted".into()));
        }
        if matches!(alg, Algorithm::HS384 | Algorithm::HS512) {
            return Err(rejected(format!("{alg:?} tokens are not accepted")));
        }
        if let Some(kid) = kid {
            if let Some(jwk) = keys.jwks.as_ref().and_then(|jwks| jwks.find(kid)) {
                return Ok((jwk_key(jwk, kid, alg)?, None));
            }
            if let Some(remote) = &self.remote {
                let Some((fetched, generation)) = remote.keys() else {
                    return Err(unavailable(
                        "the identity provider's keys are not loaded yet".into(),
                    ));
                };
                if let Some(jwk) = fetched.find(kid) {
                    return Ok((jwk_key(jwk, kid, alg)?, Some(generation)));
                }
                if remote.want_refresh() {
                    return Err(unavailable(format!(
                        "key `{kid}` is not in the identity provider's keys; fetching them again"
                    )));
                }
            }
            if keys.jwks.is_some() || self.remote.is_some() {
                return Err(rejected(format!("unknown key id `{kid}`")));
            }
        }
        keys.public_keys
            .iter()
            .find(|(key_alg, _)| *key_alg == alg)
            .map(|(_, key)| (key.clone(), None))
            .ok_or_else(|| rejected(format!("{alg:?} tokens are not accepted")))
    }
}

/// The key `jwk` (named `kid`) as it may verify `alg`, or why not.
fn jwk_key(jwk: &Jwk, kid: &str, alg: Algorithm) -> Result<DecodingKey, TokenRejected> {
    if let Some(key_alg) = jwk.common.key_algorithm {
        if key_alg.to_string() != format!("{alg:?}") {
            return Err(rejected(format!(
                "key `{kid}` is for {key_alg}, not {alg:?}"
            )));
        }
    }
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|e| rejected(format!("key `{kid}` is unusable: {e}")))?;
    if key.family() != alg.family() {
        return Err(rejected(format!("key `{kid}` cannot verify {alg:?}")));
    }
    Ok(key)
}

fn describe(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "expired".into(),
        ErrorKind::ImmatureSignature => "not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::InvalidIssuer => "issuer not accepted".into(),
        ErrorKind::InvalidAudience => "audience not accepted".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing claim `{claim}`"),
        ErrorKind::InvalidAlgorithm => "algorithm not accepted".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}
