//! Section settings the runtime cannot run with, refused when the file is
//! read, each with the line it is on: a zero period panics the clock of a
//! background task (which would then be gone while the worker serves on
//! without it), rumqttc panics on a keep-alive under 5 s and MQTT cannot
//! carry one over 65 535 s, a zero-byte topic or packet cap refuses
//! everything. Middleware tables and routes check their own values.

use std::ops::Range;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::raw::RawConfig;

/// What a value must be.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// A duration above zero.
    Positive,
    /// A duration within these bounds, inclusive.
    Between(Duration, Duration),
    /// A count of at least one.
    AtLeastOne,
    /// A count within these bounds, inclusive.
    CountBetween(u64, u64),
}

/// One setting's value as written.
enum Value {
    Duration(Option<Duration>),
    Count(Option<u64>),
}

/// A refused setting: where it is (the key path) and why.
pub struct OutOfBounds {
    pub key: Vec<String>,
    pub message: String,
}

/// A setting's key, value and the rule it must keep.
type Setting = (&'static [&'static str], Value, Rule);

/// Every bounded setting of `raw`, or the first one out of bounds.
pub fn check(raw: &RawConfig) -> Result<(), OutOfBounds> {
    let settings: Vec<(Vec<String>, Value, Rule)> = [
        connection_settings(raw),
        gateway_settings(raw),
        background_settings(raw),
    ]
    .into_iter()
    .flatten()
    .map(|(key, value, rule)| (key.iter().map(|k| k.to_string()).collect(), value, rule))
    .chain(raw.auth.api_keys.iter().map(|keys| {
        let key = vec!["auth".into(), "api_keys".into(), "refresh_interval".into()];
        (key, Value::Duration(keys.refresh_interval), Rule::Positive)
    }))
    .chain(raw.services.iter().map(|(name, service)| {
        let key = vec!["services".into(), name.clone(), "max_in_flight".into()];
        (
            key,
            Value::Count(service.max_in_flight.map(as_u64)),
            Rule::AtLeastOne,
        )
    }))
    .collect();
    for (key, value, rule) in settings {
        if let Some(problem) = violation(&value, rule) {
            return Err(OutOfBounds {
                message: format!("{} {problem}", key.join(".")),
                key,
            });
        }
    }
    Ok(())
}

/// `[mqtt]` and `[redis]`.
fn connection_settings(raw: &RawConfig) -> Vec<Setting> {
    use Value::{Count, Duration as Period};
    vec![
        (
            &["mqtt", "keep_alive"],
            Period(raw.mqtt.keep_alive),
            Rule::Between(secs(5), secs(65_535)),
        ),
        (
            &["mqtt", "stall_timeout"],
            Period(raw.mqtt.stall_timeout),
            Rule::Positive,
        ),
        (
            &["mqtt", "max_packet_size"],
            Count(raw.mqtt.max_packet_size.map(u64::from)),
            Rule::AtLeastOne,
        ),
        (
            &["mqtt", "max_in_flight"],
            Count(raw.mqtt.max_in_flight.map(u64::from)),
            Rule::AtLeastOne,
        ),
        (
            &["mqtt", "max_in_flight_qos0"],
            Count(raw.mqtt.max_in_flight_qos0.map(u64::from)),
            Rule::AtLeastOne,
        ),
        (
            &["mqtt", "intake_memory_bytes"],
            Count(raw.mqtt.intake_memory_bytes.map(as_u64)),
            Rule::CountBetween(1 << 20, u64::MAX),
        ),
        (
            &["redis", "command_timeout"],
            Period(raw.redis.command_timeout),
            Rule::Between(Duration::from_millis(1), Duration::from_millis(500)),
        ),
    ]
}

/// `[gateway]` and `[limits]`.
fn gateway_settings(raw: &RawConfig) -> Vec<Setting> {
    use Value::{Count, Duration as Period};
    vec![
        (
            &["gateway", "round_robin_lease"],
            Count(raw.gateway.round_robin_lease.map(u64::from)),
            Rule::AtLeastOne,
        ),
        (
            &["gateway", "service_max_in_flight"],
            Count(raw.gateway.service_max_in_flight.map(as_u64)),
            Rule::AtLeastOne,
        ),
        (
            &["gateway", "service_min_in_flight"],
            Count(raw.gateway.service_min_in_flight.map(as_u64)),
            Rule::AtLeastOne,
        ),
        (
            &["gateway", "service_max_held"],
            Count(raw.gateway.service_max_held.map(as_u64)),
            Rule::AtLeastOne,
        ),
        (
            &["gateway", "queue_timeout"],
            Period(raw.gateway.queue_timeout),
            Rule::Positive,
        ),
        (
            &["limits", "max_param_bytes"],
            Count(raw.limits.max_param_bytes.map(as_u64)),
            Rule::AtLeastOne,
        ),
        (
            &["limits", "max_response_bytes"],
            Count(raw.limits.max_response_bytes.map(as_u64)),
            Rule::AtLeastOne,
        ),
        (
            &["limits", "max_chunked_reply_bytes"],
            Count(raw.limits.max_chunked_reply_bytes.map(as_u64)),
            Rule::AtLeastOne,
        ),
        (
            &["limits", "max_large_replies"],
            Count(raw.limits.max_large_replies.map(as_u64)),
            Rule::AtLeastOne,
        ),
        (
            &["limits", "max_topic_bytes"],
            Count(raw.limits.max_topic_bytes.map(as_u64)),
            Rule::CountBetween(1, 65_535),
        ),
        (
            &["limits", "max_topic_levels"],
            Count(raw.limits.max_topic_levels.map(as_u64)),
            Rule::AtLeastOne,
        ),
    ]
}

/// `[registry]`, `[metrics]` and `[telemetry]`.
fn background_settings(raw: &RawConfig) -> Vec<Setting> {
    use Value::{Count, Duration as Period};
    vec![
        (
            &["registry", "refresh_interval"],
            Period(raw.registry.refresh_interval),
            Rule::Positive,
        ),
        (
            &["registry", "health_check_interval"],
            Period(raw.registry.health_check_interval),
            Rule::Positive,
        ),
        (
            &["registry", "health_check_timeout"],
            Period(raw.registry.health_check_timeout),
            Rule::Positive,
        ),
        (
            &["metrics", "flush_interval"],
            Period(raw.metrics.flush_interval),
            Rule::Positive,
        ),
        (
            &["telemetry", "request_log_length"],
            Count(raw.telemetry.request_log_length.map(as_u64)),
            Rule::AtLeastOne,
        ),
    ]
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn as_u64(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

fn violation(value: &Value, rule: Rule) -> Option<String> {
    match (value, rule) {
        (Value::Duration(Some(duration)), Rule::Positive) if duration.is_zero() => {
            Some("must be above zero".into())
        }
        (Value::Duration(Some(duration)), Rule::Between(low, high))
            if *duration < low || *duration > high =>
        {
            Some(format!(
                "must be between {} and {}, not {}",
                humantime::format_duration(low),
                humantime::format_duration(high),
                humantime::format_duration(*duration)
            ))
        }
        (Value::Count(Some(0)), Rule::AtLeastOne) => Some("must be at least 1".into()),
        (Value::Count(Some(count)), Rule::CountBetween(low, high))
            if *count < low || *count > high =>
        {
            Some(format!("must be between {low} and {high}, not {count}"))
        }
        _ => None,
    }
}

/// The byte range of `key` (a path of table names and a key) in `text`,
/// wherever and however it is written (a `[table]`, a dotted key, an
/// inline table).
pub fn span_of(text: &str, key: &[String]) -> Option<Range<usize>> {
    let document = DeTable::parse(text).ok()?;
    let mut table = document.get_ref();
    let (last, tables) = key.split_last()?;
    for name in tables {
        let (_, value) = table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == name.as_str())?;
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => return None,
        }
    }
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == last.as_str())
        .map(|(k, _)| k.span())
}

#[cfg(test)]
mod tests;
