//! CORS, request transforms, fallbacks, and what happens when Redis goes away.

use std::sync::atomic::Ordering;
use std::time::Duration;

use fred::prelude::ClientLike;
use routemq_tests::eventually;
use serde_json::json;

use crate::mw::{self, ask_with, bearer, error_type};

async fn cors_transform_and_fallback(cluster: bool) {
    let stack = mw::start(2, cluster).await;
    let client = stack.stack.client().await;
    let token = bearer("edge-user", &[]);
    let auth = ("authorization", token.as_str());
    let flaky = &stack.flaky;

    // A preflight is answered by the gateway alone.
    let hits = flaky.hits.load(Ordering::SeqCst);
    let preflight = ask_with(
        &client,
        "api/v1/flaky/get/1",
        "",
        &[
            ("origin", "https://app.example"),
            ("method", "OPTIONS"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert_eq!(preflight.status, 204, "{}", preflight.json());
    assert_eq!(
        preflight.property("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        preflight.property("access-control-allow-methods"),
        Some("GET, POST")
    );
    assert_eq!(
        flaky.hits.load(Ordering::SeqCst),
        hits,
        "upstream not called"
    );

    let foreign = ask_with(
        &client,
        "api/v1/flaky/get/1",
        "",
        &[("origin", "https://evil.example"), auth],
    )
    .await;
    assert_eq!(
        (foreign.status, error_type(&foreign).as_str()),
        (403, "forbidden")
    );
    let allowed = ask_with(
        &client,
        "api/v1/flaky/get/1",
        "",
        &[("origin", "https://app.example"), auth],
    )
    .await;
    assert_eq!(allowed.status, 200);
    assert_eq!(
        allowed.property("access-control-allow-origin"),
        Some("https://app.example")
    );

    // The reference's v2 transform, from configuration.
    let v2 = ask_with(
        &client,
        "api/v2/users/create",
        r#"{"user_data": {"name": "Ann"}, "api_version": "v9"}"#,
        &[auth],
    )
    .await;
    assert_eq!(v2.status, 201, "{}", v2.json());
    assert_eq!(
        v2.json()["data"]["received"],
        json!({"user": {"name": "Ann"}, "api_version": "v2", "action": "create"})
    );

    // Fallback: the last good reply of a cacheable GET, else the fallback
    // service. A reply is cached once it is wanted again (cache_admit_after 2).
    let good = ask_with(&client, "api/v1/flaky/get/7", "", &[auth]).await;
    assert_eq!(good.status, 200);
    assert!(good.json().get("source").is_none());
    // Each worker counts its own requests: ask until one of them has cached it.
    let index = routemq_gateway::redis::keys::fallback_index("flaky-service");
    eventually("the reply cached", Duration::from_secs(10), || async {
        let again = ask_with(&client, "api/v1/flaky/get/7", "", &[auth]).await;
        assert_eq!(again.status, 200);
        let cached: i64 =
            fred::prelude::SortedSetsInterface::zcard(&stack.stack.redis_client, &index)
                .await
                .expect("zcard");
        (cached > 0).then_some(())
    })
    .await;
    flaky.failing.store(true, Ordering::SeqCst);
    // The cache write happens after the reply; allow it to land.
    let cached = eventually(
        "a reply from the cache",
        Duration::from_secs(10),
        || async {
            let reply = ask_with(&client, "api/v1/flaky/get/7", "", &[auth]).await;
            match reply.json()["source"] == "cache" {
                true => Ok(reply),
                false => Err(reply.json()),
            }
        },
    )
    .await;
    assert_eq!(cached.status, 200);
    assert_eq!(cached.json()["data"], good.json()["data"]);

    let uncached = ask_with(&client, "api/v1/flaky/get/8", "", &[auth]).await;
    assert!(uncached.status >= 500, "{}", uncached.json());
    stack
        .stack
        .demo_instances("flaky-service-fallback", 1)
        .await;
    stack.stack.settle().await;
    let fallback = ask_with(&client, "api/v1/flaky/get/8", "", &[auth]).await;
    assert_eq!(fallback.status, 200, "{}", fallback.json());
    let body = fallback.json();
    assert_eq!(body["source"], "fallback");
    assert_eq!(body["service"], "flaky-service-fallback");
    assert_eq!(body["data"]["path"], "/items/8");
}

#[tokio::test]
async fn cors_transform_and_fallback_on_one_redis() {
    cors_transform_and_fallback(false).await;
}

#[tokio::test]
async fn cors_transform_and_fallback_on_a_redis_cluster() {
    cors_transform_and_fallback(true).await;
}

/// Redis stopped: a fail-open limiter keeps serving under its local limit,
/// a fail-closed one answers 503, and JWT auth needs no Redis at all.
#[tokio::test]
async fn redis_outage_follows_each_limiters_policy() {
    let mut stack = mw::start(1, false).await;
    let client = stack.stack.client().await;
    let token = bearer("outage-user", &[]);
    let auth = ("authorization", token.as_str());
    assert_eq!(
        ask_with(&client, "api/strict/ping", "", &[auth])
            .await
            .status,
        200
    );
    stack.stack.redis().kill();

    let open = ask_with(&client, "api/limited/ping", "", &[auth]).await;
    assert_eq!(open.status, 200, "{}", open.json());
    let closed = ask_with(&client, "api/strict/ping", "", &[auth]).await;
    assert_eq!(
        (closed.status, error_type(&closed).as_str()),
        (503, "store_unavailable")
    );
    // The local limit (30 per minute per worker) still applies.
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(
            ask_with(&client, "api/limited/ping", "", &[auth])
                .await
                .status,
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429));

    stack.stack.redis().restart();
    // The restarted Redis is empty (no persistence in tests): register again.
    stack
        .stack
        .redis_client
        .wait_for_connect()
        .await
        .expect("redis back");
    stack.stack.demo_instances("user-service", 1).await;
    eventually(
        "a 200 once Redis is back",
        Duration::from_secs(15),
        || async {
            let reply = ask_with(&client, "api/strict/ping", "", &[auth]).await;
            match reply.status == 200 {
                true => Ok(()),
                false => Err(reply.json()),
            }
        },
    )
    .await;
}

/// The fallback cache under a stream of GETs: a one-off request is not
/// cached, a reply wanted again is, then rewritten once per
/// `cache_refresh`, not once per request; and however many distinct
/// requests arrive, Redis keeps at most `cache_max_entries` (20 in the test
/// config) of the service's replies.
#[tokio::test]
async fn the_fallback_cache_is_written_once_per_refresh_and_capped() {
    use fred::prelude::*;
    use routemq_gateway::redis::keys;

    const CAP: i64 = 20;
    let stack = mw::start(1, false).await;
    let redis = &stack.stack.redis_client;
    let client = stack.stack.client().await;
    let token = bearer("cache-user", &[]);
    let auth = ("authorization", token.as_str());
    let index = keys::fallback_index("user-service");

    let once = ask_with(&client, "api/v1/users/get/0", "", &[auth]).await;
    assert_eq!(once.status, 200);
    for _ in 0..2 {
        let first = ask_with(&client, "api/v1/users/get/1", "", &[auth]).await;
        assert_eq!(first.status, 200);
    }
    let (entry, written_at) = eventually("the reply cached", Duration::from_secs(10), || async {
        let entries: Vec<(String, f64)> = redis
            .zrange(&index, 0, -1, None, false, None, true)
            .await
            .expect("zrange");
        entries.into_iter().next()
    })
    .await;
    for _ in 0..20 {
        let again = ask_with(&client, "api/v1/users/get/1", "", &[auth]).await;
        assert_eq!(again.status, 200);
    }
    // A later request as the barrier: its own write lands after any the
    // twenty repeats could have caused.
    for _ in 0..2 {
        let other = ask_with(&client, "api/v1/users/get/2", "", &[auth]).await;
        assert_eq!(other.status, 200);
    }
    eventually(
        "the second reply cached",
        Duration::from_secs(10),
        || async { (redis.zcard::<i64, _>(&index).await.expect("zcard") >= 2).then_some(()) },
    )
    .await;
    let score: Option<f64> = redis.zscore(&index, &entry).await.expect("zscore");
    assert_eq!(score, Some(written_at), "twenty repeats rewrote nothing");
    assert_eq!(
        redis.zcard::<i64, _>(&index).await.expect("zcard"),
        2,
        "the one-off request was not cached"
    );

    for id in 100..160 {
        for _ in 0..2 {
            let reply = ask_with(&client, &format!("api/v1/users/get/{id}"), "", &[auth]).await;
            assert_eq!(reply.status, 200);
        }
    }
    eventually(
        "the cache full at its cap",
        Duration::from_secs(10),
        || async {
            let indexed: i64 = redis.zcard(&index).await.expect("zcard");
            let stored: Vec<String> = redis
                .custom(fred::cmd!("KEYS"), vec!["{cache2:user-service}:*"])
                .await
                .expect("keys");
            let entries = stored.iter().filter(|key| **key != index).count() as i64;
            assert!(
                indexed <= CAP && entries <= CAP,
                "{indexed} indexed, {entries} stored"
            );
            match indexed == CAP && entries == CAP {
                true => Ok(()),
                false => Err(format!("{indexed} indexed, {entries} stored")),
            }
        },
    )
    .await;
}
