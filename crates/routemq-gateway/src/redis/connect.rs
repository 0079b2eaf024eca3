use std::time::Duration;

use fred::prelude::*;
use fred::types::config::TlsConfig;

use crate::tls::{handshake_refusal_in, TlsFiles};

/// How the gateway talks to Redis. Redis is a dependency, not a single point
/// of failure: commands time out quickly and the client reconnects forever.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://host:port`, `redis-cluster://host:port?node=host:port`, or
    /// `rediss://` / `rediss-cluster://` for TLS.
    pub url: String,
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
    pub reconnect_max_delay: Duration,
    /// Trust and client certificate for a `rediss` URL; `None` trusts the system's roots.
    pub tls: Option<TlsFiles>,
    /// An ACL user (with `password`); overrides one in the URL.
    pub username: Option<String>,
    /// `AUTH` password; overrides one in the URL.
    pub password: Option<String>,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is a secret: only say whether there is one.
        f.debug_struct("RedisSettings")
            .field("url", &self.url)
            .field("command_timeout", &self.command_timeout)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisSettings {
    pub fn new(url: impl Into<String>) -> Self {
        RedisSettings {
            url: url.into(),
            command_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(2),
            reconnect_max_delay: Duration::from_secs(2),
            tls: None,
            username: None,
            password: None,
        }
    }
}

/// Builds a client and starts connecting. An unreachable Redis does not stop
/// it: a worker starts while Redis is down and catches up when it returns.
/// A refused password or TLS handshake does — retrying cannot fix those.
pub async fn connect(settings: &RedisSettings) -> anyhow::Result<Client> {
    let mut config = Config::from_url(&settings.url)
        .map_err(|error| anyhow::anyhow!("invalid Redis URL `{}`: {error}", settings.url))?;
    if let Some(files) = &settings.tls {
        if config.tls.is_none() {
            anyhow::bail!(
                "redis TLS files are set but the URL `{}` is not rediss://",
                settings.url
            );
        }
        let tls = files
            .client_config()
            .map_err(|error| anyhow::anyhow!("redis TLS: {error}"))?;
        config.tls = Some(TlsConfig::from(tls));
    }
    if settings.username.is_some() {
        config.username.clone_from(&settings.username);
    }
    if settings.password.is_some() {
        config.password.clone_from(&settings.password);
    }
    let max_delay = u32::try_from(settings.reconnect_max_delay.as_millis()).unwrap_or(u32::MAX);
    let client = Builder::from_config(config)
        .with_performance_config(|performance| {
            performance.default_command_timeout = settings.command_timeout;
        })
        .with_connection_config(|connection| {
            connection.connection_timeout = settings.connect_timeout;
            connection.internal_command_timeout = settings.connect_timeout;
            // A timed-out command may still run on the server: never send it again ourselves.
            connection.max_command_attempts = 1;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 50, max_delay, 2))
        .build()?;
    if let Err(error) = client.init().await {
        if let Some(refusal) = fatal(&error) {
            tokio::time::timeout(Duration::from_secs(1), client.quit())
                .await
                .ok();
            anyhow::bail!("redis at `{}`: {refusal}", redacted(&settings.url));
        }
        tracing::warn!(%error, "redis not reachable yet; retrying in the background");
    }
    Ok(client)
}

/// Errors a reconnect cannot fix: refused credentials or TLS handshakes.
fn fatal(error: &Error) -> Option<String> {
    if *error.kind() == ErrorKind::Auth {
        return Some(format!("authentication refused: {}", error.details()));
    }
    let details = error.details();
    let refused_auth = ["WRONGPASS", "NOAUTH", "NOPERM", "invalid password"];
    if refused_auth.iter().any(|mark| details.contains(mark)) {
        return Some(format!("authentication refused: {details}"));
    }
    handshake_refusal_in(details)
}

/// `url` without a password, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
