//! A worker's probe port as a test reads it: `/readyz` and the value of a
//! Prometheus series.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `probe` until it observes the fact — `Some(value)` or
/// `Ok(value)` — or panics naming `what` (and, for an `Err`, the last thing
/// it saw instead) once `timeout` has passed: tests wait on facts, not on
/// time. The one deadline loop of the suite.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T::Value
where
    T: Observation,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await.observed() {
            Ok(value) => return value,
            Err(last) => not_yet(what, timeout, deadline, last),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// [`eventually`] for harness code outside the runtime (starting
/// processes): the same deadline loop, blocking the thread between probes.
pub fn eventually_blocking<T: Observation>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> T,
) -> T::Value {
    let deadline = Instant::now() + timeout;
    loop {
        match probe().observed() {
            Ok(value) => return value,
            Err(last) => not_yet(what, timeout, deadline, last),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Panics once the deadline has passed, with what the probe saw last.
fn not_yet(what: &str, timeout: Duration, deadline: Instant, last: Option<String>) {
    let last = last.map(|last| format!("; last seen: {last}"));
    assert!(
        Instant::now() < deadline,
        "not within {timeout:?}: {what}{}",
        last.unwrap_or_default()
    );
}

/// What a probe of [`eventually`] returns: the fact, or not yet (with what
/// it saw instead, for the failure message).
pub trait Observation {
    type Value;
    fn observed(self) -> Result<Self::Value, Option<String>>;
}

impl<T> Observation for Option<T> {
    type Value = T;
    fn observed(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: std::fmt::Display> Observation for Result<T, E> {
    type Value = T;
    fn observed(self) -> Result<T, Option<String>> {
        self.map_err(|last| Some(last.to_string()))
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

    /// Probes a worker serves at `addr`.
    pub fn at(addr: &str) -> Probes {
        Probes {
            addr: addr.to_string(),
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
