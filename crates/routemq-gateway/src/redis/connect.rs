use std::time::Duration;

use fred::prelude::*;

/// How the gateway talks to Redis. Redis is a dependency, not a single point
/// of failure: commands time out quickly and the client reconnects forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://host:port` or `redis-cluster://host:port?node=host:port`.
    pub url: String,
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
    pub reconnect_max_delay: Duration,
}

impl RedisSettings {
    pub fn new(url: impl Into<String>) -> Self {
        RedisSettings {
            url: url.into(),
            command_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(2),
            reconnect_max_delay: Duration::from_secs(2),
        }
    }
}

/// Builds a client and starts connecting. It does not wait for the first
/// connection: a worker starts while Redis is down and catches up when it returns.
pub async fn connect(settings: &RedisSettings) -> anyhow::Result<Client> {
    let config = Config::from_url(&settings.url)
        .map_err(|error| anyhow::anyhow!("invalid Redis URL `{}`: {error}", settings.url))?;
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
    client.init().await.ok();
    Ok(client)
}
