//! Settings that bound what callers can do to a worker and to each other:
//! bulkheads, the reply-topic allowlist, and middleware settings checked
//! against the routes that run them (breaker leases that outlast the calls
//! they admit).

use std::collections::BTreeMap;

use routemq_gateway::middleware::MiddlewareConfigs;
use routemq_gateway::upstream::ServiceLimits;
use routemq_gateway::{ReplyTopics, RouteTarget};
use routemq_router::RouteTable;

use std::time::Duration;

use super::raw::{RawGateway, RawReplies, RawService};

/// Where each service's concurrency limit starts, before its latency is known.
const INITIAL_IN_FLIGHT: usize = 128;

/// Bulkheads. Each service's concurrency limit adapts to its latency
/// between `service_min_in_flight` and its ceiling (`service_max_in_flight`
/// or `[services.NAME] max_in_flight`; by default half the intake,
/// `mqtt.max_in_flight`), starting at 128. The ceiling sits below the
/// service's share so that a saturated service — whose latency average
/// follows the queue it builds, so its limit keeps rising — reaches it
/// before its calls fill the worker: the excess then waits here, in turns,
/// and what cannot be served in time is refused at once. With the whole
/// intake as the ceiling, a service serving 64 calls at once, offered twice
/// what it carries, got every intake slot, the broker held the rest past
/// their expiry and 1 % of its capacity was answered in time (0.97 with
/// half). A service may hold
/// `service_max_held` requests (by default three quarters of the intake)
/// in flight or waiting before it must show it drains them within
/// `queue_timeout` (2 s by default), so a hanging service leaves a quarter
/// of the worker to the others.
pub fn service_limits(
    gateway: &RawGateway,
    services: &BTreeMap<String, RawService>,
    max_in_flight: u16,
) -> ServiceLimits {
    let intake = usize::from(max_in_flight).max(1);
    let ceiling = gateway
        .service_max_in_flight
        .unwrap_or((intake / 2).max(1))
        .max(1);
    ServiceLimits {
        default_max_in_flight: ceiling,
        per_service: services
            .iter()
            .filter_map(|(name, service)| Some((name.clone(), service.max_in_flight?.max(1))))
            .collect(),
        min_in_flight: gateway.service_min_in_flight.unwrap_or(4).max(1),
        initial_in_flight: INITIAL_IN_FLIGHT.min(ceiling),
        max_held: gateway
            .service_max_held
            .unwrap_or((intake * 3 / 4).max(1))
            .max(1),
        queue_timeout: gateway.queue_timeout.unwrap_or(Duration::from_secs(2)),
    }
}

pub fn reply_topics(replies: RawReplies) -> Result<ReplyTopics, String> {
    let allow = replies
        .allow
        .unwrap_or_else(|| DEFAULT_REPLY_TOPICS.map(String::from).to_vec());
    let topics =
        ReplyTopics::parse(&allow).map_err(|message| format!("replies.allow: {message}"))?;
    Ok(topics.with_legacy_levels(replies.legacy_levels.unwrap_or(true)))
}

/// Where replies go when `[replies] allow` is not set: under the caller's
/// verified subject, or — for anonymous callers, confined by the broker's
/// ACLs — under `replies/anonymous/` (routemq-client's default).
pub const DEFAULT_REPLY_TOPICS: [&str; 2] = ["replies/{sub}/#", "replies/anonymous/#"];

/// Lets each middleware check the forwarding routes that run it.
pub fn check_routes_against_middleware(
    routes: &RouteTable<RouteTarget>,
    middleware: &MiddlewareConfigs,
) -> Result<(), String> {
    for route in routes.routes() {
        let RouteTarget::Forward(forward) = &route.target else {
            continue;
        };
        for name in &route.middleware {
            let Some(config) = middleware.get(name) else {
                continue;
            };
            config.check_route(forward).map_err(|message| {
                format!("route `{}`: middleware `{name}`: {message}", route.pattern)
            })?;
        }
    }
    Ok(())
}
