//! The upstream learns how long it has: the deadline header carries the
//! time left when the call starts, from the request's Message Expiry or
//! the route's timeout.

use std::time::Duration;

use routemq_client::RequestOptions;
use routemq_tests::upstream;

use crate::stack::{options, Stack};

const ROUTES: &str = r#"
[[groups]]
prefix = "api/d"
service = "recorded-service"
routes = [
  { topic = "default", method = "GET", path = "/x", timeout = "20s" },
  { topic = "named",   method = "GET", path = "/x", deadline_header = "x-budget-ms" },
  { topic = "off",     method = "GET", path = "/x", deadline_header = "" },
]
"#;

/// The milliseconds the upstream was told in `header`, of the last request.
fn told(recorded: &upstream::Recorded, header: &str) -> Option<u64> {
    let recorded = recorded.lock().expect("recorder lock");
    let headers = recorded.last().expect("a request reached the upstream");
    headers
        .get(header)
        .map(|value| value.to_str().expect("ascii").parse().expect("a number"))
}

#[tokio::test]
async fn the_upstream_is_told_the_time_left_in_the_routes_deadline_header() {
    let stack = Stack::start_with(1, 1, ROUTES, false, &[]).await;
    let (addr, recorded) = upstream::recorder().await;
    stack.register("recorded-service", "recorded-1", addr).await;
    stack.settle().await;
    let client = stack.client().await;
    let expiring = |seconds| RequestOptions {
        expiry: Some(Duration::from_secs(seconds)),
        ..options()
    };

    let reply = client
        .request("api/d/default", "{}", &expiring(8))
        .await
        .expect("reply");
    assert_eq!(reply.status, 200);
    let left = told(&recorded, "x-request-timeout-ms").expect("the default header");
    // Message Expiry counts whole seconds; the tolerance is the time the
    // request spent between the client and the call on a busy machine.
    assert!(
        (5_000..=8_000).contains(&left),
        "8 s of expiry, {left} ms told"
    );

    let reply = client
        .request("api/d/default", "{}", &options())
        .await
        .expect("reply");
    assert_eq!(reply.status, 200);
    let left = told(&recorded, "x-request-timeout-ms").expect("the default header");
    assert!(
        (17_000..=20_000).contains(&left),
        "no expiry: the route's 20 s timeout, {left} ms told"
    );

    let reply = client
        .request("api/d/named", "{}", &expiring(5))
        .await
        .expect("reply");
    assert_eq!(reply.status, 200);
    let left = told(&recorded, "x-budget-ms").expect("the route's own header");
    assert!((2_000..=5_000).contains(&left), "{left} ms told");
    assert_eq!(told(&recorded, "x-request-timeout-ms"), None);

    let reply = client
        .request("api/d/off", "{}", &expiring(5))
        .await
        .expect("reply");
    assert_eq!(reply.status, 200);
    assert_eq!(told(&recorded, "x-request-timeout-ms"), None, "turned off");
}

/// The time a request waited for its service's bulkhead is not the
/// upstream's: the header says what is left when the call starts.
#[tokio::test]
async fn the_time_told_is_what_is_left_after_waiting_for_the_bulkhead() {
    let mut stack = Stack::start_with(0, 1, ROUTES, false, &[]).await;
    let text = std::fs::read_to_string(&stack.config).expect("config");
    let bulkhead_of_one = "round_robin_lease = 1\nservice_max_in_flight = 1\n\
                           service_min_in_flight = 1\nqueue_timeout = \"30s\"";
    let text = text.replace("round_robin_lease = 1", bulkhead_of_one);
    std::fs::write(&stack.config, text).expect("config");
    stack.add_worker("worker-0");
    let (addr, recorded) = upstream::recorder_after(Duration::from_secs(3)).await;
    stack.register("recorded-service", "recorded-1", addr).await;
    stack.settle().await;
    let client = stack.client().await;

    let no_expiry = options();
    let first = client.request("api/d/default", "{}", &no_expiry);
    let queued = async {
        // The first call holds the service's only slot for 3 s from here.
        routemq_tests::eventually(
            "the first call at the upstream",
            Duration::from_secs(10),
            || {
                let arrived = recorded.lock().expect("recorder lock").len();
                std::future::ready((arrived == 1).then_some(()))
            },
        )
        .await;
        let expiring = RequestOptions {
            expiry: Some(Duration::from_secs(10)),
            ..options()
        };
        client.request("api/d/default", "{}", &expiring).await
    };
    let (first, queued) = tokio::join!(first, queued);
    assert_eq!(first.expect("reply").status, 200);
    assert_eq!(queued.expect("reply").status, 200);
    let left = told(&recorded, "x-request-timeout-ms").expect("the default header");
    assert!(
        (4_000..=8_500).contains(&left),
        "10 s of expiry less a wait of up to 3 s for the slot: {left} ms told"
    );
}
