//! The embedded store's blocking core: block bodies in [`FlatFs`] files (or inline in SQLite
//! when small), metadata in SQLite (WAL mode, so several processes can open one store).
//!
//! Why SQLite over LMDB: WAL gives concurrent readers with one writer across processes, a
//! `busy_timeout` deadline instead of a deadlock, recursive CTEs that express GC's mark phase
//! in one statement, and no map-size tuning. `redb` was ruled out: it locks its file to one
//! process.
//!
//! Concurrency rules that make GC safe against writers in any process:
//! - every write of block metadata, every rename of a block file into place, and every GC sweep
//!   happens inside a `BEGIN IMMEDIATE` transaction, so they are serialised by SQLite's lock;
//! - a writer temp-pins every block of an in-flight add (a `temp_pins` row owned by its
//!   session), and a session is alive exactly while its process holds the `flock` on
//!   `sessions/<id>.lock`: the kernel drops it when the process dies, even on `kill -9`.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cid::Cid;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::flatfs::{remove_if_present, FlatFs};
use super::journal::Journal;
use crate::cid::{Block, Multihash, DAG_PB};
use crate::unixfs::pb;
use crate::{Error, Result};

/// Blocks up to this size live inline in SQLite: one row beats one file for small objects.
pub(crate) const INLINE_MAX: usize = 16 * 1024;
/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);
/// Access times are buffered in memory and written back when this many blocks were read, and
/// before every GC, eviction, usage report and close, so LRU decisions in this process always
/// see them. Other processes' unflushed reads are invisible until they flush.
const ACCESS_FLUSH: usize = 1 << 16;

const SCHEMA: &str = "
-- A block's metadata and, when small, its bytes (`data`; NULL when the bytes are a flatfs
-- file) in one row. A rowid table: inserts append, and only the multihash index takes a
-- random-key insert (a WITHOUT ROWID table with 4 KiB rows measured 6x slower).
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY,
    mh BLOB NOT NULL UNIQUE,
    codec INTEGER NOT NULL,
    size INTEGER NOT NULL,
    inline INTEGER NOT NULL,
    atime INTEGER NOT NULL,
    data BLOB
);
CREATE TABLE IF NOT EXISTS refs (
    parent BLOB NOT NULL,
    child BLOB NOT NULL,
    child_cid BLOB NOT NULL,
    PRIMARY KEY (parent, child)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pins (
    mh BLOB PRIMARY KEY,
    cid TEXT NOT NULL,
    recursive INTEGER NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS names (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    cid TEXT NOT NULL,
    mh BLOB NOT NULL,
    version INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE INDEX IF NOT EXISTS names_mh ON names(mh);
CREATE TABLE IF NOT EXISTS name_history (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    cid TEXT,
    at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name, version)
);
CREATE TABLE IF NOT EXISTS cache_entries (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    cid TEXT NOT NULL,
    stored_at INTEGER NOT NULL,
    ttl INTEGER NOT NULL,
    etag TEXT,
    last_modified TEXT,
    size INTEGER NOT NULL,
    last_access INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE TABLE IF NOT EXISTS cache_stats (
    namespace TEXT PRIMARY KEY,
    hits INTEGER NOT NULL,
    misses INTEGER NOT NULL,
    stale_hits INTEGER NOT NULL,
    evictions INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, pid INTEGER NOT NULL, started INTEGER NOT NULL);
-- Content this node's policy pins on a remote tier. A `pending` row (the remote has not yet
-- confirmed) is a GC root: until then the local copy may be the only one.
CREATE TABLE IF NOT EXISTS remote_pins (
    mh BLOB NOT NULL,
    cid TEXT NOT NULL,
    tier TEXT NOT NULL,
    state TEXT NOT NULL,
    updated INTEGER NOT NULL,
    error TEXT,
    PRIMARY KEY (mh, tier)
);
-- Files of blocks whose rows a committed GC deleted, to remove after that commit (see
-- `gc.rs`: a file goes only once no row can point at it).
CREATE TABLE IF NOT EXISTS doomed (mh BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS temp_pins (
    session TEXT NOT NULL,
    op INTEGER NOT NULL,
    mh BLOB NOT NULL,
    PRIMARY KEY (session, op, mh)
) WITHOUT ROWID;
";

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A temporary pin: protects the blocks written under it from GC until released or until its
/// process dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TempPin {
    op: u64,
    /// Whether the small blocks written under it go to the recovery journal (not for cache
    /// values: a rebuilt index has no cache entries to find them by).
    journal: bool,
}

/// This process's registration in the store (see the module docs): made on its first write,
/// so a process that only reads writes nothing (and works on a full or read-only disk).
#[derive(Debug)]
struct Session {
    id: String,
    lock_path: PathBuf,
    // Held for the session's life once registered; the flock goes with the descriptor.
    lock: Mutex<Option<File>>,
}

/// Blocks of at most this many bytes are kept aside in `reserve` so that `gc`, `pin rm` and
/// `names rm` can run on a full disk: SQLite needs room in its WAL to delete rows.
const RESERVE_BYTES: u64 = 16 << 20;
/// The reserve's file name in the store directory.
const RESERVE: &str = "reserve";
/// The schema version in `PRAGMA user_version` (2: the `doomed` table and the journal).
const SCHEMA_VERSION: i64 = 2;
/// Written at creation: a store with this file but no index lost its index (it did not
/// start empty), even when every block was small enough to live inside the index.
const MARKER: &str = "STORE";

/// The blocking store core. One per open store, shared by the async [`super::Store`].
#[derive(Debug)]
pub struct Engine {
    root: PathBuf,
    db_path: PathBuf,
    fs: FlatFs,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    session: Session,
    next_op: AtomicU64,
    next_tmp: AtomicU64,
    access: Mutex<HashMap<Multihash, i64>>,
    budget: Option<u64>,
    journal: Journal,
}

impl Engine {
    /// Opens or creates the store at `root`. Opening writes nothing to an existing store (the
    /// session is registered on the first write). A store whose index is missing, empty or
    /// unreadable while it holds data is an [`Error::StoreIndex`], never a fresh start.
    pub fn open(root: &Path, budget: Option<u64>) -> Result<Engine> {
        match Engine::open_checked(root, budget, true) {
            // SQLite creates and sizes the WAL index (`-shm`, 32 KiB) on every first open: on
            // a full disk even a read needs the reserve.
            Err(e) if e.is_no_space() && root.join(RESERVE).exists() => {
                tracing::warn!(error = %e, "the disk is full: using the store's reserve to open it");
                remove_if_present(&root.join(RESERVE))?;
                Engine::open_checked(root, budget, true)
            }
            other => other,
        }
    }

    /// [`Engine::open`]; without `check`, a missing index is created whatever the store holds
    /// (for [`Engine::rebuild_index`], which fills it).
    pub(crate) fn open_checked(root: &Path, budget: Option<u64>, check: bool) -> Result<Engine> {
        std::fs::create_dir_all(root).map_err(|e| Error::io("create directory", root, e))?;
        let db_path = root.join("meta.sqlite");
        let fs = FlatFs::open(root)?;
        if check {
            check_index(root, &db_path, &fs)?;
        }
        let (writer, reader, version) = retry_busy(&db_path, || {
            let writer = connect(&db_path)?;
            let version: i64 = writer
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .map_err(|e| db(&db_path, e))?;
            if version < SCHEMA_VERSION {
                writer
                    .execute_batch(&format!(
                        "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                    ))
                    .map_err(|e| db(&db_path, e))?;
            }
            Ok((writer, connect(&db_path)?, version))
        })?;
        write_marker(root);
        let engine = Engine::with(root, db_path, fs, writer, reader, budget);
        if version < SCHEMA_VERSION && engine.journal.len() == 0 {
            // A new store, or one from before the journal: write it from what the index holds.
            // (A journal that exists is kept: a rebuild is about to replay it.)
            if let Err(e) = engine.write(|tx| engine.journal.rewrite(&engine.journal_state(tx)?)) {
                tracing::warn!(error = %e, "could not write the store's recovery journal");
            }
        }
        engine.keep_reserve();
        tracing::debug!(store = %root.display(), session = %engine.session.id, "opened store");
        Ok(engine)
    }

    fn with(
        root: &Path,
        db_path: PathBuf,
        fs: FlatFs,
        writer: Connection,
        reader: Connection,
        budget: Option<u64>,
    ) -> Engine {
        // Unique per open: pid, clock and a per-process counter (two opens in one nanosecond).
        static OPENS: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let opens = OPENS.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:x}-{nanos:x}-{opens:x}", std::process::id());
        let lock_path = root.join("sessions").join(format!("{id}.lock"));
        Engine {
            root: root.to_path_buf(),
            db_path,
            fs,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            session: Session { id, lock_path, lock: Mutex::new(None) },
            next_op: AtomicU64::new(1),
            next_tmp: AtomicU64::new(0),
            access: Mutex::new(HashMap::new()),
            budget,
            journal: Journal::new(root),
        }
    }

    /// Registers this process's session (once): its `flock`ed lock file, then its row. Must
    /// precede any temp file or temp pin of this session, or a GC would take them for a dead
    /// session's.
    pub(crate) fn register(&self) -> Result<()> {
        let mut lock = self
            .session
            .lock
            .lock()
            .map_err(|_| Error::Task("store session lock poisoned".into()))?;
        if lock.is_some() {
            return Ok(());
        }
        let sessions = self.sessions_dir();
        std::fs::create_dir_all(&sessions)
            .map_err(|e| Error::io("create directory", &sessions, e))?;
        let path = &self.session.lock_path;
        let file = File::create(path).map_err(|e| Error::io("create", path, e))?;
        file.try_lock()
            .map_err(|e| Error::io("lock", path, std::io::Error::other(e.to_string())))?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO sessions (id, pid, started) VALUES (?1, ?2, ?3)",
                params![self.session.id, std::process::id(), now()],
            )
            .map_err(|e| self.db_err(e))?;
            Ok(())
        })?;
        *lock = Some(file);
        Ok(())
    }

    fn registered(&self) -> bool {
        self.session.lock.lock().is_ok_and(|lock| lock.is_some())
    }

    fn reserve_path(&self) -> PathBuf {
        self.root.join(RESERVE)
    }

    /// Keeps [`RESERVE_BYTES`] allocated in `reserve` while the disk has room to spare (best
    /// effort: a store on a nearly full disk simply has none until space returns).
    pub(crate) fn keep_reserve(&self) {
        let path = self.reserve_path();
        if path.exists() {
            return;
        }
        let spare = rustix::fs::statvfs(&self.root)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .unwrap_or(0);
        if spare < RESERVE_BYTES.saturating_mul(4) {
            return;
        }
        let made = File::create(&path).and_then(|file| {
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, RESERVE_BYTES)
                .map_err(std::io::Error::from)
                .and_then(|()| file.sync_all())
        });
        if let Err(e) = made {
            tracing::debug!(error = %e, "could not set aside the store's reserve");
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Runs `op`; if it fails because the disk is full, frees the reserve and runs it once
    /// more. For the operations that free space (`gc`, `pin rm`, `names rm`).
    pub(crate) fn with_room<T>(&self, op: impl Fn() -> Result<T>) -> Result<T> {
        match op() {
            Err(e) if e.is_no_space() && self.reserve_path().exists() => {
                tracing::warn!(error = %e, "the disk is full: using the store's reserve");
                remove_if_present(&self.reserve_path())?;
                let result = op();
                self.keep_reserve();
                result
            }
            other => other,
        }
    }

    /// Where the store lives.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configured size budget for unpinned content.
    pub fn budget(&self) -> Option<u64> {
        self.budget
    }

    pub(crate) fn journal(&self) -> &Journal {
        &self.journal
    }

    pub(crate) fn fs(&self) -> &FlatFs {
        &self.fs
    }

    pub(crate) fn db_err(&self, e: rusqlite::Error) -> Error {
        db(&self.db_path, e)
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`: serialised across processes).
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn =
            self.writer.lock().map_err(|_| Error::Task("store writer lock poisoned".into()))?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db_err(e))?;
        let value = f(&tx)?;
        tx.commit().map_err(|e| self.db_err(e))?;
        Ok(value)
    }

    /// Runs `f` on the read connection (a consistent snapshot per statement).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn =
            self.reader.lock().map_err(|_| Error::Task("store reader lock poisoned".into()))?;
        f(&conn)
    }

    /// Starts a temporary pin for an in-flight write.
    pub fn temp_pin(&self) -> TempPin {
        TempPin { op: self.next_op.fetch_add(1, Ordering::Relaxed), journal: true }
    }

    /// A temporary pin whose blocks stay out of the recovery journal (cache values).
    pub(crate) fn temp_pin_unjournaled(&self) -> TempPin {
        TempPin { journal: false, ..self.temp_pin() }
    }

    /// Releases a temporary pin (its blocks become ordinary unpinned content), in `tx`.
    pub(crate) fn release_in(&self, tx: &rusqlite::Transaction<'_>, pin: TempPin) -> Result<()> {
        tx.execute(
            "DELETE FROM temp_pins WHERE session = ?1 AND op = ?2",
            params![self.session.id, pin.op as i64],
        )
        .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Releases a temporary pin.
    pub fn release(&self, pin: TempPin) -> Result<()> {
        if !self.registered() {
            return Ok(()); // nothing was written under it (and the disk may be read-only)
        }
        self.write(|tx| self.release_in(tx, pin))
    }

    /// Stores `blocks` with one durable commit: bodies over [`INLINE_MAX`] are written to temp
    /// files and flushed with one `syncfs`, then renamed into place and recorded in one
    /// transaction. Blocks already present are only (temp-)pinned. Returns the bytes added.
    pub fn put_blocks(&self, blocks: &[Block], pin: Option<TempPin>) -> Result<u64> {
        self.register()?;
        // Bodies are written before taking the lock, so other writers are not held up by I/O.
        let mut temps: HashMap<usize, PathBuf> = HashMap::new();
        for (i, block) in blocks.iter().enumerate() {
            let mh = block.cid().hash().to_bytes();
            if block.data().len() > INLINE_MAX && !(self.has_mh(&mh)? && self.fs.exists(&mh)?) {
                temps.insert(i, self.fs.write_temp(&self.temp_name(), block.data())?);
            }
        }
        if !temps.is_empty() {
            self.fs.sync()?;
        }
        let result = self.write(|tx| {
            let mut added = 0u64;
            let mut renamed = false;
            let mut journal = Vec::new();
            let t = now();
            for (i, block) in blocks.iter().enumerate() {
                let mh = block.cid().hash().to_bytes();
                let row_inline: Option<bool> = tx
                    .prepare_cached("SELECT inline FROM blocks WHERE mh = ?1")
                    .and_then(|mut s| s.query_row(params![mh], |row| row.get(0)).optional())
                    .map_err(|e| self.db_err(e))?;
                let mut place_file = |temp: Option<PathBuf>| -> Result<()> {
                    let temp = match temp {
                        Some(temp) => temp,
                        // Collected by a GC since we looked: write it now, under the lock.
                        None => self.fs.write_temp(&self.temp_name(), block.data())?,
                    };
                    self.fs.commit(&temp, &mh)?;
                    renamed = true;
                    Ok(())
                };
                // A row whose file is gone (deleted by hand, or by a GC of an older version
                // that removed files before committing): these bytes restore it.
                if row_inline == Some(false) && !self.fs.exists(&mh)? {
                    tracing::warn!(cid = %block.cid(), "block file was missing; rewritten from the added bytes");
                    place_file(temps.remove(&i))?;
                }
                if row_inline.is_none() {
                    let inline = block.data().len() <= INLINE_MAX;
                    if !inline {
                        place_file(temps.remove(&i))?;
                    }
                    let data = inline.then(|| block.data());
                    if inline && pin.is_none_or(|pin| pin.journal) {
                        super::journal::encode_block(&mut journal, block.cid(), block.data());
                    }
                    tx.prepare_cached("INSERT INTO blocks (mh, codec, size, inline, atime, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                        .and_then(|mut s| s.execute(params![mh, block.cid().codec() as i64, block.data().len() as i64, inline, t, data]))
                        .map_err(|e| self.db_err(e))?;
                    if block.cid().codec() == DAG_PB {
                        for child in pb::links(block.cid(), block.data())? {
                            tx.prepare_cached("INSERT OR IGNORE INTO refs (parent, child, child_cid) VALUES (?1, ?2, ?3)")
                                .and_then(|mut s| s.execute(params![mh, child.hash().to_bytes(), child.to_bytes()]))
                                .map_err(|e| self.db_err(e))?;
                        }
                    }
                    added += block.data().len() as u64;
                }
                if let Some(pin) = pin {
                    tx.prepare_cached("INSERT OR IGNORE INTO temp_pins (session, op, mh) VALUES (?1, ?2, ?3)")
                        .and_then(|mut s| s.execute(params![self.session.id, pin.op as i64, mh]))
                        .map_err(|e| self.db_err(e))?;
                }
            }
            self.journal.append_encoded(&journal)?;
            if renamed {
                crate::crash::crash_point("put-renamed");
                // The renames must be durable before the rows that point at them.
                self.fs.sync()?;
            }
            Ok(added)
        });
        // Temp files of blocks that turned out to exist already.
        for temp in temps.values() {
            remove_if_present(temp)?;
        }
        result
    }

    /// A fresh temp file name owned by this session.
    fn temp_name(&self) -> String {
        format!("{}-{}", self.session.id, self.next_tmp.fetch_add(1, Ordering::Relaxed))
    }

    fn has_mh(&self, mh: &[u8]) -> Result<bool> {
        self.read(|conn| {
            conn.prepare_cached("SELECT 1 FROM blocks WHERE mh = ?1")
                .and_then(|mut s| s.exists(params![mh]))
                .map_err(|e| self.db_err(e))
        })
    }

    /// Whether the block is in the store.
    pub fn has(&self, cid: &Cid) -> Result<bool> {
        self.has_mh(&cid.hash().to_bytes())
    }

    /// The verified block for `cid`: [`Error::NotFound`] when absent, [`Error::Corrupt`] when
    /// its stored bytes no longer match.
    pub fn get(&self, cid: &Cid) -> Result<Block> {
        self.read(|conn| self.get_in(conn, cid))
    }

    /// Verified blocks for `cids`, read under one snapshot (one read transaction: the WAL
    /// and file locks are taken once per batch, not once per block).
    pub fn get_many(&self, cids: &[Cid]) -> Result<Vec<Block>> {
        self.read(|conn| {
            conn.execute_batch("BEGIN DEFERRED").map_err(|e| self.db_err(e))?;
            let blocks = cids.iter().map(|cid| self.get_in(conn, cid)).collect();
            conn.execute_batch("COMMIT").map_err(|e| self.db_err(e))?;
            blocks
        })
    }

    fn get_in(&self, conn: &Connection, cid: &Cid) -> Result<Block> {
        let mh = cid.hash().to_bytes();
        // No row: not here. A row without bytes: the bytes are a file.
        let row: Option<Option<Vec<u8>>> = conn
            .prepare_cached("SELECT data FROM blocks WHERE mh = ?1")
            .and_then(|mut s| s.query_row(params![mh], |row| row.get(0)).optional())
            .map_err(|e| self.db_err(e))?;
        let not_found = || Error::NotFound { cid: cid.to_string() };
        let data = match row {
            None => return Err(not_found()),
            Some(Some(data)) => data,
            Some(None) => self.fs.read(&mh)?.ok_or_else(not_found)?,
        };
        let block = Block::verified(*cid, data)?;
        self.touch(*cid.hash());
        Ok(block)
    }

    /// Records an access for LRU eviction; written back in batches, not per read.
    fn touch(&self, mh: Multihash) {
        let full = match self.access.lock() {
            Ok(mut access) => {
                access.insert(mh, now());
                access.len() >= ACCESS_FLUSH
            }
            Err(_) => false,
        };
        if full {
            if let Err(e) = self.flush_access() {
                tracing::warn!(error = %e, "could not record access times");
            }
        }
    }

    /// Writes buffered access times to the database.
    pub fn flush_access(&self) -> Result<()> {
        let pending = match self.access.lock() {
            Ok(mut access) => std::mem::take(&mut *access),
            Err(_) => return Ok(()),
        };
        if pending.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut stmt = tx
                .prepare_cached("UPDATE blocks SET atime = ?2 WHERE mh = ?1 AND atime < ?2")
                .map_err(|e| self.db_err(e))?;
            for (mh, t) in &pending {
                stmt.execute(params![mh.to_bytes(), t]).map_err(|e| self.db_err(e))?;
            }
            Ok(())
        })
    }

    /// This session's id (the owner of its temp pins and temp files).
    pub(crate) fn session_id(&self) -> &str {
        &self.session.id
    }

    /// The sessions directory.
    pub(crate) fn sessions_dir(&self) -> PathBuf {
        self.root.join("sessions")
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(e) = self.flush_access() {
            // A read-only or full disk: the access times are a hint, not data.
            tracing::debug!(error = %e, "could not record access times on close");
        }
        if !self.registered() {
            return;
        }
        let id = self.session.id.clone();
        // On failure the next GC reaps this session (its lock is released when we exit).
        let _ = self.write(|tx| {
            tx.execute("DELETE FROM temp_pins WHERE session = ?1", params![id])
                .map_err(|e| self.db_err(e))?;
            tx.execute("DELETE FROM sessions WHERE id = ?1", params![id])
                .map_err(|e| self.db_err(e))?;
            Ok(())
        });
        let _ = remove_if_present(&self.session.lock_path);
    }
}

/// Refuses to open over a lost index: `meta.sqlite` missing, empty or not a database while the
/// store has block files or was created before (its marker). A brand-new directory passes.
fn check_index(root: &Path, db_path: &Path, fs: &FlatFs) -> Result<()> {
    let size = match std::fs::metadata(db_path) {
        Ok(meta) => Some(meta.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("stat", db_path, e)),
    };
    let lost = |reason: &str| {
        let marker = root.join(MARKER).exists();
        match fs.block_files()?.into_iter().next() {
            Some((file, _)) => Err(Error::StoreIndex {
                path: db_path.to_path_buf(),
                reason: format!("{reason}, but block files are present (e.g. {})", file.display()),
            }),
            None if marker => Err(Error::StoreIndex {
                path: db_path.to_path_buf(),
                reason: format!(
                    "{reason}, but this store was created before (its {MARKER} file is there)"
                ),
            }),
            None => Ok(()),
        }
    };
    match size {
        None => return lost("it is missing"),
        Some(0) => return lost("it is empty"),
        Some(_) => {}
    }
    // A file that is there: is it a database with our tables?
    let conn = Connection::open_with_flags(db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| db(db_path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| db(db_path, e))?;
    let tables: std::result::Result<i64, rusqlite::Error> = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'blocks'",
        [],
        |row| row.get(0),
    );
    match tables {
        Ok(1) => Ok(()),
        Ok(_) => lost("it has no blocks table"),
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
            ) =>
        {
            Err(Error::StoreIndex {
                path: db_path.to_path_buf(),
                reason: format!("it is not a readable database ({e})"),
            })
        }
        // Busy, locked, cannot open -shm on a read-only disk…: not a verdict on the index.
        Err(e) => {
            tracing::debug!(error = %e, "index check inconclusive");
            Ok(())
        }
    }
}

fn write_marker(root: &Path) {
    let marker = root.join(MARKER);
    if !marker.exists() {
        let text =
            "An ipfs-accelerate content-addressed store. Blocks: blocks/; index: meta.sqlite.\n";
        if let Err(e) = std::fs::write(&marker, text) {
            tracing::debug!(error = %e, "could not write the store marker");
        }
    }
}

/// Retries `f` while the database reports busy or locked, until [`BUSY_TIMEOUT`].
///
/// The busy handler covers ordinary lock waits, but not every case: switching a new database
/// to WAL, or opening while another process runs WAL recovery, fails at once with SQLITE_BUSY.
/// That happens when several processes create one store together.
fn retry_busy<T>(path: &Path, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match f() {
            Err(Error::Database { source, .. })
                if is_busy(&source) && std::time::Instant::now() < deadline =>
            {
                tracing::debug!(db = %path.display(), "store database busy while opening; retrying");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| db(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| db(path, e))?;
    // The first statement that reads the file: on a read-only filesystem it is the one that
    // cannot open the WAL index.
    let mode: String = match conn.pragma_query_value(None, "journal_mode", |row| row.get(0)) {
        Ok(mode) => mode,
        Err(e) if read_only_disk(&e) => return connect_immutable(path),
        Err(e) => return Err(db(path, e)),
    };
    // Measured with examples/blockbench (4 KiB blocks, batches of 1,000): 16 KiB pages speed
    // puts (52k/s) but halve gets (39k/s); default 4 KiB pages with a 64 MiB checkpoint
    // interval give 35k puts/s and 82k gets/s. The longer interval coalesces rewrites of the
    // same index pages between checkpoints.
    conn.pragma_update(None, "cache_size", -65536).map_err(|e| db(path, e))?;
    conn.pragma_update(None, "wal_autocheckpoint", 16384).map_err(|e| db(path, e))?;
    conn.pragma_update(None, "mmap_size", 1i64 << 30).map_err(|e| db(path, e))?;
    // WAL: readers never block the writer; FULL: a commit is durable when it returns. The
    // mode is persistent, so it is set only when not yet WAL (setting it is a write).
    if !mode.eq_ignore_ascii_case("wal") {
        conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| db(path, e))?;
    }
    conn.pragma_update(None, "synchronous", "FULL").map_err(|e| db(path, e))?;
    Ok(conn)
}

/// SQLite could not open the WAL index (`-shm`) for writing: a read-only filesystem.
fn read_only_disk(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
    )
}

/// The database on a read-only filesystem, where no other process can be writing it: opened
/// `immutable`, so SQLite needs neither the `-shm` file nor locks. Reads work; writes fail
/// with SQLite's read-only error.
fn connect_immutable(path: &Path) -> Result<Connection> {
    tracing::debug!(db = %path.display(), "read-only filesystem: opening the index immutable");
    let uri = format!("file:{}?immutable=1", path.display());
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    Connection::open_with_flags(uri, flags).map_err(|e| db(path, e))
}

pub(crate) fn db(path: &Path, source: rusqlite::Error) -> Error {
    Error::Database { path: path.to_path_buf(), source }
}
