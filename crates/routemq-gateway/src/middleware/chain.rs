use std::sync::Arc;

use futures::future::join_all;
use tracing::Instrument;

use super::{Flow, Middleware, Outcome, Permit, RequestContext};
use crate::upstream::{PreparedCall, UpstreamResponse};
use crate::{GatewayError, Reply};

/// A route's middleware, outermost first. Cheap to clone.
#[derive(Clone, Default)]
pub struct Chain {
    middleware: Arc<[Arc<dyn Middleware>]>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.middleware.iter().map(|m| m.name()))
            .finish()
    }
}

impl Chain {
    pub fn new(middleware: Vec<Arc<dyn Middleware>>) -> Chain {
        Chain {
            middleware: middleware.into(),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.middleware.iter().map(|m| m.name())
    }

    /// Runs every request filter in order; the first error or direct answer wins.
    pub fn request_filter(&self, ctx: &mut RequestContext<'_>) -> Result<Flow, GatewayError> {
        for middleware in self.middleware.iter() {
            let _span = middleware_span(middleware.name(), "request_filter").entered();
            if let Flow::Respond(reply) = middleware.request_filter(ctx)? {
                return Ok(Flow::Respond(reply));
            }
        }
        Ok(Flow::Continue)
    }

    /// Runs every admission at once. When one refuses, the others' permits
    /// are released and the refusal of the outermost middleware is returned.
    /// The reply properties of those that admitted come back either way (a
    /// 429 from one limiter still carries the other's counters).
    pub async fn admit(
        &self,
        ctx: &RequestContext<'_>,
    ) -> (Vec<(String, String)>, Result<ChainRun, GatewayError>) {
        let admissions: Vec<_> = self
            .middleware
            .iter()
            .filter_map(|m| {
                let admission = m.admit(ctx)?;
                Some(admission.instrument(middleware_span(m.name(), "admit")))
            })
            .collect();
        let mut properties = Vec::new();
        if admissions.is_empty() {
            return (properties, Ok(ChainRun::default()));
        }
        let mut run = ChainRun::default();
        let mut refusal = None;
        for result in join_all(admissions).await {
            match result {
                Ok(admitted) => {
                    properties.extend(admitted.properties);
                    run.permits.extend(admitted.permit);
                }
                Err(error) => {
                    refusal.get_or_insert(error);
                }
            }
        }
        match refusal {
            None => (properties, Ok(run)),
            Some(error) => {
                run.settle(Outcome::NotSent);
                (properties, Err(error))
            }
        }
    }

    /// Runs every response filter, innermost first (the reverse of the
    /// request filters, as layers unwrap); the first error wins.
    pub fn response_filter(
        &self,
        ctx: &RequestContext<'_>,
        response: &mut UpstreamResponse,
    ) -> Result<(), GatewayError> {
        for middleware in self.middleware.iter().rev() {
            let _span = middleware_span(middleware.name(), "response_filter").entered();
            middleware.response_filter(ctx, response)?;
        }
        Ok(())
    }

    pub fn upstream_response(
        &self,
        ctx: &RequestContext<'_>,
        call: &PreparedCall,
        response: &UpstreamResponse,
    ) {
        for middleware in self.middleware.iter() {
            middleware.upstream_response(ctx, call, response);
        }
    }

    /// Asks each middleware in order for a reply in place of a failed upstream.
    pub async fn fallback(
        &self,
        ctx: &RequestContext<'_>,
        call: &PreparedCall,
        error: &GatewayError,
    ) -> Option<Reply> {
        if !error.kind.falls_back() {
            return None;
        }
        for middleware in self.middleware.iter() {
            if let Some(future) = middleware.fallback(ctx, call, error) {
                let span = middleware_span(middleware.name(), "fallback");
                if let Some(reply) = future.instrument(span).await {
                    return Some(reply);
                }
            }
        }
        None
    }
}

/// The permits a request holds while its upstream call runs. Dropped
/// unsettled (a cancelled request), they are released as `NotSent`.
#[derive(Default)]
pub struct ChainRun {
    permits: Vec<Box<dyn Permit>>,
}

impl ChainRun {
    pub fn settle(&mut self, outcome: Outcome) {
        for permit in self.permits.drain(..) {
            permit.settle(outcome);
        }
    }
}

impl Drop for ChainRun {
    fn drop(&mut self) {
        self.settle(Outcome::NotSent);
    }
}

/// A child span of the request for one middleware phase.
fn middleware_span(name: &str, phase: &'static str) -> tracing::Span {
    if !crate::observe::children_sampled() {
        return tracing::Span::none();
    }
    tracing::debug_span!(
        "middleware",
        otel.name = format!("{name} {phase}"),
        routemq.middleware = name,
        routemq.phase = phase,
    )
}
