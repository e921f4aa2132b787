//! A TTL + LRU cache of values kept in the content-addressed store.
//!
//! Values are unpinned blobs in the CAS (so the store's budget and GC may evict them, and a
//! value evicted there is simply a miss here); the index maps `namespace/key` → (CID, stored
//! at, TTL, validators, size, last access) in the store's database, so every process sharing a
//! store shares the cache. A `moka` tier with a byte budget sits in front.
//!
//! Freshness is strict: an entry past its TTL is never a hit from [`Cache::get`].
//! [`Cache::get_stale_ok`] also returns entries within the stale window after expiry, marked
//! stale with their age, for callers that would rather serve old data than none (a rate-limited
//! API). ETag / Last-Modified validators are kept for revalidation; [`Cache::refresh`] renews
//! an entry after a `304 Not Modified`.
//!
//! The memory tier belongs to one process: a removal or refresh made by another process is
//! seen here once the memory copy's own TTL runs out (removals and refreshes made through this
//! `Cache` take effect at once). Hit/miss counters are kept in memory and added to the store's
//! totals by [`Cache::stats`] and [`Cache::flush_stats`].
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::time::Duration;
//! use ipfs_accelerate_common::cache::{Cache, CacheConfig, CacheKey, PutOptions};
//! use ipfs_accelerate_common::store::{Store, StoreOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path(), StoreOptions::default()).await?;
//! let cache = Cache::new(store, CacheConfig::default());
//! let key = CacheKey::canonical("llm", &serde_json::json!({"prompt": "hi", "model": "m"}))?;
//! cache.put(&key, b"hello".to_vec(), PutOptions { ttl: Some(Duration::from_secs(60)), ..PutOptions::default() }).await?;
//! assert_eq!(cache.get(&key).await?.unwrap().value, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod key;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cid::Cid;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

pub use key::{python_json_dumps, CacheKey};

use crate::store::{AddOptions, Store};
use crate::{Error, Result};

/// Cache settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Bytes of values the in-memory tier may hold.
    pub memory_bytes: u64,
    /// TTL of entries in a namespace when `put` names none.
    pub namespace_ttls: HashMap<String, Duration>,
    /// TTL for namespaces not in `namespace_ttls`.
    pub default_ttl: Duration,
    /// How long after expiry [`Cache::get_stale_ok`] still returns an entry.
    pub stale_window: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        let ttls =
            [("github_api", 300), ("llm", 24 * 3600), ("hf_hub", 3600), ("hardware", 24 * 3600)];
        CacheConfig {
            memory_bytes: 64 << 20,
            namespace_ttls: ttls
                .into_iter()
                .map(|(ns, s)| (ns.to_string(), Duration::from_secs(s)))
                .collect(),
            default_ttl: Duration::from_secs(300),
            stale_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// HTTP validators stored with an entry for revalidation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Validators {
    /// The `ETag` the origin sent.
    pub etag: Option<String>,
    /// The `Last-Modified` the origin sent.
    pub last_modified: Option<String>,
}

/// Options for [`Cache::put`].
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// This entry's TTL; the namespace's when `None`.
    pub ttl: Option<Duration>,
    /// Validators for revalidation.
    pub validators: Validators,
}

/// A value read from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedValue {
    /// The value's bytes (verified against `cid`).
    pub value: Vec<u8>,
    /// Where the value lives in the store.
    pub cid: Cid,
    /// Time since it was stored or last refreshed.
    pub age: Duration,
    /// True when past its TTL (only from [`Cache::get_stale_ok`]).
    pub stale: bool,
    /// Validators for revalidation.
    pub validators: Validators,
}

/// One index entry, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryInfo {
    /// Namespace.
    pub namespace: String,
    /// Key within the namespace.
    pub key: String,
    /// The value's CID.
    pub cid: String,
    /// Value size in bytes.
    pub size: u64,
    /// Seconds since stored or refreshed.
    pub age_secs: u64,
    /// TTL in seconds.
    pub ttl_secs: u64,
    /// Whether past its TTL.
    pub expired: bool,
    /// Validators.
    pub validators: Validators,
}

/// Counters and totals; the schema is the same before and after [`Cache::clear`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Fresh hits.
    pub hits: u64,
    /// Misses (absent, expired, or evicted from the store).
    pub misses: u64,
    /// Stale entries served by `get_stale_ok`.
    pub stale_hits: u64,
    /// Entries whose value the store had evicted, found on read and dropped.
    pub evictions: u64,
    /// Entries in the index.
    pub entries: u64,
    /// Bytes of values in the index.
    pub bytes: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stale_hits: AtomicU64,
    evictions: AtomicU64,
}

/// `(namespace, key)`.
type MemoryKey = (String, String);

/// An index row and its value, as the memory tier holds them.
struct MemoryEntry {
    row: Row,
    value: Vec<u8>,
}

#[derive(Clone)]
struct Row {
    cid: Cid,
    stored_at_ms: i64,
    ttl_ms: i64,
    validators: Validators,
}

/// The cache. Cheap to clone; clones share the memory tier and counters.
#[derive(Clone)]
pub struct Cache {
    store: Store,
    config: Arc<CacheConfig>,
    memory: moka::sync::Cache<MemoryKey, Arc<MemoryEntry>>,
    counters: Arc<Mutex<HashMap<String, Arc<Counters>>>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("store", &self.store.root()).finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Cache {
    /// A cache over `store`.
    pub fn new(store: Store, config: CacheConfig) -> Cache {
        let memory = moka::sync::Cache::builder()
            .max_capacity(config.memory_bytes)
            .weigher(|_, entry: &Arc<MemoryEntry>| {
                u32::try_from(entry.value.len()).unwrap_or(u32::MAX)
            })
            .support_invalidation_closures()
            .build();
        Cache { store, config: Arc::new(config), memory, counters: Arc::default() }
    }

    fn ttl_for(&self, namespace: &str) -> Duration {
        self.config.namespace_ttls.get(namespace).copied().unwrap_or(self.config.default_ttl)
    }

    fn counters(&self, namespace: &str) -> Arc<Counters> {
        let mut map = self.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(map.entry(namespace.to_string()).or_default())
    }

    /// Bytes of values held by the memory tier now (after pending evictions run).
    pub fn memory_usage(&self) -> u64 {
        self.memory.run_pending_tasks();
        self.memory.weighted_size()
    }

    /// Stores `value` under `key`, replacing any previous value; returns its CID.
    pub async fn put(&self, key: &CacheKey, value: Vec<u8>, options: PutOptions) -> Result<Cid> {
        let ttl = options.ttl.unwrap_or_else(|| self.ttl_for(key.namespace()));
        let size = value.len() as u64;
        let add = AddOptions { cache_only: true, ..AddOptions::default() };
        let added = self.store.add_bytes(value.clone(), add).await?;
        let row = Row {
            cid: added.root,
            stored_at_ms: now_ms(),
            ttl_ms: ttl.as_millis().min(i64::MAX as u128) as i64,
            validators: options.validators,
        };
        let (ns, k, r) = (key.namespace().to_string(), key.key().to_string(), row.clone());
        self.store
            .run(move |engine| {
                engine.write(|tx| {
                    tx.execute(
                        "INSERT INTO cache_entries (namespace, key, cid, stored_at, ttl, etag, last_modified, size, last_access)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?4)
                         ON CONFLICT (namespace, key) DO UPDATE SET cid = excluded.cid, stored_at = excluded.stored_at,
                             ttl = excluded.ttl, etag = excluded.etag, last_modified = excluded.last_modified,
                             size = excluded.size, last_access = excluded.last_access",
                        params![ns, k, r.cid.to_string(), r.stored_at_ms, r.ttl_ms, r.validators.etag, r.validators.last_modified, size as i64],
                    )
                    .map_err(|e| engine.db_err(e))?;
                    Ok(())
                })
            })
            .await?;
        self.memory.insert(
            (key.namespace().to_string(), key.key().to_string()),
            Arc::new(MemoryEntry { row, value }),
        );
        Ok(added.root)
    }

    /// Stores `value` as JSON under `key` (for typed records other crates keep here).
    pub async fn put_json<T: Serialize>(
        &self,
        key: &CacheKey,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<Cid> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::CacheValue {
            namespace: key.namespace().to_string(),
            key: key.key().to_string(),
            expected: std::any::type_name::<T>(),
            reason: e.to_string(),
        })?;
        self.put(key, bytes, PutOptions { ttl, ..PutOptions::default() }).await
    }

    /// The fresh JSON value under `key` as a `T`; a value that does not decode as one is
    /// [`Error::CacheValue`], never a default.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &CacheKey,
    ) -> Result<Option<T>> {
        let Some(entry) = self.get(key).await? else { return Ok(None) };
        serde_json::from_slice(&entry.value).map(Some).map_err(|e| Error::CacheValue {
            namespace: key.namespace().to_string(),
            key: key.key().to_string(),
            expected: std::any::type_name::<T>(),
            reason: e.to_string(),
        })
    }

    /// The value under `key` if it is fresh; an expired entry is a miss.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<CachedValue>> {
        self.lookup(key, false).await
    }

    /// Like [`Cache::get`], but an entry expired less than the stale window ago is returned too,
    /// with `stale: true` and its age.
    pub async fn get_stale_ok(&self, key: &CacheKey) -> Result<Option<CachedValue>> {
        self.lookup(key, true).await
    }

    async fn lookup(&self, key: &CacheKey, stale_ok: bool) -> Result<Option<CachedValue>> {
        let counters = self.counters(key.namespace());
        let memory_key = (key.namespace().to_string(), key.key().to_string());
        let now = now_ms();
        let (row, value) = match self.memory.get(&memory_key) {
            Some(entry) if now < entry.row.stored_at_ms.saturating_add(entry.row.ttl_ms) => {
                (entry.row.clone(), entry.value.clone())
            }
            _ => {
                let Some(row) = self.read_row(key).await? else {
                    counters.misses.fetch_add(1, Ordering::Relaxed);
                    return Ok(None);
                };
                let value = match self.store.cat_bytes(&row.cid).await {
                    Ok(value) => value,
                    Err(Error::NotFound { .. }) => {
                        // The store evicted the value: the entry is gone.
                        self.forget(key).await?;
                        counters.evictions.fetch_add(1, Ordering::Relaxed);
                        counters.misses.fetch_add(1, Ordering::Relaxed);
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                };
                self.memory.insert(
                    memory_key,
                    Arc::new(MemoryEntry { row: row.clone(), value: value.clone() }),
                );
                (row, value)
            }
        };
        let age_ms = now.saturating_sub(row.stored_at_ms).max(0);
        let expired = age_ms >= row.ttl_ms;
        let stale_limit = row
            .ttl_ms
            .saturating_add(self.config.stale_window.as_millis().min(i64::MAX as u128) as i64);
        if expired && !(stale_ok && age_ms < stale_limit) {
            counters.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        if expired {
            counters.stale_hits.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.hits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Some(CachedValue {
            value,
            cid: row.cid,
            age: Duration::from_millis(age_ms as u64),
            stale: expired,
            validators: row.validators,
        }))
    }

    async fn read_row(&self, key: &CacheKey) -> Result<Option<Row>> {
        let (ns, k) = (key.namespace().to_string(), key.key().to_string());
        self.store
            .run(move |engine| {
                let found = engine.read(|conn| {
                    conn.prepare_cached(
                        "SELECT cid, stored_at, ttl, etag, last_modified FROM cache_entries WHERE namespace = ?1 AND key = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![ns, k], |r| {
                            let cid: String = r.get(0)?;
                            let validators = Validators { etag: r.get(3)?, last_modified: r.get(4)? };
                            Ok((cid, r.get(1)?, r.get(2)?, validators))
                        })
                        .optional()
                    })
                    .map_err(|e| engine.db_err(e))
                })?;
                found
                    .map(|(cid, stored_at_ms, ttl_ms, validators)| {
                        Ok(Row { cid: crate::cid::parse(&cid)?, stored_at_ms, ttl_ms, validators })
                    })
                    .transpose()
            })
            .await
    }

    /// Renews `key` as if just stored (after the origin answered `304 Not Modified`), with a new
    /// TTL if given. Returns false when there is no such entry.
    pub async fn refresh(&self, key: &CacheKey, ttl: Option<Duration>) -> Result<bool> {
        let ttl_ms = ttl.map(|t| t.as_millis().min(i64::MAX as u128) as i64);
        let (ns, k) = (key.namespace().to_string(), key.key().to_string());
        let now = now_ms();
        let updated = self
            .store
            .run(move |engine| {
                engine.write(|tx| {
                    tx.execute(
                        "UPDATE cache_entries SET stored_at = ?3, last_access = ?3, ttl = COALESCE(?4, ttl)
                         WHERE namespace = ?1 AND key = ?2",
                        params![ns, k, now, ttl_ms],
                    )
                    .map_err(|e| engine.db_err(e))
                })
            })
            .await?;
        self.memory.invalidate(&(key.namespace().to_string(), key.key().to_string()));
        Ok(updated > 0)
    }

    /// Removes `key`; returns whether it was there.
    pub async fn remove(&self, key: &CacheKey) -> Result<bool> {
        self.forget(key).await
    }

    async fn forget(&self, key: &CacheKey) -> Result<bool> {
        self.memory.invalidate(&(key.namespace().to_string(), key.key().to_string()));
        let (ns, k) = (key.namespace().to_string(), key.key().to_string());
        let removed = self
            .store
            .run(move |engine| {
                engine.write(|tx| {
                    tx.execute(
                        "DELETE FROM cache_entries WHERE namespace = ?1 AND key = ?2",
                        params![ns, k],
                    )
                    .map_err(|e| engine.db_err(e))
                })
            })
            .await?;
        Ok(removed > 0)
    }

    /// Removes every entry (in one namespace, or all); returns how many. Counters are kept.
    pub async fn clear(&self, namespace: Option<&str>) -> Result<u64> {
        let ns = namespace.map(str::to_string);
        let removed = self
            .store
            .run(move |engine| {
                engine.write(|tx| {
                    tx.execute(
                        "DELETE FROM cache_entries WHERE ?1 IS NULL OR namespace = ?1",
                        params![ns],
                    )
                    .map_err(|e| engine.db_err(e))
                })
            })
            .await?;
        match namespace {
            Some(ns) => {
                let ns = ns.to_string();
                self.memory
                    .invalidate_entries_if(move |(entry_ns, _), _| *entry_ns == ns)
                    .map_err(|e| Error::Task(format!("memory tier invalidation: {e}")))?;
            }
            None => self.memory.invalidate_all(),
        }
        Ok(removed as u64)
    }

    /// Index entries (in one namespace, or all), sorted.
    pub async fn list(&self, namespace: Option<&str>) -> Result<Vec<EntryInfo>> {
        let ns = namespace.map(str::to_string);
        let now = now_ms();
        self.store
            .run(move |engine| {
                engine.read(|conn| {
                    conn.prepare_cached(
                        "SELECT namespace, key, cid, size, stored_at, ttl, etag, last_modified FROM cache_entries
                         WHERE ?1 IS NULL OR namespace = ?1 ORDER BY namespace, key",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![ns], |r| {
                            let stored_at: i64 = r.get(4)?;
                            let ttl: i64 = r.get(5)?;
                            let age = now.saturating_sub(stored_at).max(0);
                            Ok(EntryInfo {
                                namespace: r.get(0)?,
                                key: r.get(1)?,
                                cid: r.get(2)?,
                                size: r.get::<_, i64>(3)? as u64,
                                age_secs: (age / 1000) as u64,
                                ttl_secs: (ttl / 1000) as u64,
                                expired: age >= ttl,
                                validators: Validators { etag: r.get(6)?, last_modified: r.get(7)? },
                            })
                        })?
                        .collect()
                    })
                    .map_err(|e| engine.db_err(e))
                })
            })
            .await
    }

    /// Counters of this process plus those persisted by earlier ones, and the index totals,
    /// for one namespace or all.
    pub async fn stats(&self, namespace: Option<&str>) -> Result<Stats> {
        self.flush_stats().await?;
        let ns = namespace.map(str::to_string);
        self.store
            .run(move |engine| {
                engine.read(|conn| {
                    let (hits, misses, stale_hits, evictions) = conn
                        .query_row(
                            "SELECT COALESCE(SUM(hits), 0), COALESCE(SUM(misses), 0), COALESCE(SUM(stale_hits), 0),
                                    COALESCE(SUM(evictions), 0) FROM cache_stats WHERE ?1 IS NULL OR namespace = ?1",
                            params![ns],
                            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?)),
                        )
                        .map_err(|e| engine.db_err(e))?;
                    let (entries, bytes) = conn
                        .query_row(
                            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM cache_entries WHERE ?1 IS NULL OR namespace = ?1",
                            params![ns],
                            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                        )
                        .map_err(|e| engine.db_err(e))?;
                    Ok(Stats {
                        hits: hits as u64,
                        misses: misses as u64,
                        stale_hits: stale_hits as u64,
                        evictions: evictions as u64,
                        entries: entries as u64,
                        bytes: bytes as u64,
                    })
                })
            })
            .await
    }

    /// Adds this process's counters to the persisted ones (so `cache stats` in another process
    /// sees them) and zeroes them here.
    pub async fn flush_stats(&self) -> Result<()> {
        let taken: Vec<(String, [u64; 4])> = {
            let map = self.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.iter()
                .map(|(ns, c)| {
                    let values = [
                        c.hits.swap(0, Ordering::Relaxed),
                        c.misses.swap(0, Ordering::Relaxed),
                        c.stale_hits.swap(0, Ordering::Relaxed),
                        c.evictions.swap(0, Ordering::Relaxed),
                    ];
                    (ns.clone(), values)
                })
                .filter(|(_, v)| v.iter().any(|&n| n > 0))
                .collect()
        };
        if taken.is_empty() {
            return Ok(());
        }
        self.store
            .run(move |engine| {
                engine.write(|tx| {
                    for (ns, [hits, misses, stale, evictions]) in &taken {
                        tx.execute(
                            "INSERT INTO cache_stats (namespace, hits, misses, stale_hits, evictions) VALUES (?1, ?2, ?3, ?4, ?5)
                             ON CONFLICT (namespace) DO UPDATE SET hits = hits + excluded.hits, misses = misses + excluded.misses,
                                 stale_hits = stale_hits + excluded.stale_hits, evictions = evictions + excluded.evictions",
                            params![ns, *hits as i64, *misses as i64, *stale as i64, *evictions as i64],
                        )
                        .map_err(|e| engine.db_err(e))?;
                    }
                    Ok(())
                })
            })
            .await
    }
}
