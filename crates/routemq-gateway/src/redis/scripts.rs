//! One typed wrapper per Lua script. Scripts run with EVALSHA and are
//! reloaded on NOSCRIPT (a restarted or new cluster node), so callers never
//! see the script cache.

use std::sync::LazyLock;
use std::time::Duration;

use fred::prelude::*;
use fred::types::scripts::Script;

use super::keys;

pub use super::breaker_scripts::*;
pub use super::cache_scripts::*;
pub use super::limit_scripts::*;
pub use super::registry_scripts::*;
pub use super::replay_scripts::*;

static NEXT_INDEX: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/next_index.lua")));
static FLUSH_METRICS: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/flush_metrics.lua")));

static PUSH_LOGS: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/push_logs.lua")));
static PUT_API_KEY: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/put_api_key.lua")));
static REVOKE_API_KEY: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/revoke_api_key.lua")));

pub(super) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Leases `lease` values of a service's round-robin counter; returns the last
/// value leased, so the caller owns `(last - lease, last]`.
pub async fn next_index(
    client: &Client,
    service: &str,
    lease: u32,
    idle_expiry: Duration,
) -> FredResult<u64> {
    crate::observe::redis_call(
        "next_index",
        NEXT_INDEX.evalsha_with_reload(
            client,
            vec![keys::round_robin(service)],
            vec![i64::from(lease.max(1)), millis(idle_expiry)],
        ),
    )
    .await
}

/// Adds batch `sequence` of a flusher's metric deltas once, however often it
/// is sent; `sequence` must grow with every batch of the same `flusher_id`.
pub async fn flush_metrics(
    client: &Client,
    flusher_id: &str,
    sequence: u64,
    deltas: &[(String, i64)],
    marker_expiry: Duration,
) -> FredResult<bool> {
    let mut args = Vec::with_capacity(2 + deltas.len() * 2);
    args.push(sequence.to_string());
    args.push(millis(marker_expiry).to_string());
    for (field, delta) in deltas {
        args.push(field.clone());
        args.push(delta.to_string());
    }
    let applied: i64 = crate::observe::redis_call(
        "flush_metrics",
        FLUSH_METRICS.evalsha_with_reload(
            client,
            vec![keys::METRICS.to_string(), keys::metrics_flushed(flusher_id)],
            args,
        ),
    )
    .await?;
    Ok(applied == 1)
}

/// A rate-limit verdict.
/// Stores an API key record (`record`, JSON) under the key's hash.
pub async fn put_api_key(client: &Client, key_hash: &str, record: &str) -> FredResult<u64> {
    crate::observe::redis_call(
        "put_api_key",
        PUT_API_KEY.evalsha_with_reload(
            client,
            vec![
                keys::API_KEYS.to_string(),
                keys::API_KEYS_VERSION.to_string(),
            ],
            vec![key_hash.to_string(), record.to_string()],
        ),
    )
    .await
}

/// Revokes an API key by hash; true when it existed.
pub async fn revoke_api_key(client: &Client, key_hash: &str) -> FredResult<bool> {
    let removed: i64 = crate::observe::redis_call(
        "revoke_api_key",
        REVOKE_API_KEY.evalsha_with_reload(
            client,
            vec![
                keys::API_KEYS.to_string(),
                keys::API_KEYS_VERSION.to_string(),
            ],
            vec![key_hash.to_string()],
        ),
    )
    .await?;
    Ok(removed == 1)
}

/// Pushes request, response and error log entries onto their capped lists.
pub async fn push_logs(
    client: &Client,
    cap: usize,
    requests: &[String],
    responses: &[String],
    errors: &[String],
) -> FredResult<i64> {
    let mut args = Vec::with_capacity(4 + requests.len() + responses.len() + errors.len());
    args.push(cap.to_string());
    args.push(requests.len().to_string());
    args.push(responses.len().to_string());
    args.push(errors.len().to_string());
    args.extend(requests.iter().chain(responses).chain(errors).cloned());
    crate::observe::redis_call(
        "push_logs",
        PUSH_LOGS.evalsha_with_reload(
            client,
            vec![
                keys::LOG_REQUESTS.to_string(),
                keys::LOG_RESPONSES.to_string(),
                keys::LOG_ERRORS.to_string(),
            ],
            args,
        ),
    )
    .await
}
