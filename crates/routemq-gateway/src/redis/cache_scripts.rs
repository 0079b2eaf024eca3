//! The fallback cache's script.

use std::sync::LazyLock;
use std::time::Duration;

use fred::prelude::*;
use fred::types::scripts::Script;

use super::keys;
use super::scripts::millis;

static FALLBACK_STORE: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/fallback_store.lua")));

/// Stores `record` as `service`'s cached reply at `key` (from
/// [`keys::fallback_entry`]) for `ttl`, evicting the service's oldest
/// entries beyond `max_entries`; returns how many were evicted.
pub async fn fallback_store(
    client: &Client,
    service: &str,
    key: &str,
    record: &str,
    ttl: Duration,
    max_entries: usize,
) -> FredResult<u64> {
    crate::observe::redis_call(
        "fallback_store",
        FALLBACK_STORE.evalsha_with_reload(
            client,
            vec![key.to_string(), keys::fallback_index(service)],
            vec![
                record.to_string(),
                millis(ttl).to_string(),
                max_entries.to_string(),
            ],
        ),
    )
    .await
}
