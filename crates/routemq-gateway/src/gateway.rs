use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::Client;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT};
use reqwest::Method;
use routemq_router::{filter_matches, is_valid_topic_name, Params, RouteTable, SubscriptionFilter};
use serde_json::Value;

use crate::metrics::MetricsRecorder;
use crate::registry::{Balancer, RegistryCache};
use crate::replay::{Attempt, Claim, Replays};
use crate::request::{is_acceptable_request_id, parse_payload, query_pairs, take_payload_address};
use crate::upstream::{self, HeaderPolicy, PathTemplate, UpstreamRequest};
use crate::{ErrorKind, GatewayError, Headers, Inbound, Outbound, Reply, ReplyAddress};

/// The gateway's own routes (`gateway/*`), answered without an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Health,
    Services,
    Metrics,
}

/// What a route does with a request.
#[derive(Debug, Clone)]
pub enum RouteTarget {
    Forward(ForwardRoute),
    Builtin(Builtin),
}

/// Forwarding to a service: the HTTP method and path the topic maps to.
#[derive(Debug, Clone)]
pub struct ForwardRoute {
    pub service: String,
    pub method: Method,
    pub path: PathTemplate,
    pub timeout: Duration,
    pub headers: HeaderPolicy,
}

/// Bounds on what a request may carry; beyond them it gets a typed error.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_payload_bytes: usize,
    pub max_user_properties: usize,
    /// Sum of user-property names and values.
    pub max_header_bytes: usize,
    pub max_param_bytes: usize,
    pub max_response_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 256 * 1024,
            max_user_properties: 64,
            max_header_bytes: 16 * 1024,
            max_param_bytes: 256,
            max_response_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Everything a gateway needs, built by the runtime from its configuration.
pub struct GatewayParts {
    pub routes: RouteTable<RouteTarget>,
    pub redis: Client,
    pub http: reqwest::Client,
    pub cache: Arc<RegistryCache>,
    pub metrics: Arc<MetricsRecorder>,
    pub limits: Limits,
    pub worker_id: String,
    /// Round-robin counter values leased per Redis round trip (1 = exact per request).
    pub round_robin_lease: u32,
    /// How long answered POST/PATCH requests are kept for replaying retries
    /// with the same `x-request-id`; `None` or zero disables it.
    pub replay_window: Option<Duration>,
}

/// One worker's request pipeline. Stateless apart from read caches and
/// metric counters, so any number of identical workers behave as one.
pub struct Gateway {
    pub(crate) routes: RouteTable<RouteTarget>,
    pub(crate) redis: Client,
    http: reqwest::Client,
    pub(crate) cache: Arc<RegistryCache>,
    balancer: Balancer,
    replays: Replays,
    metrics: Arc<MetricsRecorder>,
    limits: Limits,
    pub(crate) worker_id: String,
    pub(crate) started: Instant,
}

/// An answer and the upstream service it came from, for metrics.
struct Answer {
    reply: Reply,
    service: Option<String>,
}

impl Answer {
    fn error(error: GatewayError, request_id: &str, service: Option<String>) -> Answer {
        Answer {
            reply: Reply::error(&error, request_id, service.as_deref()),
            service,
        }
    }
}

impl Gateway {
    pub fn new(parts: GatewayParts) -> Gateway {
        let balancer = Balancer::new(
            Arc::clone(&parts.cache),
            parts.redis.clone(),
            parts.round_robin_lease,
        );
        let replays = Replays::new(
            parts.redis.clone(),
            parts.replay_window,
            parts.worker_id.clone(),
        );
        Gateway {
            routes: parts.routes,
            redis: parts.redis,
            http: parts.http,
            cache: parts.cache,
            balancer,
            replays,
            metrics: parts.metrics,
            limits: parts.limits,
            worker_id: parts.worker_id,
            started: Instant::now(),
        }
    }

    /// The topic filters this gateway serves.
    pub fn filters(&self) -> &[SubscriptionFilter] {
        self.routes.filters()
    }

    /// Handles one request and returns the reply to publish, or `None` when
    /// the request has no usable reply address (it is still processed and logged).
    pub async fn handle(&self, inbound: Inbound) -> Option<Outbound> {
        let started = Instant::now();
        let headers = Headers::from_properties(&inbound.user_properties);
        let client_request_id = headers
            .get("x-request-id")
            .filter(|id| is_acceptable_request_id(id));
        let retry_safe_id = client_request_id.is_some();
        let request_id = client_request_id
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut address = inbound.response_topic.clone().map(|topic| ReplyAddress {
            topic,
            correlation_data: inbound.correlation_data.clone(),
            from_payload: false,
        });
        if let Some(refused) = address
            .as_ref()
            .and_then(|a| self.refuse_reply_topic(&a.topic))
        {
            tracing::warn!(
                request_id,
                reason = refused,
                "request refused: unusable response topic"
            );
            return None;
        }
        let answer = self
            .process(&inbound, &headers, &request_id, retry_safe_id, &mut address)
            .await;
        let status = answer.reply.status;
        self.metrics
            .record(answer.service.as_deref(), status, started.elapsed());
        let topic = String::from_utf8_lossy(&inbound.topic);
        match address {
            Some(address) => {
                tracing::debug!(request_id, %topic, status, "request answered");
                Some(Outbound::new(address, answer.reply, &request_id))
            }
            None => {
                tracing::info!(request_id, %topic, status, "request processed without a reply address");
                None
            }
        }
    }

    /// Why a reply may not go to `topic`, if it may not: wildcards cannot be
    /// published to, `$` topics belong to the broker, and a topic the gateway
    /// serves would loop the reply back in as a request.
    fn refuse_reply_topic(&self, topic: &str) -> Option<&'static str> {
        if !is_valid_topic_name(topic) {
            return Some("empty or contains a wildcard");
        }
        if topic.starts_with('$') {
            return Some("reserved `$` topic");
        }
        if self
            .routes
            .filters()
            .iter()
            .any(|f| filter_matches(&f.filter, topic))
        {
            return Some("falls under a filter the gateway serves");
        }
        None
    }

    async fn process(
        &self,
        inbound: &Inbound,
        headers: &Headers,
        request_id: &str,
        retry_safe_id: bool,
        address: &mut Option<ReplyAddress>,
    ) -> Answer {
        if let Err(error) = self.check_limits(inbound, headers) {
            return Answer::error(error, request_id, None);
        }
        let Ok(topic) = std::str::from_utf8(&inbound.topic) else {
            return Answer::error(
                GatewayError::new(ErrorKind::InvalidTopic, "topic is not valid UTF-8"),
                request_id,
                None,
            );
        };
        let mut body = match parse_payload(&inbound.payload) {
            Ok(body) => body,
            Err(error) => return Answer::error(error, request_id, None),
        };
        if address.is_none() {
            *address = take_payload_address(&mut body);
            if let Some(refused) = address
                .as_ref()
                .and_then(|a| self.refuse_reply_topic(&a.topic))
            {
                tracing::warn!(request_id, reason = refused, "payload reply_to refused");
                *address = None;
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
            return Answer::error(error, request_id, None);
        }
        let Some(found) = self.routes.find(topic) else {
            let error = GatewayError::new(
                ErrorKind::RouteNotFound,
                format!("no route for topic `{topic}`"),
            );
            return Answer::error(error, request_id, None);
        };
        if let Err(error) = self.check_params(&found.params) {
            return Answer::error(error, request_id, None);
        }
        match &found.route.target {
            RouteTarget::Builtin(builtin) => Answer {
                // Boxed: kept out of the request future, which every request moves.
                reply: Box::pin(self.builtin(*builtin, request_id)).await,
                service: None,
            },
            RouteTarget::Forward(route) => {
                let service = Some(route.service.clone());
                // Only a client-chosen id identifies a retry; a generated one never repeats.
                let claim = if retry_safe_id && self.replays.applies(&route.method) {
                    // serde_json orders object keys, so equal bodies encode equally.
                    let canonical = serde_json::to_vec(&body).unwrap_or_default();
                    let attempt = Attempt {
                        method: &route.method,
                        request_id,
                        topic,
                        payload: &canonical,
                        upstream_timeout: upstream_timeout(route.timeout, inbound.deadline()),
                    };
                    Box::pin(self.replays.claim(attempt)).await
                } else {
                    Claim::Skip
                };
                let ticket = match claim {
                    Claim::Fresh(ticket) => Some(ticket),
                    Claim::Skip => None,
                    Claim::Replay(reply) => return Answer { reply, service },
                    Claim::Reused => {
                        let error = GatewayError::new(
                            ErrorKind::RequestIdReused,
                            "this x-request-id was already used on this topic with a different payload",
                        );
                        return Answer::error(error, request_id, service);
                    }
                    Claim::InProgress => {
                        let error = GatewayError::new(
                            ErrorKind::RequestInProgress,
                            "a request with this x-request-id is still being processed; retry later",
                        );
                        return Answer::error(error, request_id, service);
                    }
                };
                let answer = match self
                    .forward(
                        route,
                        &found.params,
                        body,
                        headers,
                        request_id,
                        inbound.deadline(),
                    )
                    .await
                {
                    Ok(reply) => Answer { reply, service },
                    Err(error) => Answer::error(error, request_id, service),
                };
                if let Some(ticket) = ticket {
                    self.replays.finish(ticket, &answer.reply);
                }
                answer
            }
        }
    }

    fn check_limits(&self, inbound: &Inbound, headers: &Headers) -> Result<(), GatewayError> {
        let limits = &self.limits;
        if inbound.payload.len() > limits.max_payload_bytes {
            return Err(GatewayError::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "payload of {} bytes exceeds the limit of {}",
                    inbound.payload.len(),
                    limits.max_payload_bytes
                ),
            ));
        }
        if headers.len() > limits.max_user_properties {
            return Err(GatewayError::new(
                ErrorKind::HeadersTooLarge,
                format!(
                    "{} user properties exceed the limit of {}",
                    headers.len(),
                    limits.max_user_properties
                ),
            ));
        }
        let header_bytes: usize = headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        if header_bytes > limits.max_header_bytes {
            return Err(GatewayError::new(
                ErrorKind::HeadersTooLarge,
                format!(
                    "user properties of {header_bytes} bytes exceed the limit of {}",
                    limits.max_header_bytes
                ),
            ));
        }
        Ok(())
    }

    fn check_params(&self, params: &Params<'_>) -> Result<(), GatewayError> {
        for (name, value) in params.iter() {
            if value.len() > self.limits.max_param_bytes {
                return Err(GatewayError::new(
                    ErrorKind::InvalidParam,
                    format!(
                        "parameter `{name}` is longer than {} bytes",
                        self.limits.max_param_bytes
                    ),
                ));
            }
            if value.chars().any(char::is_control) {
                return Err(GatewayError::new(
                    ErrorKind::InvalidParam,
                    format!("parameter `{name}` contains control characters"),
                ));
            }
        }
        Ok(())
    }

    async fn forward(
        &self,
        route: &ForwardRoute,
        params: &Params<'_>,
        body: Value,
        headers: &Headers,
        request_id: &str,
        deadline: Option<Instant>,
    ) -> Result<Reply, GatewayError> {
        let started = Instant::now();
        let path = route.path.render(|name| params.get(name))?;
        let timeout = upstream_timeout(route.timeout, deadline);
        let sends_body = !matches!(route.method, Method::GET | Method::HEAD | Method::DELETE);
        let (body, query) = if sends_body {
            let bytes = serde_json::to_vec(&body)
                .map_err(|error| GatewayError::new(ErrorKind::Internal, error.to_string()))?;
            (Some(Bytes::from(bytes)), Vec::new())
        } else {
            (None, query_pairs(&body))
        };
        let mut header_map = HeaderMap::new();
        route.headers.apply(headers, &mut header_map)?;
        header_map.insert(
            HeaderName::from_static("x-request-id"),
            header_value(request_id)?,
        );
        header_map.insert(
            HeaderName::from_static("x-gateway-service"),
            header_value(&route.service)?,
        );
        header_map.insert(ACCEPT, HeaderValue::from_static("application/json"));

        let mut refused_instance: Option<String> = None;
        loop {
            let instance = self
                .balancer
                .pick(&route.service, refused_instance.as_deref())
                .await?;
            let request = UpstreamRequest {
                method: route.method.clone(),
                base_url: &instance.base_url,
                path: &path,
                query: &query,
                body: body.clone(),
                headers: header_map.clone(),
                timeout,
                max_response_bytes: self.limits.max_response_bytes,
            };
            // Boxed: the HTTP client's future is large, and moving it through every
            // enclosing state machine showed up as memcpy in profiles.
            match Box::pin(upstream::forward(&self.http, request)).await {
                Ok(response) => {
                    let seconds = started.elapsed().as_secs_f64();
                    return Ok(Reply::success(
                        response.status,
                        &response.body,
                        request_id,
                        &route.service,
                        seconds,
                    ));
                }
                // A refused connection never reached the instance: one retry elsewhere is safe.
                Err(error)
                    if error.kind == ErrorKind::UpstreamUnavailable
                        && refused_instance.is_none() =>
                {
                    tracing::debug!(instance = %instance.instance_id, "connection refused, trying another instance");
                    refused_instance = Some(instance.instance_id.clone());
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// The smaller of the route's timeout and the time the client still waits.
fn upstream_timeout(route_timeout: Duration, deadline: Option<Instant>) -> Duration {
    match deadline {
        Some(deadline) => route_timeout.min(deadline.saturating_duration_since(Instant::now())),
        None => route_timeout,
    }
}

fn header_value(value: &str) -> Result<HeaderValue, GatewayError> {
    HeaderValue::from_str(value).map_err(|_| {
        GatewayError::new(ErrorKind::InvalidHeader, "header value not allowed in HTTP")
    })
}
