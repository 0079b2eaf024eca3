//! An identity provider's JSON Web Key Set, fetched from its URL and kept
//! current, so a key rotation (new key published, old one withdrawn) is
//! followed by every worker without a reload.
//!
//! The set is fetched at start and again after the document's
//! `Cache-Control: max-age`, kept between `min_refresh` and `max_refresh`.
//! A token naming a key id the set lacks asks for an early fetch, at most
//! once per `min_refresh` (a client sending made-up ids cannot make the
//! worker hammer the provider). A failed fetch keeps the last good set;
//! until a first one succeeds, tokens that need it are answered
//! `503 auth_unavailable`, never `401`. Each change of the set bumps its
//! generation, which tells the verified-token cache to check again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Where the set comes from and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwksSettings {
    /// `https://`, or `http://` on a loopback host.
    pub url: String,
    /// A CA to trust beside the system's roots (PEM).
    pub ca_file: Option<PathBuf>,
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    /// Larger documents are refused (the last good set stays).
    pub max_bytes: usize,
}

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The first retry after a failed fetch; doubled up to `min_refresh`.
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// The set in use, and its generation (0: none yet).
#[derive(Clone)]
struct Current {
    keys: Arc<JwkSet>,
    /// The document as parsed and written again, to tell a change.
    canonical: Arc<str>,
    generation: u64,
}

pub struct RemoteJwks {
    settings: RemoteJwksSettings,
    http: reqwest::Client,
    current: RwLock<Option<Current>>,
    /// Wakes the fetch loop for a key id the set lacks.
    wanted: Notify,
    /// When the last fetch started, for the early-fetch limit.
    last_attempt: Mutex<Option<Instant>>,
    /// When the last failure was logged: at most one warning a minute.
    last_warning: Mutex<Option<Instant>>,
}

impl RemoteJwks {
    pub fn new(settings: RemoteJwksSettings) -> Result<RemoteJwks, String> {
        let mut http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3));
        if let Some(ca_file) = &settings.ca_file {
            let pem = std::fs::read(ca_file).map_err(|error| {
                format!("auth.jwt.jwks_ca_file `{}`: {error}", ca_file.display())
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
                format!("auth.jwt.jwks_ca_file `{}`: {error}", ca_file.display())
            })?;
            for certificate in certificates {
                http = http.add_root_certificate(certificate);
            }
        }
        let http = http
            .build()
            .map_err(|error| format!("auth.jwt.jwks_url: {error}"))?;
        Ok(RemoteJwks {
            settings,
            http,
            current: RwLock::new(None),
            wanted: Notify::new(),
            last_attempt: Mutex::new(None),
            last_warning: Mutex::new(None),
        })
    }

    /// The set in use and its generation; `None` before a first success.
    pub fn keys(&self) -> Option<(Arc<JwkSet>, u64)> {
        let current = self.current.read();
        current
            .as_ref()
            .map(|current| (Arc::clone(&current.keys), current.generation))
    }

    /// The generation of the set in use (0 before any).
    pub fn generation(&self) -> u64 {
        self.current
            .read()
            .as_ref()
            .map_or(0, |current| current.generation)
    }

    /// Asks for an early fetch, for a key id the set lacks. False when a
    /// fetch started within `min_refresh`: the id is then unknown.
    pub fn want_refresh(&self) -> bool {
        let mut last = self.last_attempt.lock();
        if last.is_some_and(|at| at.elapsed() < self.settings.min_refresh) {
            return false;
        }
        *last = Some(Instant::now());
        self.wanted.notify_one();
        true
    }

    /// Fetches until `stop`: at once, then as the document's max-age says
    /// (within the bounds), early on request, and after failures with a
    /// doubling retry up to `min_refresh`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut retry = FIRST_RETRY;
        loop {
            *self.last_attempt.lock() = Some(Instant::now());
            let wait = match self.fetch().await {
                Ok((keys, max_age)) => {
                    retry = FIRST_RETRY;
                    self.install(keys);
                    metrics::counter!("routemq_jwks_fetches_total", "outcome" => "ok").increment(1);
                    max_age
                        .unwrap_or(self.settings.max_refresh)
                        .clamp(self.settings.min_refresh, self.settings.max_refresh)
                }
                Err(error) => {
                    metrics::counter!("routemq_jwks_fetches_total", "outcome" => "error")
                        .increment(1);
                    self.warn(&error);
                    let wait = retry;
                    retry = (retry * 2).min(self.settings.min_refresh);
                    wait
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = self.wanted.notified() => {}
            }
        }
    }

    fn install(&self, keys: JwkSet) {
        let canonical: Arc<str> = serde_json::to_string(&keys).unwrap_or_default().into();
        metrics::gauge!("routemq_jwks_keys").set(keys.keys.len() as f64);
        let mut current = self.current.write();
        if current
            .as_ref()
            .is_some_and(|current| current.canonical == canonical)
        {
            return;
        }
        let generation = current.as_ref().map_or(0, |current| current.generation) + 1;
        tracing::info!(
            keys = keys.keys.len(),
            generation,
            "identity provider keys loaded"
        );
        *current = Some(Current {
            keys: Arc::new(keys),
            canonical,
            generation,
        });
    }

    fn warn(&self, error: &str) {
        let mut last = self.last_warning.lock();
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
            return;
        }
        *last = Some(Instant::now());
        let kept = self.current.read().is_some();
        tracing::warn!(
            %error,
            kept_last_good_keys = kept,
            "could not fetch the identity provider's keys"
        );
    }

    /// One fetch: the set and the document's max-age, if it gave one.
    async fn fetch(&self) -> Result<(JwkSet, Option<Duration>), String> {
        let max = self.settings.max_bytes;
        let mut response = self
            .http
            .get(&self.settings.url)
            .send()
            .await
            .map_err(|error| error.without_url().to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the key set URL answered {status}"));
        }
        if response
            .content_length()
            .is_some_and(|length| length > max as u64)
        {
            return Err(format!("the key set is larger than {max} bytes"));
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .and_then(max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| error.without_url().to_string())?
        {
            if body.len() + chunk.len() > max {
                return Err(format!("the key set is larger than {max} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let keys: JwkSet = serde_json::from_slice(&body)
            .map_err(|error| format!("the key set is not a JWKS: {error}"))?;
        Ok((keys, max_age))
    }
}

/// `max-age` of a `Cache-Control` value; `no-store`/`no-cache` as zero (the
/// shortest refresh the bounds allow).
fn max_age(cache_control: &str) -> Option<Duration> {
    let mut found = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            found = seconds
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=3600"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(max_age("Max-Age=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-cache"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }
}
