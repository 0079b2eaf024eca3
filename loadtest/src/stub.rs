//! An upstream stub with a configurable latency distribution and error
//! rate, seeded so runs are repeatable: every request waits `latency` (plus
//! up to `jitter`, uniformly), a `tail_fraction` of them `tail_latency`
//! instead, and an `error_rate` of them answer 500. With a `capacity`, at
//! most that many are served at once and the rest queue, as in a service
//! with that many worker threads: offered more than `capacity / latency`
//! per second, its latency grows and its throughput does not.

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, Uri};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct StubBehaviour {
    pub latency: Duration,
    pub jitter: Duration,
    pub tail_latency: Duration,
    pub tail_fraction: f64,
    pub error_rate: f64,
    pub seed: u64,
    /// Requests served at once; `None` for no limit.
    pub capacity: Option<usize>,
}

impl Default for StubBehaviour {
    fn default() -> Self {
        StubBehaviour {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            tail_latency: Duration::ZERO,
            tail_fraction: 0.0,
            error_rate: 0.0,
            seed: 1,
            capacity: None,
        }
    }
}

struct Draw {
    delay: Duration,
    fail: bool,
}

impl StubBehaviour {
    fn draw(&self, rng: &mut fastrand::Rng) -> Draw {
        let delay = if rng.f64() < self.tail_fraction {
            self.tail_latency
        } else {
            self.latency + self.jitter.mul_f64(rng.f64())
        };
        Draw {
            delay,
            fail: rng.f64() < self.error_rate,
        }
    }
}

/// Serves the stub on `addr` until `stop`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    behaviour: StubBehaviour,
    stop: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let rng = Arc::new(Mutex::new(fastrand::Rng::with_seed(behaviour.seed)));
    let workers = behaviour
        .capacity
        .map(|capacity| Arc::new(tokio::sync::Semaphore::new(capacity.max(1))));
    let behaviour = Arc::new(behaviour);
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback(any(move |uri: Uri, body: axum::body::Bytes| {
            let (rng, behaviour, workers) =
                (Arc::clone(&rng), Arc::clone(&behaviour), workers.clone());
            async move {
                // Read, as a real service reads its request, so the caller's
                // connection is reused rather than reset under a large body.
                drop(body);
                let _worker = match workers {
                    Some(workers) => workers.acquire_owned().await.ok(),
                    None => None,
                };
                let draw = {
                    let mut rng = rng.lock();
                    behaviour.draw(&mut rng)
                };
                if !draw.delay.is_zero() {
                    tokio::time::sleep(draw.delay).await;
                }
                if draw.fail {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Json(json!({"error": "stub failure", "path": uri.path()})),
                    )
                } else {
                    (
                        StatusCode::OK,
                        Json(json!({"ok": true, "path": uri.path()})),
                    )
                }
            }
        }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .ok();
    });
    Ok(bound)
}

/// The stub's entry in the gateway's service registry.
pub struct Registered {
    redis: fred::prelude::Client,
    service: String,
    instance_id: String,
}

impl Registered {
    pub async fn deregister(self) {
        routemq_gateway::registry::deregister(&self.redis, &self.service, &self.instance_id)
            .await
            .ok();
    }
}

/// Registers the stub at `addr` as an instance of `service` (no ttl).
pub async fn register(
    redis_url: &str,
    service: &str,
    addr: SocketAddr,
) -> anyhow::Result<Registered> {
    use fred::prelude::ClientLike;
    let redis =
        routemq_gateway::redis::connect(&routemq_gateway::redis::RedisSettings::new(redis_url))
            .await?;
    redis.wait_for_connect().await?;
    let instance_id = format!("{service}-stub-{}", addr.port());
    let url = format!("http://{addr}");
    let health_check_url = format!("{url}/health");
    routemq_gateway::registry::register(
        &redis,
        &routemq_gateway::redis::scripts::Registration {
            service,
            instance_id: &instance_id,
            url: &url,
            health_check_url: &health_check_url,
            ttl: None,
        },
    )
    .await?;
    Ok(Registered {
        redis,
        service: service.to_string(),
        instance_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_run() {
        let behaviour = StubBehaviour {
            latency: Duration::from_millis(2),
            jitter: Duration::from_millis(2),
            tail_latency: Duration::from_millis(50),
            tail_fraction: 0.1,
            error_rate: 0.05,
            seed: 42,
            ..StubBehaviour::default()
        };
        let run = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..1000)
                .map(|_| {
                    let draw = behaviour.draw(&mut rng);
                    (draw.delay, draw.fail)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        let draws = run(42);
        let failures = draws.iter().filter(|(_, fail)| *fail).count();
        let tails = draws
            .iter()
            .filter(|(d, _)| *d == Duration::from_millis(50))
            .count();
        assert!(
            (20..90).contains(&failures),
            "{failures} failures of 1000 at 5 %"
        );
        assert!((60..140).contains(&tails), "{tails} tails of 1000 at 10 %");
    }
}
