//! `routemq api-keys …` and `routemq token`: credentials for the auth middleware.

use std::path::Path;
use std::time::Duration;

use clap::Subcommand;
use fred::prelude::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use routemq_gateway::middleware::{ApiKeyRecord, ApiKeyStore};
use routemq_gateway::redis::RedisSettings;
use serde_json::json;

use super::services::client;
use crate::config;

#[derive(Subcommand)]
pub enum ApiKeysCommand {
    /// Create a key; it is printed once and stored only as its SHA-256.
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated scopes the key grants.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Comma-separated roles the key grants.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// List keys (ids and names; the keys themselves are not stored).
    List,
    /// Revoke a key by id; workers stop accepting it within one refresh interval.
    Revoke { id: String },
}

pub async fn api_keys(command: ApiKeysCommand, settings: &RedisSettings) -> anyhow::Result<()> {
    let redis = client(settings).await?;
    let store = ApiKeyStore::new(&redis);
    match command {
        ApiKeysCommand::Create {
            name,
            scopes,
            roles,
        } => {
            let (key, record) = store.create(&name, &scopes, &roles).await?;
            println!("id:  {}\nkey: {key}", record.id);
            eprintln!("store the key now: it cannot be shown again");
        }
        ApiKeysCommand::List => {
            let mut records: Vec<ApiKeyRecord> = store.records().await?.into_values().collect();
            records.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            println!("{:<14} {:<24} {:<30} ROLES", "ID", "NAME", "SCOPES");
            for record in records {
                println!(
                    "{:<14} {:<24} {:<30} {}",
                    record.id,
                    record.name,
                    record.scopes.join(","),
                    record.roles.join(",")
                );
            }
        }
        ApiKeysCommand::Revoke { id } => {
            if !store.revoke(&id).await? {
                anyhow::bail!("no API key with id `{id}`");
            }
            println!("revoked {id}");
        }
    }
    redis.quit().await.ok();
    Ok(())
}

/// Mints an HS256 token with the secret, issuer and audience of a config file.
pub fn token(
    config_file: &Path,
    subject: &str,
    scopes: &[String],
    roles: &[String],
    ttl: Duration,
) -> anyhow::Result<()> {
    // Only the JWT secret matters here, not the broker's or Redis's passwords.
    let config = config::Loader::default()
        .defer_secrets()
        .load(config_file)?;
    if let Some(secret) = config
        .missing_secrets()
        .find(|secret| secret.setting.starts_with("auth.jwt"))
    {
        anyhow::bail!("minting a token needs {secret}");
    }
    let jwt = config
        .gateway
        .auth
        .jwt
        .ok_or_else(|| anyhow::anyhow!("{}: no [auth.jwt]", config_file.display()))?;
    let secret = jwt.keys.hs256_secret.ok_or_else(|| {
        anyhow::anyhow!("tokens can only be minted with an HS256 secret (hs256_secret_env or hs256_secret_file)")
    })?;
    let now = routemq_gateway::unix_time().as_secs();
    let mut claims = json!({
        "sub": subject,
        "iat": now,
        "exp": now + ttl.as_secs(),
        "roles": roles,
    });
    if !scopes.is_empty() {
        claims["scope"] = json!(scopes.join(" "));
    }
    if let Some(issuer) = jwt.issuers.first() {
        claims["iss"] = json!(issuer);
    }
    if let Some(audience) = jwt.audiences.first() {
        claims["aud"] = json!(audience);
    }
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&secret),
    )?;
    println!("{token}");
    Ok(())
}
