use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Bulkheads, ServiceLimits};
use crate::ErrorKind;

fn limits(in_flight: usize, max_held: usize, queue_timeout: Duration) -> ServiceLimits {
    ServiceLimits {
        default_max_in_flight: in_flight,
        per_service: HashMap::new(),
        min_in_flight: in_flight,
        initial_in_flight: in_flight,
        max_held,
        queue_timeout,
    }
}

const LONG: Duration = Duration::from_secs(30);

/// A new caller of service `s` is refused because `s` holds its share.
async fn assert_refused_for_holding_its_share(bulkheads: &Bulkheads) {
    let refused = bulkheads.enter("s", 2, LONG).await.err().expect("refused");
    assert!(
        refused.message.contains("holds its share"),
        "{}",
        refused.message
    );
}

#[tokio::test]
async fn a_request_beyond_the_limit_waits_for_a_slot_instead_of_being_refused() {
    let bulkheads = Arc::new(Bulkheads::new(limits(2, 10, LONG)));
    let first = bulkheads.enter("s", 1, LONG).await.expect("slot");
    let _second = bulkheads.enter("s", 1, LONG).await.expect("slot");
    let waiting = tokio::spawn({
        let bulkheads = Arc::clone(&bulkheads);
        async move { bulkheads.enter("s", 1, LONG).await.map(|_| ()) }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "it waits");
    drop(first);
    waiting
        .await
        .expect("task")
        .expect("served once a slot freed");
}

#[tokio::test]
async fn a_wait_longer_than_the_queue_timeout_or_the_deadline_is_refused() {
    let bulkheads = Bulkheads::new(limits(1, 10, Duration::from_millis(50)));
    let _held = bulkheads.enter("s", 1, LONG).await.expect("slot");
    let refused = bulkheads.enter("s", 1, LONG).await.err().expect("refused");
    assert_eq!(refused.kind, ErrorKind::ServiceOverloaded);
    assert!(
        refused.message.contains("within 50ms"),
        "{}",
        refused.message
    );
    let deadline = bulkheads.enter("s", 1, Duration::from_millis(5)).await;
    let refused = deadline.err().expect("refused");
    assert!(
        refused.message.contains("within 5ms"),
        "the caller's deadline bounds the wait: {}",
        refused.message
    );
    let other = bulkheads.enter("other", 1, LONG).await;
    assert!(other.is_ok(), "another service is not affected");
}

#[tokio::test]
async fn a_service_holding_its_share_without_proof_it_drains_is_refused_at_once() {
    // A 400 ms queue timeout: 100 ms of grace to prove it drains.
    let bulkheads = Bulkheads::new(limits(1, 2, Duration::from_millis(400)));
    let _held = bulkheads.enter("s", 1, LONG).await.expect("slot");
    let queued = bulkheads.enter("s", 1, LONG);
    tokio::pin!(queued);
    assert!(futures::poll!(queued.as_mut()).is_pending());
    assert_refused_for_holding_its_share(&bulkheads).await;
}

#[tokio::test]
async fn callers_take_turns_for_freed_slots() {
    let bulkheads = Arc::new(Bulkheads::new(limits(1, 100, LONG)));
    let held = bulkheads.enter("s", 0, LONG).await.expect("slot");
    let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (caller, count) in [(1u64, 4), (2u64, 1)] {
        for index in 0..count {
            let (bulkheads, order_tx) = (Arc::clone(&bulkheads), order_tx.clone());
            tasks.push(tokio::spawn(async move {
                let slot = bulkheads.enter("s", caller, LONG).await.expect("served");
                order_tx.send((caller, index)).ok();
                tokio::task::yield_now().await;
                drop(slot);
            }));
            tokio::task::yield_now().await;
        }
    }
    drop(held);
    for task in tasks {
        task.await.expect("task");
    }
    let served: Vec<(u64, i32)> = std::iter::from_fn(|| order.try_recv().ok()).collect();
    assert_eq!(
        served[..2],
        [(1, 0), (2, 0)],
        "the light caller is second, not fifth"
    );
}

#[tokio::test]
async fn a_waiter_that_stops_waiting_leaves_the_queue() {
    let bulkheads = Arc::new(Bulkheads::new(limits(1, 2, LONG)));
    let held = bulkheads.enter("s", 1, LONG).await.expect("slot");
    let abandoned = tokio::spawn({
        let bulkheads = Arc::clone(&bulkheads);
        async move { bulkheads.enter("s", 1, LONG).await.map(|_| ()) }
    });
    tokio::task::yield_now().await;
    abandoned.abort();
    let _ = abandoned.await;
    drop(held);
    let next = tokio::time::timeout(Duration::from_secs(1), bulkheads.enter("s", 2, LONG)).await;
    assert!(matches!(next, Ok(Ok(_))), "the slot is free again");
}

#[tokio::test]
async fn a_service_that_stops_answering_loses_its_trust_beyond_its_share() {
    let bulkheads = Arc::new(Bulkheads::new(ServiceLimits {
        min_in_flight: 1,
        ..limits(1, 2, Duration::from_millis(400))
    }));
    // It answered once, in about a millisecond: its latency is known.
    let first = bulkheads.enter("s", 1, LONG).await.expect("slot");
    tokio::time::sleep(Duration::from_millis(1)).await;
    drop(first);
    // Now it hangs: one call in flight that never ends, one waiting.
    let _hung = bulkheads.enter("s", 1, LONG).await.expect("slot");
    let waiting = bulkheads.enter("s", 1, LONG);
    tokio::pin!(waiting);
    assert!(futures::poll!(waiting.as_mut()).is_pending());
    // Silent longer than twice its grace (100 ms with a 400 ms queue timeout).
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_refused_for_holding_its_share(&bulkheads).await;
}
