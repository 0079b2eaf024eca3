use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use proptest::prelude::*;

use crate::config::{parse, WorkerConfig};

const ROUTE: &str = "[[routes]]\ntopic = \"gateway/health\"\nhandler = \"health\"\n";

fn load(text: &str) -> Result<WorkerConfig, String> {
    parse(&format!("{text}\n{ROUTE}"), "gateway.toml", &|_| None).map_err(|e| e.to_string())
}

/// Settings out of bounds and the start of their error, line included.
const OUT_OF_BOUNDS: [(&str, &str); 14] = [
    (
        "[registry]\nrefresh_interval = \"0s\"\n",
        "gateway.toml:2: registry.refresh_interval must be above zero",
    ),
    (
        "[registry]\nhealth_check_interval = \"0s\"\n",
        "gateway.toml:2: registry.health_check_interval must be above zero",
    ),
    (
        "[metrics]\n\nflush_interval = \"0s\"\n",
        "gateway.toml:3: metrics.flush_interval must be above zero",
    ),
    (
        "[auth.api_keys]\nrefresh_interval = \"0s\"\n",
        "gateway.toml:2: auth.api_keys.refresh_interval must be above zero",
    ),
    (
        "[mqtt]\nkeep_alive = \"500ms\"\n",
        "gateway.toml:2: mqtt.keep_alive must be between 5s and 18h 12m 15s, not 500ms",
    ),
    (
        "[mqtt]\nkeep_alive = \"19h\"\n",
        "gateway.toml:2: mqtt.keep_alive must be between",
    ),
    (
        "[mqtt]\nstall_timeout = \"0s\"\n",
        "gateway.toml:2: mqtt.stall_timeout must be above zero",
    ),
    (
        "[mqtt]\nmax_in_flight = 0\n",
        "gateway.toml:2: mqtt.max_in_flight must be at least 1",
    ),
    (
        "[redis]\ncommand_timeout = \"2s\"\n",
        "gateway.toml:2: redis.command_timeout must be between 1ms and 500ms",
    ),
    (
        "[limits]\nmax_topic_bytes = 70000\n",
        "gateway.toml:2: limits.max_topic_bytes must be between 1 and 65535",
    ),
    (
        "[limits]\nmax_topic_levels = 0\n",
        "gateway.toml:2: limits.max_topic_levels must be at least 1",
    ),
    (
        "[services.user-service]\nmax_in_flight = 0\n",
        "gateway.toml:2: services.user-service.max_in_flight must be at least 1",
    ),
    // Dotted keys and inline tables are found too.
    (
        "registry.refresh_interval = \"0s\"\n",
        "gateway.toml:1: registry.refresh_interval",
    ),
    (
        "metrics = { flush_interval = \"0s\" }\n",
        "gateway.toml:1: metrics.flush_interval",
    ),
];

#[test]
fn zero_periods_and_short_keep_alives_are_refused_with_their_line() {
    for (text, expected) in OUT_OF_BOUNDS {
        let error = load(text)
            .err()
            .unwrap_or_else(|| panic!("accepted: {text}"));
        assert!(error.starts_with(expected), "{text}: {error}");
    }
}

/// What the runtime does with a validated configuration, minus the network:
/// the MQTT options are built, and every periodic task's clock is started.
fn runtime_accepts(config: &WorkerConfig) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let _context = runtime.enter();
    let mqtt = catch_unwind(AssertUnwindSafe(|| {
        crate::runtime::mqtt_options(&config.mqtt, "worker".into()).map(|_| ())
    }));
    match mqtt {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(format!("mqtt options: {error}")),
        Err(_) => {
            return Err(format!(
                "mqtt options panicked: {:?}",
                config.mqtt.keep_alive
            ))
        }
    }
    if config.mqtt.keep_alive.as_secs() > u64::from(u16::MAX) {
        return Err("keep-alive does not fit MQTT's two bytes".into());
    }
    let gateway = &config.gateway;
    let periods = [
        ("registry refresh", Some(gateway.registry.refresh_interval)),
        (
            "health probes",
            Some(gateway.registry.health_check_interval),
        ),
        ("metrics flush", Some(gateway.metrics_flush_interval)),
        ("api-key refresh", gateway.auth.api_keys_refresh),
    ];
    for (task, period) in periods {
        let Some(period) = period else { continue };
        let started = catch_unwind(AssertUnwindSafe(|| {
            routemq_gateway::Every::new(period, Default::default())
        }));
        if started.is_err() {
            return Err(format!("the {task} clock panicked at {period:?}"));
        }
    }
    if gateway.registry.health_check_timeout.is_zero() {
        return Err("a zero probe timeout fails every probe".into());
    }
    Ok(())
}

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0s".to_string()),
        (0u64..10_000).prop_map(|ms| format!("{ms}ms")),
        (0u64..200_000).prop_map(|s| format!("{s}s")),
    ]
}

fn count() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        (0u64..70_000).prop_map(|n| n.to_string()),
        Just("4294967295".to_string()),
    ]
}

/// Every numeric and duration key of the sections, with a strategy each.
fn settings() -> impl Strategy<Value = String> {
    let durations = [
        ("mqtt", "keep_alive"),
        ("mqtt", "stall_timeout"),
        ("redis", "command_timeout"),
        ("gateway", "drain_timeout"),
        ("gateway", "replay_window"),
        ("gateway", "queue_timeout"),
        ("registry", "refresh_interval"),
        ("registry", "health_check_interval"),
        ("registry", "health_check_timeout"),
        ("metrics", "flush_interval"),
        ("auth.api_keys", "refresh_interval"),
    ];
    let counts = [
        ("mqtt", "max_packet_size"),
        ("mqtt", "max_in_flight"),
        ("mqtt", "max_in_flight_qos0"),
        ("gateway", "round_robin_lease"),
        ("gateway", "replay_max_reply_bytes"),
        ("gateway", "service_max_in_flight"),
        ("gateway", "service_min_in_flight"),
        ("gateway", "service_max_held"),
        ("limits", "max_payload_bytes"),
        ("limits", "max_user_properties"),
        ("limits", "max_header_bytes"),
        ("limits", "max_param_bytes"),
        ("limits", "max_response_bytes"),
        ("limits", "max_chunked_reply_bytes"),
        ("limits", "max_large_replies"),
        ("limits", "max_topic_bytes"),
        ("limits", "max_topic_levels"),
        ("telemetry", "request_log_length"),
        ("services.one", "max_in_flight"),
    ];
    let durations = durations.map(|(table, key)| {
        prop::option::of(duration())
            .prop_map(move |v| v.map(|v| (table, format!("{key} = \"{v}\""))))
    });
    let counts = counts.map(|(table, key)| {
        prop::option::of(count()).prop_map(move |v| v.map(|v| (table, format!("{key} = {v}"))))
    });
    (Vec::from(durations), Vec::from(counts)).prop_map(|(durations, counts)| {
        let mut tables: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (table, line) in durations.into_iter().chain(counts).flatten() {
            tables.entry(table).or_default().push(line);
        }
        tables
            .into_iter()
            .map(|(table, lines)| format!("[{table}]\n{}\n", lines.join("\n")))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn validation_refuses_or_the_runtime_accepts(text in settings()) {
        if let Ok(config) = load(&text) {
            prop_assert_eq!(runtime_accepts(&config), Ok(()), "{}", text);
        }
    }
}

#[test]
fn the_shipped_values_are_within_bounds() {
    let text = include_str!("../../../../../deploy/gateway.toml");
    let env = |name: &str| (name == "ROUTEMQ_JWT_HS256_SECRET").then(|| "s".repeat(32));
    let config = parse(text, "gateway.toml", &env).expect("shipped config");
    assert_eq!(runtime_accepts(&config), Ok(()));
    assert_eq!(config.mqtt.stall_timeout, Duration::from_secs(10));
}
