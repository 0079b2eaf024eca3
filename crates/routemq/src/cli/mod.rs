//! The `routemq` command line.

mod auth;
mod heartbeat;
mod services;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use routemq_gateway::middleware::MiddlewareKinds;
use routemq_gateway::redis::RedisSettings;
use routemq_gateway::RouteTarget;
use tokio_util::sync::CancellationToken;

use crate::{config, demo, runtime, telemetry};

#[derive(Parser)]
#[command(
    name = "routemq",
    version,
    about = "RouteMQ Gateway: an MQTT 5 API gateway cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The Redis an admin command works on.
#[derive(Args)]
struct RedisArg {
    /// Redis URL; replaces the URL `--config` gives (its TLS files and
    /// credentials still apply). Default: `ROUTEMQ_REDIS_URL`, else
    /// redis://127.0.0.1:6379.
    #[arg(id = "redis", long = "redis", global = true)]
    url: Option<String>,
    /// A worker's configuration file: its `[redis]` section (URL, TLS,
    /// username, password_env/password_file) is used as a worker uses it.
    #[arg(id = "redis_config", long = "config", global = true)]
    config: Option<PathBuf>,
}

impl RedisArg {
    /// The connection settings: `--config`'s `[redis]` resolved as a worker
    /// resolves it (so `ROUTEMQ_REDIS_URL` overrides its URL there too),
    /// else `ROUTEMQ_REDIS_URL` or the local default; `--redis` replaces
    /// the URL either way.
    fn settings(&self) -> anyhow::Result<RedisSettings> {
        let mut settings = match &self.config {
            Some(path) => config::redis_of(path)?,
            None => RedisSettings::new(
                std::env::var("ROUTEMQ_REDIS_URL")
                    .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            ),
        };
        if let Some(url) = &self.url {
            settings.url.clone_from(url);
        }
        Ok(settings)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run one gateway worker.
    Worker {
        #[arg(long)]
        config: PathBuf,
        /// Unique id of this worker; also its MQTT client id. Default: routemq-<random>.
        #[arg(long)]
        worker_id: Option<String>,
        /// Tokio worker threads; 1 runs a single-threaded runtime, the fastest on small machines.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Validate a configuration file; its secrets need not be present (the
    /// ones a worker will need are listed).
    CheckConfig { file: PathBuf },
    /// Print the route table of a configuration file (secrets need not be present).
    Routes { file: PathBuf },
    /// Print the annotated shipped configuration, a starting point for your own.
    GenerateConfig,
    /// Print the AsyncAPI 3.0 document of a configuration's routes (secrets need not be present).
    Asyncapi { file: PathBuf },
    /// Manage the service registry in Redis.
    Services {
        #[command(subcommand)]
        command: services::ServicesCommand,
        #[command(flatten)]
        redis: RedisArg,
    },
    /// Manage API keys in Redis.
    ApiKeys {
        #[command(subcommand)]
        command: auth::ApiKeysCommand,
        #[command(flatten)]
        redis: RedisArg,
    },
    /// Print a signed HS256 JWT for testing, using a config file's [auth.jwt] secret, issuer and audience.
    Token {
        #[arg(long)]
        config: PathBuf,
        /// The token's subject (the user id sent upstream as X-User-ID).
        #[arg(long)]
        sub: String,
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
        ttl: Duration,
    },
    /// Start the demo microservices (user, order, payment, notification, and the v2 services).
    DemoServices {
        /// Instances per service.
        #[arg(long, default_value_t = 2)]
        instances: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        /// Host name registered for the instances when they bind 0.0.0.0 (containers).
        #[arg(long)]
        advertise_host: Option<String>,
        /// First port; instances take consecutive ports. 0 picks free ports.
        #[arg(long, default_value_t = 8101)]
        base_port: u16,
        /// Also register the instances in Redis, heartbeat them, and deregister on exit.
        #[arg(long)]
        register: bool,
        #[command(flatten)]
        redis: RedisArg,
        /// Registration ttl, refreshed by heartbeats at a third of it.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
        ttl: Duration,
    },
}

/// The shipped configuration: the reference gateway's whole route table, annotated.
pub const SHIPPED_CONFIG: &str = include_str!("../../../../deploy/gateway.toml");

/// The `routemq` binary with the built-in middleware kinds.
pub fn main() -> ExitCode {
    main_with(MiddlewareKinds::default())
}

/// The `routemq` command line with `kinds` as the middleware kinds its
/// configurations may use: a binary that embeds the gateway registers its
/// own kinds and calls this (see `examples/custom_middleware.rs`).
pub fn main_with(kinds: MiddlewareKinds) -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Worker { threads, .. } => *threads,
        _ => 1,
    };
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let result = match runtime {
        Ok(runtime) => runtime.block_on(async {
            // A worker traces; the other commands only log.
            let telemetry = telemetry::init(matches!(cli.command, Command::Worker { .. }));
            let result = run(cli.command, kinds, telemetry.traces_enabled()).await;
            telemetry.shutdown().await;
            result
        }),
        Err(error) => Err(error.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, kinds: MiddlewareKinds, traces: bool) -> anyhow::Result<()> {
    let loader = config::Loader::new(kinds);
    match command {
        Command::Worker {
            config, worker_id, ..
        } => {
            let source = runtime::ConfigSource {
                path: config,
                loader,
            };
            let config = source.loader.load(&source.path)?;
            let worker_id =
                worker_id.unwrap_or_else(|| format!("routemq-{}", uuid::Uuid::new_v4().simple()));
            let shutdown = shutdown_on_signal();
            runtime::run_worker(config, Some(source), worker_id, traces, shutdown).await
        }
        Command::CheckConfig { file } => check_config(loader, &file),
        Command::Routes { file } => {
            let config = loader.defer_secrets().load(&file)?;
            print_routes(&config);
            Ok(())
        }
        Command::Asyncapi { file } => print_asyncapi(loader, &file),
        Command::GenerateConfig => {
            write_stdout(SHIPPED_CONFIG);
            Ok(())
        }
        Command::Services { command, redis } => services::run(command, &redis.settings()?).await,
        Command::ApiKeys { command, redis } => auth::api_keys(command, &redis.settings()?).await,
        Command::Token {
            config,
            sub,
            scopes,
            roles,
            ttl,
        } => auth::token(&config, &sub, &scopes, &roles, ttl),
        Command::DemoServices {
            instances,
            host,
            advertise_host,
            base_port,
            register,
            redis,
            ttl,
        } => {
            let demo = DemoOptions {
                instances,
                host,
                advertise_host,
                base_port,
            };
            let register_in = register.then(|| redis.settings()).transpose()?;
            run_demo(demo, register_in, ttl).await
        }
    }
}

/// `check-config`: the file validated (secrets need not be present), its
/// size, version, the secrets a worker will need and any warnings.
fn check_config(loader: config::Loader, file: &std::path::Path) -> anyhow::Result<()> {
    let config = loader.defer_secrets().load(file)?;
    println!(
        "{}: ok, {} routes, {} middleware, version {}",
        file.display(),
        config.gateway.routes.routes().len(),
        config.gateway.middleware.len(),
        config.gateway.version,
    );
    print_secrets(&config);
    for warning in &config.warnings {
        println!("warning: {warning}");
    }
    Ok(())
}

/// `asyncapi`: the routes' AsyncAPI 3.0 document (secrets need not be present).
fn print_asyncapi(loader: config::Loader, file: &std::path::Path) -> anyhow::Result<()> {
    let config = loader.defer_secrets().load(file)?;
    let document = crate::asyncapi::document_yaml(&config).map_err(anyhow::Error::msg)?;
    write_stdout(&document);
    Ok(())
}

/// The secrets a worker with this configuration reads, and whether each is here.
fn print_secrets(config: &config::WorkerConfig) {
    if config.secrets.is_empty() {
        println!("a worker needs no secrets");
        return;
    }
    println!("a worker needs:");
    for secret in &config.secrets {
        println!("  {secret}");
    }
}

fn print_routes(config: &config::WorkerConfig) {
    use std::fmt::Write;
    let mut out = format!(
        "{:<40} {:<4} {:<22} {:<36} MIDDLEWARE\n",
        "TOPIC", "QOS", "SERVICE", "TARGET"
    );
    for route in config.gateway.routes.routes() {
        let (service, target) = match &route.target {
            RouteTarget::Forward(forward) => (
                forward.service.as_str(),
                format!("{} {}", forward.method, forward.path),
            ),
            RouteTarget::Builtin(builtin) => ("-", format!("builtin {}", builtin.name())),
        };
        let _ = writeln!(
            out,
            "{:<40} {:<4} {:<22} {:<36} {}",
            route.pattern.to_string(),
            route.qos as u8,
            service,
            target,
            route.middleware.join(", "),
        );
    }
    out.push('\n');
    for filter in config.gateway.routes.filters() {
        let _ = writeln!(
            out,
            "subscribes {} (qos {})",
            filter.shared(&config.mqtt.share_group),
            filter.qos as u8
        );
    }
    write_stdout(&out);
}

/// Writes to stdout, quietly stopping when the reader has gone (`| head`).
fn write_stdout(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// A token cancelled on SIGTERM or SIGINT.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = terminate => tracing::info!("sigterm received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("sigint received"),
        }
        cancel.cancel();
    });
    token
}

/// How `demo-services` lays its instances out.
struct DemoOptions {
    instances: u16,
    host: IpAddr,
    advertise_host: Option<String>,
    base_port: u16,
}

async fn run_demo(
    options: DemoOptions,
    register_in: Option<RedisSettings>,
    ttl: Duration,
) -> anyhow::Result<()> {
    let DemoOptions {
        instances,
        host,
        advertise_host,
        base_port,
    } = options;
    let stop = shutdown_on_signal();
    let mut started = Vec::new();
    let mut port = base_port;
    for service in demo::DEMO_SERVICES {
        for index in 1..=instances {
            let instance_id = format!("{service}-{index}");
            let bind = SocketAddr::new(host, port);
            let mut instance =
                demo::start_instance(service, &instance_id, bind, stop.clone()).await?;
            instance.advertised_host.clone_from(&advertise_host);
            println!(
                "{:<22} {:<26} {}",
                instance.service,
                instance.instance_id,
                instance.url()
            );
            started.push(instance);
            if base_port != 0 {
                port = port
                    .checked_add(1)
                    .ok_or_else(|| anyhow::anyhow!("ran out of ports"))?;
            }
        }
    }
    match register_in {
        Some(redis) => services::register_and_heartbeat(&redis, &started, ttl, stop).await,
        None => {
            stop.cancelled().await;
            Ok(())
        }
    }
}
