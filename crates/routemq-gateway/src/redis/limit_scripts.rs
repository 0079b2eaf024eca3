//! The rate limiters' scripts: the sliding-window log (exact: at most L in
//! any window) and GCRA (O(1) state per client, for high limits). Each call
//! counts a batch of attempts — the ones a worker has at the same moment —
//! so a busy worker makes fewer script calls than requests.

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

/// Which script counts, with the settings only it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScript {
    /// `rate_limit.lua`, keys from [`super::keys::rate_limit`].
    SlidingLog,
    /// `gcra.lua`, keys from [`super::keys::gcra`].
    Gcra { burst: u32 },
}

/// One limiter: its script and `limit` admissions per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub script: LimitScript,
    pub limit: u32,
    pub window: Duration,
}

/// One request's attempt: its client's key and an id unique to the request
/// (a repeat of the same id is admitted again, not recounted).
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub key: &'a str,
    pub attempt_id: &'a str,
}

/// Counts `attempts`, in order, against `limit` in one script call, unless
/// it runs after `clock`'s deadline (then every verdict is `stale`). On a
/// cluster every key must be in one hash slot. One verdict per attempt.
pub async fn count_attempts(
    client: &Client,
    clock: &RedisClock,
    limit: Limit,
    attempts: &[Attempt<'_>],
) -> FredResult<Vec<RateVerdict>> {
    let (script, burst) = match limit.script {
        LimitScript::SlidingLog => (&*RATE_LIMIT, String::new()),
        LimitScript::Gcra { burst } => (&*GCRA, burst.to_string()),
    };
    let mut keys: Vec<String> = Vec::new();
    let mut args = vec![
        i64::from(limit.limit).to_string(),
        millis(limit.window).to_string(),
        clock.deadline().map_or(String::new(), |ms| ms.to_string()),
        burst,
    ];
    for attempt in attempts {
        let index = match keys.iter().position(|key| key == attempt.key) {
            Some(index) => index,
            None => {
                keys.push(attempt.key.to_string());
                keys.len() - 1
            }
        };
        args.push((index + 1).to_string());
        args.push(attempt.attempt_id.to_string());
    }
    let reply: Vec<i64> = script.evalsha_with_reload(client, keys, args).await?;
    let (&now_ms, rest) = reply
        .split_first()
        .ok_or_else(|| Error::new(ErrorKind::Parse, "empty rate limit reply"))?;
    clock.observe(now_ms.unsigned_abs());
    if rest.first() == Some(&1) {
        return Ok(vec![RateVerdict::STALE; attempts.len()]);
    }
    let verdicts: Vec<RateVerdict> = rest
        .get(1..)
        .unwrap_or_default()
        .chunks_exact(3)
        .map(|verdict| RateVerdict::new(verdict[0], verdict[1], verdict[2]))
        .collect();
    if verdicts.len() != attempts.len() {
        return Err(Error::new(
            ErrorKind::Parse,
            "rate limit reply does not match its attempts",
        ));
    }
    Ok(verdicts)
}

/// Counts one attempt against `limit` per `window` in the sliding log at
/// `key` (from [`super::keys::rate_limit`]), unless the script runs after
/// `clock`'s deadline for it (then `stale`).
pub async fn rate_limit(
    client: &Client,
    clock: &RedisClock,
    key: &str,
    limit: u32,
    window: Duration,
    attempt_id: &str,
) -> FredResult<RateVerdict> {
    let limit = Limit {
        script: LimitScript::SlidingLog,
        limit,
        window,
    };
    count_one(client, clock, limit, Attempt { key, attempt_id }).await
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
    let limit = Limit {
        script: LimitScript::Gcra { burst },
        limit,
        window,
    };
    count_one(client, clock, limit, Attempt { key, attempt_id }).await
}

async fn count_one(
    client: &Client,
    clock: &RedisClock,
    limit: Limit,
    attempt: Attempt<'_>,
) -> FredResult<RateVerdict> {
    let verdicts = count_attempts(client, clock, limit, &[attempt]).await?;
    verdicts
        .first()
        .copied()
        .ok_or_else(|| Error::new(ErrorKind::Parse, "no rate limit verdict"))
}

impl RateVerdict {
    const STALE: RateVerdict = RateVerdict {
        admitted: false,
        remaining: 0,
        retry_after: Duration::ZERO,
        stale: true,
    };

    /// From a limiter script's `admitted (1/0), remaining, retry_after_ms`.
    fn new(admitted: i64, remaining: i64, retry_after_ms: i64) -> RateVerdict {
        RateVerdict {
            admitted: admitted == 1,
            remaining: u64::try_from(remaining).unwrap_or(0),
            retry_after: Duration::from_millis(u64::try_from(retry_after_ms).unwrap_or(0)),
            stale: false,
        }
    }
}
