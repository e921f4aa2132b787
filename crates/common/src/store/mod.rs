//! The embedded content-addressed store: the default, with no daemon.
//!
//! [`Store`] is the async API every other crate persists through. Blocking work (hashing,
//! file I/O, SQLite, fsync) runs on tokio's blocking pool, never on the reactor.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use ipfs_accelerate_common::store::{AddOptions, Store, StoreOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path(), StoreOptions::default()).await?;
//! let added = store.add_bytes(b"hello world".to_vec(), AddOptions { pin: true, ..AddOptions::default() }).await?;
//! assert_eq!(added.root.to_string(), "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e");
//! assert_eq!(store.cat_bytes(&added.root).await?, b"hello world");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

pub(crate) mod car;
mod engine;
mod flatfs;
mod gc;
mod journal;
mod names;
mod rebuild;
mod remote_pins;
mod tiered;
mod tree;

use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cid::Cid;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

pub use car::CarImport;
use engine::Engine;
use engine::TempPin;
pub use gc::{DagStat, GcReport, Pin, PinMode, Usage, VerifyReport};
pub use names::{Expect, Name, NameEntry, NameHistoryEntry};
pub use rebuild::RebuildReport;
pub use remote_pins::{RemotePin, RemotePinState};
pub use tiered::{
    FetchReport, Outcome, PushReport, Receipt, Receipted, TierStatus, TieredStatus, TieredStore,
};
pub use tree::{AddedTree, TreeEntry, TreeFile};

pub(crate) use engine::now;

use crate::cid::Block;
use crate::config::Config;
use crate::remote::{Blockstore, BoxFuture};
use crate::unixfs::{self, BlockSource, Profile};
use crate::{Error, Result};

/// Blocks are written in batches of at most this many bytes (one durable flush each). With the
/// batch being hashed, one queued and one being written, an add holds at most three: a 1 GiB
/// add peaked at 58 MB RSS (206 MB with 64 MiB batches, no faster on this disk).
const BATCH_BYTES: usize = 16 << 20;
/// … or this many blocks.
const BATCH_BLOCKS: usize = 1024;

/// Options for opening a store.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Size budget in bytes: after each add, least-recently-used unpinned, unnamed content is
    /// evicted until the store fits. `None`: unbounded.
    pub budget: Option<u64>,
}

/// Called with the input bytes consumed so far and the total when it is known (files).
pub type Progress = Arc<dyn Fn(u64, Option<u64>) + Send + Sync>;

/// Options for [`Store::add_path`] and friends.
#[derive(Clone, Default)]
pub struct AddOptions {
    /// The UnixFS profile (decides the CID).
    pub profile: Profile,
    /// Pin the result recursively (atomically with the end of the add).
    pub pin: bool,
    /// Point this name at the result (atomically with the end of the add).
    pub name: Option<Name>,
    /// Progress callback.
    pub progress: Option<Progress>,
    /// Content only a cache entry refers to: its small blocks stay out of the recovery journal
    /// (cache entries are not rebuilt with a lost index, so nothing could find them).
    pub cache_only: bool,
}

impl std::fmt::Debug for AddOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddOptions")
            .field("profile", &self.profile)
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

/// What an add stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Added {
    /// The root CID.
    #[serde(serialize_with = "crate::store::serialize_cid")]
    pub root: Cid,
    /// Bytes of content.
    pub size: u64,
    /// Blocks in the DAG (duplicates counted).
    pub blocks: u64,
    /// Bytes newly written (content already present costs nothing).
    pub bytes_new: u64,
}

/// A byte range of a file: `offset` and an optional `length` (to the end when `None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub offset: u64,
    /// Number of bytes, or to the end.
    pub length: Option<u64>,
}

/// What [`Store::stat`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stat {
    /// The CID asked about.
    pub cid: String,
    /// File size in bytes, when the root is present and is a file.
    pub size: Option<u64>,
    /// The DAG's local presence, pin and names.
    #[serde(flatten)]
    pub dag: DagStat,
}

/// Where the store is and how full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The store's directory.
    pub root: PathBuf,
    /// The budget for unpinned content, if any.
    pub budget: Option<u64>,
    /// Space left for unprivileged writes on the store's filesystem, where the OS says.
    pub free_bytes: Option<u64>,
    /// Totals.
    #[serde(flatten)]
    pub usage: Usage,
}

/// What a repair did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    /// The verify pass before repair.
    pub found: VerifyReport,
    /// Blocks replaced with verified copies.
    pub repaired: Vec<String>,
    /// Blocks no source could provide (with the reason).
    pub unrepaired: Vec<(String, String)>,
}

/// What to add: a file, bytes in memory, or a stream.
pub enum AddInput {
    /// The file at this path (its size drives progress).
    Path(PathBuf),
    /// These bytes.
    Bytes(Vec<u8>),
    /// Everything this reader yields.
    Reader(Box<dyn AsyncRead + Unpin + Send>),
}

impl AddInput {
    /// A blocking reader over the input and its size when known. Runs on the blocking pool
    /// (a `Reader` is bridged to the runtime it came from).
    fn open(self) -> Result<(Box<dyn Read + Send>, Option<u64>)> {
        Ok(match self {
            AddInput::Path(path) => {
                let file = std::fs::File::open(&path).map_err(|e| Error::io("open", &path, e))?;
                let total = file.metadata().map_err(|e| Error::io("stat", &path, e))?.len();
                (Box::new(file), Some(total))
            }
            AddInput::Bytes(bytes) => {
                let total = bytes.len() as u64;
                (Box::new(std::io::Cursor::new(bytes)), Some(total))
            }
            AddInput::Reader(reader) => (Box::new(tokio_util::io::SyncIoBridge::new(reader)), None),
        })
    }

    /// The size, when known without reading.
    fn size_hint(&self) -> Option<u64> {
        match self {
            AddInput::Path(path) => std::fs::metadata(path).ok().map(|m| m.len()),
            AddInput::Bytes(bytes) => Some(bytes.len() as u64),
            AddInput::Reader(_) => None,
        }
    }
}

impl std::fmt::Debug for AddInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddInput::Path(path) => f.debug_tuple("Path").field(path).finish(),
            AddInput::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            AddInput::Reader(_) => f.write_str("Reader"),
        }
    }
}

/// Runs inside the transaction that ends an add, with the root, before its blocks lose their
/// temporary pin: whatever it records protects the content with no window for GC.
pub(crate) type CommitHook =
    dyn Fn(&Engine, &rusqlite::Transaction<'_>, &Cid) -> Result<()> + Send + Sync;

/// The embedded store. Cheap to clone; every clone shares one open store.
#[derive(Debug, Clone)]
pub struct Store {
    engine: Arc<Engine>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`. Several processes may open one store.
    pub async fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        let engine = blocking(move || Engine::open(&dir, options.budget)).await?;
        Ok(Store { engine: Arc::new(engine) })
    }

    /// Rebuilds the lost index of the store in `dir` from its block files (see
    /// [`RebuildReport`]) and opens it. Fails with [`Error::IndexReadable`] when the index is
    /// fine.
    pub async fn rebuild_index(
        dir: impl AsRef<Path>,
        options: StoreOptions,
    ) -> Result<(Store, RebuildReport)> {
        let dir = dir.as_ref().to_path_buf();
        let (engine, report) =
            blocking(move || Engine::rebuild_index(&dir, options.budget)).await?;
        Ok((Store { engine: Arc::new(engine) }, report))
    }

    /// Opens the store the configuration names: `<data_dir>/store`, with its budget.
    pub async fn open_config(config: &Config) -> Result<Store> {
        let options = StoreOptions { budget: config.storage().budget.value };
        Store::open(config.data_dir().value.join("store"), options).await
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        self.engine.root()
    }

    /// Runs blocking work on the engine on tokio's blocking pool (also used by the cache).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let engine = Arc::clone(&self.engine);
        blocking(move || f(&engine)).await
    }

    /// Adds the file at `path` as UnixFS.
    pub async fn add_path(&self, path: impl AsRef<Path>, options: AddOptions) -> Result<Added> {
        self.add(AddInput::Path(path.as_ref().to_path_buf()), options).await
    }

    /// Adds everything `reader` yields as UnixFS.
    pub async fn add_reader<R: AsyncRead + Unpin + Send + 'static>(
        &self,
        reader: R,
        options: AddOptions,
    ) -> Result<Added> {
        self.add(AddInput::Reader(Box::new(reader)), options).await
    }

    /// Adds `bytes` as UnixFS.
    pub async fn add_bytes(&self, bytes: Vec<u8>, options: AddOptions) -> Result<Added> {
        self.add(AddInput::Bytes(bytes), options).await
    }

    /// Adds `input` as UnixFS.
    pub async fn add(&self, input: AddInput, options: AddOptions) -> Result<Added> {
        self.add_with(input, options, None).await
    }

    pub(crate) async fn add_with(
        &self,
        input: AddInput,
        options: AddOptions,
        hook: Option<Arc<CommitHook>>,
    ) -> Result<Added> {
        self.run(move |engine| {
            let (reader, total) = input.open()?;
            add(engine, reader, total, &options, hook.as_deref())
        })
        .await
    }

    /// Adds `entries` as a UnixFS directory tree, as `ipfs add -r` does: each file under the
    /// profile, one directory node per directory, the root pinned and named (per `options`)
    /// atomically at the end. Nothing is committed when any entry fails; paths are checked
    /// before anything is read. `options.progress` sees the bytes of all files together.
    pub async fn add_tree(
        &self,
        entries: Vec<TreeEntry>,
        options: AddOptions,
    ) -> Result<AddedTree> {
        self.run(move |engine| tree::add_tree(engine, entries, None, &options)).await
    }

    /// [`Store::add_tree`], then the entries `index` makes from the CIDs of the files added
    /// (a manifest listing them), all committed as one tree: the index is never stored
    /// without the files it names, nor the files without it.
    pub async fn add_tree_indexed(
        &self,
        entries: Vec<TreeEntry>,
        index: impl FnOnce(&[TreeFile]) -> Result<Vec<TreeEntry>> + Send + 'static,
        options: AddOptions,
    ) -> Result<AddedTree> {
        self.run(move |engine| tree::add_tree(engine, entries, Some(Box::new(index)), &options))
            .await
    }

    /// The entries of directory `cid` (a UnixFS directory, e.g. from [`Store::add_tree`]).
    pub async fn list_directory(&self, cid: &Cid) -> Result<Vec<unixfs::dir::DirEntry>> {
        let cid = *cid;
        self.run(move |engine| unixfs::dir::entries(&engine.get(&cid)?)).await
    }

    /// Writes the UnixFS directory `root` under `dir` as `ipfs get` does: subdirectories
    /// created, each file verified and written atomically (over what is there). Returns the
    /// files written.
    pub async fn export_tree(&self, root: &Cid, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        let mut pending = vec![(*root, dir.as_ref().to_path_buf())];
        while let Some((cid, target)) = pending.pop() {
            tokio::fs::create_dir_all(&target).await.map_err(|e| Error::io("mkdir", &target, e))?;
            for entry in self.list_directory(&cid).await? {
                unixfs::dir::validate_component(&entry.name)?;
                let path = target.join(&entry.name);
                let is_dir = entry.cid.codec() == crate::cid::DAG_PB
                    && self.list_directory(&entry.cid).await.is_ok();
                if is_dir {
                    pending.push((entry.cid, path));
                } else {
                    self.get_to_path(&entry.cid, Range::default(), &path).await?;
                    written.push(path);
                }
            }
        }
        Ok(written)
    }

    /// The CID of `path` (`/`-separated) under directory `root`.
    pub async fn resolve_path(&self, root: &Cid, path: &str) -> Result<Cid> {
        let (root, path) = (*root, path.to_string());
        self.run(move |engine| tree::resolve(engine, &root, &path)).await
    }

    /// Writes the verified bytes of file `cid` in `range` to `writer`; returns bytes written.
    ///
    /// Each block is checked against its CID before any of its bytes are written; a corrupt or
    /// missing block ends the stream with an error naming it.
    pub async fn cat_to<W: AsyncWrite + Unpin>(
        &self,
        cid: &Cid,
        range: Range,
        writer: &mut W,
    ) -> Result<u64> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let cid = *cid;
        let reader = self.run(move |engine| {
            unixfs::read_range(&Source(engine), &cid, range.offset, range.length, &mut |bytes| {
                // A closed channel means the writer side failed; its error is reported there.
                tx.blocking_send(bytes.to_vec()).map_err(|_| Error::Task("output closed".into()))
            })
        });
        let write = async {
            let mut written = 0u64;
            while let Some(chunk) = rx.recv().await {
                writer.write_all(&chunk).await.map_err(|e| Error::io("write", "<output>", e))?;
                written += chunk.len() as u64;
            }
            writer.flush().await.map_err(|e| Error::io("flush", "<output>", e))?;
            Ok::<_, Error>(written)
        };
        let (read, written) = tokio::join!(reader, write);
        // A failed write is the cause when both fail: it is what closed the reader's channel.
        let written = written?;
        read?;
        Ok(written)
    }

    /// Writes the verified content of file `cid` to `path` atomically: a temp file beside it,
    /// fsync, rename. On any error (a corrupt block included) `path` is left as it was.
    pub async fn get_to_path(
        &self,
        cid: &Cid,
        range: Range,
        path: impl AsRef<Path>,
    ) -> Result<u64> {
        let cid = *cid;
        write_atomically(path.as_ref(), |file| async move {
            let mut file = file;
            let n = self.cat_to(&cid, range, &mut file).await?;
            Ok((file, n))
        })
        .await
    }

    /// Writes the DAG under `root` as a CAR v1 file at `path`, atomically; returns blocks.
    pub async fn export_car_to_path(&self, root: &Cid, path: impl AsRef<Path>) -> Result<u64> {
        let root = *root;
        write_atomically(path.as_ref(), |file| async move {
            let mut writer = tokio::io::BufWriter::new(file);
            let n = self.export_car(&root, &mut writer).await?;
            writer.flush().await.map_err(|e| Error::io("flush", "<car>", e))?;
            Ok((writer.into_inner(), n))
        })
        .await
    }

    /// Imports the CAR v1 file at `path` (see [`Store::import_car`]).
    pub async fn import_car_path(&self, path: impl AsRef<Path>, pin: bool) -> Result<CarImport> {
        let path = path.as_ref();
        let file = tokio::fs::File::open(path).await.map_err(|e| Error::io("open", path, e))?;
        self.import_car(tokio::io::BufReader::with_capacity(1 << 20, file), pin).await
    }

    /// The whole verified content of file `cid`, in memory (for small values).
    pub async fn cat_bytes(&self, cid: &Cid) -> Result<Vec<u8>> {
        let cid = *cid;
        self.run(move |engine| {
            let mut out = Vec::new();
            unixfs::read_range(&Source(engine), &cid, 0, None, &mut |bytes| {
                out.extend_from_slice(bytes);
                Ok(())
            })?;
            Ok(out)
        })
        .await
    }

    /// Stores blocks (already verified by construction) with one durable commit; returns the
    /// bytes that were new. The batch API for many small objects.
    pub async fn put_blocks(&self, blocks: Vec<Block>) -> Result<u64> {
        self.run(move |engine| engine.put_blocks(&blocks, None)).await
    }

    /// The verified block for `cid`.
    pub async fn get_block(&self, cid: &Cid) -> Result<Block> {
        let cid = *cid;
        self.run(move |engine| engine.get(&cid)).await
    }

    /// Verified blocks for many CIDs in one trip to the blocking pool.
    pub async fn get_blocks(&self, cids: Vec<Cid>) -> Result<Vec<Block>> {
        self.run(move |engine| engine.get_many(&cids)).await
    }

    /// Whether the block `cid` is stored.
    pub async fn has(&self, cid: &Cid) -> Result<bool> {
        let cid = *cid;
        self.run(move |engine| engine.has(&cid)).await
    }

    /// Pins `cid` (a recursive pin needs the whole DAG present).
    pub async fn pin(&self, cid: &Cid, mode: PinMode) -> Result<()> {
        let cid = *cid;
        self.run(move |engine| engine.pin(&cid, mode)).await
    }

    /// Removes the pin on `cid`.
    pub async fn unpin(&self, cid: &Cid) -> Result<()> {
        let cid = *cid;
        self.run(move |engine| engine.unpin(&cid)).await
    }

    /// Every pinned root.
    pub async fn pins(&self) -> Result<Vec<Pin>> {
        self.run(Engine::pins).await
    }

    /// Removes everything not pinned, named or held by an in-flight write (in any process).
    pub async fn gc(&self) -> Result<GcReport> {
        self.run(Engine::gc).await
    }

    /// Size, presence, pin and names of `cid`.
    pub async fn stat(&self, cid: &Cid) -> Result<Stat> {
        let cid = *cid;
        self.run(move |engine| {
            let dag = engine.dag_stat(&cid)?;
            let size = match unixfs::file_size(&Source(engine), &cid) {
                Ok(size) => Some(size),
                Err(Error::NotFound { .. } | Error::MalformedBlock { .. }) => None,
                Err(e) => return Err(e),
            };
            Ok(Stat { cid: cid.to_string(), size, dag })
        })
        .await
    }

    /// Where the store lives and how full it is.
    pub async fn status(&self) -> Result<Status> {
        self.run(|engine| {
            let free_bytes = rustix::fs::statvfs(engine.root())
                .ok()
                .map(|fs| fs.f_bavail.saturating_mul(fs.f_frsize));
            Ok(Status {
                root: engine.root().to_path_buf(),
                budget: engine.budget(),
                free_bytes,
                usage: engine.usage()?,
            })
        })
        .await
    }

    /// SQLite's `quick_check` of the store's database: empty when sound, else its findings.
    /// Cheap next to [`Store::verify`], which rehashes every block.
    pub async fn check_database(&self) -> Result<Vec<String>> {
        self.run(|engine| {
            engine.read(|conn| {
                let mut statement =
                    conn.prepare("PRAGMA quick_check").map_err(|e| engine.db_err(e))?;
                let rows = statement
                    .query_map([], |row| row.get::<_, String>(0))
                    .map_err(|e| engine.db_err(e))?;
                let mut findings = Vec::new();
                for row in rows {
                    let line = row.map_err(|e| engine.db_err(e))?;
                    if line != "ok" {
                        findings.push(line);
                    }
                }
                Ok(findings)
            })
        })
        .await
    }

    /// Rehashes every block and reports the corrupt and missing ones.
    pub async fn verify(&self) -> Result<VerifyReport> {
        self.run(Engine::verify).await
    }

    /// Verifies, then replaces every corrupt or missing block with a verified copy from `source`.
    pub async fn repair(&self, source: &dyn Blockstore) -> Result<RepairReport> {
        let found = self.verify().await?;
        let mut report = RepairReport { found: found.clone(), ..RepairReport::default() };
        for text in found.corrupt.iter().chain(&found.missing) {
            let cid = crate::cid::parse(text)?;
            match source.get(&cid).await {
                Ok(block) => {
                    self.run(move |engine| engine.rewrite(&block)).await?;
                    report.repaired.push(text.clone());
                }
                Err(e) => {
                    report.unrepaired.push((text.clone(), format!("{}: {e}", source.describe())))
                }
            }
        }
        Ok(report)
    }

    /// Points `name` at `cid` if `expect` holds; returns the new version. The content must be
    /// complete in the store; named content is protected from GC.
    pub async fn name_set(&self, name: &Name, cid: &Cid, expect: Expect) -> Result<u64> {
        let (name, cid) = (name.clone(), *cid);
        self.run(move |engine| engine.name_set(&name, &cid, expect)).await
    }

    /// The current value of `name`.
    pub async fn name_get(&self, name: &Name) -> Result<NameEntry> {
        let name = name.clone();
        self.run(move |engine| engine.name_get(&name)).await
    }

    /// Removes `name` if `expect` holds.
    pub async fn name_remove(&self, name: &Name, expect: Expect) -> Result<()> {
        let name = name.clone();
        self.run(move |engine| engine.name_remove(&name, expect)).await
    }

    /// Names in one namespace, or in all.
    pub async fn name_list(&self, namespace: Option<&str>) -> Result<Vec<NameEntry>> {
        let namespace = namespace.map(str::to_string);
        self.run(move |engine| engine.name_list(namespace.as_deref())).await
    }

    /// Past values of `name`, newest first.
    pub async fn name_history(&self, name: &Name) -> Result<Vec<NameHistoryEntry>> {
        let name = name.clone();
        self.run(move |engine| engine.name_history(&name)).await
    }
}

/// A store is a block source for another store (repair from another worker's store) and the
/// local tier of a [`TieredStore`].
impl Blockstore for Store {
    fn describe(&self) -> String {
        format!("store {}", self.root().display())
    }

    fn get<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Result<Block>> {
        Box::pin(self.get_block(cid))
    }

    fn put<'a>(&'a self, block: &'a Block) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.put_blocks(vec![block.clone()]).await.map(drop) })
    }

    fn has<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Store::has(self, cid))
    }
}

struct Source<'a>(&'a Engine);

impl BlockSource for Source<'_> {
    fn block(&self, cid: &Cid) -> Result<Block> {
        self.0.get(cid)
    }
}

/// Adds one file: imports it under a temporary pin, then commits its pin, name and hook.
fn add(
    engine: &Engine,
    reader: impl Read,
    total: Option<u64>,
    options: &AddOptions,
    hook: Option<&CommitHook>,
) -> Result<Added> {
    let temp = if options.cache_only { engine.temp_pin_unjournaled() } else { engine.temp_pin() };
    let result = (|| {
        let progress = options.progress.clone();
        let (imported, bytes_new) =
            import_blocks(engine, reader, total, options.profile, progress, temp)?;
        commit(engine, &imported.root, options, hook)?;
        Ok(Added { root: imported.root, size: imported.size, blocks: imported.blocks, bytes_new })
    })();
    release_after(engine, temp, result)
}

/// The add pipeline: chunk and hash on this thread while a writer thread stores the previous
/// batch (one durable flush each), so hashing and I/O overlap on two cores. Every block is
/// temp-pinned under `temp` until the caller commits and releases it. Returns the import and
/// the bytes newly written.
fn import_blocks(
    engine: &Engine,
    reader: impl Read,
    total: Option<u64>,
    profile: Profile,
    progress: Option<Progress>,
    temp: TempPin,
) -> Result<(unixfs::Imported, u64)> {
    std::thread::scope(|scope| {
        // Two batches in flight at most: memory stays bounded whatever the input size.
        let (batches, inbox) = std::sync::mpsc::sync_channel::<Vec<Block>>(1);
        let writer = scope.spawn(move || {
            let mut bytes_new = 0u64;
            for batch in inbox {
                bytes_new += engine.put_blocks(&batch, Some(temp))?;
            }
            Ok::<_, Error>(bytes_new)
        });
        let imported = (|| {
            let mut batch: Vec<Block> = Vec::new();
            let mut batch_bytes = 0usize;
            let reader = ProgressReader { inner: reader, read: 0, total, progress };
            let imported = unixfs::import(reader, profile, &mut |block| {
                batch_bytes += block.data().len();
                batch.push(block);
                if batch_bytes >= BATCH_BYTES || batch.len() >= BATCH_BLOCKS {
                    batch_bytes = 0;
                    // A closed channel means the writer failed; its error is reported below.
                    batches
                        .send(std::mem::take(&mut batch))
                        .map_err(|_| Error::Task("block writer stopped".into()))?;
                }
                Ok(())
            })?;
            batches.send(batch).map_err(|_| Error::Task("block writer stopped".into()))?;
            Ok::<_, Error>(imported)
        })();
        drop(batches);
        let written = writer.join().map_err(|_| Error::Task("block writer panicked".into()))?;
        // The writer's error is the cause when both failed.
        let bytes_new = written?;
        Ok((imported?, bytes_new))
    })
}

/// Records the pin, name and hook of a finished add in one transaction (while its blocks are
/// still temp-pinned), then evicts older content down to the budget.
fn commit(
    engine: &Engine,
    root: &Cid,
    options: &AddOptions,
    hook: Option<&CommitHook>,
) -> Result<()> {
    if options.pin || options.name.is_some() || hook.is_some() {
        engine.write(|tx| {
            if options.pin {
                engine.pin_in(tx, root, PinMode::Recursive)?;
            }
            if let Some(name) = &options.name {
                engine.name_set_in(tx, name, root, Expect::Any)?;
            }
            if let Some(hook) = hook {
                hook(engine, tx, root)?;
            }
            Ok(())
        })?;
    }
    // Evict older content while this add is still temp-pinned, so it never evicts itself.
    let evicted = engine.enforce_budget()?;
    if evicted.blocks_removed > 0 {
        tracing::info!(
            blocks = evicted.blocks_removed,
            bytes = evicted.bytes_freed,
            "evicted to stay within budget"
        );
    }
    Ok(())
}

/// Releases an add's temporary pin whatever the outcome: a failed add's partial DAG becomes
/// ordinary garbage (failing to say so only delays its GC).
fn release_after<T>(engine: &Engine, temp: TempPin, result: Result<T>) -> Result<T> {
    match result {
        Ok(value) => {
            engine.release(temp)?;
            Ok(value)
        }
        Err(e) => {
            if let Err(release) = engine.release(temp) {
                tracing::warn!(error = %release, "could not release the temporary pin of a failed add");
            }
            Err(e)
        }
    }
}

struct ProgressReader<R> {
    inner: R,
    read: u64,
    total: Option<u64>,
    progress: Option<Progress>,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if let Some(progress) = &self.progress {
            progress(self.read, self.total);
        }
        Ok(n)
    }
}

/// Runs `write` on a temp file beside `path`, then fsyncs and renames it over `path`; the temp
/// file is removed on failure.
async fn write_atomically<T, F, Fut>(path: &Path, write: F) -> Result<T>
where
    F: FnOnce(tokio::fs::File) -> Fut,
    Fut: Future<Output = Result<(tokio::fs::File, T)>>,
{
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name =
        path.file_name().map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let file = tokio::fs::File::create(&temp).await.map_err(|e| Error::io("create", &temp, e))?;
    let result = async {
        let (file, value) = write(file).await?;
        file.sync_all().await.map_err(|e| Error::io("fsync", &temp, e))?;
        tokio::fs::rename(&temp, path).await.map_err(|e| Error::io("rename", path, e))?;
        Ok(value)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Task(e.to_string()))?
}

pub(crate) fn serialize_cid<S: serde::Serializer>(
    cid: &Cid,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(cid)
}
