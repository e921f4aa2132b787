//! The cache on a real store: freshness, stale reads, Python-compatible keys, stats, budgets.

// A test's unwrap is its assertion.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use ipfs_accelerate_common::cache::{
    python_json_dumps, Cache, CacheConfig, CacheKey, PutOptions, Stats, Validators,
};
use ipfs_accelerate_common::store::{Store, StoreOptions};
use serde_json::{json, Value};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn cache_with(dir: &tempfile::TempDir, config: CacheConfig) -> Cache {
    Cache::new(Store::open(dir.path(), StoreOptions::default()).await.unwrap(), config)
}

fn key(ns: &str, n: u32) -> CacheKey {
    CacheKey::canonical(ns, &json!({ "request": n })).unwrap()
}

fn ttl(ms: u64) -> PutOptions {
    PutOptions { ttl: Some(Duration::from_millis(ms)), ..PutOptions::default() }
}

#[test]
fn an_expired_entry_is_a_miss_and_a_stale_read_is_marked() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config =
            CacheConfig { stale_window: Duration::from_millis(400), ..CacheConfig::default() };
        let cache = cache_with(&dir, config).await;
        let k = key("github_api", 1);
        cache.put(&k, b"v1".to_vec(), ttl(100)).await.unwrap();
        let fresh = cache.get(&k).await.unwrap().unwrap();
        assert_eq!(fresh.value, b"v1");
        assert!(!fresh.stale);

        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(cache.get(&k).await.unwrap(), None, "expired is never a fresh hit");
        let stale = cache.get_stale_ok(&k).await.unwrap().unwrap();
        assert!(stale.stale);
        assert!(stale.age >= Duration::from_millis(100), "{:?}", stale.age);
        assert_eq!(stale.value, b"v1");

        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(cache.get_stale_ok(&k).await.unwrap(), None, "past the stale window");

        let stats = cache.stats(Some("github_api")).await.unwrap();
        assert_eq!((stats.hits, stats.misses, stats.stale_hits), (1, 2, 1));
    });
}

#[test]
fn canonical_keys_ignore_field_order_and_namespaces_are_separate() {
    let a = CacheKey::canonical("llm", &json!({"b": 1, "a": [1.0, "x"]})).unwrap();
    let b = CacheKey::canonical("llm", &json!({"a": [1, "x"], "b": 1})).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.key(), r#"{"a":[1,"x"],"b":1}"#);
    assert_ne!(a, CacheKey::canonical("hf_hub", &json!({"b": 1, "a": [1, "x"]})).unwrap());
    assert!(CacheKey::canonical("a/b", &json!({})).is_err());
    assert!(CacheKey::raw("llm", "").is_err());
}

#[test]
fn python_compatible_keys_equal_the_fixtures_and_live_python3() {
    let fixtures: Value = serde_json::from_str(tests::PYTHON_CACHE_KEYS).unwrap();
    for v in fixtures["vectors"].as_array().unwrap() {
        let key = CacheKey::python(
            "llm",
            v["operation"].as_str().unwrap(),
            v["args"].as_array().unwrap(),
            v["kwargs"].as_object().unwrap(),
        )
        .unwrap();
        let object = json!({"operation": v["operation"], "args": v["args"], "kwargs": v["kwargs"]});
        assert_eq!(python_json_dumps(&object), v["json"].as_str().unwrap());
        assert_eq!(key.key(), v["cid"].as_str().unwrap());
    }

    // The same inputs and a few more, through the machine's own python3.
    let mut inputs: Vec<Value> = fixtures["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| json!([v["operation"], v["args"], v["kwargs"]]))
        .collect();
    inputs.push(json!(["x", [0.1, 1.5e-300, 123456789.0, -0.0, "\u{7f}\u{1}\u{10ffff}"], {"": {"nested": [true, false]}}]));
    inputs.push(json!(["y", [], {"big": 18446744073709551615u64, "neg": -9223372036854775808i64}]));
    let script = r#"
import json, hashlib, base64, sys
for line in sys.stdin:
    op, args, kwargs = json.loads(line)
    text = json.dumps({"operation": op, "args": args, "kwargs": kwargs}, sort_keys=True)
    d = bytes([1, 0x55, 0x12, 0x20]) + hashlib.sha256(text.encode()).digest()
    print("b" + base64.b32encode(d).decode().lower().rstrip("="))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: String = inputs.iter().map(|i| format!("{i}\n")).collect();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), lines.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let expected: Vec<String> =
        String::from_utf8(output.stdout).unwrap().lines().map(str::to_string).collect();
    for (input, expected) in inputs.iter().zip(&expected) {
        let key = CacheKey::python(
            "ns",
            input[0].as_str().unwrap(),
            input[1].as_array().unwrap(),
            input[2].as_object().unwrap(),
        )
        .unwrap();
        assert_eq!(key.key(), expected, "{input}");
    }
}

#[test]
fn entries_are_shared_through_the_store_and_validators_survive() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let k = key("github_api", 7);
        {
            let cache = cache_with(&dir, CacheConfig::default()).await;
            let validators = Validators {
                etag: Some("\"abc\"".into()),
                last_modified: Some("Tue, 24 Nov 2026 10:00:00 GMT".into()),
            };
            cache
                .put(
                    &k,
                    b"{\"repos\":[]}".to_vec(),
                    PutOptions { ttl: Some(Duration::from_secs(60)), validators },
                )
                .await
                .unwrap();
            cache.flush_stats().await.unwrap();
        }
        // A second cache over the same store directory (as another process would open it).
        let other = cache_with(&dir, CacheConfig::default()).await;
        let hit = other.get(&k).await.unwrap().unwrap();
        assert_eq!(hit.value, b"{\"repos\":[]}");
        assert_eq!(hit.validators.etag.as_deref(), Some("\"abc\""));
        assert!(other.refresh(&k, Some(Duration::from_secs(120))).await.unwrap());
        let listed = other.list(Some("github_api")).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].ttl_secs, 120);
        assert!(!other.refresh(&key("github_api", 8), None).await.unwrap());
    });
}

#[test]
fn stats_keep_their_schema_across_clear() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache_with(&dir, CacheConfig::default()).await;
        for n in 0..5 {
            cache.put(&key("llm", n), vec![n as u8; 100], PutOptions::default()).await.unwrap();
        }
        cache.put(&key("hf_hub", 0), vec![0; 10], PutOptions::default()).await.unwrap();
        cache.get(&key("llm", 0)).await.unwrap().unwrap();
        cache.get(&key("llm", 99)).await.unwrap();
        let before = cache.stats(None).await.unwrap();
        assert_eq!(
            before,
            Stats { hits: 1, misses: 1, stale_hits: 0, evictions: 0, entries: 6, bytes: 510 }
        );

        assert_eq!(cache.clear(Some("llm")).await.unwrap(), 5);
        assert_eq!(
            cache.stats(Some("llm")).await.unwrap(),
            Stats { hits: 1, misses: 1, ..Stats::default() }
        );
        assert_eq!(
            cache.get(&key("llm", 0)).await.unwrap(),
            None,
            "cleared entries are gone from memory too"
        );
        assert!(
            cache.get(&key("hf_hub", 0)).await.unwrap().is_some(),
            "other namespaces are untouched"
        );
        cache.clear(None).await.unwrap();
        let after = serde_json::to_value(cache.stats(None).await.unwrap()).unwrap();
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&after), keys(&serde_json::to_value(before).unwrap()));
    });
}

#[test]
fn a_value_the_store_evicted_is_a_miss_counted_as_an_eviction() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
        // No memory tier, so the read goes to the store.
        let cache =
            Cache::new(store.clone(), CacheConfig { memory_bytes: 0, ..CacheConfig::default() });
        let k = key("hardware", 1);
        cache.put(&k, b"probe".to_vec(), PutOptions::default()).await.unwrap();
        store.gc().await.unwrap(); // cache values are unpinned content
        assert_eq!(cache.get(&k).await.unwrap(), None);
        let stats = cache.stats(Some("hardware")).await.unwrap();
        assert_eq!((stats.evictions, stats.entries), (1, 0));
    });
}

#[test]
fn the_memory_tier_stays_within_its_byte_budget() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let cache =
            cache_with(&dir, CacheConfig { memory_bytes: 64 * 1024, ..CacheConfig::default() })
                .await;
        for n in 0..64 {
            cache.put(&key("llm", n), vec![n as u8; 4096], PutOptions::default()).await.unwrap();
        }
        assert!(cache.memory_usage() <= 64 * 1024, "{}", cache.memory_usage());
        // Everything is still served (from the store) and verified.
        for n in 0..64 {
            assert_eq!(
                cache.get(&key("llm", n)).await.unwrap().unwrap().value,
                vec![n as u8; 4096]
            );
        }
    });
}
