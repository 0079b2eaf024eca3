//! Validated hot reload. On SIGHUP a worker reads its configuration file
//! again and validates all of it before anything changes; only then does it
//! swap routes, middleware and limits in one step. Requests already
//! dispatched finish on the gateway they started on, new ones run on the
//! new one; new subscription filters are subscribed, removed ones
//! unsubscribed. A file that does not validate, or that changes what only a
//! restart can apply, is refused whole: the last good configuration keeps
//! running, and the refusal is logged and counted.
//!
//! Reloaded: routes and groups, `[middleware.*]`, `[auth]` keys and claims
//! checks, `[limits]`, `[replies]`, `[services.*]`, the `[gateway]` settings.
//! Restart required: `[mqtt]` (the receive maximum and session are fixed per
//! connection), `[redis]`, the probe address, `[registry]`, the metrics
//! flush, the request log and turning API keys on or off (their tasks run
//! from start-up).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use routemq_gateway::redis::RedisSettings;
use routemq_gateway::{Gateway, ReloadRefused};
use routemq_router::{RouteTable, SubscriptionFilter};
use rumqttc::v5::mqttbytes::v5::Filter;

use super::message;
use crate::config::{Loader, MqttSettings, WorkerConfig};

/// Where a worker's configuration comes from, to read it again.
pub struct ConfigSource {
    pub path: PathBuf,
    pub loader: Loader,
}

/// Checks new configurations against the one the worker started with.
pub struct Reloader {
    source: ConfigSource,
    mqtt: MqttSettings,
    redis: RedisSettings,
    metrics_addr: Option<SocketAddr>,
}

/// A configuration that passed every check, ready to swap in.
pub struct Reload {
    pub gateway: Gateway,
    pub filters: Vec<Filter>,
    pub drain_timeout: Duration,
}

/// Why a reload was refused; the running configuration stays.
#[derive(Debug)]
pub enum Refusal {
    Invalid(String),
    RestartRequired(String),
}

impl Refusal {
    /// The `result` label of `routemq_config_reloads_total`.
    pub fn result(&self) -> &'static str {
        match self {
            Refusal::Invalid(_) => "invalid",
            Refusal::RestartRequired(_) => "restart_required",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Refusal::Invalid(message) | Refusal::RestartRequired(message) => message,
        }
    }
}

impl Reloader {
    pub fn new(source: ConfigSource, started_with: &WorkerConfig) -> Reloader {
        Reloader {
            source,
            mqtt: started_with.mqtt.clone(),
            redis: started_with.redis.clone(),
            metrics_addr: started_with.metrics_addr,
        }
    }

    /// Reads the file and builds the gateway it describes beside `running`;
    /// nothing is applied here.
    pub fn prepare(&self, running: &Gateway) -> Result<Reload, Refusal> {
        let config = self
            .source
            .loader
            .load(&self.source.path)
            .map_err(|error| Refusal::Invalid(error.to_string()))?;
        if let Some(secret) = config.missing_secrets().next() {
            return Err(Refusal::Invalid(format!("a worker needs {secret}")));
        }
        let changed: Vec<&str> = [
            (config.mqtt != self.mqtt, "mqtt"),
            (config.redis != self.redis, "redis"),
            (
                config.metrics_addr != self.metrics_addr,
                "telemetry.metrics_addr",
            ),
        ]
        .into_iter()
        .filter_map(|(changed, section)| changed.then_some(section))
        .collect();
        if !changed.is_empty() {
            return Err(Refusal::RestartRequired(format!(
                "restart required: {} changed",
                changed.join(", ")
            )));
        }
        let filters = filters(&config.gateway.routes, &self.mqtt.share_group);
        let drain_timeout = config.drain_timeout;
        let gateway = running
            .reconfigured(config.gateway)
            .map_err(|refused| match refused {
                ReloadRefused::RestartRequired(_) => Refusal::RestartRequired(refused.to_string()),
                ReloadRefused::Invalid(message) => Refusal::Invalid(message),
            })?;
        Ok(Reload {
            gateway,
            filters,
            drain_timeout,
        })
    }
}

/// The shared subscriptions serving `routes`.
pub fn filters<T>(routes: &RouteTable<T>, share_group: &str) -> Vec<Filter> {
    routes
        .filters()
        .iter()
        .map(|filter: &SubscriptionFilter| {
            Filter::new(filter.shared(share_group), message::qos(filter.qos as u8))
        })
        .collect()
}

/// What to subscribe (new filters, or ones whose QoS changed: subscribing
/// again replaces the subscription) and which paths to unsubscribe.
pub fn filter_changes(old: &[Filter], new: &[Filter]) -> (Vec<Filter>, Vec<String>) {
    let subscribe = new
        .iter()
        .filter(|filter| !old.contains(filter))
        .cloned()
        .collect();
    let unsubscribe = old
        .iter()
        .filter(|filter| !new.iter().any(|kept| kept.path == filter.path))
        .map(|filter| filter.path.clone())
        .collect();
    (subscribe, unsubscribe)
}

/// Counts and logs a refused reload.
pub fn refused(refusal: &Refusal, took: Duration) {
    metrics::counter!("routemq_config_reloads_total", "result" => refusal.result()).increment(1);
    metrics::gauge!("routemq_config_last_reload_successful").set(0.0);
    tracing::error!(
        result = refusal.result(),
        error = refusal.message(),
        took_ms = took.as_secs_f64() * 1000.0,
        "configuration reload refused; the running configuration stays"
    );
}

/// Marks `version` as the configuration this worker runs (and `previous`, if any, as no longer).
pub fn mark_version(previous: Option<&str>, version: &str) {
    if let Some(previous) = previous.filter(|previous| *previous != version) {
        metrics::gauge!("routemq_config_info", "version" => previous.to_string()).set(0.0);
    }
    metrics::gauge!("routemq_config_info", "version" => version.to_string()).set(1.0);
}

/// Counts and logs an applied reload.
pub fn applied(
    previous: &str,
    version: &str,
    changes: &(Vec<Filter>, Vec<String>),
    took: Duration,
) {
    mark_version(Some(previous), version);
    metrics::counter!("routemq_config_reloads_total", "result" => "applied").increment(1);
    metrics::gauge!("routemq_config_last_reload_successful").set(1.0);
    tracing::info!(
        previous,
        version,
        subscribed = ?changes.0.iter().map(|f| &f.path).collect::<Vec<_>>(),
        unsubscribed = ?changes.1,
        took_ms = took.as_secs_f64() * 1000.0,
        "configuration reloaded"
    );
}

#[cfg(test)]
mod tests {
    use rumqttc::v5::mqttbytes::QoS;

    use super::*;

    fn filter(path: &str, qos: QoS) -> Filter {
        Filter::new(path, qos)
    }

    #[test]
    fn new_and_requalified_filters_are_subscribed_and_gone_ones_unsubscribed() {
        let old = [
            filter("$share/gw/api/v1/users/#", QoS::AtLeastOnce),
            filter("$share/gw/api/v1/orders/#", QoS::AtLeastOnce),
            filter("$share/gw/api/v1/pay/#", QoS::AtLeastOnce),
        ];
        let new = [
            filter("$share/gw/api/v1/users/#", QoS::AtLeastOnce),
            filter("$share/gw/api/v1/orders/#", QoS::ExactlyOnce),
            filter("$share/gw/api/v2/users/#", QoS::AtLeastOnce),
        ];
        let (subscribe, unsubscribe) = filter_changes(&old, &new);
        assert_eq!(subscribe, vec![new[1].clone(), new[2].clone()]);
        assert_eq!(unsubscribe, vec!["$share/gw/api/v1/pay/#".to_string()]);
        assert_eq!(filter_changes(&new, &new), (vec![], vec![]));
    }
}
