//! Remote tiers: the same verified blocks, kept by an IPFS node (Kubo's RPC API) or an
//! S3-compatible object store, so a fleet shares content by CID.
//!
//! A tier is a [`Remote`]: a [`Blockstore`] (get, put, has, every block verified against its
//! CID before it is returned) plus delete, pins and a reachability probe. Which tiers are in use
//! is decided once, from the configuration, by [`select`]; the decision and its reasons are
//! [`TierState`]s that `storage status` prints. [`crate::store::TieredStore`] puts the local
//! store in front of them.

pub mod kubo;
pub mod s3;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cid::Cid;
use serde::Serialize;

use crate::cid::Block;
use crate::config::{Config, Source, ENV_CI, ENV_IPFS_API, ENV_REMOTE_IN_CI, ENV_S3_URL};
use crate::Result;

pub use kubo::{Kubo, KuboClient};
pub use s3::S3;

/// A boxed future: the trait objects below are used as `dyn`, so their methods cannot be
/// `async fn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Somewhere verified blocks can be read from and written to: the local store, a remote tier,
/// another worker's store.
///
/// Deletion is deliberately not here: locally only garbage collection removes blocks (it alone
/// knows what is pinned, named or being written); remotely it is [`Remote::delete`].
pub trait Blockstore: Send + Sync {
    /// A short description for receipts and errors ("kubo at http://127.0.0.1:5001").
    fn describe(&self) -> String;
    /// The block `cid`, verified against it: a block whose bytes do not hash to `cid` is an
    /// [`crate::Error::Corrupt`], never data.
    fn get<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Result<Block>>;
    /// Stores `block` (a no-op when it is already there).
    fn put<'a>(&'a self, block: &'a Block) -> BoxFuture<'a, Result<()>>;
    /// Whether the block `cid` is stored here.
    fn has<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Result<bool>>;
}

/// A remote tier.
pub trait Remote: Blockstore {
    /// The tier's kind: `kubo` or `s3`.
    fn kind(&self) -> &'static str;
    /// A stable identity for records of what was pinned where (`kubo http://127.0.0.1:5001`).
    fn id(&self) -> String;
    /// Checks the tier answers; returns what it is ("js-ipfs 0.18.1", "bucket b reachable").
    fn probe(&self) -> BoxFuture<'_, Result<String>>;
    /// Stores `blocks` (as few requests as the tier allows; by default, concurrent puts).
    fn put_many<'a>(&'a self, blocks: &'a [Block]) -> BoxFuture<'a, Result<()>> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        Box::pin(async move {
            // Collected first: the futures borrow `blocks` for exactly `'a`.
            let puts: Vec<BoxFuture<'a, Result<()>>> = blocks.iter().map(|b| self.put(b)).collect();
            stream::iter(puts).buffer_unordered(8).try_collect::<Vec<()>>().await.map(drop)
        })
    }
    /// Removes the block `cid`.
    fn delete<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Result<()>>;
    /// Pins the DAG under `root` (all of whose blocks the tier already has).
    fn pin<'a>(&'a self, root: &'a Cid) -> BoxFuture<'a, Result<()>>;
    /// Whether `root` is pinned here.
    fn is_pinned<'a>(&'a self, root: &'a Cid) -> BoxFuture<'a, Result<bool>>;
    /// Removes the pin on `root` (not an error when there is none).
    fn unpin<'a>(&'a self, root: &'a Cid) -> BoxFuture<'a, Result<()>>;
}

/// Whether a configured tier is in use, and the setting that decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierState {
    /// `kubo` or `s3`.
    pub kind: &'static str,
    /// Where it is (the API URL or the S3 URL), when configured.
    pub location: Option<String>,
    /// Whether operations use it.
    pub active: bool,
    /// Why (or why not), naming the variable or config key that decided it.
    pub reason: String,
}

/// The tiers the configuration asks for and allows, and a [`TierState`] for every kind.
///
/// Gating, with the Python original's variables made explicit: `IPFS_KIT_DISABLE` or
/// `STORAGE_FORCE_LOCAL` true forces local-only; `CI` true disables remote tiers unless
/// `IPFS_ACCELERATE_REMOTE_IN_CI` is true. Building a tier contacts nothing; only its use does.
pub fn select(config: &Config) -> Result<(Vec<Arc<dyn Remote>>, Vec<TierState>)> {
    let remote = config.remote();
    let storage = config.storage();
    let gate = if storage.ipfs_kit_disable.value {
        Some(format!(
            "local only: {}",
            decided("IPFS_KIT_DISABLE", &storage.ipfs_kit_disable.source)
        ))
    } else if storage.force_local.value {
        Some(format!("local only: {}", decided("STORAGE_FORCE_LOCAL", &storage.force_local.source)))
    } else if config.ci().value && !remote.in_ci.value {
        Some(format!(
            "disabled under CI ({}); set {ENV_REMOTE_IN_CI}=1 to use remote tiers in CI",
            decided(ENV_CI, &config.ci().source)
        ))
    } else {
        None
    };
    let mut tiers: Vec<Arc<dyn Remote>> = Vec::new();
    let mut states = Vec::new();

    match &remote.ipfs_api.value {
        None => states.push(TierState {
            kind: "kubo",
            location: None,
            active: false,
            reason: format!("not configured (set {ENV_IPFS_API} or remote.ipfs_api)"),
        }),
        Some(url) => {
            let state = |active, reason| TierState {
                kind: "kubo",
                location: Some(url.clone()),
                active,
                reason,
            };
            match &gate {
                Some(why) => states.push(state(false, why.clone())),
                None => {
                    tiers.push(Arc::new(Kubo::new(KuboClient::new(url, remote.timeout.value)?)));
                    states.push(state(true, format!("enabled by {}", remote.ipfs_api.source)));
                }
            }
        }
    }
    match &remote.s3_url.value {
        None => states.push(TierState {
            kind: "s3",
            location: None,
            active: false,
            reason: format!("not configured (set {ENV_S3_URL} or remote.s3_url)"),
        }),
        Some(location) => {
            let state = |active, reason| TierState {
                kind: "s3",
                location: Some(location.to_string()),
                active,
                reason,
            };
            match &gate {
                Some(why) => states.push(state(false, why.clone())),
                None => {
                    tiers.push(Arc::new(S3::from_config(location, remote)?));
                    states.push(state(true, format!("enabled by {}", remote.s3_url.source)));
                }
            }
        }
    }
    Ok((tiers, states))
}

/// "STORAGE_FORCE_LOCAL=true (env STORAGE_FORCE_LOCAL)" or "(file …)".
fn decided(name: &str, source: &Source) -> String {
    format!("{name} is true ({source})")
}
