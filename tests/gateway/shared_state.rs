//! Rate limits and circuit breakers shared by four workers: exact counts,
//! never per-worker drift. Each runs on one Redis and on a Redis Cluster.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use routemq_tests::eventually;

use crate::mw::{self, ask_with, bearer, error_type};
use crate::stack::ask;

/// `tight_limit` admits 30 per minute per client; 90 requests at once from
/// one client through 4 workers must get exactly 30 admissions.
async fn rate_limit_is_exact_across_workers(cluster: bool) {
    const LIMIT: usize = 30;
    let stack = mw::start(4, cluster).await;
    let client = Arc::new(stack.stack.client().await);
    let token = bearer("burst-user", &[]);
    let replies = mw::limited_pings(&client, &token, 3 * LIMIT).await;
    let admitted = replies.iter().filter(|r| r.status == 200).count();
    let limited: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    println!(
        "rate limit ({}): {admitted} admitted of {} sent, limit {LIMIT}",
        if cluster { "cluster" } else { "single" },
        replies.len()
    );
    assert_eq!(admitted, LIMIT, "admitted exactly the limit");
    assert_eq!(limited.len(), 2 * LIMIT, "every other request got 429");
    for reply in &limited {
        assert_eq!(error_type(reply), "rate_limited");
        assert_eq!(reply.property("x-ratelimit-limit"), Some("30"));
        assert_eq!(reply.property("x-ratelimit-remaining"), Some("0"));
        let retry_after: u64 = reply
            .property("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("retry-after in seconds");
        assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    }
    // Another client has its own window.
    let other = bearer("other-user", &[]);
    let reply = ask_with(
        &client,
        "api/limited/ping",
        "",
        &[("authorization", &other)],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.property("x-ratelimit-remaining"), Some("29"));

    // The 60 refusals reach the cluster-wide metrics.
    eventually("the refusals counted", Duration::from_secs(10), || async {
        let metrics = ask(&client, "gateway/metrics", "").await.json();
        match metrics["gateway"]["rate_limit_hits"] == 2 * LIMIT {
            true => Ok(()),
            false => Err(metrics),
        }
    })
    .await;
}

/// Threshold 3, recovery 1 s, one half-open probe, four workers.
async fn breaker_is_one_state_for_all_workers(cluster: bool) {
    let stack = mw::start(4, cluster).await;
    let client = Arc::new(stack.stack.client().await);
    let token = bearer("breaker-user", &[]);
    let get = |id: usize| {
        let (client, token) = (Arc::clone(&client), token.clone());
        async move {
            ask_with(
                &client,
                &format!("api/v1/flaky/get/{id}"),
                "",
                &[("authorization", &token)],
            )
            .await
        }
    };
    let flaky = &stack.flaky;
    flaky.failing.store(true, Ordering::SeqCst);

    // Failures open the breaker; from then on the upstream is not called.
    let mut opened_after = None;
    for attempt in 1..=20 {
        let reply = get(attempt).await;
        if error_type(&reply) == "circuit_open" {
            assert_eq!(reply.status, 503);
            assert!(reply.property("retry-after").is_some());
            opened_after = Some(attempt);
            break;
        }
        assert_eq!(reply.status, 502, "{}", reply.json());
        mw::failure_recorded(&stack.stack.redis_client, "flaky-service", attempt as i64).await;
    }
    let opened_after = opened_after.expect("the breaker opened");
    assert!(
        (4..=5).contains(&opened_after),
        "three failures open it, not {}",
        opened_after - 1
    );
    let hits_when_open = flaky.hits.load(Ordering::SeqCst);
    for id in 0..20 {
        assert_eq!(error_type(&get(id).await), "circuit_open");
    }
    assert_eq!(flaky.hits.load(Ordering::SeqCst), hits_when_open);
    let services = ask(&client, "gateway/services", "").await.json();
    assert_eq!(breaker_state(&services), "open", "{services}");

    // Half open: 40 concurrent requests through 4 workers admit one probe.
    flaky.delay_ms.store(500, Ordering::SeqCst);
    recovery_passed(&stack.stack.redis_client).await;
    let before = flaky.hits.load(Ordering::SeqCst);
    let replies = join_all((0..40).map(get)).await;
    let probes = flaky.hits.load(Ordering::SeqCst) - before;
    println!(
        "half-open probes ({}): {probes} admitted of 40 concurrent requests, limit 1",
        if cluster { "cluster" } else { "single" }
    );
    assert_eq!(probes, 1, "exactly one probe cluster-wide");
    assert_eq!(replies.iter().filter(|r| r.status == 502).count(), 1);
    assert_eq!(
        replies
            .iter()
            .filter(|r| error_type(r) == "circuit_open")
            .count(),
        39
    );

    // The probe failed, so it is open again; a successful probe closes it.
    flaky.failing.store(false, Ordering::SeqCst);
    flaky.delay_ms.store(0, Ordering::SeqCst);
    assert_eq!(error_type(&get(1).await), "circuit_open");
    recovery_passed(&stack.stack.redis_client).await;
    // A worker learns the reopening's time from Redis a moment after it
    // happened, so its own view may refuse locally for a few ms more: ask
    // until a probe is admitted (a local refusal uses no probe).
    let probe = routemq_tests::eventually("a probe admitted", Duration::from_secs(10), || async {
        let reply = get(1).await;
        (error_type(&reply) != "circuit_open").then_some(reply)
    })
    .await;
    assert_eq!(probe.status, 200, "the probe succeeds: {}", probe.json());
    eventually("the breaker closed", Duration::from_secs(10), || async {
        let services = ask(&client, "gateway/services", "").await.json();
        match breaker_state(&services) == "closed" {
            true => Ok(()),
            false => Err(services),
        }
    })
    .await;
    let replies = join_all((0..20).map(get)).await;
    assert!(replies.iter().all(|r| r.status == 200), "closed again");
}

fn breaker_state(services: &serde_json::Value) -> String {
    services["services"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == "flaky-service"))
        .and_then(|entry| entry["circuit_breaker"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn rate_limit_on_one_redis() {
    rate_limit_is_exact_across_workers(false).await;
}

#[tokio::test]
async fn rate_limit_on_a_redis_cluster() {
    rate_limit_is_exact_across_workers(true).await;
}

#[tokio::test]
async fn breaker_on_one_redis() {
    breaker_is_one_state_for_all_workers(false).await;
}

#[tokio::test]
async fn breaker_on_a_redis_cluster() {
    breaker_is_one_state_for_all_workers(true).await;
}

/// Waits until the flaky service's breaker has been open for its recovery
/// time (1 s in the test config) by Redis's clock, so the next admission
/// moves it to half open.
async fn recovery_passed(redis: &fred::prelude::Client) {
    use fred::prelude::*;
    const OPEN_FOR_MS: &str =
        "local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0') \
        local t = redis.call('TIME') \
        return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - opened";
    let key = routemq_gateway::redis::keys::breaker("flaky-service");
    eventually("the breaker aged", Duration::from_secs(10), || async {
        let open_for: i64 = redis
            .eval(OPEN_FOR_MS, vec![key.clone()], Vec::<String>::new())
            .await
            .expect("breaker age");
        (open_for >= 1000).then_some(())
    })
    .await;
}

/// A GCRA limiter (`burst_limit`: 10 per 600 s, bursts of 5) shared by four
/// workers: 20 requests at once from one client get exactly the burst, and
/// each refusal says when the next emission is due.
#[tokio::test]
async fn gcra_bursts_are_exact_across_workers() {
    const BURST: usize = 5;
    let stack = mw::start(4, false).await;
    let client = Arc::new(stack.stack.client().await);
    let token = bearer("gcra-user", &[]);
    let replies = mw::pings(&client, "api/burst/ping", &token, 4 * BURST).await;
    let admitted = replies.iter().filter(|r| r.status == 200).count();
    let limited: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(admitted, BURST, "admitted exactly the burst");
    assert_eq!(limited.len(), 3 * BURST, "every other request got 429");
    for reply in &limited {
        assert_eq!(error_type(reply), "rate_limited");
        let retry_after: u64 = reply
            .property("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("retry-after in seconds");
        // One emission interval: 600 s / 10.
        assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    }
}

const SLOW_BREAKER: &str = r#"
[middleware.slow_breaker]
kind = "circuit_breaker"
failure_threshold = 3
recovery_time = "60s"

[[groups]]
prefix = "api/b"
middleware = ["slow_breaker"]
routes = [{ topic = "get/{id}", service = "b-service", method = "GET", path = "/x" }]
"#;

/// Asks until a reply is `503 circuit_open`; returns how long that took.
async fn time_to_refusal(client: &routemq_client::RequestClient, since: Instant) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut id = 0;
    loop {
        id += 1;
        let reply = ask(client, &format!("api/b/get/{id}"), "").await;
        if reply.status == 503 && error_type(&reply) == "circuit_open" {
            return since.elapsed();
        }
        assert_eq!(reply.status, 200, "{}", reply.json());
        assert!(
            Instant::now() < deadline,
            "the worker never learned of the opening"
        );
    }
}

/// A closed breaker admits with no Redis call, so a worker must be told of
/// an opening elsewhere: at once through the announcement, and within one
/// refresh (2 s) when the announcement is missed.
#[tokio::test]
async fn a_worker_learns_of_a_breaker_opening_elsewhere() {
    use fred::prelude::*;
    use routemq_gateway::redis::{keys, scripts};

    let stack = crate::stack::Stack::start_with(1, 1, SLOW_BREAKER, false, &[]).await;
    let upstream = routemq_tests::upstream::fixed_status(200).await;
    stack.register("b-service", "b-1", upstream).await;
    stack.settle().await;
    let client = stack.client().await;
    assert_eq!(ask(&client, "api/b/get/0", "").await.status, 200);

    // Another worker's three failures open it (the test plays that worker).
    let limits = scripts::BreakerLimits {
        failure_threshold: 3,
        failure_window: Duration::from_secs(60),
        failure_rate: None,
        min_requests: 1,
        recovery: Duration::from_secs(60),
        half_open_probes: 1,
        probe_lease: Duration::from_secs(30),
    };
    let redis = &stack.redis_client;
    for attempt in ["elsewhere-1", "elsewhere-2", "elsewhere-3"] {
        scripts::breaker_record(
            redis,
            "b-service",
            &limits,
            attempt,
            scripts::CallOutcome::Failure,
        )
        .await
        .expect("record");
    }
    let announced = time_to_refusal(&client, Instant::now()).await;

    // Closed again behind the worker's back, then opened with no announcement.
    let breaker = keys::breaker("b-service");
    let _: () = redis
        .hset(&breaker, ("state", "closed"))
        .await
        .expect("hset");
    eventually(
        "the refresh saw it closed",
        Duration::from_secs(10),
        || async { (ask(&client, "api/b/get/closed", "").await.status == 200).then_some(()) },
    )
    .await;
    let (seconds, micros): (String, String) = redis
        .custom(fred::cmd!("TIME"), Vec::<String>::new())
        .await
        .expect("time");
    let now_ms =
        seconds.parse::<u64>().expect("s") * 1000 + micros.parse::<u64>().expect("us") / 1000;
    let opened = Instant::now();
    let _: () = redis
        .hset(
            &breaker,
            [
                ("state", "open".to_string()),
                ("opened_at", now_ms.to_string()),
            ],
        )
        .await
        .expect("hset");
    let missed = time_to_refusal(&client, opened).await;
    println!("breaker opening learned: announced {announced:?}, missed announcement {missed:?}");
    // The stated bound: one refresh interval, plus a Redis command timeout
    // and a request's round trip — with room for a busy machine.
    let bound = routemq_gateway::middleware::BREAKER_REFRESH_INTERVAL + Duration::from_secs(2);
    assert!(missed <= bound, "within {bound:?}: {missed:?}");
}
