//! Faults an operator meets: restarts that keep their worker id, workers
//! killed mid-request. Limits stay exact and every request gets its answer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use routemq_client::{RequestClient, RequestOptions};
use routemq_tests::eventually;
use routemq_tests::upstream::{self, Switch};

use crate::mw::{self, ask_with, bearer};
use crate::stack::Stack;

/// A worker restarted with the same `--worker-id` inside a rate-limit window
/// keeps counting that window: attempt ids carry a per-process nonce, so the
/// new process's ids are never taken for the old one's.
#[tokio::test]
async fn a_worker_restarted_with_its_id_keeps_every_limit() {
    const LIMIT: usize = 30; // `tight_limit`: 30 per minute
    let mut mw = mw::start(1, false).await;
    let client = mw.stack.client().await;
    let token = bearer("restarted-user", &[]);
    let headers = [("authorization", token.as_str())];
    let expect = |count: usize, status: u16| {
        let (client, headers) = (&client, &headers);
        async move {
            for _ in 0..count {
                let reply = ask_with(client, "api/limited/ping", "", headers).await;
                let body = String::from_utf8_lossy(&reply.payload).to_string();
                assert_eq!(reply.status, status, "{body}");
            }
        }
    };
    expect(LIMIT, 200).await;
    expect(1, 429).await;

    let id = mw.stack.workers[0].id.clone();
    mw.stack.workers.clear(); // SIGKILL
    mw.stack.add_worker(&id);
    expect(LIMIT, 429).await;
}

/// What a retrying client saw for one request id.
struct Outcome {
    id: String,
    status: u16,
    answered: Instant,
}

/// Sends `id` until it gets a 2xx, retrying on no answer and on the
/// "try again" statuses, as a client of a gateway should.
async fn until_done(client: &RequestClient, topic: &str, id: String, deadline: Instant) -> Outcome {
    let options = RequestOptions {
        timeout: Duration::from_secs(3),
        request_id: Some(id.clone()),
        ..RequestOptions::default()
    };
    loop {
        if let Ok(reply) = client.request(topic, "{}", &options).await {
            if reply.status < 300 || !matches!(reply.status, 409 | 429 | 503 | 504) {
                return Outcome {
                    id,
                    status: reply.status,
                    answered: Instant::now(),
                };
            }
        }
        if Instant::now() > deadline {
            return Outcome {
                id,
                status: 0,
                answered: Instant::now(),
            };
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGKILL one of two workers while POSTs run: its claims lapse within one
/// lease (6 s), the clients' retries run on the other worker, every request
/// ends 2xx within 15 s of the kill, and only requests that were mid-call at
/// the kill reach the upstream twice — the second time as attempt 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_claims_free_within_a_lease_and_retries_run() {
    const REQUESTS: usize = 40;
    let mut stack = Stack::start(2).await;
    let (addr, journal) = upstream::journal(Duration::from_millis(1500)).await;
    stack.register("slow-service", "journal-1", addr).await;
    stack.settle().await;
    let client = Arc::new(stack.client().await);

    let give_up = Instant::now() + Duration::from_secs(60);
    let requests = (0..REQUESTS).map(|index| {
        let client = Arc::clone(&client);
        // Spread over 3 s: some are answered before the kill, some are
        // mid-call, some not yet sent.
        let start = Duration::from_millis(75 * index as u64);
        tokio::spawn(async move {
            tokio::time::sleep(start).await;
            until_done(&client, "api/t/slow-post", format!("kill-{index}"), give_up).await
        })
    });
    let requests: Vec<_> = requests.collect();
    // Kill once both workers have calls in flight.
    eventually(
        "requests at the upstream",
        Duration::from_secs(20),
        || async { (journal.lock().expect("journal").len() >= REQUESTS / 2).then_some(()) },
    )
    .await;
    let before_kill = Instant::now();
    stack.workers[0].process.kill();
    let killed = Instant::now();

    let outcomes: Vec<Outcome> = join_all(requests)
        .await
        .into_iter()
        .map(|joined| joined.expect("client task"))
        .collect();
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| !(200..300).contains(&o.status))
        .map(|o| (&o.id, o.status))
        .collect();
    assert!(failed.is_empty(), "requests without a 2xx: {failed:?}");
    let last = outcomes.iter().map(|o| o.answered).max().expect("outcomes");
    let recovery = last.saturating_duration_since(killed);
    println!("every request 2xx {recovery:?} after the SIGKILL");
    assert!(
        recovery < Duration::from_secs(15),
        "the last request finished {recovery:?} after the kill"
    );

    let receipts = journal.lock().expect("journal").clone();
    let mut by_id: HashMap<&str, Vec<&upstream::Receipt>> = HashMap::new();
    for receipt in &receipts {
        by_id.entry(&receipt.request_id).or_default().push(receipt);
    }
    // Calls that were running when the worker died (their interval spans it).
    let mid_call: HashSet<&str> = receipts
        .iter()
        .filter(|r| r.started <= killed && r.finished.is_none_or(|end| end >= before_kill))
        .map(|r| r.request_id.as_str())
        .collect();
    let mut repeated = 0;
    for (id, seen) in &by_id {
        assert_eq!(seen[0].attempt, 1, "{id}: first receipt");
        if seen.len() > 1 {
            repeated += 1;
            assert!(
                mid_call.contains(id),
                "{id} ran twice without being mid-call at the kill"
            );
            assert_eq!(
                seen.len(),
                2,
                "{id} reached the upstream {} times",
                seen.len()
            );
            assert!(seen[1].attempt >= 2, "{id}: the repeat is a later attempt");
        }
    }
    let freed = receipts
        .iter()
        .filter(|r| r.attempt >= 2)
        .map(|r| r.started.saturating_duration_since(killed))
        .min();
    println!(
        "{} ids, {repeated} reached the upstream twice ({} were mid-call at the kill); first retry ran {freed:?} after the kill",
        by_id.len(),
        mid_call.len()
    );
    assert_eq!(by_id.len(), REQUESTS, "every request reached the upstream");
}

/// Whether the switchable instance `flaky` answered a request.
pub(crate) async fn reaches(client: &RequestClient, flaky: &upstream::Switch, id: usize) -> bool {
    let before = flaky.hits.load(Ordering::SeqCst);
    let reply = crate::stack::ask(client, &format!("api/v1/users/get/{id}"), "").await;
    assert_eq!(reply.status, 200, "{:?}", reply.json());
    flaky.hits.load(Ordering::SeqCst) > before
}

/// Polls until `flaky` gets traffic again (`wanted`), or until 20 requests in
/// a row avoided it (`!wanted`), within `within`.
pub(crate) async fn until_traffic(
    client: &RequestClient,
    flaky: &upstream::Switch,
    wanted: bool,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    let mut avoided = 0;
    for id in 0.. {
        assert!(
            Instant::now() < deadline,
            "traffic to the flaky instance never became {wanted}"
        );
        if reaches(client, flaky, id).await {
            avoided = 0;
            if wanted {
                return;
            }
        } else {
            avoided += 1;
            if !wanted && avoided == 20 {
                return;
            }
        }
    }
}

/// With Redis down nobody can take the cluster-wide probe lock, so each
/// worker probes on its own: an instance that turns unhealthy stops getting
/// traffic within a few probe intervals (200 ms in tests), stays out while
/// Redis comes back (empty, the instances registering again), and returns
/// once healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_go_on_while_redis_is_down() {
    let mut stack = Stack::start(1).await;
    let (steady, flaky) = (Arc::new(Switch::default()), Arc::new(Switch::default()));
    let steady_addr = upstream::switchable(Arc::clone(&steady)).await;
    let flaky_addr = upstream::switchable(Arc::clone(&flaky)).await;
    stack
        .register("user-service", "steady-1", steady_addr)
        .await;
    stack.register("user-service", "flaky-1", flaky_addr).await;
    stack.settle().await;
    let client = stack.client().await;
    until_traffic(&client, &flaky, true, Duration::from_secs(10)).await;

    stack.redis().kill();
    flaky.sick.store(true, Ordering::SeqCst);
    let sick = Instant::now();
    until_traffic(&client, &flaky, false, Duration::from_secs(10)).await;
    println!(
        "with Redis down, an unhealthy instance left the rotation within {:?}",
        sick.elapsed()
    );

    // Redis returns empty; the instances register again, as they do when a
    // heartbeat finds them gone.
    stack.redis().restart();
    for (id, addr) in [("steady-1", steady_addr), ("flaky-1", flaky_addr)] {
        register_when_up(&stack, id, addr).await;
    }
    // Back on Redis's registry: both instances listed, the sick one still out.
    eventually("back on Redis", Duration::from_secs(10), || async {
        let health = crate::stack::ask(&client, "gateway/health", "")
            .await
            .json();
        match health["redis"] == "healthy" && health["services"]["user-service"] == "degraded" {
            true => Ok(()),
            false => Err(health),
        }
    })
    .await;
    until_traffic(&client, &flaky, false, Duration::from_secs(10)).await;
    flaky.sick.store(false, Ordering::SeqCst);
    until_traffic(&client, &flaky, true, Duration::from_secs(10)).await;
}

/// Registers a `user-service` instance once the test's Redis client has
/// reconnected.
async fn register_when_up(stack: &Stack, instance_id: &str, addr: std::net::SocketAddr) {
    let (url, health) = (format!("http://{addr}"), format!("http://{addr}/health"));
    let registration = routemq_gateway::redis::scripts::Registration {
        service: "user-service",
        instance_id,
        url: &url,
        health_check_url: &health,
        ttl: None,
    };
    eventually("Redis back", Duration::from_secs(10), || {
        routemq_gateway::registry::register(&stack.redis_client, &registration)
    })
    .await;
}

/// While Redis is down each worker admits its share of the cluster limit
/// (`limit / live workers`, the count kept in Redis while it was up), so two
/// workers together still admit at most the limit, and a refusal says when
/// to come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_workers_share_the_limit() {
    const LIMIT: usize = 30; // `tight_limit`: 30 per minute
    let mut mw = mw::start(2, false).await;
    for worker in &mw.stack.workers {
        worker.sees_live_workers(2, Duration::from_secs(15)).await;
    }
    mw.stack.redis().kill();
    let client = Arc::new(mw.stack.client().await);
    let token = bearer("outage-user", &[]);
    let replies = mw::limited_pings(&client, &token, 3 * LIMIT).await;
    let admitted = replies.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    println!(
        "Redis down: {admitted} of {} admitted by two workers, limit {LIMIT}",
        replies.len()
    );
    assert_eq!(admitted + refused.len(), replies.len(), "only 200 or 429");
    assert!(
        admitted <= LIMIT,
        "{admitted} admitted: the shares add up to more than the limit"
    );
    assert!(admitted >= 2, "each worker admits its burst");
    for reply in refused {
        assert_eq!(
            reply.property("x-ratelimit-limit"),
            Some("15"),
            "the worker's share"
        );
        let retry_after: u64 = reply
            .property("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("retry-after");
        assert!(
            (2..=60).contains(&retry_after),
            "a real retry-after: {retry_after}"
        );
    }
}
