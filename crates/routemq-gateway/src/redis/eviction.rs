//! Whether Redis may evict what workers must agree on.
//!
//! With a `maxmemory` and an `allkeys-*` policy, Redis evicts any key once
//! memory is full — and what fills it is client traffic (cached replies,
//! replay records), while what goes is whatever was touched least: the
//! service set, instance hashes, the API keys. One caller's cacheable GETs
//! then take every other caller's services and keys away until someone
//! registers them again. Such a Redis is refused at start-up. A
//! `volatile-*` policy evicts only keys with a ttl (instance hashes, limit
//! windows, cache entries): the registry heals at the next heartbeat and a
//! limit window restarts, so it is allowed with a warning. `noeviction` is
//! what the gateway is made for: a full Redis refuses writes, which each
//! feature survives as it survives an outage (and counts).
//!
//! Read from `INFO memory` on every primary, since managed Redis often
//! disables `CONFIG GET` (an ACL user needs `+info`).

use fred::prelude::*;
use fred::types::InfoKind;

/// What one primary reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPolicy {
    pub server: String,
    /// Bytes; 0 means no limit (eviction never starts).
    pub maxmemory: u64,
    pub policy: String,
}

impl MemoryPolicy {
    /// Parses the `INFO memory` text of `server`.
    pub fn parse(server: &str, info: &str) -> Option<MemoryPolicy> {
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        Some(MemoryPolicy {
            server: server.to_string(),
            maxmemory: field("maxmemory")?.parse().ok()?,
            policy: field("maxmemory_policy")?.to_string(),
        })
    }

    /// Why this primary may evict shared state, if it may.
    pub fn verdict(&self) -> Verdict {
        if self.maxmemory == 0 || self.policy == "noeviction" {
            return Verdict::Safe;
        }
        let setting = format!(
            "maxmemory {} with maxmemory-policy {}",
            self.maxmemory, self.policy
        );
        if self.policy.starts_with("allkeys-") {
            return Verdict::Refused(format!(
                "redis at {} may evict any key ({setting}): client traffic would evict the registry and API keys; set maxmemory-policy noeviction",
                self.server
            ));
        }
        Verdict::Warn(format!(
            "redis at {} evicts keys with a ttl when full ({setting}): instance registrations and rate-limit windows may be evicted; noeviction is recommended",
            self.server
        ))
    }
}

/// A primary's eviction settings as the gateway judges them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Safe,
    Warn(String),
    Refused(String),
}

/// Every primary's memory policy (one for a single Redis).
pub async fn memory_policies(client: &Client) -> Result<Vec<MemoryPolicy>, Error> {
    let primaries = match client.cached_cluster_state() {
        Some(state) if client.is_clustered() => state.unique_primary_nodes(),
        _ => Vec::new(),
    };
    if primaries.is_empty() {
        let info: String = client.info(Some(InfoKind::Memory)).await?;
        return Ok(MemoryPolicy::parse("the server", &info)
            .into_iter()
            .collect());
    }
    let mut policies = Vec::with_capacity(primaries.len());
    for server in primaries {
        let name = server.to_string();
        let info: String = client
            .with_cluster_node(server)
            .info(Some(InfoKind::Memory))
            .await?;
        policies.extend(MemoryPolicy::parse(&name, &info));
    }
    Ok(policies)
}

/// Refuses a Redis that client traffic could empty of the registry and the
/// API keys; one not reachable yet, or whose `INFO` an ACL forbids, is only
/// warned about (the check needs a connection, the worker does not).
pub async fn refuse_evicting(client: &Client) -> Result<(), String> {
    if !client.is_connected() {
        tracing::warn!("redis not reachable at start-up: its eviction policy is not checked");
        return Ok(());
    }
    let policies = match memory_policies(client).await {
        Ok(policies) => policies,
        Err(error) => {
            tracing::warn!(%error, "could not read INFO memory (an ACL user needs +info): the eviction policy is not checked");
            return Ok(());
        }
    };
    for policy in policies {
        match policy.verdict() {
            Verdict::Safe => {}
            Verdict::Warn(message) => tracing::warn!("{message}"),
            Verdict::Refused(message) => return Err(message),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{MemoryPolicy, Verdict};

    fn policy(maxmemory: u64, policy: &str) -> MemoryPolicy {
        let info = format!("# Memory\r\nused_memory:1000\r\nmaxmemory:{maxmemory}\r\nmaxmemory_human:2.00M\r\nmaxmemory_policy:{policy}\r\n");
        MemoryPolicy::parse("r1", &info).expect("parsed")
    }

    #[test]
    fn only_an_allkeys_policy_with_a_limit_is_refused() {
        assert_eq!(policy(0, "allkeys-lru").verdict(), Verdict::Safe);
        assert_eq!(policy(2_097_152, "noeviction").verdict(), Verdict::Safe);
        assert!(matches!(
            policy(2_097_152, "allkeys-lru").verdict(),
            Verdict::Refused(_)
        ));
        assert!(matches!(
            policy(2_097_152, "allkeys-random").verdict(),
            Verdict::Refused(_)
        ));
        assert!(matches!(
            policy(2_097_152, "volatile-lru").verdict(),
            Verdict::Warn(_)
        ));
        assert_eq!(policy(7, "noeviction").maxmemory, 7);
        assert_eq!(MemoryPolicy::parse("r1", "maxmemory_human:2M\r\n"), None);
    }
}
