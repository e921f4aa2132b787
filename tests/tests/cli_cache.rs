//! `ipfs-accelerate cache …` over entries a library user (another process) stored.

use std::time::Duration;

use ipfs_accelerate_common::cache::{Cache, CacheConfig, CacheKey, PutOptions};
use ipfs_accelerate_common::store::{Store, StoreOptions};
use predicates::prelude::*;
use serde_json::{json, Value};
use tests::Env;

/// Stores two entries the way a backend would, through the library, in the CLI's store.
fn populated() -> (Env, CacheKey) {
    let env = Env::new();
    let key = CacheKey::canonical("llm", &json!({"model": "m", "prompt": "hi"})).unwrap();
    let store_dir = env.home().join("data/store");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let cache = Cache::new(
            Store::open(&store_dir, StoreOptions::default()).await.unwrap(),
            CacheConfig::default(),
        );
        let long = PutOptions { ttl: Some(Duration::from_secs(3600)), ..PutOptions::default() };
        cache.put(&key, b"Hello!".to_vec(), long.clone()).await.unwrap();
        let gh = CacheKey::canonical("github_api", &json!({"path": "/repos"})).unwrap();
        cache.put(&gh, b"[]".to_vec(), long).await.unwrap();
    });
    (env, key)
}

#[test]
fn stats_ls_get_rm_clear() {
    let (env, key) = populated();
    let listed = env.json(&["cache", "ls"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let only_llm = env.json(&["cache", "ls", "--namespace", "llm"]);
    assert_eq!(only_llm[0]["key"], key.key());
    assert_eq!(only_llm[0]["expired"], false);

    env.cmd().args(["cache", "get", "llm", key.key()]).assert().success().stdout("Hello!");
    let hit = env.json(&["cache", "get", "llm", key.key()]);
    assert_eq!(hit["value"], "Hello!");
    assert_eq!(hit["stale"], false);
    env.cmd()
        .args(["cache", "get", "llm", "{\"nope\":1}"])
        .assert()
        .failure()
        .code(1)
        .stderr(predicate::str::contains("no fresh entry"));
    let miss = env.cmd().args(["--json", "cache", "get", "llm", "{\"nope\":1}"]).output().unwrap();
    assert_eq!(miss.status.code(), Some(1));
    assert_eq!(serde_json::from_slice::<Value>(&miss.stdout).unwrap()["hit"], false);

    let stats = env.json(&["cache", "stats"]);
    assert_eq!(
        (stats["hits"].as_u64(), stats["misses"].as_u64(), stats["entries"].as_u64()),
        (Some(2), Some(2), Some(2))
    );

    env.json(&["cache", "rm", "llm", key.key()]);
    env.cmd().args(["cache", "rm", "llm", key.key()]).assert().failure();
    assert_eq!(env.json(&["cache", "clear"])["removed"], 1);
    let after = env.json(&["cache", "stats"]);
    assert_eq!(after["entries"], 0);
    assert_eq!(after["hits"], 2, "counters survive clear");
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&after), keys(&stats));
}

#[test]
fn bad_namespaces_are_clear_errors() {
    let (env, _) = populated();
    let output = env.cmd().args(["--json", "cache", "get", "a/b", "k"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(body["error"]["kind"], "invalid_cache_key");
}
