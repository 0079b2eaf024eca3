//! The rate limiters' scripts: the sliding-window log (exact: at most L in
//! any window) and GCRA (O(1) state per client, for high limits).

use std::sync::LazyLock;
use std::time::Duration;

use fred::prelude::*;
use fred::types::scripts::Script;

use super::clock::RedisClock;
use super::scripts::millis;

static RATE_LIMIT: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/rate_limit.lua")));
static GCRA: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/gcra.lua")));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateVerdict {
    pub admitted: bool,
    pub remaining: u64,
    /// When a refused client may try again.
    pub retry_after: Duration,
    /// The call ran after its deadline and counted nothing.
    pub stale: bool,
}

/// Counts one attempt (`attempt_id`, unique per request) against `limit` per
/// `window` in the log at `key` (from [`keys::rate_limit`]), unless the
/// script runs after `clock`'s deadline for it (then `stale`).
pub async fn rate_limit(
    client: &Client,
    clock: &RedisClock,
    key: &str,
    limit: u32,
    window: Duration,
    attempt_id: &str,
) -> FredResult<RateVerdict> {
    let attempt = Attempt {
        key,
        limit,
        window,
        attempt_id,
    };
    count(
        "rate_limit",
        &RATE_LIMIT,
        client,
        clock,
        attempt,
        Vec::new(),
    )
    .await
}

/// Counts one attempt against a GCRA limit of `limit` per `window` with
/// bursts of `burst`, in the state at `key` (from [`super::keys::gcra`]);
/// like [`rate_limit`], a call after `clock`'s deadline counts nothing.
pub async fn gcra(
    client: &Client,
    clock: &RedisClock,
    key: &str,
    limit: u32,
    window: Duration,
    burst: u32,
    attempt_id: &str,
) -> FredResult<RateVerdict> {
    let attempt = Attempt {
        key,
        limit,
        window,
        attempt_id,
    };
    count(
        "gcra",
        &GCRA,
        client,
        clock,
        attempt,
        vec![burst.to_string()],
    )
    .await
}

/// One attempt, as both limiters' scripts take it.
struct Attempt<'a> {
    key: &'a str,
    limit: u32,
    window: Duration,
    attempt_id: &'a str,
}

/// Runs a limiter script: `limit`, `window`, the attempt id and the clock's
/// deadline first, then the kind's own arguments (`extra`); both answer
/// `{admitted, remaining, retry_after_ms, now_ms}`.
async fn count(
    name: &'static str,
    script: &Script,
    client: &Client,
    clock: &RedisClock,
    attempt: Attempt<'_>,
    extra: Vec<String>,
) -> FredResult<RateVerdict> {
    let deadline = clock.deadline().map_or(String::new(), |ms| ms.to_string());
    let mut args = vec![
        i64::from(attempt.limit).to_string(),
        millis(attempt.window).to_string(),
        attempt.attempt_id.to_string(),
        deadline,
    ];
    args.extend(extra);
    let (admitted, remaining, retry_after_ms, now_ms): (i64, i64, i64, i64) =
        crate::observe::redis_call(
            name,
            script.evalsha_with_reload(client, vec![attempt.key.to_string()], args),
        )
        .await?;
    clock.observe(now_ms.unsigned_abs());
    Ok(RateVerdict::new(admitted, remaining, retry_after_ms))
}

impl RateVerdict {
    /// From a limiter script's `{admitted (1/0, 2 = too late), remaining, retry_after_ms}`.
    fn new(admitted: i64, remaining: i64, retry_after_ms: i64) -> RateVerdict {
        RateVerdict {
            admitted: admitted == 1,
            remaining: u64::try_from(remaining).unwrap_or(0),
            retry_after: Duration::from_millis(u64::try_from(retry_after_ms).unwrap_or(0)),
            stale: admitted == 2,
        }
    }
}
