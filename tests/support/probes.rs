//! A worker's probe port as a test reads it: `/readyz` and the value of a
//! Prometheus series.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or panics naming `what` once
/// `timeout` has passed: tests wait on facts, not on time.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The probes of one worker started with `ROUTEMQ_METRICS_ADDR` = [`Probes::addr`].
pub struct Probes {
    pub addr: String,
    http: reqwest::Client,
}

impl Probes {
    /// Probes on a free loopback port; pass [`Probes::env`] to the worker.
    pub fn new() -> Probes {
        Probes {
            addr: format!("127.0.0.1:{}", crate::free_port()),
            http: reqwest::Client::new(),
        }
    }

    pub fn env(&self) -> (&'static str, &str) {
        ("ROUTEMQ_METRICS_ADDR", self.addr.as_str())
    }

    /// The status of `/readyz`, or 0 when the port does not answer.
    pub async fn ready_status(&self) -> u16 {
        match self
            .http
            .get(format!("http://{}/readyz", self.addr))
            .send()
            .await
        {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// The sum of every series of `name` whose labels contain each of
    /// `labels` (e.g. `reason="refused"`); 0 when there is none.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let Ok(response) = self
            .http
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
        else {
            return 0.0;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let rest = series.strip_prefix(name)?;
                let matches = (rest.is_empty() || rest.starts_with('{'))
                    && labels.iter().all(|label| rest.contains(label));
                matches.then(|| value.parse::<f64>().ok()).flatten()
            })
            .sum()
    }
}

impl Default for Probes {
    fn default() -> Probes {
        Probes::new()
    }
}
