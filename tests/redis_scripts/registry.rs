//! The registry's scripts: registration, heartbeats, health, expiry, and the
//! version tokens idle workers follow instead of re-reading the registry.

use routemq_tests::eventually;
use std::time::Duration;

use fred::prelude::*;
use routemq_gateway::redis::keys;
use routemq_gateway::redis::scripts::{self, HealthRecorded, Registration};
use routemq_gateway::registry::{self, InstanceStatus};

fn registration<'a>(service: &'a str, id: &'a str, ttl: Option<Duration>) -> Registration<'a> {
    Registration {
        service,
        instance_id: id,
        url: "http://127.0.0.1:1",
        health_check_url: "http://127.0.0.1:1/health",
        ttl,
    }
}

pub async fn exercise(redis: &Client) {
    // Register twice (idempotent), list, and see the instance.
    for _ in 0..2 {
        registry::register(redis, &registration("svc-a", "a-1", None))
            .await
            .expect("register");
    }
    registry::register(
        redis,
        &registration("svc-b", "b-1", Some(Duration::from_millis(300))),
    )
    .await
    .expect("register with ttl");
    let listing = registry::list_services(redis).await.expect("list");
    assert_eq!(listing["svc-a"].len(), 1);
    assert_eq!(listing["svc-a"][0].status, InstanceStatus::Healthy);

    // Round-robin leases never overlap and never skip.
    let first = scripts::next_index(redis, "svc-a", 1, Duration::from_secs(60))
        .await
        .expect("rr");
    let leased = scripts::next_index(redis, "svc-a", 8, Duration::from_secs(60))
        .await
        .expect("rr");
    assert_eq!(leased, first + 8);

    // Health verdicts apply to live instances only and never re-create one.
    assert_eq!(
        scripts::set_health(redis, "svc-a", "a-1", false)
            .await
            .expect("health"),
        HealthRecorded::Changed
    );
    let listing = registry::list_services(redis).await.expect("list");
    assert_eq!(listing["svc-a"][0].status, InstanceStatus::Unhealthy);
    assert_eq!(
        scripts::set_health(redis, "svc-a", "never-registered", true)
            .await
            .expect("health"),
        HealthRecorded::Gone
    );
    let exists: i64 = redis
        .exists(keys::instance("svc-a", "never-registered"))
        .await
        .expect("exists");
    assert_eq!(exists, 0);

    // Heartbeats keep a ttl instance alive; once expired it is gone and pruned.
    registry::heartbeat(redis, "svc-b", "b-1")
        .await
        .expect("heartbeat while alive");
    until_expired(redis, "svc-b", "b-1").await;
    assert!(registry::heartbeat(redis, "svc-b", "b-1").await.is_err());
    let listing = registry::list_services(redis).await.expect("list");
    assert!(listing["svc-b"].is_empty());
    let members: Vec<String> = redis
        .smembers(keys::instances("svc-b"))
        .await
        .expect("members");
    assert!(
        members.is_empty(),
        "expired id pruned from the instance set"
    );
    // Pruning is checked in the script: an id whose hash exists again (it
    // re-registered after a listing saw it missing) stays.
    registry::register(redis, &registration("svc-b", "b-1", None))
        .await
        .expect("re-register");
    assert!(!scripts::prune_instance(redis, "svc-b", "b-1")
        .await
        .expect("prune"));
    let listing = registry::list_services(redis).await.expect("list");
    assert_eq!(
        listing["svc-b"].len(),
        1,
        "the re-registered instance is listed"
    );
    registry::deregister(redis, "svc-b", "b-1")
        .await
        .expect("deregister");

    // Deregistering twice is harmless and drops the empty service.
    for _ in 0..2 {
        registry::deregister(redis, "svc-a", "a-1")
            .await
            .expect("deregister");
    }
    let services: Vec<String> = redis.smembers(keys::SERVICES).await.expect("services");
    assert!(!services.contains(&"svc-a".to_string()));
}

async fn service_version(redis: &Client, service: &str) -> Option<String> {
    scripts::service_version(redis, service)
        .await
        .expect("version")
}

async fn score(redis: &Client, service: &str, id: &str) -> Option<f64> {
    redis
        .zscore(keys::instance_expiries(service), id)
        .await
        .expect("zscore")
}

async fn redis_ms(redis: &Client) -> f64 {
    let time: Vec<f64> = redis
        .custom(fred::cmd!("TIME"), Vec::<String>::new())
        .await
        .expect("time");
    time[0] * 1000.0 + time[1] / 1000.0
}

/// Waits until the hash of `id` has expired.
async fn until_expired(redis: &Client, service: &str, id: &str) {
    let what = format!("{id} expired");
    eventually(&what, Duration::from_secs(10), || async {
        let exists: i64 = redis
            .exists(keys::instance(service, id))
            .await
            .expect("exists");
        (exists == 0).then_some(())
    })
    .await;
}

/// What moves the version tokens (changes) and what does not (heartbeats,
/// steady health), how expired instances are found from the expiry index,
/// and how the index is repaired after registrants that predate it.
pub async fn exercise_versions(redis: &Client) {
    let svc = "svc-v";
    assert_eq!(service_version(redis, svc).await, None);
    registry::register(redis, &registration(svc, "v-1", None))
        .await
        .expect("register");
    let registered = service_version(redis, svc).await;
    let token = scripts::registry_version(redis).await.expect("token");
    assert!(registered.is_some() && token.is_some());
    assert_eq!(score(redis, svc, "v-1").await, Some(f64::INFINITY));

    // A heartbeat changes nothing workers re-read.
    registry::heartbeat(redis, svc, "v-1").await.expect("beat");
    assert_eq!(service_version(redis, svc).await, registered);
    let unmoved = scripts::registry_version(redis).await.expect("token");
    assert_eq!(unmoved, token);
    // A verdict is recorded only when it differs from the prober's view;
    // when Redis already had it, that view was stale and the version moves
    // too, so every worker re-reads.
    let sick = scripts::set_health(redis, svc, "v-1", false).await;
    assert_eq!(sick.expect("health"), HealthRecorded::Changed);
    let after_sick = service_version(redis, svc).await;
    assert_ne!(after_sick, registered);
    let stale = scripts::set_health(redis, svc, "v-1", false).await;
    assert_eq!(stale.expect("health"), HealthRecorded::Unchanged);
    assert_ne!(service_version(redis, svc).await, after_sick);
    let status: Option<String> = redis
        .hget(keys::instance(svc, "v-1"), "status")
        .await
        .expect("status");
    assert_eq!(status.as_deref(), Some("unhealthy"));

    // An instance whose ttl ran out is reaped once; a second reap finds
    // nothing and moves nothing. A heartbeat re-scores the index.
    let ttl = Some(Duration::from_millis(300));
    registry::register(redis, &registration(svc, "v-2", ttl))
        .await
        .expect("register");
    let first = score(redis, svc, "v-2").await.expect("indexed");
    registry::heartbeat(redis, svc, "v-2").await.expect("beat");
    assert!(score(redis, svc, "v-2").await.expect("indexed") >= first);
    assert_eq!(
        scripts::reap_instances(redis, svc, 10).await.expect("reap"),
        0
    );
    until_expired(redis, svc, "v-2").await;
    let before = service_version(redis, svc).await;
    assert_eq!(
        scripts::reap_instances(redis, svc, 10).await.expect("reap"),
        1
    );
    let members: Vec<String> = redis.smembers(keys::instances(svc)).await.expect("set");
    assert_eq!(members, vec!["v-1".to_string()]);
    assert_eq!(score(redis, svc, "v-2").await, None);
    let reaped = service_version(redis, svc).await;
    assert_ne!(reaped, before);
    assert_eq!(
        scripts::reap_instances(redis, svc, 10).await.expect("reap"),
        0
    );
    assert_eq!(service_version(redis, svc).await, reaped);

    // A registrant from before the index: it registers without indexing
    // (seen and indexed at the next reap), extends ttls without re-scoring
    // (re-scored from the hash, not reaped), and deregisters without
    // unindexing (dropped from the index).
    let old = keys::instance(svc, "v-old");
    let _: () = redis
        .hset(
            &old,
            [
                ("instance_id", "v-old"),
                ("service_name", svc),
                ("url", "http://127.0.0.1:1"),
                ("status", "healthy"),
            ],
        )
        .await
        .expect("old register");
    let _: () = redis.pexpire(&old, 200, None).await.expect("ttl");
    let _: () = redis
        .sadd(keys::instances(svc), "v-old")
        .await
        .expect("sadd");
    let before = service_version(redis, svc).await;
    assert_eq!(
        scripts::reap_instances(redis, svc, 10).await.expect("reap"),
        1
    );
    assert_ne!(service_version(redis, svc).await, before);
    assert!(score(redis, svc, "v-old").await.is_some());
    let _: () = redis
        .pexpire(&old, 60_000, None)
        .await
        .expect("old heartbeat");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while score(redis, svc, "v-old").await.expect("indexed") < redis_ms(redis).await + 30_000.0 {
        assert!(std::time::Instant::now() < deadline, "never re-scored");
        assert_eq!(
            scripts::reap_instances(redis, svc, 10).await.expect("reap"),
            0
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _: () = redis.del(&old).await.expect("old deregister");
    let _: () = redis
        .srem(keys::instances(svc), "v-old")
        .await
        .expect("srem");
    let before = service_version(redis, svc).await;
    assert_eq!(
        scripts::reap_instances(redis, svc, 10).await.expect("reap"),
        1
    );
    assert_ne!(service_version(redis, svc).await, before);
    assert_eq!(score(redis, svc, "v-old").await, None);

    // Deregistering moves the version once; a repeat moves nothing.
    registry::deregister(redis, svc, "v-1")
        .await
        .expect("deregister");
    let gone = service_version(redis, svc).await;
    assert_ne!(gone, reaped);
    registry::deregister(redis, svc, "v-1")
        .await
        .expect("deregister");
    assert_eq!(service_version(redis, svc).await, gone);

    // Membership: workers counted, probers listed; leaving removes both.
    let ttl = Duration::from_secs(15);
    scripts::worker_membership(redis, "w-a", ttl, true)
        .await
        .expect("join");
    let members = scripts::worker_membership(redis, "w-b", ttl, true)
        .await
        .expect("join");
    assert_eq!(members.workers, 2);
    let mut probers = members.probers.clone();
    probers.sort();
    assert_eq!(probers, vec!["w-a".to_string(), "w-b".to_string()]);
    let left = scripts::worker_membership(redis, "w-a", ttl, false)
        .await
        .expect("leave");
    assert_eq!((left.workers, left.probers), (1, vec!["w-b".to_string()]));
    scripts::worker_membership(redis, "w-b", ttl, false)
        .await
        .expect("leave");
}
