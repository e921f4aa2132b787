//! The write pacer: content-creating calls (issues, comments) stay under GitHub's secondary
//! limits — at most 80 a minute and 500 an hour, at most one in flight per repository — and a
//! burst waits in a bounded queue instead of failing. Waiters on one repository go in arrival
//! order (a fair lock), so comments land in the order they were asked for.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The pacer's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
// A table that names some keys keeps the defaults of the rest.
#[serde(default, deny_unknown_fields)]
pub struct PacerConfig {
    /// Writes a minute.
    pub per_minute: u32,
    /// Writes an hour.
    pub per_hour: u32,
    /// Writes that may wait; one more is `QueueFull`.
    pub queue: usize,
}

impl Default for PacerConfig {
    fn default() -> Self {
        PacerConfig { per_minute: 80, per_hour: 500, queue: 256 }
    }
}

/// Paces writes. Cheap to share (`Arc`).
pub struct Pacer {
    per_minute: DefaultDirectRateLimiter,
    per_hour: DefaultDirectRateLimiter,
    capacity: usize,
    waiting: AtomicUsize,
    repos: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

/// Held while a write is in flight; dropping it lets the repository's next write go.
pub struct Permit {
    _repo: tokio::sync::OwnedMutexGuard<()>,
}

fn limit(n: u32) -> Result<NonZeroU32> {
    NonZeroU32::new(n).ok_or_else(|| Error::Config("pacer limits must be at least 1".into()))
}

impl Pacer {
    /// A pacer with `config`'s limits.
    pub fn new(config: PacerConfig) -> Result<Pacer> {
        Ok(Pacer {
            // Writes spread evenly within the minute (no burst); the hourly budget may be
            // spent at that pace until it runs out.
            per_minute: RateLimiter::direct(
                Quota::per_minute(limit(config.per_minute)?).allow_burst(NonZeroU32::MIN),
            ),
            per_hour: RateLimiter::direct(Quota::per_hour(limit(config.per_hour)?)),
            capacity: config.queue,
            waiting: AtomicUsize::new(0),
            repos: Mutex::default(),
        })
    }

    /// Waits for the right to write to `repo`.
    pub async fn acquire(&self, repo: &str) -> Result<Permit> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::QueueFull { capacity: self.capacity });
        }
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _waiting = Waiting(&self.waiting);
        let lock = {
            let mut repos = self.repos.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(repos.entry(repo.to_string()).or_default())
        };
        let guard = lock.lock_owned().await;
        self.per_hour.until_ready().await;
        self.per_minute.until_ready().await;
        Ok(Permit { _repo: guard })
    }
}
