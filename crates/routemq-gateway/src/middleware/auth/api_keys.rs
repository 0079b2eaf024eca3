//! API keys: stored in Redis under their SHA-256 (never in clear), mirrored
//! in every worker and reloaded when their version counter changes, so a
//! lookup costs no Redis round trip and a revocation takes effect within one
//! refresh interval. [`ApiKeyStore`] is the one way to the stored set.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::redis::{keys, scripts};

/// What a key grants, stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Short public id: the first 12 hex digits of the key's hash.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Unix seconds.
    pub created_at: u64,
}

/// SHA-256 of a key, lower-case hex. Keys are long random strings, so a
/// fast unsalted hash is enough: there is nothing to brute-force.
pub fn hash_api_key(key: &str) -> String {
    crate::digest::hex(&Sha256::digest(key.as_bytes()))
}

#[derive(Default)]
struct Loaded {
    version: Option<i64>,
    by_hash: Arc<HashMap<String, ApiKeyRecord>>,
}

/// The worker's copy of the API key set.
#[derive(Default)]
pub struct ApiKeys {
    loaded: RwLock<Loaded>,
}

impl ApiKeys {
    pub fn lookup(&self, key: &str) -> Option<ApiKeyRecord> {
        let hash = hash_api_key(key);
        let loaded = self.loaded.read();
        loaded.by_hash.get(&hash).cloned()
    }

    /// Reloads the set if its version changed; returns whether it did.
    pub async fn refresh(&self, redis: &Client) -> FredResult<bool> {
        // No counter yet (no key was ever written) reads as version 0, so an
        // empty store is not re-read at every refresh.
        let version: i64 = redis
            .get::<Option<i64>, _>(keys::API_KEYS_VERSION)
            .await?
            .unwrap_or(0);
        if self.loaded.read().version == Some(version) {
            return Ok(false);
        }
        let by_hash = ApiKeyStore::new(redis).records().await?;
        let mut loaded = self.loaded.write();
        *loaded = Loaded {
            version: Some(version),
            by_hash: Arc::new(by_hash),
        };
        Ok(true)
    }

    /// Refreshes every `interval` until `stop`; keeps the last set while Redis is down.
    pub async fn run_refresh(&self, redis: Client, interval: Duration, stop: CancellationToken) {
        let mut every = crate::Every::new(interval, stop);
        while every.tick().await {
            if let Err(error) = self.refresh(&redis).await {
                tracing::warn!(%error, "api key refresh failed, keeping the last set");
            }
        }
    }
}

/// The API keys in Redis, as one store: the CLI creates, lists and revokes
/// through it, and workers mirror it ([`ApiKeys::refresh`]). Every change
/// bumps the version counter workers watch.
pub struct ApiKeyStore<'a> {
    redis: &'a Client,
}

impl<'a> ApiKeyStore<'a> {
    pub fn new(redis: &'a Client) -> ApiKeyStore<'a> {
        ApiKeyStore { redis }
    }

    /// Creates a key and returns it with its record. The key itself is
    /// returned only here: the store keeps its hash.
    pub async fn create(
        &self,
        name: &str,
        scopes: &[String],
        roles: &[String],
    ) -> FredResult<(String, ApiKeyRecord)> {
        let key = format!(
            "rmq_{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let hash = hash_api_key(&key);
        let record = ApiKeyRecord {
            id: hash[..12].to_string(),
            name: name.to_string(),
            scopes: scopes.to_vec(),
            roles: roles.to_vec(),
            created_at: crate::clock::unix_time().as_secs(),
        };
        let encoded = serde_json::to_string(&record)
            .map_err(|error| Error::new(ErrorKind::Parse, error.to_string()))?;
        scripts::put_api_key(self.redis, &hash, &encoded).await?;
        Ok((key, record))
    }

    /// Every readable record, by the key's hash; an unreadable one is skipped.
    pub async fn records(&self) -> FredResult<HashMap<String, ApiKeyRecord>> {
        let raw: HashMap<String, String> = self.redis.hgetall(keys::API_KEYS).await?;
        Ok(raw
            .into_iter()
            .filter_map(|(hash, record)| match serde_json::from_str(&record) {
                Ok(record) => Some((hash, record)),
                Err(error) => {
                    tracing::warn!(%error, "unreadable api key record skipped");
                    None
                }
            })
            .collect())
    }

    /// Revokes the key with public id `id`; `false` when there is none.
    pub async fn revoke(&self, id: &str) -> FredResult<bool> {
        let records = self.records().await?;
        let Some(hash) = records
            .iter()
            .find_map(|(hash, record)| (record.id == id).then_some(hash))
        else {
            return Ok(false);
        };
        scripts::revoke_api_key(self.redis, hash).await
    }
}
