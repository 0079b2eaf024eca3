//! Redis key names. Every key a script touches shares the hash tag of its
//! service (`{svc:NAME}`) or of the gateway (`{routemq}`), so each script's
//! keys live in one Redis Cluster slot.

pub const SERVICES: &str = "{routemq}:services";
pub const METRICS: &str = "{routemq}:metrics";
/// API key records by the key's SHA-256, and a counter bumped on every change.
pub const API_KEYS: &str = "{routemq}:api_keys";
pub const API_KEYS_VERSION: &str = "{routemq}:api_keys:version";
/// The reference's request, response and error logs: capped lists, newest first.
pub const LOG_REQUESTS: &str = "{routemq}:logs:requests";
pub const LOG_RESPONSES: &str = "{routemq}:logs:responses";
pub const LOG_ERRORS: &str = "{routemq}:logs:errors";

/// The last metrics batch applied from one worker process (`flusher_id`).
pub fn metrics_flushed(flusher_id: &str) -> String {
    format!("{{routemq}}:metrics:flushed:{flusher_id}")
}

pub fn instances(service: &str) -> String {
    format!("{{svc:{service}}}:instances")
}

pub fn instance(service: &str, instance_id: &str) -> String {
    format!("{{svc:{service}}}:instance:{instance_id}")
}

pub fn round_robin(service: &str) -> String {
    format!("{{svc:{service}}}:rr")
}

pub fn probe_lock(service: &str, instance_id: &str) -> String {
    format!("{{svc:{service}}}:probe:{instance_id}")
}

/// A request's claim or stored reply, for replaying retries: the client's
/// request id on one topic (an id reused on another topic is another request).
pub fn request(request_id: &str, topic: &str) -> String {
    format!("{{routemq:req:{request_id}}}:{topic}")
}

/// A circuit breaker's state (`state`, `opened_at`).
pub fn breaker(service: &str) -> String {
    format!("{{svc:{service}}}:breaker")
}

pub fn breaker_probes(service: &str) -> String {
    format!("{{svc:{service}}}:breaker:probes")
}

pub fn breaker_failures(service: &str) -> String {
    format!("{{svc:{service}}}:breaker:failures")
}

/// One client's sliding-window log under one limiter; its own hash tag, so
/// clients spread over the cluster.
pub fn rate_limit(limiter: &str, client_key: &str) -> String {
    format!("{{rl:{limiter}:{client_key}}}")
}

/// A cached reply to one request (`request_hash`) of a service, for fallback.
pub fn fallback_cache(service: &str, request_hash: &str) -> String {
    format!("routemq:cache:{service}:{{{request_hash}}}")
}
