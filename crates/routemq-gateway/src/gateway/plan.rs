//! Each route's plan: its target with the middleware chain it runs, built
//! once per configuration (one middleware instance per configured name,
//! shared by every route naming it).

use std::collections::HashMap;
use std::sync::Arc;

use metrics::SharedString;
use routemq_router::RouteTable;

use crate::middleware::{Chain, Middleware, MiddlewareConfigs, Resources};
use crate::route::RouteTarget;

/// A route's target and the middleware chain it runs.
pub(crate) struct Plan {
    pub target: RouteTarget,
    pub chain: Chain,
    /// The route's pattern, as a metrics label and span name.
    pub label: SharedString,
}

/// Each route's target with its chain: one middleware instance per
/// configured name, shared by every route naming it.
pub(super) fn plans(
    routes: RouteTable<RouteTarget>,
    middleware: &MiddlewareConfigs,
    resources: &Resources,
) -> Result<RouteTable<Plan>, String> {
    let instances: HashMap<&str, Arc<dyn Middleware>> = middleware
        .iter()
        .map(|(name, spec)| (name.as_str(), spec.build(name, resources)))
        .collect();
    if crate::observe::metrics_enabled() {
        // Each service's bulkhead refusals exist from the first scrape.
        for route in routes.routes() {
            if let RouteTarget::Forward(forward) = &route.target {
                for reason in crate::upstream::BULKHEAD_REFUSALS {
                    metrics::counter!(
                        "routemq_service_overloaded_total",
                        "service" => forward.service.clone(),
                        "reason" => reason
                    )
                    .increment(0);
                }
            }
        }
    }
    routes.try_map_targets(|route| {
        let chain = route
            .middleware
            .iter()
            .map(|name| {
                instances.get(name.as_str()).cloned().ok_or_else(|| {
                    format!("route `{}`: unknown middleware `{name}`", route.pattern)
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok::<Plan, String>(Plan {
            target: route.target.clone(),
            chain: Chain::new(chain),
            label: SharedString::from_owned(route.pattern.to_string()),
        })
    })
}
