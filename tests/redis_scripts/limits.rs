//! The limiters' scripts count a batch of attempts in one call, each as if
//! it were a call of its own.

use std::time::Duration;

use fred::prelude::*;
use routemq_gateway::redis::clock::RedisClock;
use routemq_gateway::redis::scripts::{self, Attempt, Limit, LimitScript};

fn attempt<'a>(key: &'a str, attempt_id: &'a str) -> Attempt<'a> {
    Attempt { key, attempt_id }
}

/// Keys share one hash tag, so the same batches run on a cluster.
pub async fn exercise_batches(redis: &Client) {
    let clock = RedisClock::default();
    let log = Limit {
        script: LimitScript::SlidingLog,
        limit: 2,
        window: Duration::from_secs(60),
    };
    let (ann, bob) = ("{batch}:log:ann", "{batch}:log:bob");
    let batch = [
        attempt(ann, "x1"),
        attempt(bob, "y1"),
        attempt(ann, "x1"),
        attempt(ann, "x2"),
        attempt(ann, "x3"),
        attempt(bob, "y2"),
    ];
    let verdicts = scripts::count_attempts(redis, &clock, log, &batch)
        .await
        .expect("batch");
    let admitted: Vec<bool> = verdicts.iter().map(|v| v.admitted).collect();
    assert_eq!(admitted, [true, true, true, true, false, true]);
    let remaining: Vec<u64> = verdicts.iter().map(|v| v.remaining).collect();
    assert_eq!(
        remaining,
        [1, 1, 1, 0, 0, 0],
        "a repeat is not recounted; each key counts its own"
    );
    assert!(verdicts[4].retry_after > Duration::ZERO);
    let logged: i64 = redis.zcard(ann).await.expect("zcard");
    assert_eq!(logged, 2);
    // Run again (a timed-out call executing late, then resent): nothing recounted.
    let again = scripts::count_attempts(redis, &clock, log, &batch[..4])
        .await
        .expect("batch again");
    assert!(again.iter().all(|v| v.admitted));

    let gcra = Limit {
        script: LimitScript::Gcra { burst: 2 },
        limit: 10,
        window: Duration::from_secs(1),
    };
    let cell = "{batch}:gcra:ann";
    let batch = [
        attempt(cell, "g1"),
        attempt(cell, "g2"),
        attempt(cell, "g2"),
        attempt(cell, "g3"),
    ];
    let verdicts = scripts::count_attempts(redis, &clock, gcra, &batch)
        .await
        .expect("gcra batch");
    let admitted: Vec<bool> = verdicts.iter().map(|v| v.admitted).collect();
    assert_eq!(
        admitted,
        [true, true, true, false],
        "burst of 2, repeat admitted"
    );

    // A batch that runs after its deadline counts none of its attempts.
    let stalled = RedisClock::default();
    stalled.observe(1_000);
    let ghost = "{batch}:log:ghost";
    let late = scripts::count_attempts(
        redis,
        &stalled,
        log,
        &[attempt(ghost, "z1"), attempt(ghost, "z2")],
    )
    .await
    .expect("late batch");
    assert!(late.iter().all(|v| v.stale && !v.admitted));
    let logged: i64 = redis.zcard(ghost).await.expect("zcard");
    assert_eq!(logged, 0, "a stale batch leaves no entry");
}
