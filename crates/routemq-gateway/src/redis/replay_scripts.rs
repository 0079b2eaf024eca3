//! The replay store's scripts (safe retries), one typed wrapper each.

use std::sync::LazyLock;
use std::time::Duration;

use fred::prelude::*;
use fred::types::scripts::Script;

use super::scripts::millis;

static CLAIM_REQUEST: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/claim_request.lua")));
static RENEW_CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/renew_claim.lua")));
static FINISH_REQUEST: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/finish_request.lua")));

/// What [`claim_request`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimResult {
    /// This call claimed the request; its attempt number, counting from 1.
    Claimed { attempt: u64 },
    /// An earlier execution's record: its live claim or its stored outcome.
    Existing(String),
}

/// Claims a request (`request_key` from [`super::keys::request`], its counter
/// from [`super::keys::request_attempts`]) by storing `claim` as a lease of
/// `lease`; the attempt counter is kept for `window`.
pub async fn claim_request(
    client: &Client,
    request_key: &str,
    attempts_key: &str,
    claim: &str,
    lease: Duration,
    window: Duration,
) -> FredResult<ClaimResult> {
    let found: Value = crate::observe::redis_call(
        "claim_request",
        CLAIM_REQUEST.evalsha_with_reload(
            client,
            vec![request_key.to_string(), attempts_key.to_string()],
            vec![
                claim.to_string(),
                millis(lease).to_string(),
                millis(window).to_string(),
            ],
        ),
    )
    .await?;
    match found {
        Value::Integer(attempt) => Ok(ClaimResult::Claimed {
            attempt: attempt.unsigned_abs(),
        }),
        other => match other.into_string() {
            Some(existing) => Ok(ClaimResult::Existing(existing)),
            None => Err(Error::new(
                ErrorKind::Parse,
                "claim_request returned neither an attempt nor a record",
            )),
        },
    }
}

/// Extends `claim`'s lease to `lease` from now; false when the claim is no
/// longer this worker's (finished, expired, or taken by another).
pub async fn renew_claim(
    client: &Client,
    request_key: &str,
    claim: &str,
    lease: Duration,
) -> FredResult<bool> {
    let renewed: i64 = crate::observe::redis_call(
        "renew_claim",
        RENEW_CLAIM.evalsha_with_reload(
            client,
            vec![request_key.to_string()],
            vec![claim.to_string(), millis(lease).to_string()],
        ),
    )
    .await?;
    Ok(renewed == 1)
}

/// Stores `outcome` for `keep_for`, or releases the claim when `outcome` is
/// empty; only the holder of `claim` can. True when applied.
pub async fn finish_request(
    client: &Client,
    request_key: &str,
    claim: &str,
    outcome: &str,
    keep_for: Duration,
) -> FredResult<bool> {
    let applied: i64 = crate::observe::redis_call(
        "finish_request",
        FINISH_REQUEST.evalsha_with_reload(
            client,
            vec![request_key.to_string()],
            vec![
                claim.to_string(),
                outcome.to_string(),
                millis(keep_for).to_string(),
            ],
        ),
    )
    .await?;
    Ok(applied == 1)
}
