use std::time::Duration;

use clap::Subcommand;
use fred::prelude::*;
use routemq_gateway::redis::scripts::Registration;
use routemq_gateway::redis::{connect, RedisSettings};
use routemq_gateway::registry;
use tokio_util::sync::CancellationToken;

use super::heartbeat;
use crate::demo::DemoInstance;

#[derive(Subcommand)]
pub enum ServicesCommand {
    /// Register (or re-register) a service instance.
    Register {
        #[arg(long)]
        service: String,
        #[arg(long)]
        url: String,
        /// Default: <service>-<random>.
        #[arg(long)]
        instance_id: Option<String>,
        #[arg(long, default_value = "/health")]
        health_path: String,
        /// Expire the instance unless a heartbeat comes within this time; default: never expires.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
    },
    /// Refresh an instance's heartbeat (and its ttl).
    Heartbeat {
        #[arg(long)]
        service: String,
        #[arg(long)]
        instance_id: String,
        /// Keep sending heartbeats at this interval until SIGINT or SIGTERM;
        /// a failed one is retried, and an instance that disappeared is
        /// registered again as it was (or from --url, --health-path, --ttl).
        #[arg(long, value_parser = humantime::parse_duration)]
        every: Option<Duration>,
        /// With --every: the instance's URL, to register it if it is not.
        #[arg(long, requires = "every")]
        url: Option<String>,
        #[arg(long, default_value = "/health")]
        health_path: String,
        /// With --url: the ttl to register it with.
        #[arg(long, value_parser = humantime::parse_duration, requires = "url")]
        ttl: Option<Duration>,
    },
    /// Remove an instance.
    Deregister {
        #[arg(long)]
        service: String,
        #[arg(long)]
        instance_id: String,
    },
    /// List services and their instances.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// How long a CLI command waits for Redis before giving up.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

pub(super) async fn client(settings: &RedisSettings) -> anyhow::Result<Client> {
    let url = shown(&settings.url);
    let client = connect(settings).await?;
    match tokio::time::timeout(CONNECT_WAIT, client.wait_for_connect()).await {
        Ok(Ok(())) => Ok(client),
        Ok(Err(error)) => anyhow::bail!("cannot reach Redis at {url}: {error}"),
        Err(_) => {
            anyhow::bail!("cannot reach Redis at {url}: no connection within {CONNECT_WAIT:?}")
        }
    }
}

/// A Redis URL as printed: any password in it replaced.
fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{}", &rest[authority_end..]),
        None => url.to_string(),
    }
}

fn parsed_url(url: &str) -> anyhow::Result<reqwest::Url> {
    reqwest::Url::parse(url).map_err(|error| anyhow::anyhow!("--url `{url}` is invalid: {error}"))
}

pub async fn run(command: ServicesCommand, settings: &RedisSettings) -> anyhow::Result<()> {
    let redis = client(settings).await?;
    match command {
        ServicesCommand::Register {
            service,
            url,
            instance_id,
            health_path,
            ttl,
        } => register(&redis, &service, &url, instance_id, &health_path, ttl).await?,
        ServicesCommand::Heartbeat {
            service,
            instance_id,
            every: None,
            ..
        } => registry::heartbeat(&redis, &service, &instance_id).await?,
        ServicesCommand::Heartbeat {
            service,
            instance_id,
            every: Some(every),
            url,
            health_path,
            ttl,
        } => {
            let given = url
                .map(|url| parsed_url(&url).map(|_| url))
                .transpose()?
                .map(|url| heartbeat::Instance {
                    health_check_url: format!("{}{health_path}", url.trim_end_matches('/')),
                    service: service.clone(),
                    instance_id: instance_id.clone(),
                    url,
                    ttl,
                });
            let instance = heartbeat::resolve(&redis, &service, &instance_id, given).await?;
            heartbeat::keep_alive(&redis, instance, every).await?;
        }
        ServicesCommand::Deregister {
            service,
            instance_id,
        } => {
            registry::deregister(&redis, &service, &instance_id).await?;
            println!("deregistered {instance_id} of {service}");
        }
        ServicesCommand::List { json } => list(&redis, json).await?,
    }
    redis.quit().await.ok();
    Ok(())
}

/// `services register`: one instance, with a generated id unless given.
async fn register(
    redis: &Client,
    service: &str,
    url: &str,
    instance_id: Option<String>,
    health_path: &str,
    ttl: Option<Duration>,
) -> anyhow::Result<()> {
    parsed_url(url)?;
    let instance_id =
        instance_id.unwrap_or_else(|| format!("{service}-{}", uuid::Uuid::new_v4().simple()));
    let health_check_url = format!("{}{}", url.trim_end_matches('/'), health_path);
    let registration = Registration {
        service,
        instance_id: &instance_id,
        url,
        health_check_url: &health_check_url,
        ttl,
    };
    registry::register(redis, &registration).await?;
    println!("registered {instance_id} of {service} at {url}");
    Ok(())
}

/// `services list`: every service's instances, as a table or JSON.
async fn list(redis: &Client, json: bool) -> anyhow::Result<()> {
    let services = registry::list_services(redis).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&services)?);
        return Ok(());
    }
    println!("{:<22} {:<34} {:<10} URL", "SERVICE", "INSTANCE", "STATUS");
    for (service, instances) in &services {
        for instance in instances {
            let status = if instance.is_healthy() {
                "healthy"
            } else {
                "unhealthy"
            };
            println!(
                "{service:<22} {:<34} {status:<10} {}",
                instance.instance_id, instance.url
            );
        }
    }
    Ok(())
}

/// Registers the demo instances with a ttl, heartbeats them at a third of it
/// and deregisters them when `stop` fires.
pub async fn register_and_heartbeat(
    settings: &RedisSettings,
    instances: &[DemoInstance],
    ttl: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let redis = client(settings).await?;
    for instance in instances {
        let url = instance.url();
        let health_check_url = format!("{url}/health");
        let registration = Registration {
            service: &instance.service,
            instance_id: &instance.instance_id,
            url: &url,
            health_check_url: &health_check_url,
            ttl: Some(ttl),
        };
        registry::register(&redis, &registration).await?;
    }
    println!(
        "registered {} instances in {}",
        instances.len(),
        shown(&settings.url)
    );
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(ttl / 3) => {
                for instance in instances {
                    if let Err(error) = registry::heartbeat(&redis, &instance.service, &instance.instance_id).await {
                        tracing::warn!(%error, instance = %instance.instance_id, "heartbeat failed");
                    }
                }
            }
        }
    }
    for instance in instances {
        registry::deregister(&redis, &instance.service, &instance.instance_id)
            .await
            .ok();
    }
    redis.quit().await.ok();
    Ok(())
}
