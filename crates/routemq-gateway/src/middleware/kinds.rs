//! Middleware kinds by name (the registry of kinds; services have theirs
//! in [`crate::registry`]). A `[middleware.NAME]` table names its kind
//! (`kind = "rate_limit"`, or the table's own name); the kind validates the
//! table into a [`MiddlewareConfig`], which builds the running middleware
//! once the worker's shared resources exist. Built-in kinds and a user's own
//! register the same way: a binary that embeds the gateway adds its kinds to
//! [`MiddlewareKinds`] before it reads the configuration, so an unknown kind
//! or two kinds under one name are caught before any worker starts.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{KindContext, MiddlewareConfig, MiddlewareKind};

/// A kind made of its name and a validating function: what most kinds need.
pub struct Kind<F> {
    name: &'static str,
    configure: F,
}

impl<F> Kind<F>
where
    F: Fn(toml::Table, &KindContext<'_>) -> Result<Arc<dyn MiddlewareConfig>, String> + Send + Sync,
{
    pub fn new(name: &'static str, configure: F) -> Kind<F> {
        Kind { name, configure }
    }
}

impl<F> MiddlewareKind for Kind<F>
where
    F: Fn(toml::Table, &KindContext<'_>) -> Result<Arc<dyn MiddlewareConfig>, String> + Send + Sync,
{
    fn kind(&self) -> &'static str {
        self.name
    }

    fn configure(
        &self,
        settings: toml::Table,
        context: &KindContext<'_>,
    ) -> Result<Arc<dyn MiddlewareConfig>, String> {
        (self.configure)(settings, context)
    }
}

/// Reads a table into a kind's own settings type; declare it with
/// `#[serde(deny_unknown_fields)]` so a misspelt field is an error.
pub fn settings<T: DeserializeOwned>(table: toml::Table) -> Result<T, String> {
    T::deserialize(toml::Value::Table(table)).map_err(|error| error.message().to_string())
}

/// A kind whose table reads into `Raw` (declare it with
/// `#[serde(deny_unknown_fields)]`) and validates into `Spec` on its own:
/// what every built-in kind but `auth` is.
pub fn validated<Raw, Spec>(
    name: &'static str,
    validate: fn(Raw) -> Result<Spec, String>,
) -> Arc<dyn MiddlewareKind>
where
    Raw: DeserializeOwned + 'static,
    Spec: MiddlewareConfig + 'static,
{
    Arc::new(Kind::new(name, move |table, _: &KindContext<'_>| {
        let spec: Arc<dyn MiddlewareConfig> = Arc::new(validate(settings(table)?)?);
        Ok(spec)
    }))
}

/// A table written as TOML text, validated: for kinds' unit tests.
#[cfg(test)]
pub(crate) fn from_toml<Raw: DeserializeOwned, Spec>(
    text: &str,
    validate: fn(Raw) -> Result<Spec, String>,
) -> Result<Spec, String> {
    validate(settings(toml::from_str(text).map_err(|e| e.to_string())?)?)
}

/// A duration a table must not leave at zero.
pub fn positive(duration: Duration, field: &str) -> Result<Duration, String> {
    if duration.is_zero() {
        return Err(format!("{field} must be above zero"));
    }
    Ok(duration)
}

/// Two kinds registered under one name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("middleware kind `{0}` is registered twice")]
pub struct DuplicateKind(pub &'static str);

/// The kinds a configuration may use.
#[derive(Clone)]
pub struct MiddlewareKinds {
    kinds: BTreeMap<&'static str, Arc<dyn MiddlewareKind>>,
}

impl MiddlewareKinds {
    /// No kinds at all; [`MiddlewareKinds::default`] has the built-in ones.
    pub fn empty() -> MiddlewareKinds {
        MiddlewareKinds {
            kinds: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for MiddlewareKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

impl MiddlewareKinds {
    /// Adds a kind; a name already taken (built-in or not) is refused.
    pub fn register(&mut self, kind: impl MiddlewareKind + 'static) -> Result<(), DuplicateKind> {
        self.register_shared(Arc::new(kind))
    }

    pub(super) fn register_shared(
        &mut self,
        kind: Arc<dyn MiddlewareKind>,
    ) -> Result<(), DuplicateKind> {
        let name = kind.kind();
        if self.kinds.contains_key(name) {
            return Err(DuplicateKind(name));
        }
        self.kinds.insert(name, kind);
        Ok(())
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }

    /// Validates one `[middleware.NAME]` table. Its `kind` defaults to its
    /// name, so `[middleware.cors]` is a CORS middleware and
    /// `[middleware.admin_only]` needs `kind = "auth"`.
    pub fn configure(
        &self,
        name: &str,
        mut table: toml::Table,
        context: &KindContext<'_>,
    ) -> Result<Arc<dyn MiddlewareConfig>, String> {
        let kind = match table.remove("kind") {
            None => name.to_string(),
            Some(toml::Value::String(kind)) => kind,
            Some(other) => return Err(format!("kind must be a string, not {other}")),
        };
        let Some(found) = self.kinds.get(kind.as_str()) else {
            let known: Vec<&str> = self.names().collect();
            return Err(format!(
                "unknown middleware kind `{kind}` (known: {})",
                known.join(", ")
            ));
        };
        found
            .configure(table, context)
            .map_err(|message| format!("{kind} middleware: {message}"))
    }
}
