//! The tiered store: the embedded store in front, remote tiers behind.
//!
//! - `add` writes locally, then pushes the DAG to every remote (write-through), or pushes and
//!   pins it there (remote pin). A remote pin is recorded as pending in the same commit that
//!   ends the add, and a pending remote pin is a GC root: until the remote confirms, the local
//!   copy may be the only one, so nothing can collect it.
//! - `cat`/`fetch` read locally and fetch only missing blocks, each verified against its CID
//!   before it is stored; fetched blocks become ordinary local cache.
//! - `repair` replaces corrupt or missing local blocks with verified remote copies.
//!
//! Remote failures never fail a local operation: they degrade it, and every result carries
//! [`Receipt`]s saying which tiers were used, which were skipped and why.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use cid::Cid;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::io::AsyncWrite;

use super::engine::{Engine, TempPin};
use super::{
    AddInput, AddOptions, Added, CommitHook, PinMode, Range, RemotePin, RemotePinState,
    RepairReport, Status, Store,
};
use crate::cid::{names_block, Block, DAG_PB};
use crate::config::Config;
use crate::remote::{self, Blockstore, BoxFuture, Remote, TierState};
use crate::unixfs::pb;
use crate::{Error, Result};

/// Blocks handled per round of a DAG walk: bounds memory (16 × 1 MiB) while keeping
/// [`CONCURRENCY`] requests in flight.
const WALK_BATCH: usize = 16;
/// Concurrent requests to one remote.
const CONCURRENCY: usize = 8;

/// What a tier did for one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The tier took part.
    Used,
    /// The tier was active but the operation did not need it (e.g. the content was local).
    NotNeeded,
    /// The tier is configured off or gated off; the detail names the setting.
    Skipped,
    /// The tier failed; the operation went on without it.
    Failed,
}

/// One tier's part in one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The tier ("kubo at http://127.0.0.1:5001").
    pub tier: String,
    /// What happened.
    pub outcome: Outcome,
    /// Counts, or why it was skipped or failed.
    pub detail: String,
}

/// A result with the receipts of the tiers behind it.
#[derive(Debug, Clone, Serialize)]
pub struct Receipted<T> {
    /// The operation's result.
    #[serde(flatten)]
    pub value: T,
    /// One receipt per tier.
    pub tiers: Vec<Receipt>,
}

/// What `push` and `pin_remote` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushReport {
    /// The root pushed.
    pub root: String,
    /// Whether the DAG was (to be) pinned remotely.
    pub remote_pin: bool,
    /// How many tiers now hold the whole DAG.
    pub tiers_ok: usize,
}

/// What `fetch` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FetchReport {
    /// The root.
    pub root: String,
    /// Blocks fetched from remotes (each verified).
    pub blocks_fetched: u64,
    /// Bytes fetched.
    pub bytes_fetched: u64,
    /// Blocks that were already local.
    pub blocks_local: u64,
}

/// One tier in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierStatus {
    /// Whether it is in use and why.
    #[serde(flatten)]
    pub state: TierState,
    /// For an active tier: whether it answered the probe.
    pub reachable: Option<bool>,
    /// What it said it is, or why it did not answer.
    pub probe: Option<String>,
}

/// The local store's status with every tier's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TieredStatus {
    /// The embedded store.
    #[serde(flatten)]
    pub local: Status,
    /// Every tier kind, active or not.
    pub tiers: Vec<TierStatus>,
    /// Remote pins this node asked for; pending ones keep their content local.
    pub remote_pins: Vec<RemotePin>,
}

/// The local store with the remote tiers the configuration selects.
#[derive(Clone)]
pub struct TieredStore {
    local: Store,
    remotes: Vec<Arc<dyn Remote>>,
    states: Vec<TierState>,
}

impl std::fmt::Debug for TieredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredStore")
            .field("local", &self.local.root())
            .field("tiers", &self.states)
            .finish()
    }
}

/// Per-remote tallies of a fetch.
#[derive(Default, Clone)]
struct Tally {
    blocks: u64,
    bytes: u64,
    failures: u64,
    first_error: Option<String>,
}

impl TieredStore {
    /// The store the configuration names, with the tiers it selects and allows
    /// ([`remote::select`]).
    pub async fn open_config(config: &Config) -> Result<TieredStore> {
        let local = Store::open_config(config).await?;
        let selection = remote::select(config)?;
        Ok(TieredStore { local, remotes: selection.remotes, states: selection.states })
    }

    /// `local` in front of `remotes`, in order of preference for reads.
    pub fn new(local: Store, remotes: Vec<Arc<dyn Remote>>) -> TieredStore {
        let states = remotes
            .iter()
            .map(|r| TierState {
                kind: r.kind(),
                location: Some(r.describe()),
                active: true,
                reason: "given by the caller".into(),
            })
            .collect();
        TieredStore { local, remotes, states }
    }

    /// The embedded store (pins, names, GC, CAR and everything else local).
    pub fn local(&self) -> &Store {
        &self.local
    }

    /// The active remote tiers.
    pub fn remotes(&self) -> &[Arc<dyn Remote>] {
        &self.remotes
    }

    /// Every tier kind and whether it is in use.
    pub fn tier_states(&self) -> &[TierState] {
        &self.states
    }

    /// Adds `input` locally, then pushes it to every remote; with `remote_pin`, also pins it
    /// there, keeping the local copy safe from GC until every remote confirms.
    pub async fn add(
        &self,
        input: AddInput,
        options: AddOptions,
        remote_pin: bool,
    ) -> Result<Receipted<Added>> {
        let hook: Option<Arc<CommitHook>> = (remote_pin && !self.remotes.is_empty()).then(|| {
            let ids: Vec<String> = self.remotes.iter().map(|r| r.id()).collect();
            Arc::new(move |engine: &Engine, tx: &rusqlite::Transaction<'_>, root: &Cid| {
                ids.iter().try_for_each(|id| engine.remote_pin_pending_in(tx, root, id))
            }) as Arc<CommitHook>
        });
        let added = self.local.add_with(input, options, hook).await?;
        let mut used = Vec::new();
        for remote in &self.remotes {
            used.push(self.replicate(remote.as_ref(), &added.root, remote_pin).await);
        }
        Ok(Receipted { value: added, tiers: self.receipts(used) })
    }

    /// Pushes the DAG under `root` (complete locally) to every remote, and completes any
    /// pending remote pin of it.
    pub async fn push(&self, root: &Cid) -> Result<Receipted<PushReport>> {
        self.require_remotes()?;
        let pending: HashSet<String> = self
            .remote_pins()
            .await?
            .into_iter()
            .filter(|p| p.state == RemotePinState::Pending && names_block(&p.cid, root))
            .map(|p| p.tier)
            .collect();
        self.replicate_all(root, |remote| pending.contains(&remote.id())).await
    }

    /// Pins the DAG under `root` (complete locally) on every remote, pushing it first. The
    /// local copy stays protected from GC until each remote confirms.
    pub async fn pin_remote(&self, root: &Cid) -> Result<Receipted<PushReport>> {
        self.require_remotes()?;
        let ids: Vec<String> = self.remotes.iter().map(|r| r.id()).collect();
        let cid = *root;
        self.local
            .run(move |engine| {
                engine.write(|tx| {
                    engine.check_complete(tx, &cid, PinMode::Recursive)?;
                    ids.iter().try_for_each(|id| engine.remote_pin_pending_in(tx, &cid, id))
                })
            })
            .await?;
        self.replicate_all(root, |_| true).await
    }

    /// Makes the DAG under `root` complete locally, fetching each missing block (verified)
    /// from the first remote that has it.
    pub async fn fetch(&self, root: &Cid) -> Result<Receipted<FetchReport>> {
        self.require_remotes()?;
        let temp = self.temp_pin().await?;
        let result = self.fetch_under(root, temp).await;
        self.release(temp).await;
        result
    }

    /// Writes the verified bytes of file `root` in `range` to `writer`, fetching missing
    /// blocks from the remotes first; returns bytes written.
    pub async fn cat_to<W: AsyncWrite + Unpin>(
        &self,
        root: &Cid,
        range: Range,
        writer: &mut W,
    ) -> Result<Receipted<u64>> {
        // Fetched blocks stay temp-pinned until the read is done: a concurrent GC cannot
        // take them between the fetch and the read.
        let temp = self.temp_pin().await?;
        let result = async {
            let fetched = self.fetch_under(root, temp).await?;
            let written = self.local.cat_to(root, range, writer).await?;
            Ok(Receipted { value: written, tiers: fetched.tiers })
        }
        .await;
        self.release(temp).await;
        result
    }

    /// Writes the verified content of file `root` to `path` atomically, fetching first.
    pub async fn get_to_path(&self, root: &Cid, path: &Path) -> Result<Receipted<u64>> {
        let temp = self.temp_pin().await?;
        let result = async {
            let fetched = self.fetch_under(root, temp).await?;
            let written = self.local.get_to_path(root, Range::default(), path).await?;
            Ok(Receipted { value: written, tiers: fetched.tiers })
        }
        .await;
        self.release(temp).await;
        result
    }

    /// Verifies the local store and replaces corrupt or missing blocks with verified copies
    /// from the remotes.
    pub async fn repair(&self) -> Result<Receipted<RepairReport>> {
        self.require_remotes()?;
        let report = self.local.repair(&AnyRemote(&self.remotes)).await?;
        let detail = format!("{} blocks repaired", report.repaired.len());
        let outcome = if report.repaired.is_empty() { Outcome::NotNeeded } else { Outcome::Used };
        let tiers = self.receipts(
            self.remotes
                .iter()
                .map(|r| Receipt { tier: r.describe(), outcome, detail: detail.clone() })
                .collect(),
        );
        Ok(Receipted { value: report, tiers })
    }

    /// The local status, every tier's state and a probe of each active one.
    pub async fn status(&self) -> Result<TieredStatus> {
        let local = self.local.status().await?;
        let probes = futures_util::future::join_all(self.remotes.iter().map(|r| r.probe())).await;
        let mut probes = probes.into_iter();
        let tiers = self
            .states
            .iter()
            .map(|state| {
                let (reachable, probe) = if state.active {
                    match probes.next() {
                        Some(Ok(what)) => (Some(true), Some(what)),
                        Some(Err(e)) => (Some(false), Some(e.to_string())),
                        None => (None, None),
                    }
                } else {
                    (None, None)
                };
                TierStatus { state: state.clone(), reachable, probe }
            })
            .collect();
        Ok(TieredStatus { local, tiers, remote_pins: self.remote_pins().await? })
    }

    /// Every remote pin record.
    pub async fn remote_pins(&self) -> Result<Vec<RemotePin>> {
        self.local.run(Engine::remote_pins).await
    }

    /// One receipt per tier, in tier order: `active` (one per remote, in order) for the tiers
    /// in use, a skip naming the deciding setting for the others.
    fn receipts(&self, active: Vec<Receipt>) -> Vec<Receipt> {
        let mut active = active.into_iter();
        self.states
            .iter()
            .filter_map(|s| {
                if s.active {
                    return active.next();
                }
                Some(Receipt {
                    tier: match &s.location {
                        Some(location) => format!("{} at {location}", s.kind),
                        None => s.kind.to_string(),
                    },
                    outcome: Outcome::Skipped,
                    detail: s.reason.clone(),
                })
            })
            .collect()
    }

    fn require_remotes(&self) -> Result<()> {
        if !self.remotes.is_empty() {
            return Ok(());
        }
        let reasons: Vec<String> =
            self.states.iter().map(|s| format!("{}: {}", s.kind, s.reason)).collect();
        Err(Error::NoRemote {
            reason: if reasons.is_empty() { "none configured".into() } else { reasons.join("; ") },
        })
    }

    async fn replicate_all(
        &self,
        root: &Cid,
        pin: impl Fn(&dyn Remote) -> bool,
    ) -> Result<Receipted<PushReport>> {
        let mut used = Vec::new();
        let mut tiers_ok = 0;
        let mut any_pin = false;
        for remote in &self.remotes {
            let pin = pin(remote.as_ref());
            any_pin |= pin;
            let receipt = self.replicate(remote.as_ref(), root, pin).await;
            tiers_ok += usize::from(receipt.outcome == Outcome::Used);
            used.push(receipt);
        }
        let tiers = self.receipts(used);
        let value = PushReport { root: root.to_string(), remote_pin: any_pin, tiers_ok };
        Ok(Receipted { value, tiers })
    }

    /// Pushes `root`'s DAG to `remote` (and pins it there); never fails: the receipt says.
    async fn replicate(&self, remote: &dyn Remote, root: &Cid, pin: bool) -> Receipt {
        let result = async {
            let (blocks, bytes) = self.push_dag(remote, root).await?;
            if pin {
                remote.pin(root).await?;
            }
            Ok::<_, Error>((blocks, bytes))
        }
        .await;
        if pin {
            let outcome = result.as_ref().map(drop).map_err(ToString::to_string);
            let (cid, id) = (*root, remote.id());
            if let Err(e) =
                self.local.run(move |engine| engine.remote_pin_update(&cid, &id, outcome)).await
            {
                // The record stays pending: the content stays protected, a later push retries.
                tracing::warn!(error = %e, "could not record the remote pin's outcome");
            }
        }
        match result {
            Ok((blocks, bytes)) => Receipt {
                tier: remote.describe(),
                outcome: Outcome::Used,
                detail: format!(
                    "pushed {blocks} blocks ({bytes} bytes){}",
                    if pin { ", pinned" } else { "" }
                ),
            },
            Err(e) => {
                tracing::warn!(tier = %remote.describe(), error = %e, "remote tier failed");
                Receipt {
                    tier: remote.describe(),
                    outcome: Outcome::Failed,
                    detail: if pin {
                        format!("{e}; the content stays pinned locally until the remote pin succeeds (`storage push {root}` retries)")
                    } else {
                        format!("{e}; the content is local only")
                    },
                }
            }
        }
    }

    /// Puts every block of `root`'s DAG (read and verified locally) to `remote`.
    async fn push_dag(&self, remote: &dyn Remote, root: &Cid) -> Result<(u64, u64)> {
        let (mut blocks, mut bytes) = (0u64, 0u64);
        let mut walk = Walk::new(root);
        while let Some(batch) = walk.next_batch() {
            let local = self.local.get_blocks(batch).await?;
            for block in &local {
                walk.extend(block)?;
                blocks += 1;
                bytes += block.data().len() as u64;
            }
            remote.put_many(&local).await?;
        }
        Ok((blocks, bytes))
    }

    async fn fetch_under(&self, root: &Cid, temp: TempPin) -> Result<Receipted<FetchReport>> {
        let mut tallies = vec![Tally::default(); self.remotes.len()];
        let mut report = FetchReport {
            root: root.to_string(),
            blocks_fetched: 0,
            bytes_fetched: 0,
            blocks_local: 0,
        };
        let mut walk = Walk::new(root);
        while let Some(batch) = walk.next_batch() {
            let wanted = batch.clone();
            let present: Vec<bool> = self
                .local
                .run(move |engine| wanted.iter().map(|c| engine.has(c)).collect())
                .await?;
            let (mut local_nodes, mut missing) = (Vec::new(), Vec::new());
            for (cid, present) in batch.into_iter().zip(present) {
                if !present {
                    missing.push(cid);
                    continue;
                }
                report.blocks_local += 1;
                // Local raw leaves link nowhere: only local dag-pb nodes are read, for links.
                if cid.codec() == DAG_PB {
                    local_nodes.push(cid);
                }
            }
            for block in self.local.get_blocks(local_nodes).await? {
                walk.extend(&block)?;
            }
            if missing.is_empty() {
                continue;
            }
            if let (true, Some(cid)) = (self.remotes.is_empty(), missing.first()) {
                // Local only: a read of absent content is what it always was.
                return Err(Error::NotFound { cid: cid.to_string() });
            }
            let fetched: Vec<(Block, usize)> =
                stream::iter(missing.iter().map(|cid| self.fetch_one(cid)))
                    .buffer_unordered(CONCURRENCY)
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .map(|(result, attempts)| {
                        for (i, error) in attempts {
                            let tally = &mut tallies[i];
                            tally.failures += 1;
                            tally.first_error.get_or_insert(error);
                        }
                        result
                    })
                    .collect::<Result<_>>()?;
            let mut blocks = Vec::with_capacity(fetched.len());
            for (block, from) in fetched {
                walk.extend(&block)?;
                let size = block.data().len() as u64;
                tallies[from].blocks += 1;
                tallies[from].bytes += size;
                report.blocks_fetched += 1;
                report.bytes_fetched += size;
                blocks.push(block);
            }
            self.local.run(move |engine| engine.put_blocks(&blocks, Some(temp))).await?;
        }
        let mut used = Vec::new();
        for (remote, tally) in self.remotes.iter().zip(tallies) {
            let failed = tally
                .first_error
                .map(|e| format!("; {} failed requests, first: {e}", tally.failures))
                .unwrap_or_default();
            let outcome = match (tally.blocks, tally.failures) {
                (0, 0) => Outcome::NotNeeded,
                (0, _) => Outcome::Failed,
                _ => Outcome::Used,
            };
            used.push(Receipt {
                tier: remote.describe(),
                outcome,
                detail: format!("fetched {} blocks ({} bytes){failed}", tally.blocks, tally.bytes),
            });
        }
        let tiers = self.receipts(used);
        Ok(Receipted { value: report, tiers })
    }

    /// The verified block `cid` from the first remote that serves it, with its index, and the
    /// failures of the remotes tried before. When all fail: a corruption if any remote served
    /// corrupt bytes (it names the block), else the last remote's error.
    async fn fetch_one(&self, cid: &Cid) -> (Result<(Block, usize)>, Vec<(usize, String)>) {
        let mut failures = Vec::new();
        let mut chosen: Option<Error> = None;
        for (i, remote) in self.remotes.iter().enumerate() {
            match remote.get(cid).await {
                Ok(block) => return (Ok((block, i)), failures),
                Err(e) => {
                    failures.push((i, e.to_string()));
                    if !matches!(chosen, Some(Error::Corrupt { .. })) {
                        chosen = Some(e);
                    }
                }
            }
        }
        let error = chosen.unwrap_or_else(|| Error::NotFound { cid: cid.to_string() });
        (Err(error), failures)
    }

    async fn temp_pin(&self) -> Result<TempPin> {
        self.local.run(|engine| Ok(engine.temp_pin())).await
    }

    async fn release(&self, temp: TempPin) {
        if let Err(e) = self.local.run(move |engine| engine.release(temp)).await {
            // The blocks become ordinary garbage when this process exits.
            tracing::warn!(error = %e, "could not release a temporary pin");
        }
    }
}

/// A breadth-first walk over a DAG in bounded batches, visiting each block once.
struct Walk {
    queue: VecDeque<Cid>,
    seen: HashSet<Cid>,
}

impl Walk {
    fn new(root: &Cid) -> Walk {
        Walk { queue: VecDeque::from([*root]), seen: HashSet::from([*root]) }
    }

    fn next_batch(&mut self) -> Option<Vec<Cid>> {
        let n = self.queue.len().min(WALK_BATCH);
        (n > 0).then(|| self.queue.drain(..n).collect())
    }

    /// Queues the links of `block` not seen before.
    fn extend(&mut self, block: &Block) -> Result<()> {
        for link in pb::links(block.cid(), block.data())? {
            if self.seen.insert(link) {
                self.queue.push_back(link);
            }
        }
        Ok(())
    }
}

/// The remotes as one block source, tried in order (for repair).
struct AnyRemote<'a>(&'a [Arc<dyn Remote>]);

impl Blockstore for AnyRemote<'_> {
    fn describe(&self) -> String {
        self.0.iter().map(|r| r.describe()).collect::<Vec<_>>().join(", ")
    }

    fn get<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Result<Block>> {
        Box::pin(async move {
            let mut last = None;
            for remote in self.0 {
                match remote.get(cid).await {
                    Ok(block) => return Ok(block),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| Error::NotFound { cid: cid.to_string() }))
        })
    }

    fn put<'a>(&'a self, block: &'a Block) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for remote in self.0 {
                remote.put(block).await?;
            }
            Ok(())
        })
    }

    fn has<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            for remote in self.0 {
                if remote.has(cid).await? {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }
}
