use tracing_subscriber::EnvFilter;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); JSON lines when
/// `ROUTEMQ_LOG_FORMAT=json`.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = std::env::var("ROUTEMQ_LOG_FORMAT").is_ok_and(|format| format == "json");
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    result.ok();
}
