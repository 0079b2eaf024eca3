//! Every metric a worker exports, with its help text and unit, in one list.
//! Series without labels, and labelled ones whose label values are known in
//! advance, are created at zero when the exporter is installed: `rate()` and
//! alert rules then see a series from the first scrape, not from the first
//! incident. Series labelled by route, service, limiter or script appear
//! with their first request.

use metrics::Unit;

enum Kind {
    Counter,
    Gauge,
    Histogram,
}

struct Metric {
    name: &'static str,
    kind: Kind,
    unit: Unit,
    help: &'static str,
    /// A label whose every value is known, to create at zero.
    known: Option<(&'static str, &'static [&'static str])>,
}

const REFUSAL_REASONS: &[&str] = &[
    "too_long",
    "too_deep",
    "invalid",
    "reserved",
    "served",
    "not_allowed",
    "not_bound",
];

/// Results of a configuration reload.
pub const RELOAD_RESULTS: &[&str] = &["applied", "invalid", "restart_required"];

/// Why a reply did not go out as built: refused before sending
/// (`queue_full`, `too_large`, `publish_error`), or refused by the broker's
/// PUBACK (the rest; `packet_too_large` also drops the connection).
const REPLY_FAILURES: &[&str] = &[
    "queue_full",
    "too_large",
    "publish_error",
    "not_authorized",
    "topic_name_invalid",
    "quota_exceeded",
    "payload_format_invalid",
    "packet_id_in_use",
    "implementation_specific",
    "unspecified",
    "packet_too_large",
];

const METRICS: &[Metric] = &[
    Metric {
        name: "routemq_live_workers",
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Live workers this worker counts in the cluster: its share of a limit while Redis is away is the limit over this.",
        known: None,
    },
    Metric {
        name: "routemq_registry_refreshes_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Passes of the worker's registry-cache refresh, by outcome (ok, or failed and serving the last snapshot).",
        known: Some(("outcome", &["ok", "failed"])),
    },
    Metric {
        name: "routemq_requests_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Requests answered, by route template, upstream service and reply status.",
        known: None,
    },
    Metric {
        name: "routemq_request_duration_seconds",
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "Time from receiving a request to having its reply ready, by route template.",
        known: None,
    },
    Metric {
        name: "routemq_upstream_duration_seconds",
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "One upstream HTTP attempt, by service and outcome (success or the error type).",
        known: None,
    },
    Metric {
        name: "routemq_requests_in_flight",
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "QoS 1/2 requests this worker is handling now.",
        known: None,
    },
    Metric {
        name: "routemq_requests_capacity",
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "QoS 1/2 requests this worker handles at once (mqtt.max_in_flight).",
        known: None,
    },
    Metric {
        name: "routemq_intake_memory_bytes",
        kind: Kind::Gauge,
        unit: Unit::Bytes,
        help: "Bytes the requests this worker has taken in hold (payload, topic, properties and a per-request allowance).",
        known: None,
    },
    Metric {
        name: "routemq_intake_memory_budget_bytes",
        kind: Kind::Gauge,
        unit: Unit::Bytes,
        help: "mqtt.intake_memory_bytes: beyond it QoS 1/2 requests wait in the broker and QoS 0 requests are shed.",
        known: None,
    },
    Metric {
        name: "routemq_requests_shed_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "QoS 0 requests shed without running because their pool was full.",
        known: None,
    },
    Metric {
        name: "routemq_service_overloaded_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Requests refused at their service's bulkhead, by service and reason (queue_full: the service holds its share and is not draining; queue_timeout: no slot within gateway.queue_timeout or the request's deadline).",
        known: None,
    },
    Metric {
        name: "routemq_service_concurrency_limit",
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Each service's adaptive concurrency limit on this worker (calls in flight it may have).",
        known: None,
    },
    Metric {
        name: "routemq_service_in_flight",
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Calls in flight to each service from this worker.",
        known: None,
    },
    Metric {
        name: "routemq_service_queued",
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Requests waiting for a slot of each service's bulkhead.",
        known: None,
    },
    Metric {
        name: "routemq_service_queue_wait_seconds",
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "How long requests that had to wait for a slot of their service's bulkhead waited, by service.",
        known: None,
    },
    Metric {
        name: "routemq_rate_limited_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Requests refused by a rate limiter, by limiter name.",
        known: None,
    },
    Metric {
        name: "routemq_circuit_breaker_state",
        kind: Kind::Gauge,
        unit: Unit::Count,
        help:
            "A service's circuit breaker as this worker last saw it: 0 closed, 1 half open, 2 open.",
        known: None,
    },
    Metric {
        name: "routemq_redis_duration_seconds",
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "One Redis script call, by script.",
        known: None,
    },
    Metric {
        name: "routemq_redis_errors_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Redis script calls that failed or timed out, by script.",
        known: None,
    },
    Metric {
        name: "routemq_reply_topic_refused_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Requests not run because their reply address was refused, by reason.",
        known: Some(("reason", REFUSAL_REASONS)),
    },
    Metric {
        name: "routemq_replies_failed_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Replies that could not be published as built, by reason.",
        known: Some(("reason", REPLY_FAILURES)),
    },
    Metric {
        name: "routemq_chunked_replies_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Replies too large for one packet sent in chunks to callers that take them.",
        known: None,
    },
    Metric {
        name: "routemq_reply_chunks_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Chunks of chunked replies handed to the broker connection.",
        known: None,
    },
    Metric {
        name: "routemq_large_replies_refused_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Upstream bodies over max_response_bytes refused (503) because the worker already held max_large_replies of them.",
        known: None,
    },
    Metric {
        name: "routemq_large_replies_held",
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Upstream bodies over max_response_bytes this worker holds (until their last chunk is written), at most max_large_replies.",
        known: None,
    },
    Metric {
        name: "routemq_coalesced_requests_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Requests on coalescing routes answered from another identical request's upstream call, by route.",
        known: None,
    },
    Metric {
        name: "routemq_reply_properties_dropped_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Reply user properties left out because MQTT cannot carry them (control characters, non-characters, over 65535 bytes).",
        known: None,
    },
    Metric {
        name: "routemq_redis_oom_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Redis script calls refused because Redis is full (OOM under maxmemory-policy noeviction); the write is skipped (routemq_redis_errors_total says which script).",
        known: None,
    },
    Metric {
        name: "routemq_mqtt_stalls_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Broker connections dropped because replies and acks handed to them stopped going out for mqtt.stall_timeout.",
        known: None,
    },
    Metric {
        name: "routemq_mqtt_reconnects_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Connections to the broker after the first.",
        known: None,
    },
    Metric {
        name: "routemq_redeliveries_skipped_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Redelivered (DUP) requests already running on this connection, not run again.",
        known: None,
    },
    Metric {
        name: "routemq_stale_acks_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help:
            "Requests finished after their connection was lost, so not acknowledged on the new one.",
        known: None,
    },
    Metric {
        name: "routemq_worker_ready",
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "1 while this worker should get traffic (what /readyz answers), else 0.",
        known: None,
    },
    Metric {
        name: "routemq_config_info",
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "1 for the configuration version this worker runs (label `version`), 0 for ones it ran before.",
        known: None,
    },
    Metric {
        name: "routemq_config_reloads_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Configuration reloads, by result: applied, invalid (the file did not validate) or restart_required.",
        known: Some(("result", RELOAD_RESULTS)),
    },
    Metric {
        name: "routemq_config_last_reload_successful",
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "0 when the last reload was refused (the worker runs the configuration before it), else 1.",
        known: None,
    },
];

/// Describes every metric and creates the ones that can start at zero.
pub fn register() {
    for metric in METRICS {
        let (name, unit, help) = (metric.name, metric.unit, metric.help);
        match metric.kind {
            Kind::Counter => metrics::describe_counter!(name, unit, help),
            Kind::Gauge => metrics::describe_gauge!(name, unit, help),
            Kind::Histogram => metrics::describe_histogram!(name, unit, help),
        }
        if !matches!(metric.kind, Kind::Counter) {
            continue;
        }
        match metric.known {
            None if !has_open_labels(name) => metrics::counter!(name).increment(0),
            None => {}
            Some((label, values)) => {
                for value in values.iter().copied() {
                    metrics::counter!(name, label => value).increment(0);
                }
            }
        }
    }
    metrics::gauge!("routemq_worker_ready").set(0.0);
    metrics::gauge!("routemq_config_last_reload_successful").set(1.0);
}

/// Counters labelled by a value only requests reveal (route, service, limiter, script).
fn has_open_labels(name: &str) -> bool {
    matches!(
        name,
        "routemq_requests_total"
            | "routemq_service_overloaded_total"
            | "routemq_rate_limited_total"
            | "routemq_redis_errors_total"
    )
}

#[cfg(test)]
mod tests {
    use super::METRICS;

    #[test]
    fn names_carry_their_units_and_counters_end_in_total() {
        for metric in METRICS {
            match metric.kind {
                super::Kind::Counter => assert!(metric.name.ends_with("_total"), "{}", metric.name),
                super::Kind::Histogram => {
                    assert!(metric.name.ends_with("_seconds"), "{}", metric.name)
                }
                super::Kind::Gauge => {}
            }
            assert!(metric.help.ends_with('.'), "{}", metric.name);
        }
    }
}
