//! Settings that bound what callers can do to a worker and to each other:
//! bulkheads, the reply-topic allowlist, and breaker leases that outlast
//! the calls they admit.

use std::collections::{BTreeMap, HashMap};

use routemq_gateway::middleware::MiddlewareSpec;
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

/// A breaker's probe lease must outlast the calls it admits, or a slow probe
/// would free its slot while still running and let a second probe in.
pub fn check_probe_leases(
    routes: &RouteTable<RouteTarget>,
    middleware: &HashMap<String, MiddlewareSpec>,
) -> Result<(), String> {
    for route in routes.routes() {
        let RouteTarget::Forward(forward) = &route.target else {
            continue;
        };
        for name in &route.middleware {
            let Some(MiddlewareSpec::CircuitBreaker(breaker)) = middleware.get(name) else {
                continue;
            };
            if breaker.limits.probe_lease < forward.timeout {
                return Err(format!(
                    "route `{}`: middleware `{name}` has probe_timeout {} below the route's timeout {}",
                    route.pattern,
                    humantime::format_duration(breaker.limits.probe_lease),
                    humantime::format_duration(forward.timeout),
                ));
            }
        }
    }
    Ok(())
}
