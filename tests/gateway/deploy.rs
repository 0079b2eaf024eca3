//! The operator's files checked against a real worker: every metric the
//! Grafana dashboard and the Prometheus alert rules query is one the worker
//! exports.

use std::collections::BTreeSet;

use crate::mw::{self, ask_with, bearer};

const DASHBOARD: &str = include_str!("../../deploy/grafana/routemq-gateway.json");
const ALERTS: &str = include_str!("../../deploy/prometheus/alerts.yaml");

/// Every `routemq_*` metric a file names, histogram series folded into
/// their metric (`_bucket`, `_count`, `_sum`).
fn queried(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("routemq_"))
        .map(|word| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word)
                .to_string()
        })
        .collect()
}

/// Metric names with a `# TYPE` line in a Prometheus text exposition.
fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_query_is_exported() {
    let port = routemq_tests::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut mw = mw::start_one_with_env(&[("ROUTEMQ_METRICS_ADDR", addr.as_str())]).await;
    let client = std::sync::Arc::new(mw.stack.client().await);
    // Traffic that creates the series only requests reveal: a route and
    // its service, a breaker, an upstream call, Redis scripts, a 429 …
    let token = bearer("dashboards", &[]);
    let reply = ask_with(
        &client,
        "api/v1/users/get/1",
        "",
        &[("authorization", &token)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.json());
    let limited = bearer("dashboards-limited", &[]);
    let replies = mw::limited_pings(&client, &limited, 31).await;
    assert!(replies.iter().any(|reply| reply.status == 429));
    // … and a Redis error: the fail-closed limiter answers 503 without it.
    mw.stack.redis().kill();
    let strict = ask_with(&client, "api/strict/ping", "", &[("authorization", &token)]).await;
    assert_eq!(strict.status, 503, "{}", strict.json());

    let scrape = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let exported = exported(&scrape);
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(
            !targets.is_empty() && targets.iter().all(|t| t["expr"].is_string()),
            "{}",
            panel["title"]
        );
    }
    for (file, text) in [("dashboard", DASHBOARD), ("alert rules", ALERTS)] {
        let queried = queried(text);
        assert!(queried.len() >= 8, "{file}: {queried:?}");
        let missing: Vec<_> = queried.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} queries {missing:?}, not in:\n{scrape}"
        );
    }
    // Every exported metric explains itself.
    for name in &exported {
        assert!(
            scrape.contains(&format!("# HELP {name} ")),
            "{name} has no HELP text"
        );
    }
}
