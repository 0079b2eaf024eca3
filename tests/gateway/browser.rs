//! The browser example (`examples/browser/`) in headless Chromium: MQTT.js
//! over a Mosquitto WebSocket listener, a worker and Redis, as a web app
//! connects. Ignored by `cargo test --workspace` (it needs Chromium and the
//! example's npm packages); `.ci/run` installs both and runs it:
//! `cargo test -p routemq-tests --test gateway browser -- --ignored`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use routemq_tests::{free_port, Mosquitto};
use serde_json::{json, Value};

use crate::mw::{self, claims, sign, SECRET};
use crate::stack::Stack;

#[tokio::test]
#[ignore = "needs chromium and examples/browser/node_modules (run by .ci/run)"]
async fn the_browser_example_calls_the_gateway_and_explains_each_outcome() {
    let ws_port = free_port();
    let websockets =
        format!("listener {ws_port} 127.0.0.1\nprotocol websockets\nsocket_domain ipv4\n");
    let stack = Stack::start_on(
        Mosquitto::start_with(&websockets),
        1,
        1,
        mw::CONFIG,
        false,
        &[("jwt.secret", SECRET), ("ec_public.pem", mw::EC_PUBLIC)],
    )
    .await;
    let _stack = mw::with_upstreams(stack).await;
    let valid = sign(&claims("alice", &["user"]), SECRET.as_bytes());
    let mut expired = claims("alice", &["user"]);
    expired["exp"] = json!(1_000_000);
    let expired = sign(&expired, SECRET.as_bytes());
    let email = sign(
        &claims("ada.lovelace@example.com", &["user"]),
        SECRET.as_bytes(),
    );

    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/browser");
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(&example)
            .args([
                "drive.mjs",
                &format!("ws://127.0.0.1:{ws_port}"),
                &valid,
                &expired,
                &email,
            ])
            .output()
            .expect("node runs (apt-get install nodejs; npm ci in examples/browser)")
    })
    .await
    .expect("driver");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    println!("the browser run took {:?}", started.elapsed());
    let outcomes: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let of = |name: &str| {
        outcomes
            .iter()
            .find(|outcome| outcome["case"] == name)
            .unwrap_or_else(|| panic!("no outcome for {name}: {stdout}\n{stderr}"))
            .clone()
    };
    let text = |outcome: &Value, key: &str| outcome[key].as_str().unwrap_or_default().to_string();

    let ok = of("valid token");
    assert_eq!(text(&ok, "status"), "200", "{ok}");
    assert!(
        text(&ok, "body").contains("\"path\": \"/users/42\""),
        "{ok}"
    );
    for case in ["no token", "expired token"] {
        let refused = of(case);
        assert_eq!(text(&refused, "status"), "401", "{refused}");
        assert!(
            text(&refused, "explanation").starts_with("Not authenticated"),
            "{refused}"
        );
    }
    // The page maps the subject as the gateway does: the e-mail address is
    // its own level, and the reply arrives there.
    let own = of("e-mail subject's own reply topic");
    assert_eq!(text(&own, "status"), "200", "{own}");
    let misdirected = of("someone else's reply topic");
    assert_eq!(text(&misdirected, "status"), "no reply", "{misdirected}");
    assert!(
        text(&misdirected, "explanation").starts_with("The gateway is up"),
        "{misdirected}"
    );
}
