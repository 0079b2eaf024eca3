//! Fixtures for the end-to-end tests: real `mosquitto` and `redis-server`
//! processes (and a 3-node Redis Cluster) on free loopback ports, gateway
//! worker processes, and HTTP upstreams. Every process is killed on drop.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod mqtt_proxy;
pub mod otlp;
pub mod probes;
pub mod tls;
pub mod upstream;

pub use probes::{eventually, eventually_blocking, Observation, Probes};

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

fn wait_for_port(port: u16, what: &str) {
    let what = format!("{what} listening on port {port}");
    eventually_blocking(&what, Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port))
    });
}

/// A child process killed when dropped.
pub struct Process {
    child: Child,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }

    /// Sends a signal with `kill(1)`, e.g. `"TERM"`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Mosquitto {
    pub port: u16,
    process: Process,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Mosquitto::start_with("")
    }

    /// A broker with extra configuration lines (`max_packet_size`, ACLs, …).
    pub fn start_with(extra: &str) -> Mosquitto {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        std::fs::write(dir.path().join("extra.conf"), extra).expect("write extra conf");
        let process = spawn_mosquitto(dir.path(), port);
        Mosquitto { port, process, dir }
    }

    /// The broker's own directory, for password and ACL files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the broker and starts a new one on the same port: every session is lost.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Kills the broker; [`Mosquitto::start_again`] brings it back on the same port.
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts the broker again on its port (after [`Mosquitto::stop`]) and
    /// waits until the port answers.
    pub fn start_again(&mut self) {
        self.process = spawn_mosquitto(self.dir.path(), self.port);
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

fn spawn_mosquitto(dir: &Path, port: u16) -> Process {
    let config = dir.join("mosquitto.conf");
    let extra = std::fs::read_to_string(dir.join("extra.conf")).unwrap_or_default();
    let anonymous = !extra.contains("allow_anonymous");
    std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nset_tcp_nodelay true\nmax_inflight_messages 0\npersistence false\n{}{extra}\n",
                if anonymous { "allow_anonymous true\n" } else { "" }
            ),
        )
        .expect("write mosquitto.conf");
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto is installed (apt-get install mosquitto)");
    let process = Process { child };
    wait_for_port(port, "mosquitto");
    process
}

pub struct Redis {
    pub port: u16,
    process: Process,
    dir: tempfile::TempDir,
}

fn spawn_redis(port: u16, dir: &Path, extra: &[&str]) -> Process {
    let process = start_redis_process(port, dir, extra);
    wait_for_port(port, "redis-server");
    process
}

/// A redis-server of its own on a free port. Two tests can be given the
/// same free port at once: then one server cannot bind, and the port
/// answers for the other test's server, which that test may stop. So the
/// server on the port must be ours (its `process_id`), else another port.
fn spawn_own_redis(dir: &Path) -> (u16, Process) {
    for _ in 0..5 {
        let port = free_port();
        let mut process = spawn_redis(port, dir, &[]);
        if redis_pid(port) == Some(process.pid()) {
            return (port, process);
        }
        process.kill();
    }
    panic!("no redis-server of this test's own could start");
}

/// The `process_id` of the redis-server answering on `port`.
fn redis_pid(port: u16) -> Option<u32> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut reply = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&reply).contains("process_id:") || !reply.ends_with(b"\r\n") {
        let read = stream.read(&mut buffer).ok().filter(|read| *read > 0)?;
        reply.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&reply);
    let line = text.lines().find(|line| line.starts_with("process_id:"))?;
    line["process_id:".len()..].trim().parse().ok()
}

fn start_redis_process(port: u16, dir: &Path, extra: &[&str]) -> Process {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (apt-get install redis-server)");
    Process { child }
}

/// A port for a cluster node: its cluster bus (port + 10 000) must be free
/// too, and at most 65 535.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A cluster node, started again on other ports if it could not bind (a
/// port taken between choosing and binding, e.g. by a parallel test run).
fn spawn_cluster_node(dir: &Path) -> (u16, Process) {
    for _ in 0..5 {
        let port = cluster_port();
        let node_dir = dir.join(port.to_string());
        std::fs::create_dir_all(&node_dir).expect("node dir");
        let extra = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"];
        let mut process = start_redis_process(port, &node_dir, &extra);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (port, process);
            }
            if process.child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                process.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("no redis cluster node could start");
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, process) = spawn_own_redis(dir.path());
        Redis { port, process, dir }
    }

    /// Starts an empty server on the same port after [`Redis::kill`].
    pub fn restart(&mut self) {
        self.process.kill();
        self.process = spawn_redis(self.port, self.dir.path(), &[]);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL), to test how the gateway copes.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// Three masters, no replicas, slots spread by `redis-cli --cluster create`.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    _nodes: Vec<Process>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ports, nodes): (Vec<u16>, Vec<Process>) =
            (0..3).map(|_| spawn_cluster_node(dir.path())).unzip();
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(status.success(), "redis-cli --cluster create failed");
        for port in &ports {
            eventually_blocking("the cluster ready", Duration::from_secs(20), || {
                let info = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli runs");
                String::from_utf8_lossy(&info.stdout)
                    .contains("cluster_state:ok")
                    .then_some(())
            });
        }
        RedisCluster {
            ports,
            _nodes: nodes,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis-cluster://127.0.0.1:{}", self.ports[0])
    }
}

/// Runs a `routemq` CLI command to completion and returns its stdout. `bin`
/// is the test package's `CARGO_BIN_EXE_routemq-under-test`, known only to
/// the integration tests themselves.
pub fn routemq(bin: &Path, args: &[&str], redis_url: &str) -> Result<String, String> {
    routemq_with_env(bin, args, redis_url, &[])
}

/// [`routemq()`] with extra environment variables (secrets the config names).
pub fn routemq_with_env(
    bin: &Path,
    args: &[&str],
    redis_url: &str,
    env: &[(&str, &str)],
) -> Result<String, String> {
    let output = Command::new(bin)
        .args(args)
        .env("ROUTEMQ_REDIS_URL", redis_url)
        .env_remove("ROUTEMQ_JWT_HS256_SECRET")
        .envs(env.iter().copied())
        .output()
        .expect("routemq runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A gateway worker process whose log lines are collected for assertions.
pub struct Worker {
    pub id: String,
    pub process: Process,
    /// Its probe port, when it was started with `ROUTEMQ_METRICS_ADDR`.
    pub probes: Option<Probes>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Worker {
    /// Starts `routemq worker` and waits until it has subscribed.
    pub fn start(bin: &Path, config: &Path, id: &str, mqtt_url: &str, redis_url: &str) -> Worker {
        Worker::start_with_env(bin, config, id, mqtt_url, redis_url, &[])
    }

    /// [`Worker::start`] with extra environment variables (they win over the defaults).
    pub fn start_with_env(
        bin: &Path,
        config: &Path,
        id: &str,
        mqtt_url: &str,
        redis_url: &str,
        env: &[(&str, &str)],
    ) -> Worker {
        let worker = Worker::spawn(bin, config, id, mqtt_url, redis_url, env);
        worker.wait_for_log_blocking("subscribed", Duration::from_secs(20));
        worker
    }

    /// Starts `routemq worker` without waiting for it to get anywhere.
    pub fn spawn(
        bin: &Path,
        config: &Path,
        id: &str,
        mqtt_url: &str,
        redis_url: &str,
        env: &[(&str, &str)],
    ) -> Worker {
        let child = Command::new(bin)
            .args(["worker", "--config"])
            .arg(config)
            .args(["--worker-id", id])
            .env("ROUTEMQ_MQTT_URL", mqtt_url)
            .env("ROUTEMQ_REDIS_URL", redis_url)
            .env("RUST_LOG", "info,routemq_gateway=debug")
            .env("NO_COLOR", "1")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("ROUTEMQ_METRICS_ADDR")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("worker starts");
        let mut process = Process { child };
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = process.child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
        });
        let probes = env
            .iter()
            .find(|(name, _)| *name == "ROUTEMQ_METRICS_ADDR")
            .map(|(_, addr)| Probes::at(addr));
        Worker {
            id: id.to_string(),
            process,
            probes,
            log,
        }
    }

    /// The worker's probes; it must have been started with a probe port.
    pub fn probes(&self) -> &Probes {
        let id = &self.id;
        let probes = self.probes.as_ref();
        probes.unwrap_or_else(|| panic!("worker {id} has no ROUTEMQ_METRICS_ADDR"))
    }

    /// Waits until the worker counts `workers` live workers in the cluster
    /// (`routemq_live_workers`).
    pub async fn sees_live_workers(&self, workers: usize, timeout: Duration) {
        let what = format!("worker {} counting {workers} live workers", self.id);
        eventually(&what, timeout, || async {
            let seen = self.probes().metric("routemq_live_workers", &[]).await;
            match seen == workers as f64 {
                true => Ok(()),
                false => Err(format!("{seen}")),
            }
        })
        .await;
    }

    /// Waits until the worker's series `name` (those matching `labels`)
    /// add up to at least `at_least`.
    pub async fn metric_reaches(
        &self,
        name: &str,
        labels: &[&str],
        at_least: f64,
        timeout: Duration,
    ) {
        let what = format!("worker {}: {name}{labels:?} at {at_least}", self.id);
        eventually(&what, timeout, || async {
            let value = self.probes().metric(name, labels).await;
            match value >= at_least {
                true => Ok(()),
                false => Err(format!("{value}")),
            }
        })
        .await;
    }

    /// Registry refreshes the worker has finished (`routemq_registry_refreshes_total`).
    pub async fn registry_refreshes(&self) -> f64 {
        let probes = self.probes();
        probes
            .metric("routemq_registry_refreshes_total", &["outcome=\"ok\""])
            .await
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// How many log lines contain `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log_lines()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// Waits for a log line without blocking the test's async runtime.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        self.wait_for_log_count(needle, 1, timeout).await;
    }

    /// Waits until `count` log lines contain `needle`.
    pub async fn wait_for_log_count(&self, needle: &str, count: usize, timeout: Duration) {
        let what = format!("{count} log lines with `{needle}`");
        eventually(&what, timeout, || async {
            match self.count_log(needle) >= count {
                true => Ok(()),
                false => Err(self.missing(needle)),
            }
        })
        .await;
    }

    fn wait_for_log_blocking(&self, needle: &str, timeout: Duration) {
        let what = format!("a log line with `{needle}`");
        eventually_blocking(&what, timeout, || match self.count_log(needle) > 0 {
            true => Ok(()),
            false => Err(self.missing(needle)),
        });
    }

    fn missing(&self, needle: &str) -> String {
        format!(
            "worker {} never logged `{needle}`; log:\n{}",
            self.id,
            self.log_lines().join("\n")
        )
    }
}

/// Writes a gateway config to a temp file. `routes` is appended after the
/// fast-test defaults (short registry and health intervals).
pub fn write_config(dir: &Path, round_robin_lease: u32, routes: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    let text = format!(
        r#"[gateway]
drain_timeout = "10s"
round_robin_lease = {round_robin_lease}

[limits]
max_payload_bytes = 4096
max_user_properties = 16
max_header_bytes = 2048
max_param_bytes = 64

[registry]
refresh_interval = "100ms"
health_check_interval = "200ms"
health_check_timeout = "2s"

[metrics]
flush_interval = "100ms"

{routes}
"#
    );
    std::fs::write(&path, text).expect("write config");
    path
}
