//! Registry writes and full reads. Full reads scan every service, so only the
//! CLI and the background cache refresh call them — never a request.

use std::collections::{BTreeMap, HashMap};

use fred::prelude::*;
use futures::future::try_join_all;

use super::Instance;
use crate::redis::keys;
use crate::redis::scripts::{self, Registration};

pub async fn register(client: &Client, registration: &Registration<'_>) -> anyhow::Result<()> {
    scripts::register_instance(client, registration).await?;
    let _: i64 = client.sadd(keys::SERVICES, registration.service).await?;
    scripts::bump_registry_version(client).await?;
    Ok(())
}

/// Refreshes a heartbeat; an error when the instance is not registered.
pub async fn heartbeat(client: &Client, service: &str, instance_id: &str) -> anyhow::Result<()> {
    if scripts::heartbeat(client, service, instance_id).await? {
        return Ok(());
    }
    anyhow::bail!("instance `{instance_id}` of `{service}` is not registered (deregistered or its ttl passed)")
}

/// One instance as registered now; `None` when it is not (or its ttl passed).
pub async fn instance(
    client: &Client,
    service: &str,
    instance_id: &str,
) -> anyhow::Result<Option<Instance>> {
    let fields: HashMap<String, String> =
        client.hgetall(keys::instance(service, instance_id)).await?;
    Ok(Instance::from_hash(&fields))
}

/// Removes an instance, and the service from the service set once it has none.
pub async fn deregister(client: &Client, service: &str, instance_id: &str) -> anyhow::Result<()> {
    let remaining = scripts::deregister_instance(client, service, instance_id).await?;
    if remaining == 0 {
        // The service set and the instance set live in different cluster
        // slots, so no script can do both. An instance registering between
        // the two steps adds itself to its set before the service set, so a
        // check after the removal sees it and puts the service back.
        let _: i64 = client.srem(keys::SERVICES, service).await?;
        let registered: i64 = client.scard(keys::instances(service)).await?;
        if registered > 0 {
            let _: i64 = client.sadd(keys::SERVICES, service).await?;
        }
    }
    scripts::bump_registry_version(client).await?;
    Ok(())
}

/// Every service and its live instances, sorted by name and instance id.
/// Ids whose instance hash has expired are pruned from the instance set.
pub async fn list_services(client: &Client) -> anyhow::Result<BTreeMap<String, Vec<Instance>>> {
    let names: Vec<String> = client.smembers(keys::SERVICES).await?;
    let listings = try_join_all(names.into_iter().map(|name| async move {
        let instances = list_instances(client, &name).await?;
        anyhow::Ok((name, instances))
    }))
    .await?;
    Ok(listings.into_iter().collect())
}

/// One service's live instances, sorted by id; expired ids are pruned.
pub(crate) async fn list_instances(
    client: &Client,
    service: &str,
) -> anyhow::Result<Vec<Instance>> {
    let ids: Vec<String> = client.smembers(keys::instances(service)).await?;
    let hashes = try_join_all(ids.iter().map(|id| async move {
        let fields: HashMap<String, String> = client.hgetall(keys::instance(service, id)).await?;
        anyhow::Ok(Instance::from_hash(&fields))
    }))
    .await?;
    let mut instances = Vec::with_capacity(ids.len());
    let mut pruned = false;
    for (id, instance) in ids.iter().zip(hashes) {
        match instance {
            Some(instance) => instances.push(instance),
            None => pruned |= scripts::prune_instance(client, service, id).await?,
        }
    }
    if pruned {
        scripts::bump_registry_version(client).await?;
    }
    instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok(instances)
}
