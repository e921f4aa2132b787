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
pub fn select(config: &Config) -> Result<Selection> {
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
    let mut selection = Selection { remotes: Vec::new(), states: Vec::new() };
    let kubo = remote.ipfs_api.value.as_ref().map(|url| (url.clone(), url));
    selection.decide(
        "kubo",
        kubo,
        &remote.ipfs_api.source,
        ENV_IPFS_API,
        "remote.ipfs_api",
        &gate,
        |url| Ok(Arc::new(Kubo::new(KuboClient::new(url, remote.timeout.value)?))),
    )?;
    let s3 = remote.s3_url.value.as_ref().map(|location| (location.to_string(), location));
    selection.decide(
        "s3",
        s3,
        &remote.s3_url.source,
        ENV_S3_URL,
        "remote.s3_url",
        &gate,
        |location| Ok(Arc::new(S3::from_config(location, remote)?)),
    )?;
    Ok(selection)
}

impl Selection {
    /// Records tier `kind`: not configured (naming what enables it), gated off (naming why),
    /// or built and active (naming the setting that enabled it).
    #[allow(clippy::too_many_arguments)]
    fn decide<T>(
        &mut self,
        kind: &'static str,
        configured: Option<(String, &T)>,
        source: &Source,
        var: &str,
        key: &str,
        gate: &Option<String>,
        build: impl FnOnce(&T) -> Result<Arc<dyn Remote>>,
    ) -> Result<()> {
        let Some((location, value)) = configured else {
            self.states.push(TierState {
                kind,
                location: None,
                active: false,
                reason: format!("not configured (set {var} or {key})"),
            });
            return Ok(());
        };
        let (active, reason) = match gate {
            Some(why) => (false, why.clone()),
            None => {
                self.remotes.push(build(value)?);
                (true, format!("enabled by {source}"))
            }
        };
        self.states.push(TierState { kind, location: Some(location), active, reason });
        Ok(())
    }
}

/// What [`select`] decided.
pub struct Selection {
    /// The tiers in use, in order of preference for reads (Kubo, then S3).
    pub remotes: Vec<Arc<dyn Remote>>,
    /// Every tier kind, in use or not, with the reason.
    pub states: Vec<TierState>,
}

/// "STORAGE_FORCE_LOCAL=true (env STORAGE_FORCE_LOCAL)" or "(file …)".
fn decided(name: &str, source: &Source) -> String {
    format!("{name} is true ({source})")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::LoadOptions;

    fn states(vars: &[(&str, &str)]) -> (usize, Vec<TierState>) {
        let mut vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        vars.insert("IPFS_ACCELERATE_DATA_DIR".into(), "/nonexistent".into());
        let options = LoadOptions { config_file: Some("/dev/null".into()), data_dir: None };
        let config = Config::load_with_env(&options, |k| vars.get(k).cloned()).unwrap();
        let selection = select(&config).unwrap();
        (selection.remotes.len(), selection.states)
    }

    const BOTH: [(&str, &str); 2] =
        [("IPFS_API", "/ip4/127.0.0.1/tcp/5001"), ("IPFS_ACCELERATE_S3_URL", "s3://bucket/p")];

    #[test]
    fn unconfigured_tiers_say_which_variable_enables_them() {
        let (active, states) = states(&[]);
        assert_eq!(active, 0);
        assert!(states[0].reason.contains("IPFS_API"), "{states:?}");
        assert!(states[1].reason.contains("IPFS_ACCELERATE_S3_URL"), "{states:?}");
    }

    #[test]
    fn configured_tiers_are_active_and_say_where_from() {
        let (active, states) = states(&BOTH);
        assert_eq!(active, 2);
        assert_eq!(states[0].location.as_deref(), Some("http://127.0.0.1:5001"));
        assert_eq!(states[0].reason, "enabled by env IPFS_API");
        assert_eq!(states[1].location.as_deref(), Some("s3://bucket/p"));
    }

    #[test]
    fn each_local_only_switch_turns_every_tier_off_and_is_named() {
        for (var, value) in [
            ("IPFS_KIT_DISABLE", "yes"),
            ("STORAGE_FORCE_LOCAL", "1"),
            ("STORAGE_FORCE_LOCAL", "TRUE"),
        ] {
            let mut vars = BOTH.to_vec();
            vars.push((var, value));
            let (active, states) = states(&vars);
            assert_eq!(active, 0, "{var}={value}");
            for state in &states {
                assert!(!state.active);
                assert!(state.reason.contains(var), "{var}: {}", state.reason);
            }
        }
        // False values leave the tiers on.
        let mut vars = BOTH.to_vec();
        vars.push(("STORAGE_FORCE_LOCAL", "0"));
        assert_eq!(states(&vars).0, 2);
    }

    #[test]
    fn ci_turns_remote_tiers_off_unless_explicitly_allowed() {
        let mut vars = BOTH.to_vec();
        vars.push(("CI", "true"));
        let (active, states) = states(&vars);
        assert_eq!(active, 0);
        assert!(states[0].reason.contains("CI"), "{}", states[0].reason);
        assert!(states[0].reason.contains("IPFS_ACCELERATE_REMOTE_IN_CI=1"));

        vars.push(("IPFS_ACCELERATE_REMOTE_IN_CI", "1"));
        assert_eq!(self::states(&vars).0, 2);
        // The local-only switches still win over the CI opt-in.
        vars.push(("STORAGE_FORCE_LOCAL", "1"));
        assert_eq!(self::states(&vars).0, 0);
    }

    #[test]
    fn malformed_remote_settings_are_errors_naming_the_variable() {
        for (var, value) in [
            ("IPFS_API", "localhost:5001"),
            ("IPFS_ACCELERATE_S3_URL", "https://bucket"),
            ("IPFS_ACCELERATE_S3_URL", "s3://B"),
            ("AWS_ENDPOINT_URL", "127.0.0.1:9000"),
            ("IPFS_ACCELERATE_REMOTE_TIMEOUT", "soon"),
            ("IPFS_ACCELERATE_REMOTE_TIMEOUT", "0"),
            ("IPFS_ACCELERATE_REMOTE_IN_CI", "maybe"),
        ] {
            let vars: HashMap<&str, &str> = HashMap::from([(var, value)]);
            let options = LoadOptions { config_file: Some("/dev/null".into()), data_dir: None };
            let err = Config::load_with_env(&options, |k| vars.get(k).map(|v| v.to_string()))
                .unwrap_err();
            assert!(err.to_string().contains(var), "{var}={value}: {err}");
        }
    }
}
