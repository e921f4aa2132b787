//! The response cache: deterministic answers kept in the shared [`Cache`] (namespace `llm`),
//! so every worker sharing a store shares them.
//!
//! A key is the CID of the RFC 8785 canonical JSON of the operation, the target's deployments
//! (protocol, base URL, model — so a changed configuration misses) and the request. What is
//! cached: chats at temperature 0 or with the cache asked for, embeddings and rerankings
//! always, model lists for five minutes; never when the caller says no.
//!
//! The cache only ever saves a call: a store that cannot be read or written is logged and the
//! call goes to the server, whose answer is returned as it is.

use std::time::Duration;

use ipfs_accelerate_common::cache::{Cache, CacheKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::DeploymentConfig;

/// The namespace answers live in.
pub const NAMESPACE: &str = "llm";
/// How long a model list is reused.
pub const MODELS_TTL: Duration = Duration::from_secs(300);

/// A cached answer and the deployment that gave it.
#[derive(Serialize, Deserialize)]
pub(crate) struct Entry<T> {
    pub deployment: String,
    pub value: T,
}

/// The key of `operation` with `request` on the deployments `members`.
pub(crate) fn key(
    operation: &str,
    members: &[&DeploymentConfig],
    request: &impl Serialize,
) -> Option<CacheKey> {
    let mut providers: Vec<_> = members
        .iter()
        .map(|d| json!({ "kind": d.kind, "base_url": d.base_url, "model": d.model }))
        .collect();
    providers.sort_by_key(|p| p.to_string());
    let request = serde_json::to_value(request)
        .inspect_err(|e| tracing::warn!(error = %e, "request not serialisable; not caching"))
        .ok()?;
    let identity = json!({ "operation": operation, "providers": providers, "request": request });
    CacheKey::content(NAMESPACE, &identity)
        .inspect_err(|e| tracing::warn!(error = %e, "request not canonicalisable; not caching"))
        .ok()
}

/// The entry under `key`, if fresh and readable (a store or decode failure is a warned miss).
pub(crate) async fn get<T: DeserializeOwned>(cache: &Cache, key: &CacheKey) -> Option<Entry<T>> {
    cache
        .get_json(key)
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "response cache unreadable; asking the server"))
        .ok()
        .flatten()
}

/// Keeps `value` from `deployment` under `key` (a store failure is warned; the answer stands).
pub(crate) async fn put<T: Serialize>(
    cache: &Cache,
    key: &CacheKey,
    deployment: &str,
    value: &T,
    ttl: Option<Duration>,
) {
    let entry = Entry { deployment: deployment.to_string(), value };
    if let Err(e) = cache.put_json(key, &entry, ttl).await {
        tracing::warn!(error = %e, "response cache not writable; answer not cached");
    }
}
