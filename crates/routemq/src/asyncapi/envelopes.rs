//! The parts of the document every route shares: the request, reply and
//! error messages, their envelopes, and the security schemes.

use serde_json::{json, Value};

use routemq_gateway::ErrorKind;

pub const DESCRIPTION: &str = "\
MQTT request/response over HTTP services. Publish a JSON request to a route's \
topic with an MQTT 5 Response Topic and Correlation Data; the gateway publishes \
exactly one reply to that topic with the same Correlation Data, a `status` user \
property (HTTP-style) and the reply envelope.\n\n\
MQTT 5 user properties are the request headers: `x-request-id` (a retry with the \
same id is answered once), `authorization: Bearer <JWT>` or `x-api-key`, \
`traceparent`, `origin`. The Message Expiry Interval is the request's deadline; \
the service is told the time left (`X-Request-Timeout-Ms`).\n\n\
A reply larger than the broker's Maximum Packet Size is answered \
`502 reply_too_large`, or, to a caller that sent `x-accept-chunks: 1` (or its own \
packet size in bytes; or on a \
route with `chunked_replies = \"always\"`), sent as ordered chunks on the same \
Response Topic with the same Correlation Data; each chunk carries `x-chunk-index`, \
`x-chunk-count`, `x-chunk-total` and `x-chunk-sha256`, and the payloads in index \
order are the reply (docs/protocol.md, Chunked replies).\n\n\
MQTT 3.1.1 clients, which have no Response Topic, put `reply_to` (the reply \
topic) and `correlation_id` in the JSON payload instead; the reply then carries \
`correlation_id` in its body.";

/// Errors any request can get, whatever its route.
pub const ANY_ROUTE: [ErrorKind; 9] = [
    ErrorKind::InvalidJson,
    ErrorKind::InvalidParam,
    ErrorKind::PayloadTooLarge,
    ErrorKind::HeadersTooLarge,
    ErrorKind::DeadlineExceeded,
    ErrorKind::Overloaded,
    ErrorKind::StoreUnavailable,
    ErrorKind::ReplyTooLarge,
    ErrorKind::Internal,
];

/// Errors a request forwarded to a service can get besides.
pub const FORWARDED: [ErrorKind; 10] = [
    ErrorKind::UriTooLong,
    ErrorKind::UpstreamRejected(400),
    ErrorKind::UpstreamError,
    ErrorKind::UpstreamTimeout,
    ErrorKind::UpstreamUnavailable,
    ErrorKind::NoHealthyInstance,
    ErrorKind::ServiceOverloaded,
    ErrorKind::RequestInProgress,
    ErrorKind::RequestIdReused,
    ErrorKind::ReplyNotKept,
];

pub fn components() -> Value {
    json!({
        "messages": {
            "request": request_message(),
            "success": reply_message("success", "successEnvelope", "The upstream's answer (2xx, 3xx), or a built-in route's."),
            "error": reply_message("error", "errorEnvelope", "Why the request was not answered by its target; `error.type` says what to do."),
        },
        "schemas": {
            "successEnvelope": success_envelope(),
            "errorEnvelope": error_envelope(),
        },
        "securitySchemes": {
            "bearerJwt": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "`authorization: Bearer <JWT>` as an MQTT 5 user property.",
            },
            "apiKey": {
                "type": "httpApiKey",
                "name": "x-api-key",
                "in": "header",
                "description": "The key as the `x-api-key` MQTT 5 user property.",
            },
        },
    })
}

fn correlation_id() -> Value {
    json!({
        "location": "$message.header#/correlationData",
        "description": "The MQTT 5 Correlation Data, echoed in the reply.",
    })
}

fn request_message() -> Value {
    json!({
        "name": "request",
        "title": "A request",
        "contentType": "application/json",
        "correlationId": correlation_id(),
        "headers": {
            "type": "object",
            "description": "MQTT 5 properties and user properties.",
            "properties": {
                "responseTopic": { "type": "string", "description": "MQTT 5 Response Topic: where the reply goes." },
                "correlationData": { "type": "string", "description": "MQTT 5 Correlation Data (bytes), echoed in the reply." },
                "x-request-id": { "type": "string", "maxLength": 128, "pattern": "^[A-Za-z0-9._:-]+$", "description": "Chosen by the client, a retry with the same id is answered once." },
                "authorization": { "type": "string", "description": "`Bearer <JWT>`." },
                "x-api-key": { "type": "string" },
                "traceparent": { "type": "string", "description": "W3C trace context." },
                "origin": { "type": "string", "description": "For CORS." },
                "x-accept-chunks": { "type": "string", "pattern": "^(1|[1-9][0-9]{3,})$", "description": "The caller reassembles a reply too large for one packet from chunks: `1`, or the largest packet it takes in bytes (at least 1024)." },
            },
        },
        "payload": {
            "type": "object",
            "description": "The request body (empty means `{}`). Its top-level scalar fields are the query of a GET or DELETE.",
            "properties": {
                "reply_to": { "type": "string", "description": "MQTT 3.1.1: the reply topic." },
                "correlation_id": { "type": "string", "description": "MQTT 3.1.1: echoed in the reply body." },
            },
        },
        "bindings": { "mqtt": request_binding() },
    })
}

/// A request's MQTT 5 properties: the reply address travels in them.
fn request_binding() -> Value {
    let mut binding = message_binding();
    binding["responseTopic"] = json!({
        "type": "string",
        "description": "Where the reply goes; allowed by the [replies] allowlist (replies/{sub}/# in the shipped config).",
    });
    binding
}

fn message_binding() -> Value {
    json!({
        "payloadFormatIndicator": 1,
        "contentType": "application/json",
        "correlationData": { "type": "string", "format": "binary" },
        "bindingVersion": "0.2.0",
    })
}

fn reply_message(name: &str, envelope: &str, description: &str) -> Value {
    json!({
        "name": name,
        "description": description,
        "contentType": "application/json",
        "correlationId": correlation_id(),
        "headers": {
            "type": "object",
            "properties": {
                "correlationData": { "type": "string", "description": "The request's Correlation Data." },
                "status": { "type": "string", "description": "The HTTP-style status, as a user property." },
                "x-request-id": { "type": "string" },
                "x-trace-id": { "type": "string" },
                "x-replayed": { "type": "string", "description": "`true` on a stored reply to a retry." },
                "x-ratelimit-limit": { "type": "string" },
                "x-ratelimit-remaining": { "type": "string" },
                "retry-after": { "type": "string", "description": "Seconds, on 429 and retryable 503s." },
                "x-chunk-index": { "type": "string", "description": "A chunk of a chunked reply: its position, from 0." },
                "x-chunk-count": { "type": "string", "description": "A chunk of a chunked reply: how many chunks the reply has." },
                "x-chunk-total": { "type": "string", "description": "A chunk of a chunked reply: the whole payload's length in bytes." },
                "x-chunk-sha256": { "type": "string", "pattern": "^[0-9a-f]{64}$", "description": "A chunk of a chunked reply: SHA-256 of the whole payload." },
            },
        },
        "payload": { "$ref": format!("#/components/schemas/{envelope}") },
        "bindings": { "mqtt": message_binding() },
    })
}

fn success_envelope() -> Value {
    json!({
        "type": "object",
        "required": ["status", "data", "request_id"],
        "properties": {
            "status": { "const": "success" },
            "data": { "description": "The upstream's body as it came (JSON, or a JSON string)." },
            "request_id": { "type": "string" },
            "service": { "type": "string" },
            "processing_time": { "type": "number", "description": "Seconds." },
            "source": { "enum": ["cache", "fallback"], "description": "Present when a fallback answered." },
            "correlation_id": { "type": "string", "description": "MQTT 3.1.1 callers only." },
        },
    })
}

fn error_envelope() -> Value {
    let mut types: Vec<&str> = ErrorKind::ALL.iter().map(|kind| kind.type_name()).collect();
    types.push(ErrorKind::UpstreamRejected(400).type_name());
    let statuses: Vec<String> = ErrorKind::ALL
        .iter()
        .map(|kind| format!("`{}` {}", kind.type_name(), kind.status()))
        .collect();
    json!({
        "type": "object",
        "required": ["status", "error", "request_id"],
        "properties": {
            "status": { "const": "error" },
            "error": {
                "type": "object",
                "required": ["code", "type", "message"],
                "properties": {
                    "code": { "type": "integer", "description": format!("The HTTP-style status: {}; `upstream_rejected` carries the upstream's own 4xx.", statuses.join(", ")) },
                    "type": { "enum": types },
                    "message": { "type": "string" },
                },
            },
            "request_id": { "type": "string" },
            "service": { "type": "string" },
            "data": { "description": "An upstream 4xx's own body, as it came." },
            "correlation_id": { "type": "string", "description": "MQTT 3.1.1 callers only." },
        },
    })
}
