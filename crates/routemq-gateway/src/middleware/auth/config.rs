//! The `auth` kind's configuration: its `[middleware.NAME]` table as
//! written (unknown fields refused), validated into the spec that builds
//! the running middleware, and the kind's registration.

use std::sync::Arc;

use serde::Deserialize;

use super::{Auth, AuthMethod};
use crate::middleware::kinds::{settings, Kind};
use crate::middleware::{
    Contract, KindContext, Middleware, MiddlewareConfig, MiddlewareKind, Resources,
};
use crate::ErrorKind;

#[derive(Debug, Clone)]
pub struct AuthSpec {
    pub methods: Vec<AuthMethod>,
    /// All required.
    pub scopes: Vec<String>,
    /// Any one required; empty requires none.
    pub roles: Vec<String>,
}

impl MiddlewareConfig for AuthSpec {
    fn build(&self, name: &str, _: &Resources) -> Arc<dyn Middleware> {
        Arc::new(Auth::new(name.to_string(), self.clone()))
    }

    fn contract(&self) -> Contract {
        let mut effect = "requires verified credentials".to_string();
        if !self.scopes.is_empty() {
            effect.push_str(&format!(" with the scopes {}", self.scopes.join(", ")));
        }
        if !self.roles.is_empty() {
            effect.push_str(&format!(" and one of the roles {}", self.roles.join(", ")));
        }
        Contract {
            kind: Some("auth"),
            effect,
            credentials: self.methods.clone(),
            errors: vec![
                ErrorKind::Unauthorized,
                ErrorKind::Forbidden,
                ErrorKind::AuthUnavailable,
            ],
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    methods: Option<Vec<String>>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
}

fn validate(raw: RawAuth, context: &KindContext<'_>) -> Result<AuthSpec, String> {
    let configured = context.auth_methods;
    let methods = match raw.methods {
        None => configured.to_vec(),
        Some(names) => names
            .iter()
            .map(|method| match method.as_str() {
                "jwt" => Ok(AuthMethod::Jwt),
                "api_key" => Ok(AuthMethod::ApiKey),
                other => Err(format!("unknown method `{other}` (known: jwt, api_key)")),
            })
            .collect::<Result<_, _>>()?,
    };
    if let Some(missing) = methods.iter().find(|m| !configured.contains(m)) {
        let section = match missing {
            AuthMethod::Jwt => "jwt",
            AuthMethod::ApiKey => "api_keys",
        };
        return Err(format!(
            "method {missing:?} needs [auth.{section}] to be configured"
        ));
    }
    if methods.is_empty() {
        return Err("no credentials configured: add [auth.jwt] or [auth.api_keys]".into());
    }
    Ok(AuthSpec {
        methods,
        scopes: raw.scopes,
        roles: raw.roles,
    })
}

pub(in crate::middleware) fn kind() -> Arc<dyn MiddlewareKind> {
    Arc::new(Kind::new("auth", |table, context| {
        Ok(Arc::new(validate(settings(table)?, context)?))
    }))
}
