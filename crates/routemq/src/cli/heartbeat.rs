//! `routemq services heartbeat --every`: keeps an instance registered
//! through Redis hiccups. A failed heartbeat is logged and retried with a
//! short backoff (a failover or a moment of refused writes must not let the
//! instance's ttl lapse for good); an instance that disappeared meanwhile
//! (its ttl passed, a reaper removed it) is registered again as it was.
//! Only a refusal retrying cannot fix — credentials, permissions — ends it.

use std::time::Duration;

use fred::prelude::{Client, Error as RedisError, ErrorKind};
use routemq_client::Backoff;
use routemq_gateway::redis::scripts::{self, Registration};
use routemq_gateway::registry;
use tokio::signal::unix::{signal, SignalKind};

/// What is needed to register the instance again.
pub struct Instance {
    pub service: String,
    pub instance_id: String,
    pub url: String,
    pub health_check_url: String,
    pub ttl: Option<Duration>,
}

impl Instance {
    fn registration(&self) -> Registration<'_> {
        Registration {
            service: &self.service,
            instance_id: &self.instance_id,
            url: &self.url,
            health_check_url: &self.health_check_url,
            ttl: self.ttl,
        }
    }
}

/// What one heartbeat did.
enum Beat {
    Refreshed,
    Registered,
}

/// The instance as registered now, or as `given` describes it when it is
/// not registered; an error when neither is known.
pub async fn resolve(
    redis: &Client,
    service: &str,
    instance_id: &str,
    given: Option<Instance>,
) -> anyhow::Result<Instance> {
    if let Some(found) = registry::instance(redis, service, instance_id).await? {
        return Ok(Instance {
            service: service.to_string(),
            instance_id: instance_id.to_string(),
            url: found.url,
            health_check_url: found.health_check_url,
            ttl: found.ttl.or(given.and_then(|given| given.ttl)),
        });
    }
    given.ok_or_else(|| {
        anyhow::anyhow!(
            "instance `{instance_id}` of `{service}` is not registered; pass --url (and --ttl) to register it"
        )
    })
}

/// Heartbeats every `every` until SIGINT or SIGTERM.
pub async fn keep_alive(redis: &Client, instance: Instance, every: Duration) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut backoff = Backoff::default();
    loop {
        let wait = match beat(redis, &instance).await {
            Ok(beat) => {
                if let Beat::Registered = beat {
                    tracing::warn!(
                        instance = %instance.instance_id,
                        service = %instance.service,
                        "the instance was gone (its ttl passed?); re-registered"
                    );
                }
                backoff.reset();
                every
            }
            Err(error) if is_fatal(&error) => {
                anyhow::bail!("heartbeat refused: {error} (check the Redis credentials and ACL)")
            }
            Err(error) => {
                let retry_in = backoff.next_wait().min(every);
                tracing::warn!(%error, ?retry_in, "heartbeat failed; retrying");
                retry_in
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn beat(redis: &Client, instance: &Instance) -> Result<Beat, RedisError> {
    if scripts::heartbeat(redis, &instance.service, &instance.instance_id).await? {
        return Ok(Beat::Refreshed);
    }
    registry::register(redis, &instance.registration())
        .await
        .map_err(|error| match error.downcast::<RedisError>() {
            Ok(redis_error) => redis_error,
            Err(other) => RedisError::new(ErrorKind::Unknown, other.to_string()),
        })?;
    Ok(Beat::Registered)
}

/// Refusals that retrying cannot fix: wrong credentials, an ACL without
/// the commands or keys the registry needs, a client misconfigured.
fn is_fatal(error: &RedisError) -> bool {
    matches!(error.kind(), ErrorKind::Auth | ErrorKind::Config)
        || error.details().starts_with("NOPERM")
}
