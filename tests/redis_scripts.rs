//! Every Lua script against a real redis-server and a real 3-node Redis
//! Cluster: the same code must work on both (hash-tagged keys).

use routemq_tests::eventually;
use std::time::Duration;

use fred::prelude::*;
use routemq_gateway::redis::clock::RedisClock;
use routemq_gateway::redis::scripts;
use routemq_gateway::redis::{connect, keys, RedisSettings};
use routemq_tests::{Redis, RedisCluster};

#[path = "redis_scripts/limits.rs"]
mod limits;
#[path = "redis_scripts/registry.rs"]
mod registry;

async fn client(url: &str) -> Client {
    let client = connect(&RedisSettings::new(url)).await.expect("client");
    client.wait_for_connect().await.expect("connected");
    client
}

async fn exercise_scripts(redis: &Client) {
    registry::exercise(redis).await;
    registry::exercise_versions(redis).await;

    // A request id is claimed once; only the claim's holder renews or
    // finishes it, and finishing twice (or after losing the claim) changes
    // nothing. Every claim counts an attempt, kept past released claims.
    use scripts::ClaimResult::{Claimed, Existing};
    let window = Duration::from_secs(60);
    let lease = Duration::from_secs(30);
    let (r1, r2, r3) = (
        keys::request("r1"),
        keys::request("r2"),
        keys::request("r3"),
    );
    let (r1, r2, r3) = (r1.as_str(), r2.as_str(), r3.as_str());
    assert_eq!(
        claim(redis, "r1", "w1:a", lease).await,
        Claimed { attempt: 1 }
    );
    assert_eq!(
        claim(redis, "r1", "w2:b", lease).await,
        Existing("w1:a".into())
    );
    assert!(!scripts::renew_claim(redis, r1, "w2:b", lease)
        .await
        .expect("renew"));
    assert!(scripts::renew_claim(redis, r1, "w1:a", window)
        .await
        .expect("renew"));
    let ttl: i64 = redis.pttl(r1).await.expect("pttl");
    assert!(ttl > 30_000, "renewed to the new lease: {ttl} ms");
    assert!(
        !scripts::finish_request(redis, r1, "w2:b", "done:200:{}", window)
            .await
            .expect("finish")
    );
    assert!(
        scripts::finish_request(redis, r1, "w1:a", "done:201:{\"a\":1}", window)
            .await
            .expect("finish")
    );
    assert!(
        !scripts::finish_request(redis, r1, "w1:a", "done:500:{}", window)
            .await
            .expect("finish")
    );
    assert!(!scripts::renew_claim(redis, r1, "w1:a", lease)
        .await
        .expect("renew"));
    assert_eq!(
        claim(redis, "r1", "w3:c", lease).await,
        Existing("done:201:{\"a\":1}".into())
    );
    // Releasing (an empty outcome) lets the next attempt claim again, as attempt 2.
    assert_eq!(
        claim(redis, "r2", "w1:a", lease).await,
        Claimed { attempt: 1 }
    );
    assert!(scripts::finish_request(redis, r2, "w1:a", "", window)
        .await
        .expect("release"));
    assert_eq!(
        claim(redis, "r2", "w2:b", lease).await,
        Claimed { attempt: 2 }
    );
    // A claim nobody renews lapses after its lease; the next claim is attempt 2.
    let short = Duration::from_millis(100);
    assert_eq!(
        claim(redis, "r3", "dead:a", short).await,
        Claimed { attempt: 1 }
    );
    eventually("the lease lapsed", Duration::from_secs(5), || async {
        (redis.exists::<i64, _>(r3).await.expect("exists") == 0).then_some(())
    })
    .await;
    assert_eq!(
        claim(redis, "r3", "live:b", lease).await,
        Claimed { attempt: 2 }
    );
    assert!(
        !scripts::finish_request(redis, r3, "dead:a", "done:201:{}", window)
            .await
            .expect("finish")
    );

    // A metrics batch counts once however often it is sent, and an old batch
    // arriving late is refused.
    let deltas = vec![
        ("gateway:total_requests".to_string(), 5),
        ("service:x:requests".to_string(), 2),
    ];
    let flush = |flusher: &'static str, sequence: u64| {
        let deltas = deltas.clone();
        async move {
            scripts::flush_metrics(redis, flusher, sequence, &deltas, Duration::from_secs(60))
                .await
                .expect("flush")
        }
    };
    assert!(flush("worker-a", 1).await);
    assert!(!flush("worker-a", 1).await, "a repeat is refused");
    assert!(flush("worker-a", 2).await);
    assert!(!flush("worker-a", 1).await, "a late old batch is refused");
    assert!(flush("worker-b", 1).await, "sequences are per flusher");
    let total: i64 = redis
        .hget(keys::METRICS, "gateway:total_requests")
        .await
        .expect("hget");
    assert_eq!(total, 15);

    exercise_middleware_scripts(redis).await;
}

/// Rate limit, circuit breaker and API key scripts; each is safe to run twice.
async fn exercise_middleware_scripts(redis: &Client) {
    let window = Duration::from_secs(60);
    let clock = RedisClock::default();
    let key = keys::rate_limit("limiter", "user:ann");
    for attempt in ["a1", "a1", "a2", "a3"] {
        let verdict = scripts::rate_limit(redis, &clock, &key, 3, window, attempt)
            .await
            .expect("rate limit");
        assert!(
            verdict.admitted,
            "{attempt}: a repeated attempt is not recounted"
        );
    }
    let refused = scripts::rate_limit(redis, &clock, &key, 3, window, "a4")
        .await
        .expect("rate limit");
    assert!(!refused.admitted);
    assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= window);
    let short = keys::rate_limit("limiter", "user:bob");
    let fast = Duration::from_millis(200);
    for attempt in ["b1", "b2"] {
        assert!(
            scripts::rate_limit(redis, &clock, &short, 1, fast, attempt)
                .await
                .expect("rl")
                .admitted
                == (attempt == "b1")
        );
    }
    // The window slides: a later attempt is admitted (refusals count nothing).
    let attempts = std::sync::atomic::AtomicUsize::new(3);
    eventually("the window slid", Duration::from_secs(5), || async {
        let attempt = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("b{attempt}");
        let verdict = scripts::rate_limit(redis, &clock, &short, 1, fast, &id)
            .await
            .expect("rl");
        verdict.admitted.then_some(())
    })
    .await;
    // A call that runs after its deadline in Redis time (a stalled Redis
    // resuming after the worker gave up on it) counts nothing.
    let stalled = RedisClock::default();
    stalled.observe(1_000);
    let ghost = keys::rate_limit("limiter", "user:cat");
    let late = scripts::rate_limit(redis, &stalled, &ghost, 3, window, "c1")
        .await
        .expect("rl");
    assert!(late.stale && !late.admitted);
    let logged: i64 = redis.zcard(&ghost).await.expect("zcard");
    assert_eq!(logged, 0, "a stale call leaves no entry");
    assert!(
        clock.deadline().is_some(),
        "replies teach the clock Redis time"
    );

    exercise_gcra(redis).await;
    limits::exercise_batches(redis).await;

    let limits = scripts::BreakerLimits {
        failure_threshold: 3,
        failure_window: Duration::from_secs(60),
        failure_rate: None,
        min_requests: 1,
        recovery: Duration::from_millis(200),
        half_open_probes: 1,
        probe_lease: Duration::from_secs(10),
    };
    let admit = |attempt: &'static str| async move {
        scripts::breaker_admit(redis, "svc-cb", &limits, attempt)
            .await
            .expect("admit")
    };
    let record = |attempt: &'static str, outcome: scripts::CallOutcome| async move {
        scripts::breaker_record(redis, "svc-cb", &limits, attempt, outcome)
            .await
            .expect("record")
    };
    assert!(admit("c1").await.admitted);
    use scripts::CallOutcome::{Failure, Release, Success};
    assert_eq!(record("c1", Failure).await, "closed");
    assert_eq!(
        record("c1", Failure).await,
        "closed",
        "the same failure twice counts once"
    );
    assert_eq!(record("c2", Failure).await, "closed");
    assert_eq!(record("c3", Failure).await, "open");
    let refused = admit("c4").await;
    assert_eq!((refused.state.as_str(), refused.admitted), ("open", false));
    // Refused until the recovery time has passed in Redis time.
    eventually("half open", Duration::from_secs(5), || async {
        admit("c5").await.admitted.then_some(())
    })
    .await;
    let probe = admit("c5").await;
    assert_eq!(
        (probe.state.as_str(), probe.admitted, probe.probe),
        ("half_open", true, true)
    );
    assert!(
        admit("c5").await.probe,
        "the same probe admitted twice keeps its one slot"
    );
    assert!(!admit("c6").await.admitted, "one probe at a time");
    assert_eq!(
        record("c6", Success).await,
        "half_open",
        "not a probe: ignored"
    );
    assert_eq!(record("c5", Release).await, "half_open");
    assert!(admit("c7").await.probe, "a released slot is free again");
    assert_eq!(record("c7", Success).await, "closed");
    assert_eq!(record("c7", Success).await, "closed", "twice is harmless");
    assert!(admit("c8").await.admitted);

    // Failure-rate mode: 50 % of at least 10 calls, successes flushed in batches.
    let rated = scripts::BreakerLimits {
        failure_threshold: 0,
        failure_rate: Some(0.5),
        min_requests: 10,
        ..limits
    };
    let rate_record = |attempt: &'static str| async move {
        scripts::breaker_record(redis, "svc-rate", &rated, attempt, Failure)
            .await
            .expect("record")
    };
    let flush = |sequence: u64, count: u64| async move {
        scripts::breaker_successes(redis, "svc-rate", &rated, "w1", sequence, count)
            .await
            .expect("flush")
    };
    assert!(flush(1, 6).await);
    assert!(!flush(1, 6).await, "a batch sent twice counts once");
    for attempt in ["r1", "r2", "r3", "r4", "r5"] {
        assert_eq!(rate_record(attempt).await, "closed", "below 50 % of 11");
    }
    assert_eq!(
        rate_record("r5").await,
        "closed",
        "the same failure twice counts once"
    );
    assert_eq!(rate_record("r6").await, "open", "6 of 12 calls failed");
    let few = scripts::BreakerLimits {
        min_requests: 100,
        ..rated
    };
    for attempt in ["m1", "m2", "m3"] {
        let state = scripts::breaker_record(redis, "svc-few", &few, attempt, Failure)
            .await
            .expect("record");
        assert_eq!(state, "closed", "100 % failures, but under min_requests");
    }

    assert_eq!(
        scripts::put_api_key(redis, "hash-1", "{}")
            .await
            .expect("put"),
        1
    );
    assert_eq!(
        scripts::put_api_key(redis, "hash-1", "{}")
            .await
            .expect("put"),
        2
    );
    assert!(scripts::revoke_api_key(redis, "hash-1")
        .await
        .expect("revoke"));
    assert!(!scripts::revoke_api_key(redis, "hash-1")
        .await
        .expect("revoke twice"));
}

/// Runs a walk-through on a thread with room for it: a debug build gives
/// every temporary future of these long functions its own stack slot, more
/// than a test thread's 2 MiB.
fn on_a_large_stack(walk_through: impl std::future::Future<Output = ()> + Send + 'static) {
    let thread = std::thread::Builder::new()
        .stack_size(16 * 1024 * 1024)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(walk_through)
        })
        .expect("thread");
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn scripts_work_on_a_single_redis() {
    on_a_large_stack(async {
        let server = Redis::start();
        let redis = client(&server.url()).await;
        exercise_scripts(&redis).await;
    });
}

#[test]
fn scripts_work_on_a_redis_cluster() {
    on_a_large_stack(async {
        let cluster = RedisCluster::start();
        let redis = client(&cluster.url()).await;
        exercise_scripts(&redis).await;
    });
}

#[tokio::test]
async fn scripts_are_reloaded_after_a_script_flush() {
    let server = Redis::start();
    let redis = client(&server.url()).await;
    scripts::next_index(&redis, "svc", 1, Duration::from_secs(60))
        .await
        .expect("first");
    let _: () = redis.script_flush(false).await.expect("flush scripts");
    let value = scripts::next_index(&redis, "svc", 1, Duration::from_secs(60))
        .await
        .expect("reloaded on NOSCRIPT");
    assert_eq!(value, 2);
}

/// Claims request `scope` (a replay key's scope) with `value` as a lease.
async fn claim(redis: &Client, scope: &str, value: &str, lease: Duration) -> scripts::ClaimResult {
    let window = Duration::from_secs(60);
    let (key, attempts) = (keys::request(scope), keys::request_attempts(scope));
    scripts::claim_request(redis, &key, &attempts, value, lease, window)
        .await
        .expect("claim")
}

/// GCRA: bursts, the emission interval, idempotent repeats, late calls, and
/// O(1) state whatever the limit.
async fn exercise_gcra(redis: &Client) {
    let clock = RedisClock::default();
    let second = Duration::from_secs(1);
    let key = keys::gcra("fast", "user:ann");
    let mut remaining = Vec::new();
    for attempt in ["g1", "g2", "g3"] {
        let verdict = scripts::gcra(redis, &clock, &key, 10, second, 3, attempt)
            .await
            .expect("gcra");
        assert!(verdict.admitted, "{attempt}: within the burst");
        remaining.push(verdict.remaining);
    }
    assert_eq!(remaining, vec![2, 1, 0]);
    let again = scripts::gcra(redis, &clock, &key, 10, second, 3, "g3")
        .await
        .expect("gcra repeat");
    assert!(again.admitted, "a repeated attempt is admitted again");
    assert_eq!(again.remaining, 0, "and not recounted");
    let refused = scripts::gcra(redis, &clock, &key, 10, second, 3, "g4")
        .await
        .expect("gcra");
    assert!(!refused.admitted, "past the burst");
    assert!(
        (Duration::from_millis(1)..=Duration::from_millis(100)).contains(&refused.retry_after),
        "one emission interval (100 ms) at most: {:?}",
        refused.retry_after
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let verdict = scripts::gcra(redis, &clock, &key, 10, second, 3, "g5")
            .await
            .expect("gcra");
        if verdict.admitted {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never admitted again");
        tokio::time::sleep(verdict.retry_after).await;
    }

    // A high limit: a thousand admissions keep one small hash (a sliding
    // log would hold a thousand entries). Per hour, so the state outlives
    // the check (at 100 000 a second it expires a millisecond after the last
    // admission — by design — and a slow machine would find it gone).
    let high = keys::gcra("high", "user:bob");
    let hour = Duration::from_secs(3600);
    for index in 0..1000 {
        let verdict = scripts::gcra(
            redis,
            &clock,
            &high,
            100_000,
            hour,
            100_000,
            &format!("h{index}"),
        )
        .await
        .expect("gcra");
        assert!(verdict.admitted);
    }
    let fields: i64 = redis.hlen(&high).await.expect("hlen");
    assert_eq!(fields, 2, "O(1) state per client");

    let stalled = RedisClock::default();
    stalled.observe(1_000);
    let ghost = keys::gcra("fast", "user:cat");
    let late = scripts::gcra(redis, &stalled, &ghost, 10, second, 3, "c1")
        .await
        .expect("gcra");
    assert!(late.stale && !late.admitted);
    let exists: i64 = redis.exists(&ghost).await.expect("exists");
    assert_eq!(exists, 0, "a stale call leaves no state");
}
