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
