//! The circuit breaker's scripts, one typed wrapper each.

use std::sync::LazyLock;
use std::time::Duration;

use fred::prelude::*;
use fred::types::scripts::Script;

use super::keys;
use super::scripts::millis;

static BREAKER_ADMIT: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/breaker_admit.lua")));
static BREAKER_RECORD: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/breaker_record.lua")));
static BREAKER_VIEW: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/breaker_view.lua")));
static BREAKER_SUCCESSES: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/breaker_successes.lua")));

/// What the breaker said about one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerVerdict {
    /// `closed`, `open` or `half_open`.
    pub state: String,
    pub admitted: bool,
    /// Admitted as one of the few half-open probes.
    pub probe: bool,
    pub retry_after: Duration,
}

/// Settings a breaker's scripts need.
#[derive(Debug, Clone, Copy)]
pub struct BreakerLimits {
    /// Failures within the window that open the breaker; 0: no count threshold.
    pub failure_threshold: u32,
    pub failure_window: Duration,
    /// Failure-rate mode: the share of failed calls within the window that
    /// opens the breaker, once `min_requests` calls were made; `None`: off.
    pub failure_rate: Option<f64>,
    pub min_requests: u32,
    pub recovery: Duration,
    pub half_open_probes: u32,
    /// How long a half-open probe holds its slot if its outcome never comes.
    pub probe_lease: Duration,
}

/// Asks `service`'s breaker to admit one call; moves open → half_open once
/// the recovery time has passed.
pub async fn breaker_admit(
    client: &Client,
    service: &str,
    limits: &BreakerLimits,
    attempt_id: &str,
) -> FredResult<BreakerVerdict> {
    let (state, verdict, retry_after_ms): (String, i64, i64) = crate::observe::redis_call(
        "breaker_admit",
        BREAKER_ADMIT.evalsha_with_reload(
            client,
            vec![keys::breaker(service), keys::breaker_probes(service)],
            vec![
                millis(limits.recovery).to_string(),
                limits.half_open_probes.to_string(),
                millis(limits.probe_lease).to_string(),
                attempt_id.to_string(),
                service.to_string(),
            ],
        ),
    )
    .await?;
    Ok(BreakerVerdict {
        state,
        admitted: verdict != 0,
        probe: verdict == 2,
        retry_after: Duration::from_millis(u64::try_from(retry_after_ms).unwrap_or(0)),
    })
}

/// How an admitted call ended, for [`breaker_record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Success,
    Failure,
    /// Admitted but never sent: frees a probe slot.
    Release,
}

/// Records an admitted call's outcome; returns the breaker's state afterwards.
pub async fn breaker_record(
    client: &Client,
    service: &str,
    limits: &BreakerLimits,
    attempt_id: &str,
    outcome: CallOutcome,
) -> FredResult<String> {
    let outcome = match outcome {
        CallOutcome::Success => "success",
        CallOutcome::Failure => "failure",
        CallOutcome::Release => "release",
    };
    crate::observe::redis_call(
        "breaker_record",
        BREAKER_RECORD.evalsha_with_reload(
            client,
            vec![
                keys::breaker(service),
                keys::breaker_probes(service),
                keys::breaker_failures(service),
                keys::breaker_successes(service),
            ],
            vec![
                outcome.to_string(),
                attempt_id.to_string(),
                limits.failure_threshold.to_string(),
                millis(limits.failure_window).to_string(),
                limits.failure_rate.unwrap_or(0.0).to_string(),
                limits.min_requests.to_string(),
                millis(limits.success_bucket()).to_string(),
                service.to_string(),
                millis(limits.recovery).to_string(),
            ],
        ),
    )
    .await
}

/// The channel breaker transitions are announced on, as `NAME STATE REOPEN_IN_MS`.
pub const BREAKER_CHANNEL: &str = "routemq:breakers";

/// `service`'s breaker state and, when open, how long it stays open (for a
/// breaker that recovers after `recovery`).
pub async fn breaker_view(
    client: &Client,
    service: &str,
    recovery: Duration,
) -> FredResult<(String, Duration)> {
    let (state, reopen_in_ms): (String, i64) = crate::observe::redis_call(
        "breaker_view",
        BREAKER_VIEW.evalsha_with_reload(
            client,
            vec![keys::breaker(service)],
            vec![millis(recovery).to_string()],
        ),
    )
    .await?;
    Ok((
        state,
        Duration::from_millis(u64::try_from(reopen_in_ms).unwrap_or(0)),
    ))
}

impl BreakerLimits {
    /// The granularity successes are counted at: a thirtieth of the window.
    pub fn success_bucket(&self) -> Duration {
        (self.failure_window / 30).max(Duration::from_millis(1))
    }
}

/// Adds batch `sequence` of one flusher's successful calls to `service`
/// once, however often it is sent (failure-rate mode only).
pub async fn breaker_successes(
    client: &Client,
    service: &str,
    limits: &BreakerLimits,
    flusher_id: &str,
    sequence: u64,
    successes: u64,
) -> FredResult<bool> {
    let applied: i64 = crate::observe::redis_call(
        "breaker_successes",
        BREAKER_SUCCESSES.evalsha_with_reload(
            client,
            vec![
                keys::breaker_successes(service),
                keys::breaker_successes_flushed(service, flusher_id),
            ],
            vec![
                sequence.to_string(),
                successes.to_string(),
                millis(limits.success_bucket()).to_string(),
                millis(limits.failure_window).to_string(),
            ],
        ),
    )
    .await?;
    Ok(applied == 1)
}

/// The state `service`'s breaker scripts last wrote (`closed`, `open`,
/// `half_open`); `None` when no breaker ever tripped for it. The one read
/// of the breaker's hash outside its scripts.
pub async fn breaker_state(client: &Client, service: &str) -> FredResult<Option<String>> {
    crate::observe::redis_call(
        "breaker_state",
        client.hget(keys::breaker(service), "state"),
    )
    .await
}
