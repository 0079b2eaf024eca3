use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use routemq_gateway::redis::RedisSettings;
use routemq_gateway::GatewayConfig;
use thiserror::Error;

use routemq_gateway::middleware::MiddlewareKinds;

use super::bounds;
use super::guards::{reply_topics, service_limits};
use super::middleware::{auth_settings, middleware_configs, Secret, Secrets};
use super::raw::{RawConfig, RawGateway};
use super::routes::route_table;
pub use super::sections::MqttSettings;
use super::sections::{
    limits, mqtt_settings, redis_settings, registry_settings, telemetry, Context,
};

/// A configuration problem, with the file and (when known) the line.
#[derive(Debug, Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

/// A validated worker configuration: the gateway's settings and what the
/// binary itself runs (the MQTT connection, Redis, probes, the drain).
#[derive(Debug)]
pub struct WorkerConfig {
    pub mqtt: MqttSettings,
    pub redis: RedisSettings,
    pub drain_timeout: Duration,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None`: not served.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub gateway: GatewayConfig,
    /// The secrets the configuration names, and whether each was found.
    pub secrets: Vec<Secret>,
    /// What is allowed but unwise (credentials inside URLs), for the log.
    pub warnings: Vec<String>,
}

impl WorkerConfig {
    /// Secrets a worker needs that were not found (only when they were deferred).
    pub fn missing_secrets(&self) -> impl Iterator<Item = &Secret> {
        self.secrets.iter().filter(|secret| !secret.present)
    }
}

/// How configuration is read: the middleware kinds it may use, and whether
/// the secrets it names must be present (a worker) or only listed
/// (`check-config`, `routes`).
#[derive(Clone, Default)]
pub struct Loader {
    kinds: MiddlewareKinds,
    defer_secrets: bool,
}

impl Loader {
    pub fn new(kinds: MiddlewareKinds) -> Loader {
        Loader {
            kinds,
            defer_secrets: false,
        }
    }

    /// Lists missing secrets instead of refusing the configuration.
    pub fn defer_secrets(mut self) -> Loader {
        self.defer_secrets = true;
        self
    }

    /// Reads and validates a file; `ROUTEMQ_MQTT_URL` and `ROUTEMQ_REDIS_URL` override its addresses.
    pub fn load(&self, path: &Path) -> Result<WorkerConfig, ConfigError> {
        let (text, file) = read(path)?;
        self.parse(&text, &file, &|name| std::env::var(name).ok())
    }

    /// Validates configuration text; `env` looks up environment overrides and secrets.
    pub fn parse(
        &self,
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<WorkerConfig, ConfigError> {
        let mut secrets = Secrets::new(env, !self.defer_secrets);
        parse_with(text, file, env, &mut secrets, &self.kinds)
    }
}

/// A configuration file's text, and its name as errors print it.
pub(super) fn read(path: &Path) -> Result<(String, String), ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
        file: file.clone(),
        line: None,
        message: format!("cannot read the file: {error}"),
    })?;
    Ok((text, file))
}

/// [`Loader::load`] with the built-in middleware kinds, secrets required.
pub fn load(path: &Path) -> Result<WorkerConfig, ConfigError> {
    Loader::default().load(path)
}

/// [`Loader::parse`] with the built-in middleware kinds, secrets required.
pub fn parse(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<WorkerConfig, ConfigError> {
    Loader::default().parse(text, file, env)
}

fn parse_with(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: &mut Secrets<'_>,
    kinds: &MiddlewareKinds,
) -> Result<WorkerConfig, ConfigError> {
    let at = |span: Option<Range<usize>>, message| config_error(file, text, span, message);
    let raw: RawConfig =
        toml::from_str(text).map_err(|error| at(error.span(), error.message().to_string()))?;
    bounds::check(&raw)
        .map_err(|refused| at(bounds::span_of(text, &refused.key), refused.message))?;

    let config_dir = Path::new(file).parent().unwrap_or(Path::new("."));
    let mut warnings = Vec::new();
    let mut context = Context {
        env,
        secrets,
        config_dir,
        warnings: &mut warnings,
    };
    let mqtt = mqtt_settings(raw.mqtt, &mut context).map_err(|message| at(None, message))?;
    let redis = redis_settings(raw.redis, &mut context).map_err(|message| at(None, message))?;
    let service_limits = service_limits(&raw.gateway, &raw.services, mqtt.max_in_flight);
    let reply_topics = reply_topics(raw.replies).map_err(|message| at(None, message))?;
    let limits = limits(&raw.limits, &mqtt).map_err(|message| at(None, message))?;
    let (metrics_addr, request_log_length) =
        telemetry(raw.telemetry, env).map_err(|message| at(None, message))?;
    let auth = auth_settings(raw.auth, config_dir, secrets).map_err(|message| at(None, message))?;
    let middleware = middleware_configs(raw.middleware, &auth, kinds)
        .map_err(|(span, message)| at(Some(span), message))?;

    let routes = route_table(raw.routes, raw.groups, &middleware, &at, file, &raw.gateway)?;
    let (round_robin_lease, replay_window, replay_max_reply_bytes) = lease_and_replay(&raw.gateway);
    let gateway = GatewayConfig {
        routes,
        middleware,
        auth,
        limits,
        reply_topics,
        service_limits,
        round_robin_lease,
        replay_window,
        replay_max_reply_bytes,
        registry: registry_settings(&raw.registry),
        metrics_flush_interval: raw.metrics.flush_interval.unwrap_or(Duration::from_secs(1)),
        request_log_length,
        version: version_of(text),
    };
    Ok(WorkerConfig {
        mqtt,
        redis,
        drain_timeout: raw.gateway.drain_timeout.unwrap_or(Duration::from_secs(15)),
        metrics_addr,
        gateway,
        secrets: std::mem::take(&mut secrets.named),
        warnings,
    })
}

/// An error at `span` of `text` (the line is reckoned from it).
fn config_error(
    file: &str,
    text: &str,
    span: Option<Range<usize>>,
    message: String,
) -> ConfigError {
    ConfigError {
        file: file.to_string(),
        line: span.map(|span| line_of(text, span.start)),
        message,
    }
}

/// `[gateway]`'s round-robin lease and replay store, with their defaults.
fn lease_and_replay(gateway: &RawGateway) -> (u32, Duration, usize) {
    let lease = gateway.round_robin_lease.unwrap_or(1).max(1);
    let window = gateway.replay_window.unwrap_or(Duration::from_secs(600));
    (
        lease,
        window,
        gateway.replay_max_reply_bytes.unwrap_or(64 * 1024),
    )
}

/// A configuration's version: the first 64 bits of its text's SHA-256, in
/// hex. Equal files give equal versions on every worker, so an operator can
/// tell which replicas applied a change.
pub fn version_of(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
