//! Your own middleware kind in a real worker: refuse requests without a
//! tenant user property, and pass the tenant upstream in the body. The kind
//! is registered by name beside the built-in ones; the binary is the whole
//! `routemq` command line, so it runs workers from a config file:
//!
//! ```sh
//! cargo run -p routemq --example custom_middleware -- \
//!     check-config crates/routemq/examples/custom_middleware.toml
//! cargo run -p routemq --example custom_middleware -- \
//!     worker --config crates/routemq/examples/custom_middleware.toml
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use routemq_gateway::middleware::{
    kinds, Contract, Flow, Kind, Middleware, MiddlewareConfig, MiddlewareKinds, RequestContext,
    Resources,
};
use routemq_gateway::{ErrorKind, GatewayError};
use serde::Deserialize;
use serde_json::Value;

/// `[middleware.NAME]` with `kind = "require_tenant"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequireTenantConfig {
    /// The user property that names the tenant.
    #[serde(default = "default_property")]
    property: String,
    /// The body field the tenant is written to.
    #[serde(default = "default_field")]
    field: String,
}

fn default_property() -> String {
    "x-tenant".to_string()
}

fn default_field() -> String {
    "tenant".to_string()
}

impl MiddlewareConfig for RequireTenantConfig {
    fn build(&self, name: &str, _resources: &Resources) -> Arc<dyn Middleware> {
        Arc::new(RequireTenant {
            name: name.to_string(),
            config: self.clone(),
        })
    }

    /// What `routemq asyncapi` publishes about routes that run it.
    fn contract(&self) -> Contract {
        Contract {
            kind: Some("require_tenant"),
            effect: format!(
                "requires the {} user property and passes it upstream as the body's `{}`",
                self.property, self.field
            ),
            credentials: Vec::new(),
            errors: vec![ErrorKind::Forbidden],
        }
    }
}

struct RequireTenant {
    name: String,
    config: RequireTenantConfig,
}

impl Middleware for RequireTenant {
    fn name(&self) -> &str {
        &self.name
    }

    /// Runs in chain order before anything is sent upstream; an error becomes the reply.
    fn request_filter(&self, ctx: &mut RequestContext<'_>) -> Result<Flow, GatewayError> {
        let Some(tenant) = ctx.headers.get(&self.config.property) else {
            return Err(GatewayError::new(
                ErrorKind::Forbidden,
                format!("the {} user property is required", self.config.property),
            ));
        };
        if ctx.body.is_null() {
            ctx.body = Value::Object(Default::default());
        }
        if let Some(body) = ctx.body.as_object_mut() {
            body.insert(self.config.field.clone(), Value::String(tenant.to_string()));
        }
        Ok(Flow::Continue)
    }
}

fn main() -> ExitCode {
    let mut kinds = MiddlewareKinds::default();
    let require_tenant = Kind::new("require_tenant", |table, _context| {
        let config: RequireTenantConfig = kinds::settings(table)?;
        if config.property.is_empty() {
            return Err("property may not be empty".to_string());
        }
        Ok(Arc::new(config) as Arc<dyn MiddlewareConfig>)
    });
    if let Err(error) = kinds.register(require_tenant) {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    routemq::cli::main_with(kinds)
}
