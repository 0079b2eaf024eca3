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
//!    the service's bulkhead; retried on another instance when the error
//!    says the request never reached the first;
//! 6. **response filters** — innermost first, on the upstream's answer;
//!    then a fallback if the error allows one;
//! 7. **reply** — the envelope is built once, its properties gathered here;
//! 8. **logging and metrics**.
//!
//! What an error leads to — another instance, breaker evidence, a fallback —
//! is decided by the error itself ([`crate::ErrorKind`]), not here.

use std::time::Instant;

use metrics::SharedString;
use reqwest::header::{HeaderName, HeaderValue};
use routemq_router::Match;
use serde_json::Value;
use tracing::Instrument;

use super::prepare::prepare;
use super::{address, Gateway, Plan};
use crate::middleware::{ChainRun, Flow, Outcome, RequestContext};
use crate::replay::{Claim, Kept, Ticket};
use crate::request::{is_acceptable_request_id, parse_payload, take_payload_address};
use crate::request_log::LogRecord;
use crate::route::{ForwardRoute, RouteTarget};
use crate::upstream::{PreparedCall, UpstreamResponse};
use crate::{observe, ReplyAddress};
use crate::{ErrorKind, GatewayError, Headers, Inbound, Outbound, Reply};

/// One request on its way through [`Gateway::handle`].
struct Request<'r> {
    inbound: &'r Inbound,
    /// The topic, when it is valid UTF-8 within the length limit.
    topic: Option<&'r str>,
    headers: &'r Headers,
    request_id: &'r str,
    /// The client chose the request id, so a retry can be recognised.
    retry_safe_id: bool,
    started: Instant,
}

/// An answer, where it came from, and what the chain adds to it.
pub(super) struct Answer {
    pub(super) reply: Reply,
    pub(super) service: Option<String>,
    /// The matched route's pattern; `None` before a route matched.
    pub(super) route: Option<SharedString>,
    /// Reply properties the chain added (CORS, rate-limit counters).
    properties: Vec<(String, String)>,
}

impl Answer {
    fn early(error: GatewayError, request_id: &str) -> Answer {
        Answer {
            reply: Reply::error(&error, request_id, None),
            service: None,
            route: None,
            properties: Vec::new(),
        }
    }
}

/// Admission's verdict on a request that may go upstream.
pub(super) enum Admitted {
    Run {
        permits: ChainRun,
        /// The safe-retry claim, to finish with the upstream's answer.
        ticket: Option<Ticket>,
    },
    /// A retry of a request already answered: its stored reply.
    Replayed(Reply),
}

impl Gateway {
    /// Handles one request and returns the reply to publish, or `None` when
    /// the request has no usable reply address (it is still processed and logged).
    pub async fn handle(&self, inbound: Inbound) -> Option<Outbound> {
        let started = Instant::now();
        let headers = Headers::from_properties(&inbound.user_properties);
        let client_request_id = headers
            .get("x-request-id")
            .filter(|id| is_acceptable_request_id(id));
        let request_id = client_request_id
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        // Phase 2 first: it is pure, and its template names the span.
        let topic = Some(&inbound.topic)
            .filter(|topic| topic.len() <= self.limits.max_topic_bytes)
            .and_then(|topic| std::str::from_utf8(topic).ok());
        let found = topic.and_then(|topic| self.routes.find(topic));
        let template = found.as_ref().map(|found| &found.route.target.label);
        let (span, sampling) = self.request_span(&inbound, &headers, &request_id, template);
        let request = Request {
            inbound: &inbound,
            topic,
            headers: &headers,
            request_id: &request_id,
            retry_safe_id: client_request_id.is_some(),
            started,
        };
        let served = self.serve(request, found, sampling.trace_id.as_deref());
        observe::with_sampling(sampling.sampled, served.instrument(span)).await
    }

    async fn serve(
        &self,
        request: Request<'_>,
        found: Option<Match<'_, Plan>>,
        trace_id: Option<&str>,
    ) -> Option<Outbound> {
        // 1. Decode and validate.
        let (address, decoded) = self.decode(&request)?;
        let answer = match decoded {
            Ok(body) => {
                let reply_topic = address.as_ref().map(|address| address.topic.as_str());
                self.answer(&request, found, body, reply_topic).await
            }
            Err(error) => Answer::early(error, request.request_id),
        };
        // 7. Reply, 8. logging and metrics.
        self.reply(&request, address, answer, trace_id)
    }

    /// The reply address and the body, or why the request is answered with
    /// an error. `None`: the address was refused, so nothing is answered.
    /// The Response Topic is checked before anything is parsed; an address
    /// in the payload (`reply_to`) once the payload is.
    #[allow(clippy::type_complexity)]
    fn decode(
        &self,
        request: &Request<'_>,
    ) -> Option<(Option<ReplyAddress>, Result<Value, GatewayError>)> {
        let inbound = request.inbound;
        let mut address = inbound.response_topic.clone().map(|topic| ReplyAddress {
            topic,
            correlation_data: inbound.correlation_data.clone(),
            from_payload: false,
        });
        if let Some(address) = &address {
            self.admit_reply_address(address, request)?;
        }
        if let Err(error) = self.check_limits(inbound, request.headers) {
            return Some((address, Err(error)));
        }
        if request.topic.is_none() {
            let error = GatewayError::new(ErrorKind::InvalidTopic, "topic is not valid UTF-8");
            return Some((address, Err(error)));
        }
        let mut body = match parse_payload(&inbound.payload) {
            Ok(body) => body,
            Err(error) => return Some((address, Err(error))),
        };
        if address.is_none() {
            address = take_payload_address(&mut body);
            if let Some(address) = &address {
                self.admit_reply_address(address, request)?;
            }
        }
        if inbound
            .deadline()
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            let error = GatewayError::new(
                ErrorKind::DeadlineExceeded,
                "the request expired before it was processed",
            );
            return Some((address, Err(error)));
        }
        Some((address, Ok(body)))
    }

    fn admit_reply_address(&self, address: &ReplyAddress, request: &Request<'_>) -> Option<()> {
        match self.check_reply_topic(&address.topic, request.headers) {
            Ok(()) => Some(()),
            Err(refusal) => {
                self.note_refused_reply(refusal, request.request_id, &address.topic);
                None
            }
        }
    }

    async fn answer(
        &self,
        request: &Request<'_>,
        found: Option<Match<'_, Plan>>,
        body: Value,
        reply_topic: Option<&str>,
    ) -> Answer {
        // 2. Route.
        let (Some(found), Some(topic)) = (found, request.topic) else {
            let topic = request.topic.unwrap_or_default();
            let error = GatewayError::new(
                ErrorKind::RouteNotFound,
                format!("no route for topic `{topic}`"),
            );
            return Answer::early(error, request.request_id);
        };
        if let Err(error) = self.check_params(&found.params) {
            return Answer::early(error, request.request_id);
        }
        let plan = &found.route.target;
        let route = match &plan.target {
            RouteTarget::Forward(route) => Some(route),
            RouteTarget::Builtin(_) => None,
        };
        let service = route.map(|route| route.service.clone());
        let mut ctx = RequestContext {
            request_id: request.request_id,
            topic,
            params: &found.params,
            headers: request.headers,
            response_topic: reply_topic,
            route,
            body,
            identity: None,
            reply_properties: Vec::new(),
        };
        let reply = match self.run_chain(plan, &mut ctx, request).await {
            Ok(reply) => reply,
            Err(error) => {
                let named = service.as_deref().filter(|_| error.kind.names_service());
                Reply::error(&error, request.request_id, named)
            }
        };
        Answer {
            reply,
            service,
            route: Some(plan.label.clone()),
            properties: ctx.reply_properties,
        }
    }

    /// Phases 3 to 6 for a matched route.
    async fn run_chain(
        &self,
        plan: &Plan,
        ctx: &mut RequestContext<'_>,
        request: &Request<'_>,
    ) -> Result<Reply, GatewayError> {
        // 3. Request filters.
        if let Flow::Respond(reply) = plan.chain.request_filter(ctx)? {
            return Ok(reply);
        }
        let route = match &plan.target {
            RouteTarget::Builtin(builtin) => {
                let (mut properties, permits) = plan.chain.admit(ctx).await;
                ctx.reply_properties.append(&mut properties);
                let _permits = permits?;
                // Boxed: kept out of the request future, which every request moves.
                return Ok(Box::pin(self.builtin(*builtin, ctx.request_id)).await);
            }
            RouteTarget::Forward(route) => route,
        };
        let mut call = prepare(route, ctx, request.inbound.deadline())?;

        // 4. Admission.
        let (properties, admitted) = self.admit(plan, ctx, route, &call, request).await;
        ctx.reply_properties.extend(properties);
        let (mut permits, ticket) = match admitted {
            Ok(Admitted::Run { permits, ticket }) => (permits, ticket),
            Ok(Admitted::Replayed(reply)) => return Ok(reply),
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

        // 5. Upstream peer and call.
        let started = Instant::now();
        let result = self.forwarder.call(&route.service, &call).await;
        permits.settle(match &result {
            Ok(_) => Outcome::Success,
            Err(error) => error.kind.breaker_evidence(),
        });

        // 6. Response filters; the answer is kept for retries, a fallback is not.
        let result =
            result.and_then(|response| self.upstream_reply(plan, ctx, &call, response, started));
        let mut result = result;
        if let Some(ticket) = ticket {
            let stored = match &result {
                Ok(reply) => reply.clone(),
                Err(error) => Reply::error(error, ctx.request_id, Some(&route.service)),
            };
            if self.replays.finish(ticket, &stored) == Kept::TooLarge {
                if let Ok(reply) = &mut result {
                    reply
                        .properties
                        .push(("x-replay".into(), "not-kept".into()));
                }
            }
        }
        match result {
            Ok(reply) => Ok(reply),
            Err(error) => self.fall_back(plan, ctx, &call, error).await,
        }
    }

    /// The chain's admissions and the safe-retry claim, concurrently. A
    /// refusal by the chain wins over the claim's verdict; a claim taken for
    /// a refused request is released at once.
    async fn admit(
        &self,
        plan: &Plan,
        ctx: &RequestContext<'_>,
        route: &ForwardRoute,
        call: &PreparedCall,
        request: &Request<'_>,
    ) -> (Vec<(String, String)>, Result<Admitted, GatewayError>) {
        let ((properties, permits), claim) = futures::join!(
            plan.chain.admit(ctx),
            self.claim(ctx, route, call, request.retry_safe_id)
        );
        let admitted = match permits {
            Ok(permits) => self.claimed(permits, claim),
            Err(error) => {
                if let Claim::Fresh(ticket) = claim {
                    let refused = Reply::error(&error, ctx.request_id, Some(&route.service));
                    self.replays.finish(ticket, &refused);
                }
                Err(error)
            }
        };
        (properties, admitted)
    }

    /// The upstream's answer through the response filters, as a reply.
    fn upstream_reply(
        &self,
        plan: &Plan,
        ctx: &RequestContext<'_>,
        call: &PreparedCall,
        mut response: UpstreamResponse,
        started: Instant,
    ) -> Result<Reply, GatewayError> {
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
        Ok(reply)
    }

    /// A fallback's reply if the error allows one and the chain has one, else the error.
    async fn fall_back(
        &self,
        plan: &Plan,
        ctx: &RequestContext<'_>,
        call: &PreparedCall,
        error: GatewayError,
    ) -> Result<Reply, GatewayError> {
        match plan.chain.fallback(ctx, call, &error).await {
            Some(reply) => {
                tracing::info!(request_id = ctx.request_id, error = %error, "fallback answered");
                Ok(reply)
            }
            None => Err(error),
        }
    }

    /// Phases 7 and 8: the reply's properties in one place, the metrics and
    /// the request log, and the message to publish.
    fn reply(
        &self,
        request: &Request<'_>,
        address: Option<ReplyAddress>,
        answer: Answer,
        trace_id: Option<&str>,
    ) -> Option<Outbound> {
        let status = answer.reply.status;
        let elapsed = request.started.elapsed();
        self.shared
            .metrics
            .record(answer.service.as_deref(), status, elapsed);
        self.observe_answer(&answer, elapsed);
        let topic = String::from_utf8_lossy(&request.inbound.topic);
        if let Some(log) = &self.shared.request_log {
            log.record(&LogRecord {
                request_id: request.request_id,
                trace_id,
                topic: &topic,
                route: answer.route.as_ref(),
                service: answer.service.as_deref(),
                status,
                duration: elapsed,
            });
        }
        let request_id = request.request_id;
        let topic = address::truncated(&topic);
        let Some(address) = address else {
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
        let Answer {
            mut reply,
            properties: mut chain_properties,
            ..
        } = answer;
        chain_properties.append(&mut reply.properties);
        if let Some(trace_id) = trace_id {
            chain_properties.push(("x-trace-id".to_string(), trace_id.to_string()));
        }
        reply.properties = chain_properties;
        Some(Outbound::new(address, reply, request_id))
    }
}
