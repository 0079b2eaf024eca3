use std::fmt;

/// Which side of the gateway a failure came from, as in pingora: it tells an
/// operator where to look, and with [`Retry`] it decides what the gateway
/// does about the failure ([`ErrorKind::retries_elsewhere`],
/// [`ErrorKind::breaker_evidence`], [`ErrorKind::falls_back`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The request itself was at fault, or the caller's own limits ran out.
    Downstream,
    /// The upstream instance answered or failed on its own.
    Upstream,
    /// The gateway refused on the service's behalf (no healthy instance, an
    /// open breaker, a full bulkhead); the service itself may be fine.
    Guard,
    /// The gateway itself failed, or would not deliver what it got.
    Internal,
}

/// Whether sending the same request again may succeed, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The same request gets the same answer.
    Never,
    /// It may succeed if the client sends it again later.
    Later,
    /// It never reached the instance: another instance may take it now.
    Elsewhere,
}

/// Every error the gateway answers with. Each kind knows its HTTP-style
/// status and the stable `type` string clients can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidTopic,
    InvalidJson,
    InvalidParam,
    InvalidHeader,
    RouteNotFound,
    /// A retry arrived while the first attempt is still running.
    RequestInProgress,
    /// A request id reused on the same topic for a different payload.
    RequestIdReused,
    PayloadTooLarge,
    HeadersTooLarge,
    /// A GET's payload makes a query string longer than a URL may be.
    UriTooLong,
    DeadlineExceeded,
    /// The upstream answered 4xx; its status is passed through.
    UpstreamRejected(u16),
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    NoHealthyInstance,
    /// Redis, where the cluster-wide state lives, cannot be reached.
    StoreUnavailable,
    /// The identity provider's keys a token needs are not loaded (yet).
    AuthUnavailable,
    /// No credentials, or credentials that do not verify.
    Unauthorized,
    /// Verified credentials without the required scope or role, or a CORS origin not allowed.
    Forbidden,
    RateLimited,
    /// The service's circuit breaker is open: the upstream is not called.
    CircuitOpen,
    /// No slot of the service's bulkhead in time: the wait would outlast
    /// `queue_timeout` or the caller's deadline, or the service holds its
    /// share of the worker without draining it.
    ServiceOverloaded,
    /// The worker is at capacity and shed the request without running it.
    Overloaded,
    /// The answer is larger than the gateway may deliver (the upstream body
    /// over `max_response_bytes`, or the reply over the broker's packet size).
    ReplyTooLarge,
    /// A retry of a request that ran, whose reply was too large to keep.
    ReplyNotKept,
    Internal,
}

impl ErrorKind {
    /// Every kind the gateway answers with itself (an upstream's own 4xx,
    /// [`ErrorKind::UpstreamRejected`], passes through with its status):
    /// what a published contract lists.
    pub const ALL: [ErrorKind; 26] = [
        ErrorKind::InvalidTopic,
        ErrorKind::InvalidJson,
        ErrorKind::InvalidParam,
        ErrorKind::InvalidHeader,
        ErrorKind::RouteNotFound,
        ErrorKind::RequestInProgress,
        ErrorKind::RequestIdReused,
        ErrorKind::PayloadTooLarge,
        ErrorKind::HeadersTooLarge,
        ErrorKind::UriTooLong,
        ErrorKind::DeadlineExceeded,
        ErrorKind::UpstreamError,
        ErrorKind::UpstreamTimeout,
        ErrorKind::UpstreamUnavailable,
        ErrorKind::NoHealthyInstance,
        ErrorKind::StoreUnavailable,
        ErrorKind::AuthUnavailable,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::RateLimited,
        ErrorKind::CircuitOpen,
        ErrorKind::ServiceOverloaded,
        ErrorKind::Overloaded,
        ErrorKind::ReplyTooLarge,
        ErrorKind::ReplyNotKept,
        ErrorKind::Internal,
    ];

    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidTopic
            | ErrorKind::InvalidJson
            | ErrorKind::InvalidParam
            | ErrorKind::InvalidHeader => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::RouteNotFound => 404,
            ErrorKind::RateLimited => 429,
            ErrorKind::RequestInProgress => 409,
            ErrorKind::RequestIdReused => 422,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::HeadersTooLarge => 431,
            ErrorKind::UriTooLong => 414,
            ErrorKind::UpstreamRejected(status) => status,
            ErrorKind::UpstreamError | ErrorKind::ReplyTooLarge => 502,
            ErrorKind::ReplyNotKept => 410,
            ErrorKind::UpstreamUnavailable
            | ErrorKind::NoHealthyInstance
            | ErrorKind::StoreUnavailable
            | ErrorKind::AuthUnavailable
            | ErrorKind::CircuitOpen
            | ErrorKind::ServiceOverloaded
            | ErrorKind::Overloaded => 503,
            ErrorKind::DeadlineExceeded | ErrorKind::UpstreamTimeout => 504,
            ErrorKind::Internal => 500,
        }
    }

    pub fn type_name(self) -> &'static str {
        match self {
            ErrorKind::InvalidTopic => "invalid_topic",
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::InvalidParam => "invalid_param",
            ErrorKind::InvalidHeader => "invalid_header",
            ErrorKind::RouteNotFound => "route_not_found",
            ErrorKind::RequestInProgress => "request_in_progress",
            ErrorKind::RequestIdReused => "request_id_reused",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::HeadersTooLarge => "headers_too_large",
            ErrorKind::UriTooLong => "uri_too_long",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::UpstreamRejected(_) => "upstream_rejected",
            ErrorKind::UpstreamError => "upstream_error",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::UpstreamUnavailable => "upstream_unavailable",
            ErrorKind::NoHealthyInstance => "no_healthy_instance",
            ErrorKind::StoreUnavailable => "store_unavailable",
            ErrorKind::AuthUnavailable => "auth_unavailable",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::ServiceOverloaded => "service_overloaded",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::ReplyTooLarge => "reply_too_large",
            ErrorKind::ReplyNotKept => "reply_not_kept",
            ErrorKind::Internal => "internal_error",
        }
    }

    pub fn side(self) -> Side {
        match self {
            ErrorKind::InvalidTopic
            | ErrorKind::InvalidJson
            | ErrorKind::InvalidParam
            | ErrorKind::InvalidHeader
            | ErrorKind::RouteNotFound
            | ErrorKind::RequestInProgress
            | ErrorKind::RequestIdReused
            | ErrorKind::PayloadTooLarge
            | ErrorKind::HeadersTooLarge
            | ErrorKind::UriTooLong
            | ErrorKind::DeadlineExceeded
            | ErrorKind::Unauthorized
            | ErrorKind::Forbidden
            | ErrorKind::RateLimited => Side::Downstream,
            ErrorKind::UpstreamRejected(_)
            | ErrorKind::UpstreamError
            | ErrorKind::UpstreamTimeout
            | ErrorKind::UpstreamUnavailable => Side::Upstream,
            ErrorKind::NoHealthyInstance
            | ErrorKind::CircuitOpen
            | ErrorKind::ServiceOverloaded => Side::Guard,
            ErrorKind::StoreUnavailable
            | ErrorKind::AuthUnavailable
            | ErrorKind::Overloaded
            | ErrorKind::ReplyTooLarge
            | ErrorKind::ReplyNotKept
            | ErrorKind::Internal => Side::Internal,
        }
    }

    pub fn retry(self) -> Retry {
        match self {
            // A refused connection never reached the instance.
            ErrorKind::UpstreamUnavailable => Retry::Elsewhere,
            ErrorKind::UpstreamTimeout
            | ErrorKind::UpstreamError
            | ErrorKind::RequestInProgress
            | ErrorKind::NoHealthyInstance
            | ErrorKind::StoreUnavailable
            | ErrorKind::AuthUnavailable
            | ErrorKind::RateLimited
            | ErrorKind::CircuitOpen
            | ErrorKind::ServiceOverloaded
            | ErrorKind::Overloaded => Retry::Later,
            _ => Retry::Never,
        }
    }

    /// Whether an error reply names the upstream service: only when the
    /// service itself, or the gateway's guard of it, answered — never for a
    /// refusal made before any upstream was chosen (credentials, limits,
    /// bad input).
    pub fn names_service(self) -> bool {
        match self.side() {
            Side::Upstream | Side::Guard => true,
            Side::Downstream => self == ErrorKind::DeadlineExceeded,
            Side::Internal => self == ErrorKind::ReplyTooLarge,
        }
    }

    /// Whether the same request may succeed if the client sends it again.
    pub fn retryable(self) -> bool {
        self.retry() != Retry::Never
    }

    /// Whether the gateway sends the request to another instance at once:
    /// the upstream failed before the request reached it.
    pub fn retries_elsewhere(self) -> bool {
        self.side() == Side::Upstream && self.retry() == Retry::Elsewhere
    }

    /// What this error says about the upstream service, for its circuit
    /// breaker. Only the upstream's own outcome counts: a failure it may
    /// recover from (5xx, timeout, refused connection) is evidence against
    /// it, an answer it chose (a 4xx) is the upstream working. Nothing a
    /// caller can cause on its own (its deadline, an answer too large to
    /// deliver) nor a refusal by the gateway itself counts: otherwise any one
    /// client could open a service's breaker for every caller.
    pub fn breaker_evidence(self) -> Outcome {
        match (self.side(), self.retryable()) {
            (Side::Upstream, true) => Outcome::Failure,
            (Side::Upstream, false) => Outcome::Success,
            _ => Outcome::NotSent,
        }
    }

    /// Whether a fallback (cached reply or fallback service) may answer
    /// instead: the upstream could not give an answer now, whether it failed
    /// or the gateway held the request back to protect it — as opposed to a
    /// refusal of the request itself.
    pub fn falls_back(self) -> bool {
        matches!(self.side(), Side::Upstream | Side::Guard) && self.retryable()
    }
}

/// An error reply in the making: what went wrong, said for the client.
#[derive(Debug, Clone)]
pub struct GatewayError {
    pub kind: ErrorKind,
    pub message: String,
    /// The upstream's body, for errors it answered itself (4xx pass-through),
    /// as it came: copied into the reply, never parsed and re-encoded.
    pub upstream_body: Option<Box<serde_json::value::RawValue>>,
    /// Extra reply user properties (`retry-after`, `www-authenticate`, …).
    pub properties: Vec<(String, String)>,
}

impl GatewayError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        GatewayError {
            kind,
            message: message.into(),
            upstream_body: None,
            properties: Vec::new(),
        }
    }

    /// Adds a reply user property.
    pub fn with_property(mut self, name: &str, value: impl Into<String>) -> Self {
        self.properties.push((name.to_string(), value.into()));
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.kind.type_name(),
            self.status(),
            self.message
        )
    }
}

impl std::error::Error for GatewayError {}

/// How the upstream call went, for whoever admitted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered (2xx, or a 4xx it chose to give).
    Success,
    /// 5xx, timeout or refused connection.
    Failure,
    /// The request never reached the upstream (another middleware refused it).
    NotSent,
}

#[cfg(test)]
mod kinds_listed {
    use super::ErrorKind;

    /// `ALL` names each kind once. (A kind added to the enum must be added
    /// to `ALL` by hand: `type_name`'s exhaustive match is where it shows.)
    #[test]
    fn every_kind_the_gateway_answers_with_is_listed_once() {
        let mut names: Vec<&str> = ErrorKind::ALL.iter().map(|kind| kind.type_name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        assert!(!names.contains(&ErrorKind::UpstreamRejected(400).type_name()));
    }
}
