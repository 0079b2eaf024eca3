//! The settings sections of the file (`[mqtt]`, `[redis]`, `[limits]`,
//! `[registry]`, `[telemetry]`), each from its raw form to typed values;
//! `ROUTEMQ_*` environment variables override the addresses.

use std::net::SocketAddr;
use std::time::Duration;

use routemq_client::{BrokerTransport, BrokerUrl};
use routemq_gateway::redis::RedisSettings;
use routemq_gateway::{Limits, RegistrySettings};

use super::raw::{RawLimits, RawMqtt, RawRedis, RawRegistry, RawTelemetry};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
    /// A fixed client id; when absent each worker generates a unique one
    /// (clean start, so a random id never leaves a persistent session behind).
    pub client_id: Option<String>,
    pub share_group: String,
    pub keep_alive: Duration,
    pub max_packet_size: u32,
    pub max_in_flight: u16,
    /// QoS 0 requests handled at once; more are shed.
    pub max_in_flight_qos0: u16,
}

pub fn mqtt_settings(raw: RawMqtt, env: Env<'_>) -> Result<MqttSettings, String> {
    let url = env("ROUTEMQ_MQTT_URL")
        .or(raw.url)
        .unwrap_or_else(|| "mqtt://127.0.0.1:1883".into());
    let broker = BrokerUrl::parse(&url).map_err(|_| format!("mqtt url `{url}` is invalid"))?;
    // A worker connects over plain TCP.
    if broker.transport != BrokerTransport::Tcp {
        return Err(format!(
            "mqtt url `{url}` must start with mqtt:// or tcp://"
        ));
    }
    let share_group = raw.share_group.unwrap_or_else(|| "gw".into());
    if share_group.is_empty() || share_group.contains(['/', '+', '#']) {
        return Err(format!(
            "mqtt.share_group `{share_group}` may not be empty or contain `/`, `+`, `#`"
        ));
    }
    let max_in_flight = raw.max_in_flight.unwrap_or(256).max(1);
    Ok(MqttSettings {
        host: broker.host,
        port: broker.port,
        credentials: broker.credentials,
        client_id: raw.client_id,
        share_group,
        keep_alive: raw.keep_alive.unwrap_or(Duration::from_secs(30)),
        max_packet_size: raw.max_packet_size.unwrap_or(1024 * 1024),
        max_in_flight,
        max_in_flight_qos0: raw
            .max_in_flight_qos0
            .unwrap_or((max_in_flight / 4).max(1))
            .max(1),
    })
}

pub fn redis_settings(raw: RawRedis, env: Env<'_>) -> Result<RedisSettings, String> {
    let mut redis = RedisSettings::new(
        env("ROUTEMQ_REDIS_URL")
            .or(raw.url)
            .unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
    );
    if let Some(timeout) = raw.command_timeout {
        if timeout.is_zero() || timeout > Duration::from_millis(500) {
            return Err("redis.command_timeout must be between 1ms and 500ms".into());
        }
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
        max_topic_bytes: given.max_topic_bytes.unwrap_or(defaults.max_topic_bytes),
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
