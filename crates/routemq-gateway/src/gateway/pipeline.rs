//! One request, one pass. The phases run in the order they read here, each once:
//!
//! 1. **decode and validate** — the reply address (a refused one ends the
//!    request: nothing runs, nothing is published), the limits, the JSON
//!    body, the client's deadline;
//! 2. **route** — looked up once, before the span, whose name is its template;
//! 3. **request filters** — the chain in order: CORS, credentials, transforms;
//! 4. **admission** — rate limits, circuit breakers and the safe-retry claim,
//!    concurrently: one Redis round trip of latency however many there are;
//! 5. **upstream peer and call** — a healthy instance, round robin, within
//!    the service's bulkhead, told the time left; retried on another
//!    instance when the error says the request never reached the first; on
//!    a coalescing route, shared with the identical calls in flight;
//! 6. **response filters** — innermost first, on the upstream's answer;
//!    then a fallback if the error allows one;
//! 7. **reply** — the envelope is built once, its properties gathered here;
//! 8. **logging and metrics**.
//!
//! Each phase works on the request's [`Exchange`]; an error stays a
//! [`GatewayError`] until the reply phase renders it, once. What an error leads to — another instance, breaker evidence, a fallback —
//! is decided by the error itself ([`crate::ErrorKind`]), not here.

use std::time::Instant;

use reqwest::header::{HeaderName, HeaderValue};
use routemq_router::Match;
use serde_json::Value;
use tracing::Instrument;

use super::exchange::Exchange;
use super::prepare::prepare;
use super::reply_policy::truncated;
use super::retry_claim::{Proceed, RetryClaims};
use super::{telemetry, Gateway, Plan};
use crate::middleware::{Credentials, Flow, Outcome, RequestContext};
use crate::observe;
use crate::request::{parse_payload, take_payload_address};
use crate::request_log::LogRecord;
use crate::route::{Builtin, Coalesce, ForwardRoute, RouteTarget};
use crate::upstream::{CallKey, PreparedCall, Role, UpstreamResponse};
use crate::{ErrorKind, GatewayError, Headers, Inbound, Outbound, Reply, ReplyAddress};

/// Phases 1–6 end here: an answer, or the error the reply phase renders.
type Answer = Result<Reply, GatewayError>;

impl Gateway {
    /// Handles one request and returns the reply to publish, or `None` when
    /// the request has no usable reply address (it is still processed and logged).
    pub async fn handle(&self, inbound: Inbound) -> Option<Outbound> {
        let started = Instant::now();
        let headers = Headers::from_properties(&inbound.user_properties);
        let credentials = Credentials::new(&self.authenticator, &headers);
        let max_topic_bytes = self.limits.max_topic_bytes;
        let mut exchange =
            Exchange::new(&inbound, &headers, &credentials, max_topic_bytes, started);
        // Phase 2 first: it is pure, and its template names the span.
        let found = exchange.topic.and_then(|topic| self.routes.find(topic));
        let template = found.as_ref().map(|found| &found.route.target.label);
        let (span, sampling) = telemetry::request_span(self.shared.traces, &exchange, template);
        let served = async {
            let answer = self.serve(&mut exchange, found).await?;
            self.reply(exchange, answer, sampling.trace_id.as_deref())
        };
        observe::with_sampling(sampling.sampled, served.instrument(span)).await
    }

    /// Phases 1 to 6; `None` when the reply address was refused: then
    /// nothing runs and nothing is published.
    async fn serve(&self, ex: &mut Exchange<'_>, found: Option<Match<'_, Plan>>) -> Option<Answer> {
        // 1. Decode and validate.
        let body = match self.decode(ex)? {
            Ok(body) => body,
            Err(error) => return Some(Err(error)),
        };
        // 2. Route.
        let (Some(found), Some(topic)) = (found, ex.topic) else {
            let topic = ex.topic.unwrap_or_default();
            let message = format!("no route for topic `{topic}`");
            return Some(Err(GatewayError::new(ErrorKind::RouteNotFound, message)));
        };
        if let Err(error) = self.limits.check_params(&found.params) {
            return Some(Err(error));
        }
        let plan = &found.route.target;
        ex.route = Some(plan.label.clone());
        ex.service = plan.target.forward().map(|route| route.service.clone());
        let chunking = plan.target.forward().map(|route| route.chunked_replies);
        ex.chunks = ex.takes_chunks(chunking.unwrap_or_default());
        let mut ctx = RequestContext {
            request_id: &ex.request_id,
            topic,
            params: &found.params,
            headers: ex.headers,
            credentials: ex.credentials,
            response_topic: ex.address.as_ref().map(|address| address.topic.as_str()),
            route: plan.target.forward(),
            body,
            identity: None,
            reply_properties: Vec::new(),
        };
        let answer = self.run_chain(plan, &mut ctx, ex).await;
        let properties = ctx.reply_properties;
        ex.reply_properties = properties;
        Some(answer)
    }

    /// The reply address and the body, or why the request is answered with
    /// an error. `None`: the address was refused, so nothing is answered.
    /// The Response Topic is checked before anything is parsed; an address
    /// in the payload (`reply_to`) once the payload is.
    fn decode(&self, ex: &mut Exchange<'_>) -> Option<Result<Value, GatewayError>> {
        let inbound = ex.inbound;
        if let Some(topic) = &inbound.response_topic {
            let address = ReplyAddress {
                topic: topic.clone(),
                correlation_data: inbound.correlation_data.clone(),
                from_payload: false,
            };
            ex.address = Some(self.accepted(address, ex)?);
        }
        let mut body = match self.validated_body(ex) {
            Ok(body) => body,
            Err(error) => return Some(Err(error)),
        };
        if ex.address.is_none() {
            if let Some(address) = take_payload_address(&mut body) {
                ex.address = Some(self.accepted(address, ex)?);
            }
        }
        if inbound
            .deadline()
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            let message = "the request expired before it was processed";
            return Some(Err(GatewayError::new(ErrorKind::DeadlineExceeded, message)));
        }
        Some(Ok(body))
    }

    fn accepted(&self, address: ReplyAddress, ex: &Exchange<'_>) -> Option<ReplyAddress> {
        self.reply_policy
            .accept(&address, &ex.request_id, ex.credentials)
            .then_some(address)
    }

    /// The request within its limits, on a UTF-8 topic, with a JSON body.
    fn validated_body(&self, ex: &Exchange<'_>) -> Result<Value, GatewayError> {
        self.limits.check_request(ex.inbound, ex.headers)?;
        if ex.topic.is_none() {
            return Err(GatewayError::new(
                ErrorKind::InvalidTopic,
                "topic is not valid UTF-8",
            ));
        }
        parse_payload(&ex.inbound.payload)
    }

    /// Phases 3 to 6 for a matched route.
    async fn run_chain(
        &self,
        plan: &Plan,
        ctx: &mut RequestContext<'_>,
        ex: &Exchange<'_>,
    ) -> Answer {
        // 3. Request filters.
        if let Flow::Respond(reply) = plan.chain.request_filter(ctx)? {
            return Ok(reply);
        }
        match &plan.target {
            RouteTarget::Builtin(builtin) => self.run_builtin(plan, ctx, *builtin).await,
            RouteTarget::Forward(route) => self.forward(plan, ctx, route, ex).await,
        }
    }

    /// Phase 4 for a built-in route, then its answer.
    async fn run_builtin(
        &self,
        plan: &Plan,
        ctx: &mut RequestContext<'_>,
        builtin: Builtin,
    ) -> Answer {
        let (properties, permits) = plan.chain.admit(ctx).await;
        ctx.reply_properties.extend(properties);
        let _permits = permits?;
        // Boxed: kept out of the request future, which every request moves.
        Box::pin(self.builtins.answer(builtin)).await
    }

    /// Phases 4 to 6 for a forwarding route.
    async fn forward(
        &self,
        plan: &Plan,
        ctx: &mut RequestContext<'_>,
        route: &ForwardRoute,
        ex: &Exchange<'_>,
    ) -> Answer {
        let accepts_chunks = ex.chunks.is_some();
        let mut call = prepare(route, ctx, ex.inbound.deadline(), accepts_chunks)?;

        // 4. Admission.
        let (properties, proceed) = self
            .admit_and_claim(plan, ctx, route, &call, ex.retry_safe_id)
            .await;
        ctx.reply_properties.extend(properties);
        let (mut permits, ticket) = match proceed {
            Ok(Proceed::Call { permits, ticket }) => (permits, ticket),
            Ok(Proceed::Replay(reply)) => return Ok(reply),
            Err(error) => return self.fall_back(plan, ctx, &call, error).await,
        };
        if let Some(ticket) = &ticket {
            // The same X-Request-ID, numbered: an upstream that sees an
            // attempt above 1 knows it may have had this request before.
            call.headers.insert(
                HeaderName::from_static("x-request-attempt"),
                HeaderValue::from(ticket.attempt),
            );
        }

        // 5. Upstream peer and call (shared, on a coalescing route).
        let started = Instant::now();
        let (result, role) = self.call_upstream(route, ctx, ex, &call).await;
        permits.settle(match (&result, role) {
            // One call is one piece of evidence, however many shared it.
            (_, Role::Follower) => Outcome::NotSent,
            (Ok(_), Role::Leader) => Outcome::Success,
            (Err(error), Role::Leader) => error.kind.breaker_evidence(),
        });

        // 6. Response filters; the answer is kept for retries, a fallback is not.
        let result =
            result.and_then(|response| upstream_reply(plan, ctx, &call, response, started));
        let result = self
            .claims
            .answered(ticket, result, ctx.request_id, &route.service);
        match result {
            Ok(reply) => Ok(reply),
            Err(error) => self.fall_back(plan, ctx, &call, error).await,
        }
    }

    /// Phase 5: the call, or on a coalescing route the identical call in
    /// flight that this request joins.
    async fn call_upstream(
        &self,
        route: &ForwardRoute,
        ctx: &RequestContext<'_>,
        ex: &Exchange<'_>,
        call: &PreparedCall,
    ) -> (Result<UpstreamResponse, GatewayError>, Role) {
        let Some(scope) = route.coalesce else {
            return (
                self.forwarder.call(&route.service, call).await,
                Role::Leader,
            );
        };
        let key = CallKey::new(&route.service, call, caller_key(scope, ctx));
        let joined = || telemetry::count_coalesced(ex);
        self.forwarder
            .call_shared(&route.service, call, key, joined)
            .await
    }

    /// The chain's admissions and the safe-retry claim, concurrently. A
    /// refusal by the chain wins over the claim's verdict.
    async fn admit_and_claim(
        &self,
        plan: &Plan,
        ctx: &RequestContext<'_>,
        route: &ForwardRoute,
        call: &PreparedCall,
        retry_safe_id: bool,
    ) -> (Vec<(String, String)>, Result<Proceed, GatewayError>) {
        let ((properties, permits), claim) = futures::join!(
            plan.chain.admit(ctx),
            self.claims.claim(ctx, route, call, retry_safe_id)
        );
        let proceed = match permits {
            Ok(permits) => RetryClaims::proceed(permits, claim),
            Err(error) => {
                self.claims
                    .refused(claim, &error, ctx.request_id, &route.service);
                Err(error)
            }
        };
        (properties, proceed)
    }

    /// A fallback's reply if the error allows one and the chain has one, else the error.
    async fn fall_back(
        &self,
        plan: &Plan,
        ctx: &RequestContext<'_>,
        call: &PreparedCall,
        error: GatewayError,
    ) -> Answer {
        match plan.chain.fallback(ctx, call, &error).await {
            Some(reply) => {
                tracing::info!(request_id = ctx.request_id, error = %error, "fallback answered");
                Ok(reply)
            }
            None => Err(error),
        }
    }

    /// Phases 7 and 8: the error rendered (once), the reply's properties in
    /// one place, the metrics and the request log, and the message to publish.
    fn reply(&self, ex: Exchange<'_>, answer: Answer, trace_id: Option<&str>) -> Option<Outbound> {
        let mut reply = answer.unwrap_or_else(|error| {
            let named = ex.service.as_deref().filter(|_| error.kind.names_service());
            Reply::error(&error, &ex.request_id, named)
        });
        self.record(&ex, reply.status, trace_id);
        let (request_id, status) = (ex.request_id.as_str(), reply.status);
        let topic = ex.topic_text();
        let topic = truncated(&topic);
        let Some(address) = ex.address else {
            tracing::info!(
                request_id,
                trace_id,
                ?topic,
                status,
                "request processed without a reply address"
            );
            return None;
        };
        tracing::debug!(request_id, trace_id, ?topic, status, "request answered");
        let mut properties = ex.reply_properties;
        properties.append(&mut reply.properties);
        if let Some(trace_id) = trace_id {
            properties.push(("x-trace-id".to_string(), trace_id.to_string()));
        }
        reply.properties = properties;
        let mut outbound = Outbound::new(address, reply, request_id);
        outbound.chunks = ex.chunks;
        Some(outbound)
    }

    /// Phase 8: counters, histograms, span attributes and the request log.
    fn record(&self, ex: &Exchange<'_>, status: u16, trace_id: Option<&str>) {
        let elapsed = ex.started.elapsed();
        self.shared
            .metrics
            .record(ex.service.as_deref(), status, elapsed);
        telemetry::observe_answer(self.shared.traces, ex, status, elapsed);
        if let Some(log) = &self.shared.request_log {
            log.record(&LogRecord {
                request_id: &ex.request_id,
                trace_id,
                topic: &ex.topic_text(),
                route: ex.route.as_ref(),
                service: ex.service.as_deref(),
                status,
                duration: elapsed,
            });
        }
    }
}

/// Who a coalescing route's call may be shared with: the verified caller
/// (issuer and subject) or an anonymous caller's reply topic, compared
/// whole; anyone when the route's reply is the same for every caller.
fn caller_key(scope: Coalesce, ctx: &RequestContext<'_>) -> Option<String> {
    if scope == Coalesce::AcrossCallers {
        return None;
    }
    Some(match (&ctx.identity, ctx.response_topic) {
        (Some(identity), _) => format!(
            "verified\0{}\0{}",
            identity.issuer.as_deref().unwrap_or_default(),
            identity.subject
        ),
        (None, topic) => format!("anonymous\0{}", topic.unwrap_or_default()),
    })
}

/// The upstream's answer through the response filters, as a reply.
fn upstream_reply(
    plan: &Plan,
    ctx: &RequestContext<'_>,
    call: &PreparedCall,
    mut response: UpstreamResponse,
    started: Instant,
) -> Answer {
    plan.chain.response_filter(ctx, &mut response)?;
    plan.chain.upstream_response(ctx, call, &response);
    let service = ctx.route.map(|route| route.service.as_str());
    let mut reply = Reply::success(
        response.status,
        &response.body,
        ctx.request_id,
        service.unwrap_or_default(),
        started.elapsed().as_secs_f64(),
    );
    reply.properties = response.properties;
    reply.large = response.large;
    Ok(reply)
}
