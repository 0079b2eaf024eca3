//! One request from parsed topic to reply: route, middleware chain, replay
//! claim, upstream call, fallback.

use std::time::Instant;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT};
use reqwest::Method;
use routemq_router::Params;

use super::{header_value, upstream_timeout, Answer, Gateway, Plan, RouteTarget};
use crate::middleware::{Flow, Identity, Outcome, RequestContext};
use crate::replay::{Attempt, Claim};
use crate::request::{parse_payload, query_pairs, take_payload_address};
use crate::upstream::{PreparedCall, UpstreamResponse};
use crate::{ErrorKind, ForwardRoute, GatewayError, Headers, Inbound, Reply, ReplyAddress};

impl Gateway {
    /// The answer to a request; `None` when its payload's reply address was
    /// refused (then nothing runs and nothing is published).
    pub(super) async fn process(
        &self,
        inbound: &Inbound,
        headers: &Headers,
        request_id: &str,
        retry_safe_id: bool,
        address: &mut Option<ReplyAddress>,
    ) -> Option<Answer> {
        if let Err(error) = self.check_limits(inbound, headers) {
            return Some(Answer::error(error, request_id, None));
        }
        let Ok(topic) = std::str::from_utf8(&inbound.topic) else {
            return Some(Answer::error(
                GatewayError::new(ErrorKind::InvalidTopic, "topic is not valid UTF-8"),
                request_id,
                None,
            ));
        };
        let mut body = match parse_payload(&inbound.payload) {
            Ok(body) => body,
            Err(error) => return Some(Answer::error(error, request_id, None)),
        };
        if address.is_none() {
            *address = take_payload_address(&mut body);
            if let Some(address) = address.as_ref() {
                if let Err(refusal) = self.check_reply_topic(&address.topic, headers) {
                    self.note_refused_reply(refusal, request_id, &address.topic);
                    return None;
                }
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
            return Some(Answer::error(error, request_id, None));
        }
        let Some(found) = self.routes.find(topic) else {
            let error = GatewayError::new(
                ErrorKind::RouteNotFound,
                format!("no route for topic `{topic}`"),
            );
            return Some(Answer::error(error, request_id, None));
        };
        if let Err(error) = self.check_params(&found.params) {
            return Some(Answer::error(error, request_id, None));
        }
        let plan = &found.route.target;
        let route = match &plan.target {
            RouteTarget::Forward(route) => Some(route),
            RouteTarget::Builtin(_) => None,
        };
        let service = route.map(|route| route.service.clone());
        let mut ctx = RequestContext {
            request_id,
            topic,
            params: &found.params,
            headers,
            response_topic: address.as_ref().map(|a| a.topic.as_str()),
            route,
            body,
            identity: None,
            reply_properties: Vec::new(),
        };
        let mut reply = match self.run(plan, &mut ctx, inbound, retry_safe_id).await {
            Ok(reply) => reply,
            Err(error) => Reply::error(&error, request_id, service.as_deref()),
        };
        if !ctx.reply_properties.is_empty() {
            let mut properties = ctx.reply_properties;
            properties.append(&mut reply.properties);
            reply.properties = properties;
        }
        Some(Answer {
            reply,
            service,
            route: Some(plan.label.clone()),
        })
    }

    /// The middleware chain around the route's target.
    async fn run(
        &self,
        plan: &Plan,
        ctx: &mut RequestContext<'_>,
        inbound: &Inbound,
        retry_safe_id: bool,
    ) -> Result<Reply, GatewayError> {
        if let Flow::Respond(reply) = plan.chain.request_filter(ctx)? {
            return Ok(reply);
        }
        let route = match &plan.target {
            RouteTarget::Builtin(builtin) => {
                let _permits = plan.chain.admit(ctx).await?;
                // Boxed: kept out of the request future, which every request moves.
                return Ok(Box::pin(self.builtin(*builtin, ctx.request_id)).await);
            }
            RouteTarget::Forward(route) => route,
        };
        let mut call = prepare(route, ctx, inbound.deadline())?;
        let mut permits = match plan.chain.admit(ctx).await {
            Ok(permits) => permits,
            Err(error) => return self.fall_back(plan, ctx, &call, error).await,
        };

        // Only a client-chosen id identifies a retry; a generated one never
        // repeats. Replies are bound to the verified caller; an anonymous
        // caller is replayed only where the route opted in.
        let caller = ctx.identity.as_ref().map(Identity::caller_key);
        let replayable = caller.is_some() || route.anonymous_replay;
        let claim = if retry_safe_id && replayable && self.replays.applies(&route.method) {
            // serde_json orders object keys, so equal bodies encode equally.
            let canonical = serde_json::to_vec(&ctx.body).unwrap_or_default();
            let attempt = Attempt {
                method: &route.method,
                caller: caller.as_deref(),
                request_id: ctx.request_id,
                topic: ctx.topic,
                payload: &canonical,
            };
            Box::pin(self.replays.claim(attempt)).await
        } else {
            Claim::Skip
        };
        let ticket = match claim {
            Claim::Fresh(ticket) => {
                // The same X-Request-ID, numbered: an upstream that sees an
                // attempt above 1 knows it may have had this request before.
                call.headers.insert(
                    HeaderName::from_static("x-request-attempt"),
                    HeaderValue::from(ticket.attempt),
                );
                Some(ticket)
            }
            Claim::Skip => None,
            Claim::Replay(reply) => return Ok(reply),
            Claim::Reused => {
                return Err(GatewayError::new(
                    ErrorKind::RequestIdReused,
                    "this x-request-id was already used on this topic with a different payload",
                ))
            }
            Claim::InProgress => {
                return Err(GatewayError::new(
                    ErrorKind::RequestInProgress,
                    "a request with this x-request-id is still being processed; retry later",
                ))
            }
        };

        let started = Instant::now();
        let result = self.forwarder.call(&route.service, &call).await;
        permits.settle(breaker_evidence(&result));
        let result = result.and_then(|mut response| {
            plan.chain.response_filter(ctx, &mut response)?;
            plan.chain.upstream_response(ctx, &call, &response);
            let mut reply = Reply::success(
                response.status,
                &response.body,
                ctx.request_id,
                &route.service,
                started.elapsed().as_secs_f64(),
            );
            reply.properties = response.properties;
            Ok(reply)
        });
        if let Some(ticket) = ticket {
            // Only the upstream's own answer is kept for retries: a fallback is not.
            let stored = match &result {
                Ok(reply) => reply.clone(),
                Err(error) => Reply::error(error, ctx.request_id, Some(&route.service)),
            };
            self.replays.finish(ticket, &stored);
        }
        match result {
            Ok(reply) => Ok(reply),
            Err(error) => self.fall_back(plan, ctx, &call, error).await,
        }
    }

    /// A fallback's reply if the chain has one for this error, else the error.
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
}

/// What an upstream call says about the service's health. Only the upstream's
/// own faults count against it ([`ErrorKind::is_upstream_fault`]); a 4xx is
/// the upstream working as intended.
fn breaker_evidence(result: &Result<UpstreamResponse, GatewayError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(error) if matches!(error.kind, ErrorKind::UpstreamRejected(_)) => Outcome::Success,
        Err(error) if error.kind.is_upstream_fault() => Outcome::Failure,
        Err(_) => Outcome::NotSent,
    }
}

/// Builds the upstream call once: path, query or body, and headers,
/// including the identity the chain verified.
fn prepare(
    route: &ForwardRoute,
    ctx: &RequestContext<'_>,
    deadline: Option<Instant>,
) -> Result<PreparedCall, GatewayError> {
    let params: &Params<'_> = ctx.params;
    let timeout = upstream_timeout(route.timeout, deadline);
    let path = route.path.render(|name| params.get(name))?;
    let sends_body = !matches!(route.method, Method::GET | Method::HEAD | Method::DELETE);
    let (body, query) = if sends_body {
        let bytes = serde_json::to_vec(&ctx.body)
            .map_err(|error| GatewayError::new(ErrorKind::Internal, error.to_string()))?;
        (Some(Bytes::from(bytes)), Vec::new())
    } else {
        (None, query_pairs(&ctx.body))
    };
    let mut headers = HeaderMap::new();
    route.headers.apply(ctx.headers, &mut headers)?;
    headers.insert(
        HeaderName::from_static("x-request-id"),
        header_value(ctx.request_id)?,
    );
    headers.insert(
        HeaderName::from_static("x-gateway-service"),
        header_value(&route.service)?,
    );
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(identity) = &ctx.identity {
        let identity_header = |value: &str| {
            header_value(value).map_err(|_| {
                GatewayError::new(
                    ErrorKind::Unauthorized,
                    "credential claims contain characters not allowed in HTTP headers",
                )
            })
        };
        headers.insert(
            HeaderName::from_static("x-user-id"),
            identity_header(&identity.subject)?,
        );
        headers.insert(
            HeaderName::from_static("x-user-auth"),
            HeaderValue::from_static(identity.method.as_str()),
        );
        if !identity.scopes.is_empty() {
            headers.insert(
                HeaderName::from_static("x-user-scopes"),
                identity_header(&identity.scopes.join(" "))?,
            );
        }
        if !identity.roles.is_empty() {
            headers.insert(
                HeaderName::from_static("x-user-roles"),
                identity_header(&identity.roles.join(","))?,
            );
        }
    }
    Ok(PreparedCall {
        method: route.method.clone(),
        path,
        query,
        body,
        headers,
        timeout,
        deadline_bound: timeout < route.timeout,
    })
}
