//! Redis key names. Every key a script touches shares the hash tag of its
//! service (`{svc:NAME}`) or of the gateway (`{routemq}`), so each script's
//! keys live in one Redis Cluster slot.

pub const SERVICES: &str = "{routemq}:services";
pub const METRICS: &str = "{routemq}:metrics";
/// Live worker processes: a sorted set of process ids scored by expiry (ms).
pub const WORKERS: &str = "{routemq}:workers";
/// The live workers that share the health probes, scored like [`WORKERS`].
pub const PROBERS: &str = "{routemq}:probers";
/// A token replaced after every registry change (any service): what idle
/// workers poll. Set after the change, outside its script, since it lives in
/// another slot; the per-service versions ([`service_version`]) are set in
/// the change's own script and swept now and then, for a writer that died
/// between the two.
pub const REGISTRY_VERSION: &str = "{routemq}:registry:version";
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

/// A service's instances by expiry time in ms (`+inf`: no expiry), so
/// expired instances are found without reading every instance.
pub fn instance_expiries(service: &str) -> String {
    format!("{{svc:{service}}}:expiries")
}

/// A token replaced by every script that changes the service's instances
/// or their health (never by a heartbeat).
pub fn service_version(service: &str) -> String {
    format!("{{svc:{service}}}:version")
}

pub fn round_robin(service: &str) -> String {
    format!("{{svc:{service}}}:rr")
}

/// A request's claim or stored reply, for replaying retries: one caller's
/// request id on one topic (the same id from another caller, or on another
/// topic, is another request). `scope` is a hash of caller, topic and id.
/// Version 2 (version 1 was keyed by id and topic only, shared by callers).
pub fn request(scope: &str) -> String {
    format!("{{routemq:req2:{scope}}}")
}

/// How many times a request ([`request`]) was claimed: kept past its claims,
/// so a retry after a crash or a 5xx is sent upstream as a further attempt.
pub fn request_attempts(scope: &str) -> String {
    format!("{{routemq:req2:{scope}}}:attempts")
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

/// Recent successful calls by time bucket (failure-rate mode).
pub fn breaker_successes(service: &str) -> String {
    format!("{{svc:{service}}}:breaker:successes")
}

/// The last success batch applied from one worker process.
pub fn breaker_successes_flushed(service: &str, flusher_id: &str) -> String {
    format!("{{svc:{service}}}:breaker:successes:flushed:{flusher_id}")
}

/// One client's sliding-window log under one limiter; its own hash tag, so
/// clients spread over the cluster. `client_key` is hashed by the caller
/// (`RequestContext::client_key`); version 2 of the key (version 1 held the
/// raw subject or client id).
pub fn rate_limit(limiter: &str, client_key: &str) -> String {
    format!("{{rl2:{limiter}:{client_key}}}")
}

/// One client's GCRA state under one limiter (a hash: `tat`, `last`); a key
/// of its own, so switching a limiter between algorithms never reads the
/// other's record.
pub fn gcra(limiter: &str, client_key: &str) -> String {
    format!("{{gcra:{limiter}:{client_key}}}")
}

/// A cached reply to one request (`request_hash`) of a service, for fallback.
pub fn fallback_cache(service: &str, request_hash: &str) -> String {
    format!("routemq:cache:{service}:{{{request_hash}}}")
}

/// A cached reply, version 2: in its service's slot, beside the index that
/// caps the service's entries ([`fallback_index`]). Version 1
/// ([`fallback_cache`]) had no cap; workers still read it on a miss while
/// old workers may write it.
pub fn fallback_entry(service: &str, request_hash: &str) -> String {
    format!("{{cache2:{service}}}:{request_hash}")
}

/// A service's cached replies by write time (ms), oldest evicted first.
pub fn fallback_index(service: &str) -> String {
    format!("{{cache2:{service}}}:index")
}
