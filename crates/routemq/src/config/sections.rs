//! The settings sections of the file (`[mqtt]`, `[redis]`, `[limits]`,
//! `[registry]`, `[telemetry]`), each from its raw form to typed values;
//! `ROUTEMQ_*` environment variables override the addresses.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use routemq_client::{BrokerTransport, BrokerUrl};
use routemq_gateway::redis::RedisSettings;
use routemq_gateway::tls::TlsFiles;
use routemq_gateway::{Limits, RegistrySettings};

use super::middleware::Secrets;
use super::raw::{RawLimits, RawMqtt, RawRedis, RawRegistry, RawTelemetry};
use super::security::{credentials, credentials_in_url, tls_files, RawCredentials, MQTT, REDIS};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

#[derive(Clone, PartialEq, Eq)]
pub struct MqttSettings {
    /// The host, or for WebSocket the whole URL (rumqttc's convention).
    pub host: String,
    pub port: u16,
    pub transport: BrokerTransport,
    /// Trust and client certificate, for `mqtts://` and `wss://`.
    pub tls: Option<TlsFiles>,
    pub credentials: Option<(String, String)>,
    /// A fixed client id; when absent each worker generates a unique one
    /// (clean start, so a random id never leaves a persistent session behind).
    pub client_id: Option<String>,
    pub share_group: String,
    pub keep_alive: Duration,
    /// How long a reply or ack handed to the client may wait to go out
    /// before the connection counts as stuck and is replaced.
    pub stall_timeout: Duration,
    pub max_packet_size: u32,
    pub max_in_flight: u16,
    /// QoS 0 requests handled at once; more are shed.
    pub max_in_flight_qos0: u16,
    /// Bytes the requests a worker has taken in may hold between them
    /// (`runtime/memory.rs`).
    pub intake_memory_bytes: usize,
}

impl std::fmt::Debug for MqttSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is a secret: only the user is shown.
        f.debug_struct("MqttSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("share_group", &self.share_group)
            .finish_non_exhaustive()
    }
}

/// Where configuration files and secrets are read, and what to warn about.
pub struct Context<'e, 's, 'b> {
    pub env: Env<'e>,
    pub secrets: &'b mut Secrets<'s>,
    pub config_dir: &'b Path,
    pub warnings: &'b mut Vec<String>,
}

pub fn mqtt_settings(
    raw: RawMqtt,
    context: &mut Context<'_, '_, '_>,
) -> Result<MqttSettings, String> {
    let url = (context.env)("ROUTEMQ_MQTT_URL")
        .or(raw.url)
        .unwrap_or_else(|| "mqtt://127.0.0.1:1883".into());
    let broker = BrokerUrl::parse(&url).map_err(|_| {
        format!("mqtt url `{url}` is invalid: use mqtt://, mqtts://, ws:// or wss://")
    })?;
    let tls_url = matches!(
        broker.transport,
        BrokerTransport::Tls | BrokerTransport::Wss
    );
    let tls = tls_files(&MQTT, raw.tls, tls_url, context.config_dir)?;
    let given = RawCredentials {
        username: raw.username,
        password_env: raw.password_env,
        password_file: raw.password_file,
    };
    let credentials = match credentials(&MQTT, given, context.secrets, context.config_dir)? {
        (Some(user), password) => Some((user, password.unwrap_or_default())),
        (None, Some(_)) => return Err("mqtt: a password needs mqtt.username".into()),
        (None, None) => {
            if broker.credentials.is_some() {
                context.warnings.push(credentials_in_url("mqtt"));
            }
            broker.credentials
        }
    };
    let share_group = raw.share_group.unwrap_or_else(|| "gw".into());
    if share_group.is_empty() || share_group.contains(['/', '+', '#']) {
        return Err(format!(
            "mqtt.share_group `{share_group}` may not be empty or contain `/`, `+`, `#`"
        ));
    }
    let max_in_flight = raw.max_in_flight.unwrap_or(2048).max(1);
    Ok(MqttSettings {
        host: broker.host,
        port: broker.port,
        transport: broker.transport,
        tls,
        credentials,
        client_id: raw.client_id,
        share_group,
        keep_alive: raw.keep_alive.unwrap_or(Duration::from_secs(30)),
        stall_timeout: raw.stall_timeout.unwrap_or(Duration::from_secs(10)),
        max_packet_size: raw.max_packet_size.unwrap_or(1024 * 1024),
        max_in_flight,
        max_in_flight_qos0: raw
            .max_in_flight_qos0
            .unwrap_or((max_in_flight / 4).max(1))
            .max(1),
        intake_memory_bytes: raw.intake_memory_bytes.unwrap_or(128 << 20),
    })
}

pub fn redis_settings(
    raw: RawRedis,
    context: &mut Context<'_, '_, '_>,
) -> Result<RedisSettings, String> {
    let mut redis = RedisSettings::new(
        (context.env)("ROUTEMQ_REDIS_URL")
            .or(raw.url)
            .unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
    );
    let tls_url = redis.url.starts_with("rediss://") || redis.url.starts_with("rediss-cluster://");
    redis.tls = tls_files(&REDIS, raw.tls, tls_url, context.config_dir)?;
    let given = RawCredentials {
        username: raw.username,
        password_env: raw.password_env,
        password_file: raw.password_file,
    };
    (redis.username, redis.password) =
        credentials(&REDIS, given, context.secrets, context.config_dir)?;
    let authority = redis
        .url
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let in_url = authority
        .split(['/', '?'])
        .next()
        .unwrap_or_default()
        .contains('@');
    if in_url && redis.password.is_none() {
        context.warnings.push(credentials_in_url("redis"));
    }
    // Within 1 ms..=500 ms (`bounds.rs`).
    if let Some(timeout) = raw.command_timeout {
        redis.command_timeout = timeout;
    }
    Ok(redis)
}

pub fn limits(given: &RawLimits, mqtt: &MqttSettings) -> Result<Limits, String> {
    let defaults = Limits::default();
    let limits = Limits {
        max_payload_bytes: given
            .max_payload_bytes
            .unwrap_or(defaults.max_payload_bytes),
        max_user_properties: given
            .max_user_properties
            .unwrap_or(defaults.max_user_properties),
        max_header_bytes: given.max_header_bytes.unwrap_or(defaults.max_header_bytes),
        max_param_bytes: given.max_param_bytes.unwrap_or(defaults.max_param_bytes),
        max_response_bytes: given
            .max_response_bytes
            .unwrap_or(defaults.max_response_bytes),
        max_chunked_reply_bytes: given
            .max_chunked_reply_bytes
            .unwrap_or(defaults.max_chunked_reply_bytes),
        max_large_replies: given
            .max_large_replies
            .unwrap_or(defaults.max_large_replies),
        max_topic_bytes: given.max_topic_bytes.unwrap_or(defaults.max_topic_bytes),
        max_topic_levels: given.max_topic_levels.unwrap_or(defaults.max_topic_levels),
    };
    if limits.max_payload_bytes as u64 >= u64::from(mqtt.max_packet_size) {
        return Err(format!(
            "limits.max_payload_bytes ({}) must be below mqtt.max_packet_size ({}) so oversized payloads get a 413 reply",
            limits.max_payload_bytes, mqtt.max_packet_size
        ));
    }
    Ok(limits)
}

/// Where probes and metrics are served, and how long the request logs are.
pub fn telemetry(
    raw: RawTelemetry,
    env: Env<'_>,
) -> Result<(Option<SocketAddr>, Option<usize>), String> {
    let metrics_addr = env("ROUTEMQ_METRICS_ADDR")
        .or(raw.metrics_addr)
        .filter(|addr| !addr.is_empty())
        .map(|addr| {
            addr.parse::<SocketAddr>().map_err(|error| {
                format!("telemetry.metrics_addr `{addr}` is not host:port: {error}")
            })
        })
        .transpose()?;
    let request_log_length = match raw.request_log {
        Some(false) => None,
        _ => Some(raw.request_log_length.unwrap_or(1000).max(1)),
    };
    Ok((metrics_addr, request_log_length))
}

pub fn registry_settings(raw: &RawRegistry) -> RegistrySettings {
    RegistrySettings {
        refresh_interval: raw.refresh_interval.unwrap_or(Duration::from_secs(1)),
        health_check_interval: raw.health_check_interval.unwrap_or(Duration::from_secs(5)),
        health_check_timeout: raw.health_check_timeout.unwrap_or(Duration::from_secs(2)),
    }
}
