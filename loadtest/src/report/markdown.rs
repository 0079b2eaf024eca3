use std::fmt::Write;

use super::Report;

/// The report as Markdown: setup, counts, errors by status, percentiles and
/// the timeline.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let load = match (report.rate, report.concurrency) {
        (Some(rate), _) => format!("open loop, {rate} requests/s"),
        (_, Some(concurrency)) => format!("closed loop, {concurrency} outstanding"),
        _ => String::new(),
    };
    let _ = writeln!(out, "# Load test report\n");
    let _ = writeln!(
        out,
        "{load} for {:.0} s over {} connection(s) to `{}`, QoS {}, deadline {:.0} ms; topics: {}.\n",
        report.duration_s,
        report.connections,
        report.broker,
        report.qos,
        report.deadline_ms,
        report
            .topics
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "| sent | replied | lost | duplicate | late | skipped | errors | throughput |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {:.0} req/s |\n",
        report.sent,
        report.replied,
        report.lost,
        report.duplicate,
        report.late,
        report.skipped,
        report.errors,
        report.throughput_rps
    );
    let _ = writeln!(out, "Replies by status: {}\n", statuses(report));
    if let Some(fault_at) = report.fault_at_s {
        let recovery = report
            .recovery_s
            .map_or("not within the run".to_string(), |s| format!("{s:.1} s"));
        let _ = writeln!(
            out,
            "Fault injected at {fault_at:.1} s (clients retry {} times); recovered after {recovery}.\n",
            report.retries
        );
    }
    let l = &report.latency_ms;
    let _ = writeln!(out, "| latency | p50 | p90 | p99 | p99.9 | max | mean |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| ms | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
        l.p50, l.p90, l.p99, l.p999, l.max, l.mean
    );
    let _ = writeln!(out, "## Over time\n");
    let _ = writeln!(
        out,
        "| second | sent | replied | errors | p50 ms | p99 ms |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for second in &report.timeline {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2} | {:.2} |",
            second.second, second.sent, second.replied, second.errors, second.p50_ms, second.p99_ms
        );
    }
    out
}

fn statuses(report: &Report) -> String {
    if report.statuses.is_empty() {
        return "none".to_string();
    }
    report
        .statuses
        .iter()
        .map(|(status, count)| format!("{status}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}
