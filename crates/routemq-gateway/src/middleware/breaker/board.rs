//! Every breaker's state as this worker knows it, so a closed breaker — the
//! usual state — admits with no Redis round trip, and an open one refuses
//! locally until its recovery time.
//!
//! Redis stays the one truth: every transition is still a script there
//! (`breaker_admit.lua`, `breaker_record.lua`), half-open probes are still
//! admitted there (so at most P probes run cluster-wide), and failures are
//! still recorded there after the reply. Each transition is announced on the
//! `routemq:breakers` channel; every worker's subscriber updates its board at
//! once. A message missed (the subscriber reconnecting) is caught by the
//! refresh, which re-reads each known breaker every [`REFRESH_INTERVAL`]:
//! a worker learns of an opening elsewhere within a pub/sub delivery
//! (milliseconds), and at worst within one refresh interval plus a command
//! timeout.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fred::clients::SubscriberClient;
use fred::prelude::*;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::redis::scripts::{self, BREAKER_CHANNEL};

/// How often every known breaker is re-read, for messages the subscriber missed.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// A breaker's state on this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Closed,
    /// Refused here until `until`; then Redis decides (half open).
    Open {
        until: Instant,
    },
    /// Probes are admitted by Redis, one call at a time.
    HalfOpen,
}

/// The board: by service. A service absent from it is asked about in Redis
/// on its first call.
#[derive(Default)]
pub struct BreakerBoard {
    states: RwLock<HashMap<String, (Local, Duration)>>,
}

impl BreakerBoard {
    pub fn get(&self, service: &str) -> Option<Local> {
        self.states.read().get(service).map(|(local, _)| *local)
    }

    /// Learns `service`'s state: `state` as Redis names it; when open, it
    /// stays open `reopen_in`. `recovery` is kept for the refresh.
    pub fn learn(&self, service: &str, state: &str, reopen_in: Duration, recovery: Duration) {
        let local = match state {
            "open" => Local::Open {
                until: Instant::now() + reopen_in,
            },
            "half_open" => Local::HalfOpen,
            _ => Local::Closed,
        };
        let mut states = self.states.write();
        let changed = match states.get_mut(service) {
            Some(entry) => {
                let changed = std::mem::discriminant(&entry.0) != std::mem::discriminant(&local);
                *entry = (local, recovery);
                changed
            }
            None => {
                states.insert(service.to_string(), (local, recovery));
                true
            }
        };
        drop(states);
        if changed {
            record_state(service, local);
        }
    }

    /// Applies an announcement `NAME STATE REOPEN_IN_MS` for a service this
    /// worker knows (others it learns on their first call).
    fn announced(&self, message: &str) {
        let mut parts = message.split(' ');
        let (Some(service), Some(state)) = (parts.next(), parts.next()) else {
            return;
        };
        let reopen_in = parts
            .next()
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or_default();
        let recovery = self
            .states
            .read()
            .get(service)
            .map(|(_, recovery)| *recovery);
        if let Some(recovery) = recovery {
            // An older worker announces no time: assume a full recovery.
            let reopen_in = if state == "open" && reopen_in.is_zero() {
                recovery
            } else {
                reopen_in
            };
            self.learn(service, state, reopen_in, recovery);
            tracing::debug!(%service, %state, "breaker transition announced");
        }
    }

    /// Re-reads every known breaker once.
    async fn refresh(&self, redis: &Client) {
        let known: Vec<(String, Duration)> = self
            .states
            .read()
            .iter()
            .map(|(service, (_, recovery))| (service.clone(), *recovery))
            .collect();
        for (service, recovery) in known {
            match Box::pin(scripts::breaker_view(redis, &service, recovery)).await {
                Ok((state, reopen_in)) => self.learn(&service, &state, reopen_in, recovery),
                Err(error) => tracing::debug!(%service, %error, "breaker not refreshed"),
            }
        }
    }

    /// Follows announcements and refreshes until `stop`. The subscriber is
    /// its own connection (a subscribed connection takes no other command)
    /// and resubscribes after every reconnect.
    pub async fn run(self: std::sync::Arc<Self>, redis: Client, stop: CancellationToken) {
        let subscriber = match subscriber(&redis) {
            Ok(subscriber) => subscriber,
            Err(error) => {
                tracing::warn!(%error, "breaker announcements not followed; refreshing only");
                return self.refresh_until(&redis, &stop, None).await;
            }
        };
        let _connection = subscriber.init().await;
        let _resubscribe = subscriber.manage_subscriptions();
        let mut messages = subscriber.message_rx();
        let board = std::sync::Arc::clone(&self);
        let listening = tokio::spawn(async move {
            while let Ok(message) = messages.recv().await {
                if let Some(text) = message.value.as_str() {
                    board.announced(&text);
                }
            }
        });
        self.refresh_until(&redis, &stop, Some(&subscriber)).await;
        listening.abort();
        subscriber.quit().await.ok();
    }

    /// Refreshes every interval; until the subscription is made (Redis may
    /// be down at start), tries it again each time. Once made, the
    /// subscriber renews it after reconnects itself.
    async fn refresh_until(
        &self,
        redis: &Client,
        stop: &CancellationToken,
        subscriber: Option<&SubscriberClient>,
    ) {
        let mut subscribed = subscriber.is_none();
        let mut every = crate::Every::new(REFRESH_INTERVAL, stop.clone());
        loop {
            if let (false, Some(subscriber)) = (subscribed, subscriber) {
                match subscriber.subscribe(BREAKER_CHANNEL).await {
                    Ok(()) => subscribed = true,
                    Err(error) => tracing::debug!(%error, "breaker channel not subscribed yet"),
                }
            }
            if !every.tick().await {
                return;
            }
            self.refresh(redis).await;
        }
    }
}

/// The breaker's state as a Prometheus gauge: 0 closed, 1 half open, 2 open.
fn record_state(service: &str, state: Local) {
    if !crate::observe::metrics_enabled() {
        return;
    }
    let value = match state {
        Local::Closed => 0.0,
        Local::HalfOpen => 1.0,
        Local::Open { .. } => 2.0,
    };
    metrics::gauge!("routemq_circuit_breaker_state", "service" => service.to_string()).set(value);
}

/// A subscriber with the main client's configuration (TLS and password
/// included) and reconnect policy.
fn subscriber(redis: &Client) -> Result<SubscriberClient, Error> {
    let mut builder = Builder::from_config(redis.client_config());
    builder.set_connection_config(redis.connection_config().clone());
    builder.set_performance_config(redis.perf_config());
    if let Some(policy) = redis.client_reconnect_policy() {
        builder.set_policy(policy);
    }
    builder.build_subscriber_client()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_update_known_breakers_only() {
        let board = BreakerBoard::default();
        let recovery = Duration::from_secs(5);
        board.learn("users", "closed", Duration::ZERO, recovery);
        board.announced("users open 3000");
        match board.get("users") {
            Some(Local::Open { until }) => {
                let left = until.saturating_duration_since(Instant::now());
                assert!(left > Duration::from_millis(2900) && left <= Duration::from_secs(3));
            }
            other => panic!("{other:?}"),
        }
        board.announced("users half_open 0");
        assert_eq!(board.get("users"), Some(Local::HalfOpen));
        board.announced("users closed 0");
        assert_eq!(board.get("users"), Some(Local::Closed));
        board.announced("orders open 3000");
        assert_eq!(
            board.get("orders"),
            None,
            "learned on its first call instead"
        );
        board.announced("garbage");
        assert_eq!(board.get("users"), Some(Local::Closed));
    }
}
