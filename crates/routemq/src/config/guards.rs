//! Settings that bound what callers can do to a worker and to each other:
//! bulkheads, the reply-topic allowlist, and middleware settings checked
//! against the routes that run them (breaker leases that outlast the calls
//! they admit).

use std::collections::BTreeMap;

use routemq_gateway::middleware::MiddlewareConfigs;
use routemq_gateway::upstream::ServiceLimits;
use routemq_gateway::{ReplyTopics, RouteTarget};
use routemq_router::RouteTable;

use super::raw::RawService;

/// Bulkheads: by default a service may hold half of a worker's slots, so one
/// hanging service leaves the other half to the rest.
pub fn service_limits(
    default: Option<usize>,
    services: &BTreeMap<String, RawService>,
    max_in_flight: u16,
) -> ServiceLimits {
    ServiceLimits {
        default_max_in_flight: default
            .unwrap_or((usize::from(max_in_flight) / 2).max(1))
            .max(1),
        per_service: services
            .iter()
            .filter_map(|(name, service)| Some((name.clone(), service.max_in_flight?.max(1))))
            .collect(),
    }
}

pub fn reply_topics(allow: Option<Vec<String>>) -> Result<ReplyTopics, String> {
    let allow = allow.unwrap_or_else(|| DEFAULT_REPLY_TOPICS.map(String::from).to_vec());
    ReplyTopics::parse(&allow).map_err(|message| format!("replies.allow: {message}"))
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
