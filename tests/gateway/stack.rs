//! The stack every gateway test runs on, and helpers to talk to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fred::prelude::*;
use routemq_client::{Reply, RequestClient, RequestOptions};
use routemq_gateway::redis::scripts::Registration;
use routemq_gateway::redis::{connect, RedisSettings};
use routemq_gateway::registry;
use routemq_tests::{
    eventually, upstream, write_config, Mosquitto, Probes, Redis, RedisCluster, Worker,
};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const BIN: &str = env!("CARGO_BIN_EXE_routemq-under-test");

/// The gateway binary workers run: this build's, or `ROUTEMQ_UNDER_TEST` to
/// measure another build (e.g. the previous release) with the same harness.
pub fn under_test() -> std::path::PathBuf {
    std::env::var_os("ROUTEMQ_UNDER_TEST")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(BIN))
}

const ROUTES: &str = r#"
[[groups]]
prefix = "api/v1"
forward_headers = ["accept-language"]
anonymous_replay = true

  [[groups.groups]]
  prefix = "users"
  service = "user-service"
  routes = [
    { topic = "get/{user_id}", method = "GET",  path = "/users/{user_id}", qos = 1 },
    { topic = "create",        method = "POST", path = "/users",           qos = 2 },
  ]

[[groups]]
prefix = "api/t"
anonymous_replay = true
routes = [
  { topic = "ghost",     service = "ghost-service",   method = "GET", path = "/x" },
  { topic = "e404",      service = "e404-service",    method = "GET", path = "/x" },
  { topic = "e500",      service = "e500-service",    method = "GET", path = "/x" },
  { topic = "slow",      service = "slow-service",    method = "GET", path = "/x", timeout = "300ms" },
  { topic = "count",     service = "count-service",   method = "POST", path = "/x" },
  { topic = "slow-post", service = "slow-service",    method = "POST", path = "/x", timeout = "10s" },
  { topic = "e500-post", service = "e500-service",    method = "POST", path = "/x" },
  { topic = "glacial",   service = "glacial-service", method = "GET", path = "/x", timeout = "60s" },
]

[[groups]]
prefix = "gateway"
routes = [
  { topic = "health",   handler = "health",   qos = 0 },
  { topic = "services", handler = "services" },
  { topic = "metrics",  handler = "metrics" },
]
"#;

/// Where the cluster-wide state lives: one redis-server, or a 3-node Redis Cluster.
pub enum Store {
    Single(Redis),
    Cluster(RedisCluster),
}

impl Store {
    pub fn url(&self) -> String {
        match self {
            Store::Single(redis) => redis.url(),
            Store::Cluster(cluster) => cluster.url(),
        }
    }
}

pub struct Stack {
    pub mosquitto: Mosquitto,
    pub store: Store,
    pub redis_client: Client,
    pub config: PathBuf,
    pub workers: Vec<Worker>,
    pub stop_upstreams: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Stack {
    pub async fn start(worker_count: usize) -> Stack {
        Stack::start_with_lease(worker_count, 1).await
    }

    pub async fn start_with_lease(worker_count: usize, round_robin_lease: u32) -> Stack {
        Stack::start_with(worker_count, round_robin_lease, ROUTES, false, &[]).await
    }

    /// A stack with its own routes (and any other config appended), on one
    /// Redis or on a Redis Cluster. The temp dir is `{dir}` in `routes`.
    pub async fn start_with(
        worker_count: usize,
        round_robin_lease: u32,
        routes: &str,
        cluster: bool,
        files: &[(&str, &str)],
    ) -> Stack {
        Stack::start_on(
            Mosquitto::start(),
            worker_count,
            round_robin_lease,
            routes,
            cluster,
            files,
        )
        .await
    }

    /// [`Stack::start_with`] on a broker the test configured itself. Tests
    /// that need other `[limits]` edit `config` before adding workers.
    pub async fn start_on(
        mosquitto: Mosquitto,
        worker_count: usize,
        round_robin_lease: u32,
        routes: &str,
        cluster: bool,
        files: &[(&str, &str)],
    ) -> Stack {
        let store = if cluster {
            Store::Cluster(RedisCluster::start())
        } else {
            Store::Single(Redis::start())
        };
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).expect("write file");
        }
        let routes = routes.replace("{dir}", &dir.path().display().to_string());
        let config = write_config(dir.path(), round_robin_lease, &routes);
        let redis_client = connect(&RedisSettings::new(store.url()))
            .await
            .expect("redis client");
        redis_client.wait_for_connect().await.expect("redis up");
        let mut stack = Stack {
            mosquitto,
            store,
            redis_client,
            config,
            workers: Vec::new(),
            stop_upstreams: CancellationToken::new(),
            _dir: dir,
        };
        for index in 0..worker_count {
            stack.add_worker(&format!("worker-{index}"));
        }
        stack
    }

    pub fn add_worker(&mut self, id: &str) {
        self.add_worker_with_env(id, &[]);
    }

    pub fn add_worker_with_env(&mut self, id: &str, env: &[(&str, &str)]) {
        let mqtt_url = self.mosquitto.url();
        self.add_worker_on(id, &mqtt_url, env);
    }

    /// A worker connecting with its own broker URL (user name and password).
    /// Every worker gets a probe port (its own, or one from `env`).
    pub fn add_worker_on(&mut self, id: &str, mqtt_url: &str, env: &[(&str, &str)]) {
        let probes = Probes::new();
        let mut env = env.to_vec();
        if !env.iter().any(|(name, _)| *name == "ROUTEMQ_METRICS_ADDR") {
            env.push(probes.env());
        }
        let worker = Worker::start_with_env(
            &under_test(),
            &self.config,
            id,
            mqtt_url,
            &self.store.url(),
            &env,
        );
        self.workers.push(worker);
    }

    /// The single redis-server (tests that stop Redis run on one node).
    pub fn redis(&mut self) -> &mut Redis {
        match &mut self.store {
            Store::Single(redis) => redis,
            Store::Cluster(_) => panic!("this test needs a single redis-server"),
        }
    }

    pub async fn register(&self, service: &str, instance_id: &str, addr: SocketAddr) {
        let url = format!("http://{addr}");
        let health = format!("{url}/health");
        let registration = Registration {
            service,
            instance_id,
            url: &url,
            health_check_url: &health,
            ttl: None,
        };
        registry::register(&self.redis_client, &registration)
            .await
            .expect("register");
    }

    /// Starts demo instances of `service` and registers them.
    pub async fn demo_instances(&self, service: &str, count: usize) {
        for index in 1..=count {
            let id = format!("{service}-{index}");
            let bind = "127.0.0.1:0".parse().expect("addr");
            // On the upstreams' own runtime, so it answers health probes
            // while the test's runtime blocks (see `upstream::upstreams`).
            let (name, instance_id, stop) =
                (service.to_string(), id.clone(), self.stop_upstreams.clone());
            let instance = upstream::upstreams()
                .spawn(async move {
                    routemq::demo::start_instance(&name, &instance_id, bind, stop).await
                })
                .await
                .expect("demo task")
                .expect("demo instance");
            self.register(service, &id, instance.addr).await;
        }
    }

    pub async fn client(&self) -> RequestClient {
        RequestClient::connect(&self.mosquitto.url())
            .await
            .expect("client connects")
    }

    /// Waits until every worker's registry cache has caught up with the
    /// registry as it is now: each worker has finished two refreshes since
    /// this call, so the second began after it.
    pub async fn settle(&self) {
        let mut marks = Vec::new();
        for worker in &self.workers {
            marks.push(worker.registry_refreshes().await);
        }
        for (worker, mark) in self.workers.iter().zip(marks) {
            let what = format!("worker {} refreshed its registry twice", worker.id);
            eventually(&what, Duration::from_secs(10), || async {
                (worker.registry_refreshes().await >= mark + 2.0).then_some(())
            })
            .await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop_upstreams.cancel();
    }
}

pub fn options() -> RequestOptions {
    RequestOptions {
        timeout: Duration::from_secs(10),
        ..RequestOptions::default()
    }
}

pub async fn ask(client: &RequestClient, topic: &str, payload: &str) -> Reply {
    ask_with(client, topic, payload, &[]).await
}

/// A request with user properties; a missing reply fails the test.
pub async fn ask_with(
    client: &RequestClient,
    topic: &str,
    payload: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let options = RequestOptions {
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        ..options()
    };
    match client.request(topic, payload.to_string(), &options).await {
        Ok(reply) => reply,
        Err(error) => panic!("{topic}: {error}"),
    }
}

/// A request from a caller that takes no chunked replies (as MQTT.js or
/// `mosquitto_rr` callers don't): a reply the broker would refuse whole is
/// `502 reply_too_large`.
pub async fn ask_whole(client: &RequestClient, topic: &str) -> Reply {
    let options = RequestOptions {
        accept_chunks: false,
        ..options()
    };
    match client.request(topic, "", &options).await {
        Ok(reply) => reply,
        Err(error) => panic!("{topic}: {error}"),
    }
}

pub fn error_type(reply: &Reply) -> String {
    reply.json()["error"]["type"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A raw MQTT 5 client that records what arrives on `filter`.
pub async fn observer(
    url: &str,
    filter: &str,
) -> (
    AsyncClient,
    mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Publish>,
) {
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let mut options = MqttOptions::new(
        format!("observer-{}", uuid::Uuid::new_v4().simple()),
        "127.0.0.1",
        port,
    );
    options.set_max_packet_size(Some(1 << 20));
    let (client, mut event_loop) = AsyncClient::new(options, 64);
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    tokio::spawn(async move {
        while let Ok(event) = event_loop.poll().await {
            match event {
                Event::Incoming(Packet::Publish(publish)) => {
                    tx.send(publish).ok();
                }
                Event::Incoming(Packet::SubAck(_)) => {
                    subscribed_tx.send(()).ok();
                }
                _ => {}
            }
        }
    });
    subscribed.recv().await.expect("suback");
    (client, rx)
}
