//! The registry's scripts. Every script that changes what workers read — an
//! instance registered, removed, expired, or its health changed — replaces
//! the service's version token in the same step; the caller then replaces
//! the cluster-wide token ([`keys::REGISTRY_VERSION`]) that idle workers poll.

use std::sync::LazyLock;
use std::time::Duration;

use fred::prelude::*;
use fred::types::scripts::Script;

use super::keys;
use super::scripts::millis;

static REGISTER_INSTANCE: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/register_instance.lua")));
static HEARTBEAT: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/heartbeat.lua")));
static DEREGISTER_INSTANCE: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/deregister_instance.lua")));
static PRUNE_INSTANCE: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/prune_instance.lua")));
static SET_HEALTH: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/set_health.lua")));
static REAP_INSTANCES: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/reap_instances.lua")));
static WORKER_MEMBERSHIP: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("../../scripts/worker_membership.lua")));

/// A version token no earlier one equals, even after Redis lost its data
/// (a counter would start again and could repeat a value a worker has seen).
fn version_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Tells idle workers the registry changed: they compare this token only.
pub async fn bump_registry_version(client: &Client) -> FredResult<()> {
    client
        .set(keys::REGISTRY_VERSION, version_token(), None, None, false)
        .await
}

/// The cluster-wide registry token; `None` before any change was recorded.
pub async fn registry_version(client: &Client) -> FredResult<Option<String>> {
    client.get(keys::REGISTRY_VERSION).await
}

/// One service's version token; `None` when it never changed under a
/// version-aware writer.
pub async fn service_version(client: &Client, service: &str) -> FredResult<Option<String>> {
    client.get(keys::service_version(service)).await
}

/// An instance as registered; `ttl` of `None` keeps it until deregistered.
pub struct Registration<'a> {
    pub service: &'a str,
    pub instance_id: &'a str,
    pub url: &'a str,
    pub health_check_url: &'a str,
    pub ttl: Option<Duration>,
}

/// Registers an instance; returns Redis's time of registration in ms.
pub async fn register_instance(
    client: &Client,
    registration: &Registration<'_>,
) -> FredResult<i64> {
    let (service, id) = (registration.service, registration.instance_id);
    let ttl_ms = registration.ttl.map(millis).unwrap_or(0);
    crate::observe::redis_call(
        "register_instance",
        REGISTER_INSTANCE.evalsha_with_reload(
            client,
            vec![
                keys::instance(service, id),
                keys::instances(service),
                keys::instance_expiries(service),
                keys::service_version(service),
            ],
            vec![
                id.to_string(),
                service.to_string(),
                registration.url.to_string(),
                registration.health_check_url.to_string(),
                ttl_ms.to_string(),
                version_token(),
            ],
        ),
    )
    .await
}

/// Refreshes an instance's heartbeat; false when it is not registered.
pub async fn heartbeat(client: &Client, service: &str, instance_id: &str) -> FredResult<bool> {
    let refreshed: i64 = crate::observe::redis_call(
        "heartbeat",
        HEARTBEAT.evalsha_with_reload(
            client,
            vec![
                keys::instance(service, instance_id),
                keys::instance_expiries(service),
            ],
            vec![instance_id.to_string()],
        ),
    )
    .await?;
    Ok(refreshed == 1)
}

/// Removes an instance; returns how many instances the service still has.
pub async fn deregister_instance(
    client: &Client,
    service: &str,
    instance_id: &str,
) -> FredResult<u64> {
    crate::observe::redis_call(
        "deregister_instance",
        DEREGISTER_INSTANCE.evalsha_with_reload(
            client,
            instance_keys(service, instance_id),
            vec![instance_id.to_string(), version_token()],
        ),
    )
    .await
}

/// Drops `instance_id` from its service's set if its hash has expired; false
/// when the instance is live (it re-registered since it was seen missing).
pub async fn prune_instance(client: &Client, service: &str, instance_id: &str) -> FredResult<bool> {
    let pruned: i64 = crate::observe::redis_call(
        "prune_instance",
        PRUNE_INSTANCE.evalsha_with_reload(
            client,
            instance_keys(service, instance_id),
            vec![instance_id.to_string(), version_token()],
        ),
    )
    .await?;
    Ok(pruned == 1)
}

/// The keys of scripts that remove one instance.
fn instance_keys(service: &str, instance_id: &str) -> Vec<String> {
    vec![
        keys::instance(service, instance_id),
        keys::instances(service),
        keys::instance_expiries(service),
        keys::service_version(service),
    ]
}

/// What recording a probe verdict did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthRecorded {
    /// The status changed.
    Changed,
    /// The instance already had this status: the caller's view was stale.
    /// The service's version moves either way, so workers re-read it.
    Unchanged,
    /// The instance no longer exists (it is never re-created).
    Gone,
}

/// Records a verdict that differs from what the caller last read.
pub async fn set_health(
    client: &Client,
    service: &str,
    instance_id: &str,
    healthy: bool,
) -> FredResult<HealthRecorded> {
    let status = if healthy { "healthy" } else { "unhealthy" };
    let recorded: i64 = crate::observe::redis_call(
        "set_health",
        SET_HEALTH.evalsha_with_reload(
            client,
            vec![
                keys::instance(service, instance_id),
                keys::service_version(service),
            ],
            vec![status.to_string(), version_token()],
        ),
    )
    .await?;
    Ok(match recorded {
        2 => HealthRecorded::Changed,
        1 => HealthRecorded::Unchanged,
        _ => HealthRecorded::Gone,
    })
}

/// Removes up to `max` of `service`'s expired instances (and repairs its
/// expiry index); returns how many changes were made.
pub async fn reap_instances(client: &Client, service: &str, max: u32) -> FredResult<u64> {
    crate::observe::redis_call(
        "reap_instances",
        REAP_INSTANCES.evalsha_with_reload(
            client,
            vec![
                keys::instances(service),
                keys::instance_expiries(service),
                keys::service_version(service),
            ],
            vec![
                keys::instance(service, ""),
                max.to_string(),
                version_token(),
            ],
        ),
    )
    .await
}

/// The live workers and the live probers' process ids, after a renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    pub workers: u64,
    pub probers: Vec<String>,
}

/// Joins (or renews) `process` in the live-worker and prober sets for
/// `ttl`, or leaves them.
pub async fn worker_membership(
    client: &Client,
    process: &str,
    ttl: Duration,
    join: bool,
) -> FredResult<Members> {
    let reply: Vec<Value> = crate::observe::redis_call(
        "worker_membership",
        WORKER_MEMBERSHIP.evalsha_with_reload(
            client,
            vec![keys::WORKERS.to_string(), keys::PROBERS.to_string()],
            vec![
                process.to_string(),
                millis(ttl).to_string(),
                if join { "1" } else { "0" }.to_string(),
            ],
        ),
    )
    .await?;
    let mut reply = reply.into_iter();
    let workers = reply
        .next()
        .and_then(|count| count.as_u64())
        .unwrap_or_default();
    let probers = reply.filter_map(|id| id.into_string()).collect();
    Ok(Members { workers, probers })
}
