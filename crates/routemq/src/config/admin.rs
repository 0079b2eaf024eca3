//! What the admin commands (`services`, `api-keys`, `demo-services
//! --register`) read from a worker's configuration: its `[redis]` section,
//! resolved exactly as a worker resolves it — `ROUTEMQ_REDIS_URL` over the
//! file's URL, `[redis.tls]` paths relative to the file, the password from
//! `password_env` or `password_file` — so a command reaches the Redis the
//! workers reach. Nothing else in the file is validated: an operator needs
//! no JWT secret to register a service.

use std::path::Path;

use routemq_gateway::redis::RedisSettings;

use super::bounds;
use super::middleware::Secrets;
use super::raw::RawConfig;
use super::sections::{redis_settings, Context};
use super::validate::{line_of, read, ConfigError};

/// The `[redis]` settings of the configuration file at `path`.
pub fn redis_of(path: &Path) -> Result<RedisSettings, ConfigError> {
    let (text, file) = read(path)?;
    redis_in(&text, &file, &|name| std::env::var(name).ok())
}

/// [`redis_of`] for configuration text; `env` looks up overrides and secrets.
pub fn redis_in(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RedisSettings, ConfigError> {
    let at = |line: Option<usize>, message: String| ConfigError {
        file: file.to_string(),
        line,
        message,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|error| {
        let line = error.span().map(|span| line_of(text, span.start));
        at(line, error.message().to_string())
    })?;
    bounds::check(&raw).map_err(|refused| {
        let line = bounds::span_of(text, &refused.key).map(|span| line_of(text, span.start));
        at(line, refused.message)
    })?;
    let mut secrets = Secrets::new(env, true);
    let mut warnings = Vec::new();
    let mut context = Context {
        env,
        secrets: &mut secrets,
        config_dir: Path::new(file).parent().unwrap_or(Path::new(".")),
        warnings: &mut warnings,
    };
    let redis = redis_settings(raw.redis, &mut context).map_err(|message| at(None, message))?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    Ok(redis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_redis_section_is_read_and_its_password_is_required() {
        let text = r#"
[redis]
url = "rediss://cache.example:6380"
username = "ops"
password_env = "TEST_REDIS_PASSWORD"

[auth.jwt]
hs256_secret_env = "NOT_SET_ANYWHERE"
"#;
        let env = |name: &str| (name == "TEST_REDIS_PASSWORD").then(|| "s3cret".to_string());
        let redis = redis_in(text, "gateway.toml", &env).expect("the JWT secret is not needed");
        assert_eq!(redis.url, "rediss://cache.example:6380");
        assert_eq!(redis.username.as_deref(), Some("ops"));
        assert_eq!(redis.password.as_deref(), Some("s3cret"));

        let error = redis_in(text, "gateway.toml", &|_| None).expect_err("no password");
        assert!(error.message.contains("TEST_REDIS_PASSWORD"), "{error}");

        let env = |name: &str| match name {
            "TEST_REDIS_PASSWORD" => Some("s3cret".to_string()),
            "ROUTEMQ_REDIS_URL" => Some("rediss://other:6380".to_string()),
            _ => None,
        };
        let redis = redis_in(text, "gateway.toml", &env).expect("valid");
        assert_eq!(redis.url, "rediss://other:6380", "as a worker resolves it");
    }
}
