//! The run's report: counts, errors by status, HDR percentiles and a
//! per-second timeline; written as JSON, Markdown and an SVG chart.

mod chart;
mod markdown;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use routemq_client::StrayReplies;
use serde::Serialize;

use crate::run::{Load, RunConfig};
use crate::tally::Tally;

pub use chart::write_svg;
pub use markdown::markdown;

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// One second of the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct SecondReport {
    pub second: usize,
    pub sent: u64,
    pub replied: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub broker: String,
    /// `open` (constant arrival rate), `closed` (fixed outstanding requests)
    /// or `burst` (all at once; `duration_s` is then the time to drain).
    pub mode: &'static str,
    pub rate: Option<f64>,
    pub concurrency: Option<usize>,
    pub connections: usize,
    pub qos: u8,
    pub duration_s: f64,
    pub deadline_ms: f64,
    pub topics: Vec<String>,
    pub sent: u64,
    pub replied: u64,
    /// No reply within the deadline.
    pub lost: u64,
    /// A second reply to an answered request.
    pub duplicate: u64,
    /// A reply after its request's deadline (also counted as lost).
    pub late: u64,
    /// Replies to nothing this run sent.
    pub unknown: u64,
    /// Open loop: not sent because `max_outstanding` requests were pending.
    pub skipped: u64,
    /// Replies with status 400 or more.
    pub errors: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub throughput_rps: f64,
    pub latency_ms: Percentiles,
    pub timeline: Vec<SecondReport>,
    pub retries: u32,
    /// When a fault was injected (seconds into the measured window).
    pub fault_at_s: Option<f64>,
    /// From the fault to the end of the last second that still saw errors or
    /// fewer than 90 % of its requests answered; `None` when the run ended
    /// before that (not recovered).
    pub recovery_s: Option<f64>,
}

impl Report {
    pub(crate) fn new(
        config: &RunConfig,
        measured: Duration,
        tally: &Tally,
        strays: StrayReplies,
    ) -> Report {
        let histogram = &tally.latency_us;
        let ms = |micros: u64| micros as f64 / 1000.0;
        let latency_ms = Percentiles {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        };
        let seconds = measured.as_secs_f64();
        let replied = histogram.len();
        let timeline: Vec<SecondReport> = tally
            .timeline
            .iter()
            .enumerate()
            .map(|(second, s)| SecondReport {
                second,
                sent: s.sent,
                replied: s.replied,
                errors: s.errors,
                p50_ms: ms(s.latency_us.value_at_quantile(0.50)),
                p99_ms: ms(s.latency_us.value_at_quantile(0.99)),
            })
            .collect();
        let (mode, rate, concurrency) = match config.load {
            Load::Open { rate } => ("open", Some(rate), None),
            Load::Closed { concurrency } => ("closed", None, Some(concurrency)),
            Load::Burst { each } => ("burst", None, Some(each)),
        };
        Report {
            broker: redact(&config.broker),
            mode,
            rate,
            concurrency,
            connections: config.connections,
            qos: config.qos,
            duration_s: seconds,
            deadline_ms: config.deadline.as_secs_f64() * 1000.0,
            topics: config
                .mix
                .templates()
                .iter()
                .map(|t| t.topic.clone())
                .collect(),
            sent: tally.sent,
            replied,
            lost: tally.lost,
            duplicate: strays.duplicates,
            late: strays.late,
            unknown: strays.unknown,
            skipped: tally.skipped,
            errors: tally
                .statuses
                .iter()
                .filter(|(status, _)| **status >= 400)
                .map(|(_, count)| count)
                .sum(),
            statuses: tally.statuses.clone(),
            throughput_rps: replied as f64 / seconds.max(f64::EPSILON),
            latency_ms,
            recovery_s: config
                .fault_at
                .and_then(|at| recovery(&timeline, at.as_secs_f64())),
            fault_at_s: config.fault_at.map(|at| at.as_secs_f64()),
            retries: config.retries,
            timeline,
        }
    }

    /// The one-line summary printed at the end of a run.
    pub fn summary(&self) -> String {
        format!(
            "{:.0} req/s  p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  sent {}  replied {}  lost {}  duplicate {}  late {}  errors {}",
            self.throughput_rps,
            self.latency_ms.p50,
            self.latency_ms.p99,
            self.latency_ms.p999,
            self.latency_ms.max,
            self.sent,
            self.replied,
            self.lost,
            self.duplicate,
            self.late,
            self.errors
        )
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?)?;
        Ok(())
    }
}

/// Seconds from `fault_at` until the timeline is healthy again (see
/// [`Report::recovery_s`]).
fn recovery(timeline: &[SecondReport], fault_at: f64) -> Option<f64> {
    let from = fault_at.max(0.0).floor() as usize;
    let unhealthy = |s: &&SecondReport| s.errors > 0 || (s.replied as f64) < 0.9 * s.sent as f64;
    let last_bad = timeline
        .iter()
        .skip(from)
        .filter(unhealthy)
        .map(|s| s.second)
        .max();
    match last_bad {
        None => Some(0.0),
        Some(second) if second + 1 >= timeline.len() => None,
        Some(second) => Some((second + 1) as f64 - fault_at),
    }
}

/// The broker URL without its password.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            parsed.set_password(Some("***")).ok();
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{recovery, SecondReport};

    fn second(second: usize, sent: u64, replied: u64, errors: u64) -> SecondReport {
        SecondReport {
            second,
            sent,
            replied,
            errors,
            p50_ms: 0.0,
            p99_ms: 0.0,
        }
    }

    #[test]
    fn recovery_ends_with_the_last_unhealthy_second() {
        let timeline = vec![
            second(0, 100, 100, 0),
            second(1, 100, 40, 0),
            second(2, 100, 90, 3),
            second(3, 100, 100, 0),
            second(4, 100, 100, 0),
        ];
        assert_eq!(recovery(&timeline, 1.5), Some(1.5));
        assert_eq!(recovery(&timeline, 3.0), Some(0.0));
        let never = vec![second(0, 100, 100, 0), second(1, 100, 10, 0)];
        assert_eq!(recovery(&never, 0.5), None);
    }
}
