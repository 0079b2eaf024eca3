use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use routemq_gateway::redis::RedisSettings;
use routemq_gateway::upstream::{HeaderPolicy, PathTemplate};
use routemq_gateway::{Builtin, ForwardRoute, GatewayConfig, RouteTarget};
use routemq_router::{Group, Qos, RouteSpec, RouteTable, TopicPattern};
use thiserror::Error;
use toml::Spanned;

use routemq_gateway::middleware::{MiddlewareConfigs, MiddlewareKinds};

use super::bounds;
use super::guards::{check_routes_against_middleware, reply_topics, service_limits};
use super::middleware::{auth_settings, middleware_configs, Secret, Secrets};
use super::raw::{RawConfig, RawGroup, RawInherited, RawRoute};
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

const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(30);

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
    let at = |span: Option<Range<usize>>, message: String| ConfigError {
        file: file.to_string(),
        line: span.map(|span| line_of(text, span.start)),
        message,
    };
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

    let mut lines = HashMap::new();
    let mut root = Group::root();
    let inherited = RawInherited::default();
    let known = Known {
        middleware: &middleware,
        at: &at,
    };
    for route in raw.routes {
        root = root.route_spec(route_spec(route, "", &inherited, &mut lines, &known)?);
    }
    for group in raw.groups {
        root = root.group(group_spec(group, "", &inherited, &mut lines, &known)?);
    }
    let routes = RouteTable::build(root).map_err(|error| {
        let line = lines.get(error.pattern()).copied();
        ConfigError {
            file: file.to_string(),
            line,
            message: error.to_string(),
        }
    })?;
    if routes.routes().is_empty() {
        return Err(at(None, "no routes are configured".into()));
    }
    check_routes_against_middleware(&routes, &middleware).map_err(|message| {
        let line = lines
            .get(message.split('`').nth(1).unwrap_or_default())
            .copied();
        ConfigError {
            file: file.to_string(),
            line,
            message,
        }
    })?;

    let registry = registry_settings(&raw.registry);
    let gateway = GatewayConfig {
        routes,
        middleware,
        auth,
        limits,
        reply_topics,
        service_limits,
        round_robin_lease: raw.gateway.round_robin_lease.unwrap_or(1).max(1),
        replay_window: raw
            .gateway
            .replay_window
            .unwrap_or(Duration::from_secs(600)),
        replay_max_reply_bytes: raw.gateway.replay_max_reply_bytes.unwrap_or(64 * 1024),
        registry,
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

type At<'a> = dyn Fn(Option<Range<usize>>, String) -> ConfigError + 'a;

/// What route validation checks names against, and how it reports errors.
struct Known<'a> {
    middleware: &'a MiddlewareConfigs,
    at: &'a At<'a>,
}

impl Known<'_> {
    fn check_middleware(&self, names: &[String]) -> Result<(), String> {
        match names
            .iter()
            .find(|name| !self.middleware.contains_key(*name))
        {
            None => Ok(()),
            Some(name) => Err(format!(
                "middleware `{name}` is not defined: add a [middleware.{name}] table"
            )),
        }
    }
}

fn group_spec(
    spanned: Spanned<RawGroup>,
    parent_prefix: &str,
    parent: &RawInherited,
    lines: &mut HashMap<String, usize>,
    known: &Known<'_>,
) -> Result<Group<RouteTarget>, ConfigError> {
    let at = known.at;
    let span = spanned.span();
    let raw = spanned.into_inner();
    let prefix = join(parent_prefix, &raw.prefix);
    if let Some(line) = at(Some(span.clone()), String::new()).line {
        lines.entry(prefix.clone()).or_insert(line);
    }
    known
        .check_middleware(&raw.middleware)
        .map_err(|message| at(Some(span.clone()), format!("group `{prefix}`: {message}")))?;
    let inherited = RawInherited {
        service: raw.service.or_else(|| parent.service.clone()),
        timeout: raw.timeout.or(parent.timeout),
        forward_headers: raw
            .forward_headers
            .or_else(|| parent.forward_headers.clone()),
        anonymous_replay: raw.anonymous_replay.or(parent.anonymous_replay),
    };
    let mut group = Group::new(raw.prefix).middleware(raw.middleware);
    for route in raw.routes {
        group = group.route_spec(route_spec(route, &prefix, &inherited, lines, known)?);
    }
    for child in raw.groups {
        group = group.group(group_spec(child, &prefix, &inherited, lines, known)?);
    }
    Ok(group)
}

fn route_spec(
    spanned: Spanned<RawRoute>,
    prefix: &str,
    inherited: &RawInherited,
    lines: &mut HashMap<String, usize>,
    known: &Known<'_>,
) -> Result<RouteSpec<RouteTarget>, ConfigError> {
    let at = known.at;
    let span = spanned.span();
    let raw = spanned.into_inner();
    let full_topic = join(prefix, &raw.topic);
    let error = |message: String| {
        at(
            Some(span.clone()),
            format!("route `{full_topic}`: {message}"),
        )
    };
    if let Some(line) = at(Some(span.clone()), String::new()).line {
        lines.insert(full_topic.clone(), line);
    }
    let pattern =
        TopicPattern::parse(&full_topic).map_err(|e| at(Some(span.clone()), e.to_string()))?;
    known.check_middleware(&raw.middleware).map_err(&error)?;
    let qos = match raw.qos {
        None => Qos::AtLeastOnce,
        Some(level) => Qos::from_u8(level)
            .ok_or_else(|| error(format!("qos must be 0, 1 or 2, not {level}")))?,
    };
    let target = match raw.handler {
        Some(handler) => {
            if raw.service.is_some() || raw.path.is_some() || raw.method.is_some() {
                return Err(error(
                    "a `handler` route takes no service, method or path".into(),
                ));
            }
            RouteTarget::Builtin(match handler.as_str() {
                "health" => Builtin::Health,
                "services" => Builtin::Services,
                "metrics" => Builtin::Metrics,
                other => {
                    return Err(error(format!(
                        "unknown handler `{other}` (known: health, services, metrics)"
                    )))
                }
            })
        }
        None => {
            let service = raw
                .service
                .or_else(|| inherited.service.clone())
                .ok_or_else(|| {
                    error("no `service` on the route or its groups, and no `handler`".into())
                })?;
            let path = raw
                .path
                .ok_or_else(|| error("a forwarding route needs an upstream `path`".into()))?;
            let path = PathTemplate::parse(&path).map_err(|e| error(e.to_string()))?;
            let topic_params: Vec<&str> = pattern.param_names().collect();
            if let Some(missing) = path.param_names().find(|name| !topic_params.contains(name)) {
                return Err(error(format!(
                    "path parameter `{{{missing}}}` is not in the topic"
                )));
            }
            let method = raw
                .method
                .unwrap_or_else(|| "POST".into())
                .to_ascii_uppercase();
            let method = match method.as_str() {
                "GET" | "POST" | "PUT" | "PATCH" | "DELETE" => {
                    Method::from_bytes(method.as_bytes())
                        .map_err(|_| error(format!("invalid method `{method}`")))?
                }
                other => {
                    return Err(error(format!(
                        "method must be GET, POST, PUT, PATCH or DELETE, not `{other}`"
                    )))
                }
            };
            let forward_headers = raw
                .forward_headers
                .or_else(|| inherited.forward_headers.clone())
                .unwrap_or_default();
            let headers =
                HeaderPolicy::new(forward_headers.iter().map(String::as_str)).map_err(&error)?;
            let timeout = raw
                .timeout
                .or(inherited.timeout)
                .unwrap_or(DEFAULT_ROUTE_TIMEOUT);
            if timeout.is_zero() {
                return Err(error("timeout must be above zero".into()));
            }
            RouteTarget::Forward(ForwardRoute {
                service,
                method,
                path,
                timeout,
                headers,
                anonymous_replay: raw
                    .anonymous_replay
                    .or(inherited.anonymous_replay)
                    .unwrap_or(false),
            })
        }
    };
    Ok(RouteSpec {
        topic: raw.topic,
        qos,
        middleware: raw.middleware,
        target,
    })
}

fn join(prefix: &str, topic: &str) -> String {
    match (prefix.is_empty(), topic.is_empty()) {
        (true, _) => topic.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}/{topic}"),
    }
}

pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
