//! Per-deployment figures — calls, failures, cache hits, the overhead of recent calls, the
//! last error — kept in memory by the router and accumulated in the shared [`Cache`]
//! (namespace `backends`) so `backends stats` reports over every process that used the store.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use ipfs_accelerate_common::cache::{Cache, CacheKey};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Overhead samples kept per deployment.
const SAMPLES: usize = 4096;
/// Where the accumulated figures live.
const NAMESPACE: &str = "backends";
const KEY: &str = "stats";
/// Figures are kept this long after the last update.
const KEEP: Duration = Duration::from_secs(365 * 24 * 3600);

/// One deployment's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Calls answered by the server.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Calls answered from the response cache.
    pub cache_hits: u64,
    /// Overhead of recent calls in microseconds, oldest first.
    pub overhead_us: VecDeque<u64>,
    /// The most recent failure.
    pub last_error: Option<String>,
}

impl Figures {
    /// Records one call's overhead.
    pub fn record_overhead(&mut self, overhead: Duration) {
        if self.overhead_us.len() >= SAMPLES {
            self.overhead_us.pop_front();
        }
        self.overhead_us.push_back(u64::try_from(overhead.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds `newer` (figures taken later) to these.
    pub fn merge(&mut self, newer: Figures) {
        self.calls += newer.calls;
        self.failures += newer.failures;
        self.cache_hits += newer.cache_hits;
        self.overhead_us.extend(newer.overhead_us);
        let excess = self.overhead_us.len().saturating_sub(SAMPLES);
        self.overhead_us.drain(..excess);
        if newer.last_error.is_some() {
            self.last_error = newer.last_error;
        }
    }

    /// The `p` quantile (0–1) of the recent overheads, nearest rank.
    pub fn overhead_percentile(&self, p: f64) -> Option<u64> {
        let mut sorted: Vec<u64> = self.overhead_us.iter().copied().collect();
        sorted.sort_unstable();
        let rank = ((sorted.len() as f64 - 1.0) * p.clamp(0.0, 1.0)).round() as usize;
        sorted.get(rank).copied()
    }
}

fn key() -> Result<CacheKey> {
    Ok(CacheKey::raw(NAMESPACE, KEY)?)
}

/// The figures accumulated in `cache`, by deployment name.
pub async fn load(cache: &Cache) -> Result<BTreeMap<String, Figures>> {
    match cache.get_json(&key()?).await {
        Ok(figures) => Ok(figures.unwrap_or_default()),
        // Written by another schema version: counting starts again, saying so, rather than
        // every call failing.
        Err(e @ ipfs_accelerate_common::Error::CacheValue { .. }) => {
            tracing::warn!(error = %e, "stored backend stats unreadable; starting afresh");
            Ok(BTreeMap::new())
        }
        Err(e) => Err(e.into()),
    }
}

/// Adds `taken` to the figures in `cache`; returns the totals.
pub async fn accumulate(
    cache: &Cache,
    taken: BTreeMap<String, Figures>,
) -> Result<BTreeMap<String, Figures>> {
    let mut totals = load(cache).await?;
    for (name, figures) in taken {
        totals.entry(name).or_default().merge(figures);
    }
    cache.put_json(&key()?, &totals, Some(KEEP)).await?;
    Ok(totals)
}
