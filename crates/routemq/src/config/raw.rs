//! The configuration file exactly as written. No defaults are applied and
//! nothing is checked here beyond TOML types.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use super::middleware::OneOrMany;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub mqtt: RawMqtt,
    #[serde(default)]
    pub redis: RawRedis,
    #[serde(default)]
    pub gateway: RawGateway,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub registry: RawRegistry,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub replies: RawReplies,
    /// `[services.NAME]`: per upstream service settings.
    #[serde(default)]
    pub services: BTreeMap<String, RawService>,
    /// `[middleware.NAME]` tables, checked against their kind in `middleware.rs`.
    #[serde(default)]
    pub middleware: BTreeMap<String, Spanned<toml::Table>>,
    #[serde(default)]
    pub groups: Vec<Spanned<RawGroup>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    pub url: Option<String>,
    pub client_id: Option<String>,
    pub share_group: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub keep_alive: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub stall_timeout: Option<Duration>,
    pub max_packet_size: Option<u32>,
    pub max_in_flight: Option<u16>,
    pub max_in_flight_qos0: Option<u16>,
    pub intake_memory_bytes: Option<usize>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub tls: Option<RawTls>,
}

/// `[mqtt.tls]` / `[redis.tls]`: PEM files, relative to the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub command_timeout: Option<Duration>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    #[serde(default, with = "humantime_serde")]
    pub drain_timeout: Option<Duration>,
    pub round_robin_lease: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub replay_window: Option<Duration>,
    pub replay_max_reply_bytes: Option<usize>,
    pub service_max_in_flight: Option<usize>,
    pub service_min_in_flight: Option<usize>,
    pub service_max_held: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub queue_timeout: Option<Duration>,
    /// The default of every route's `deadline_header`.
    pub deadline_header: Option<String>,
}

/// Where replies may be published.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplies {
    pub allow: Option<Vec<String>>,
    pub legacy_levels: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub max_in_flight: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_payload_bytes: Option<usize>,
    pub max_user_properties: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub max_param_bytes: Option<usize>,
    pub max_response_bytes: Option<usize>,
    pub max_chunked_reply_bytes: Option<usize>,
    pub max_large_replies: Option<usize>,
    pub max_topic_bytes: Option<usize>,
    pub max_topic_levels: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    #[serde(default, with = "humantime_serde")]
    pub refresh_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub health_check_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub health_check_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    #[serde(default, with = "humantime_serde")]
    pub flush_interval: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub metrics_addr: Option<String>,
    pub request_log: Option<bool>,
    pub request_log_length: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub jwt: Option<RawJwt>,
    pub api_keys: Option<RawApiKeys>,
}

/// Where JWT verification keys come from: never the file itself.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    pub hs256_secret_env: Option<String>,
    pub hs256_secret_file: Option<String>,
    #[serde(default)]
    pub public_keys: Vec<RawPublicKey>,
    pub jwks_file: Option<String>,
    /// The identity provider's key set URL, fetched and kept current.
    pub jwks_url: Option<String>,
    pub jwks_ca_file: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub jwks_min_refresh: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub jwks_max_refresh: Option<Duration>,
    pub jwks_max_bytes: Option<usize>,
    pub issuer: Option<OneOrMany>,
    pub audience: Option<OneOrMany>,
    #[serde(default, with = "humantime_serde")]
    pub leeway: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPublicKey {
    pub algorithm: String,
    pub file: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeys {
    pub enabled: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub refresh_interval: Option<Duration>,
}

/// Settings a group passes down to every route and group beneath it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInherited {
    pub service: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub forward_headers: Option<Vec<String>>,
    pub anonymous_replay: Option<bool>,
    pub deadline_header: Option<String>,
    pub chunked_replies: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub prefix: String,
    #[serde(default)]
    pub middleware: Vec<String>,
    pub service: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub forward_headers: Option<Vec<String>>,
    pub anonymous_replay: Option<bool>,
    pub deadline_header: Option<String>,
    pub chunked_replies: Option<String>,
    #[serde(default)]
    pub groups: Vec<Spanned<RawGroup>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub topic: String,
    pub qos: Option<u8>,
    #[serde(default)]
    pub middleware: Vec<String>,
    pub service: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub handler: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub forward_headers: Option<Vec<String>>,
    pub anonymous_replay: Option<bool>,
    pub deadline_header: Option<String>,
    pub chunked_replies: Option<String>,
    /// Identical concurrent GETs share one upstream call.
    pub coalesce: Option<bool>,
    /// The reply does not depend on who asks: coalescing may join callers.
    pub coalesce_across_callers: Option<bool>,
}
