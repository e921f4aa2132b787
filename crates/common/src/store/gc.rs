//! Pins, garbage collection, budget eviction, stat and verify on the [`Engine`].
//!
//! Liveness is computed in SQL: the recursive closure over `refs` of recursive pins and names,
//! plus direct pins and live sessions' temp pins. Everything runs inside one `BEGIN IMMEDIATE`
//! transaction, so no writer in any process can interleave with a sweep.

use std::collections::HashSet;

use cid::Cid;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::engine::{now, Engine};
use super::flatfs::{read_dir, remove_if_present};
use super::journal::Record;
use crate::cid::Block;
use crate::{Error, Result};

/// How a CID is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PinMode {
    /// The block and every block under it.
    Recursive,
    /// The block alone.
    Direct,
}

/// A pinned root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pin {
    /// The CID as it was pinned.
    pub cid: String,
    /// Recursive or direct.
    pub mode: PinMode,
}

/// What a GC or eviction removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Blocks removed.
    pub blocks_removed: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Stray files from interrupted writes removed.
    pub stray_files_removed: u64,
    /// Sessions of processes that died, whose temporary pins were dropped.
    pub dead_sessions_reaped: u64,
}

/// Where a DAG stands in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DagStat {
    /// Blocks of the DAG present locally.
    pub blocks_present: u64,
    /// Blocks the DAG links to that are not present.
    pub blocks_missing: u64,
    /// Bytes of the blocks present.
    pub bytes_present: u64,
    /// How the root is pinned, if it is.
    pub pinned: Option<PinMode>,
    /// Names pointing at the root, as `namespace/name`.
    pub names: Vec<String>,
}

/// The store as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Blocks stored.
    pub blocks: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Bytes that are not pinned, named or temp-pinned: what `gc` would free.
    pub reclaimable_bytes: u64,
    /// Pinned roots.
    pub pins: u64,
    /// Names set.
    pub names: u64,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Blocks checked.
    pub checked: u64,
    /// Blocks whose bytes do not hash to their CID.
    pub corrupt: Vec<String>,
    /// Blocks recorded but whose bytes are gone.
    pub missing: Vec<String>,
}

impl VerifyReport {
    /// Whether everything checked out.
    pub fn is_ok(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty()
    }
}

pub(super) const LIVE_SQL: &str = "
CREATE TEMP TABLE IF NOT EXISTS live (mh BLOB PRIMARY KEY) WITHOUT ROWID;
DELETE FROM temp.live;
INSERT OR IGNORE INTO temp.live (mh)
WITH RECURSIVE reach(mh) AS (
    SELECT mh FROM pins WHERE recursive = 1
    UNION SELECT mh FROM names
    UNION SELECT mh FROM remote_pins WHERE state = 'pending'
    UNION SELECT refs.child FROM refs JOIN reach ON refs.parent = reach.mh
)
SELECT mh FROM reach
UNION SELECT mh FROM pins WHERE recursive = 0
UNION SELECT mh FROM temp_pins;
";

const DAG_SQL: &str = "
WITH RECURSIVE reach(mh) AS (
    SELECT ?1
    UNION SELECT refs.child FROM refs JOIN reach ON refs.parent = reach.mh
)";

impl Engine {
    /// Pins `cid`. A recursive pin requires the whole DAG to be present: the first missing
    /// block is an [`Error::NotFound`] and nothing is pinned.
    pub fn pin(&self, cid: &Cid, mode: PinMode) -> Result<()> {
        self.write(|tx| self.pin_in(tx, cid, mode))
    }

    /// Pins inside an existing transaction (used by add to pin and release atomically).
    pub(crate) fn pin_in(
        &self,
        tx: &rusqlite::Transaction<'_>,
        cid: &Cid,
        mode: PinMode,
    ) -> Result<()> {
        self.check_complete(tx, cid, mode)?;
        tx.execute(
            "INSERT INTO pins (mh, cid, recursive, created) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (mh) DO UPDATE SET recursive = max(recursive, excluded.recursive), cid = excluded.cid",
            params![cid.hash().to_bytes(), cid.to_string(), mode == PinMode::Recursive, now()],
        )
        .map_err(|e| self.db_err(e))?;
        self.journal().append(&[Record::Pin { cid: *cid, recursive: mode == PinMode::Recursive }])
    }

    /// Fails with the first missing block of `cid`'s DAG (only the root for a direct pin).
    pub(crate) fn check_complete(
        &self,
        conn: &rusqlite::Connection,
        cid: &Cid,
        mode: PinMode,
    ) -> Result<()> {
        let mh = cid.hash().to_bytes();
        let root_present = conn
            .prepare_cached("SELECT 1 FROM blocks WHERE mh = ?1")
            .and_then(|mut s| s.exists(params![mh]))
            .map_err(|e| self.db_err(e))?;
        if !root_present {
            return Err(Error::NotFound { cid: cid.to_string() });
        }
        if mode == PinMode::Direct {
            return Ok(());
        }
        let missing: Option<Vec<u8>> = conn
            .prepare_cached(&format!(
                "{DAG_SQL} SELECT refs.child_cid FROM refs JOIN reach ON refs.parent = reach.mh
                 WHERE NOT EXISTS (SELECT 1 FROM blocks WHERE blocks.mh = refs.child) LIMIT 1"
            ))
            .and_then(|mut s| s.query_row(params![mh], |row| row.get(0)).optional())
            .map_err(|e| self.db_err(e))?;
        match missing {
            Some(bytes) => {
                let child = Cid::try_from(bytes.as_slice())
                    .map(|c| c.to_string())
                    .unwrap_or_else(|_| "<unparseable link>".into());
                Err(Error::NotFound { cid: child })
            }
            None => Ok(()),
        }
    }

    /// Removes the pin on `cid` (either mode); [`Error::NotPinned`] if there was none.
    pub fn unpin(&self, cid: &Cid) -> Result<()> {
        let removed = self.with_room(|| {
            self.write(|tx| {
                let removed = tx
                    .execute("DELETE FROM pins WHERE mh = ?1", params![cid.hash().to_bytes()])
                    .map_err(|e| self.db_err(e))?;
                if removed > 0 {
                    self.journal().append(&[Record::Unpin { cid: *cid }])?;
                }
                Ok(removed)
            })
        })?;
        if removed == 0 {
            return Err(Error::NotPinned { cid: cid.to_string() });
        }
        Ok(())
    }

    /// Every pinned root.
    pub fn pins(&self) -> Result<Vec<Pin>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT cid, recursive FROM pins ORDER BY created, cid")
                .map_err(|e| self.db_err(e))?;
            let rows = stmt
                .query_map([], |row| {
                    let recursive: bool = row.get(1)?;
                    Ok(Pin {
                        cid: row.get(0)?,
                        mode: if recursive { PinMode::Recursive } else { PinMode::Direct },
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| self.db_err(e))?;
            Ok(rows)
        })
    }

    /// Removes every block that is not pinned, named or temp-pinned by a live session, plus
    /// stray files of interrupted writes.
    pub fn gc(&self) -> Result<GcReport> {
        self.with_room(|| self.sweep(None))
    }

    /// Evicts least-recently-used unprotected blocks until the store is within its budget.
    pub fn enforce_budget(&self) -> Result<GcReport> {
        let Some(budget) = self.budget() else { return Ok(GcReport::default()) };
        let bytes: i64 = self.read(|conn| {
            conn.query_row("SELECT COALESCE(SUM(size), 0) FROM blocks", [], |row| row.get(0))
                .map_err(|e| self.db_err(e))
        })?;
        let excess = (bytes as u64).saturating_sub(budget);
        if excess == 0 {
            return Ok(GcReport::default());
        }
        self.sweep(Some(excess))
    }

    /// Mark and sweep; with `want`, stops once that many bytes are freed, oldest access first.
    ///
    /// Two transactions, so a kill at any instant loses nothing live: the first deletes the
    /// dead rows and records their files in `doomed`, and commits; only then does the second
    /// remove those files — each only if no row has come back for it meanwhile (a writer may
    /// have added the same bytes again between the two). A row therefore never points at a
    /// removed file. A kill between the two leaves `doomed` rows that the next sweep finishes.
    fn sweep(&self, want: Option<u64>) -> Result<GcReport> {
        if want.is_some() {
            // Eviction goes by access time; a full GC does not need them.
            self.flush_access()?;
        }
        let mut report = self.write(|tx| {
            let mut report = GcReport { dead_sessions_reaped: self.reap_dead_sessions(tx)?, ..GcReport::default() };
            tx.execute_batch(LIVE_SQL).map_err(|e| self.db_err(e))?;
            let candidates: Vec<(Vec<u8>, bool, i64)> = tx
                .prepare(
                    "SELECT mh, inline, size FROM blocks WHERE NOT EXISTS (SELECT 1 FROM temp.live WHERE live.mh = blocks.mh)
                     ORDER BY atime, mh",
                )
                .and_then(|mut s| s.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.collect())
                .map_err(|e| self.db_err(e))?;
            for (mh, inline, size) in candidates {
                if want.is_some_and(|want| report.bytes_freed >= want) {
                    break;
                }
                for sql in ["DELETE FROM blocks WHERE mh = ?1", "DELETE FROM refs WHERE parent = ?1"] {
                    tx.prepare_cached(sql).and_then(|mut s| s.execute(params![mh])).map_err(|e| self.db_err(e))?;
                }
                if !inline {
                    tx.prepare_cached("INSERT OR IGNORE INTO doomed (mh) VALUES (?1)")
                        .and_then(|mut s| s.execute(params![mh]))
                        .map_err(|e| self.db_err(e))?;
                }
                report.blocks_removed += 1;
                report.bytes_freed = report.bytes_freed.saturating_add(u64::try_from(size).unwrap_or(0));
            }
            tx.execute_batch("DELETE FROM temp.live").map_err(|e| self.db_err(e))?;
            crate::crash::crash_point("gc-rows-deleted");
            Ok(report)
        })?;
        crate::crash::crash_point("gc-committed");
        self.write(|tx| {
            self.remove_doomed(tx)?;
            if want.is_none() {
                report.stray_files_removed = self.remove_strays(tx)?;
            }
            // Eviction too: a store kept in budget by eviction alone may never see a full GC.
            self.compact_journal(tx)?;
            Ok(())
        })?;
        Ok(report)
    }

    /// Rewrites the journal to the live small blocks, pins and names once deleted content
    /// makes up most of it (under the write lock, so no append races the rename).
    pub(crate) fn compact_journal(&self, tx: &rusqlite::Transaction<'_>) -> Result<()> {
        let live: i64 = tx
            .query_row(
                "SELECT COALESCE(SUM(size + 64), 0) + (SELECT COUNT(*) * 128 FROM pins) + (SELECT COUNT(*) * 192 FROM names)
                 FROM blocks WHERE inline = 1",
                [],
                |row| row.get(0),
            )
            .map_err(|e| self.db_err(e))?;
        let live = u64::try_from(live).unwrap_or(0);
        if self.journal().len() <= live.saturating_mul(2).saturating_add(1 << 20) {
            return Ok(());
        }
        self.journal().rewrite(&self.journal_state(tx)?)
    }

    /// The records that rebuild what the index holds now: small blocks, pins, names.
    pub(crate) fn journal_state(&self, tx: &rusqlite::Connection) -> Result<Vec<Record>> {
        let mut records = Vec::new();
        let cid_of = |codec: i64, mh: &[u8]| -> Option<Cid> {
            let hash = crate::cid::Multihash::from_bytes(mh).ok()?;
            Some(Cid::new_v1(u64::try_from(codec).ok()?, hash))
        };
        let blocks: Vec<(Vec<u8>, i64, Vec<u8>)> = tx
            .prepare("SELECT mh, codec, data FROM blocks WHERE inline = 1 ORDER BY id")
            .and_then(|mut s| {
                s.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.collect()
            })
            .map_err(|e| self.db_err(e))?;
        records.extend(blocks.into_iter().filter_map(|(mh, codec, data)| {
            Some(Record::Block { cid: cid_of(codec, &mh)?, data })
        }));
        let pins: Vec<(String, bool)> = tx
            .prepare("SELECT cid, recursive FROM pins ORDER BY created")
            .and_then(|mut s| s.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect())
            .map_err(|e| self.db_err(e))?;
        records.extend(pins.into_iter().filter_map(|(cid, recursive)| {
            Some(Record::Pin { cid: crate::cid::parse(&cid).ok()?, recursive })
        }));
        let names: Vec<(String, String, String)> = tx
            .prepare("SELECT namespace, name, cid FROM names ORDER BY updated")
            .and_then(|mut s| {
                s.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.collect()
            })
            .map_err(|e| self.db_err(e))?;
        records.extend(names.into_iter().filter_map(|(namespace, name, cid)| {
            Some(Record::Name { namespace, name, cid: crate::cid::parse(&cid).ok()? })
        }));
        Ok(records)
    }

    /// Removes the files of blocks whose rows a sweep deleted, unless a row is back.
    fn remove_doomed(&self, tx: &rusqlite::Transaction<'_>) -> Result<()> {
        let doomed: Vec<Vec<u8>> = tx
            .prepare("SELECT mh FROM doomed WHERE NOT EXISTS (SELECT 1 FROM blocks WHERE blocks.mh = doomed.mh AND inline = 0)")
            .and_then(|mut s| s.query_map([], |row| row.get(0))?.collect())
            .map_err(|e| self.db_err(e))?;
        for mh in doomed {
            self.fs().remove(&mh)?;
            crate::crash::crash_point("gc-file-removed");
        }
        tx.execute("DELETE FROM doomed", []).map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// The ids of the sessions registered in the store.
    fn session_ids<C: FromIterator<String>>(&self, tx: &rusqlite::Transaction<'_>) -> Result<C> {
        tx.prepare("SELECT id FROM sessions")
            .and_then(|mut s| s.query_map([], |row| row.get(0))?.collect())
            .map_err(|e| self.db_err(e))
    }

    /// Drops the temp pins of sessions whose process is gone (its `flock` is free).
    fn reap_dead_sessions(&self, tx: &rusqlite::Transaction<'_>) -> Result<u64> {
        let sessions: Vec<String> = self.session_ids(tx)?;
        let mut reaped = 0;
        for id in sessions {
            if id == self.session_id() {
                continue;
            }
            let path = self.sessions_dir().join(format!("{id}.lock"));
            let alive = match std::fs::File::open(&path) {
                // A lock we can take is a lock nobody holds.
                Ok(file) => file.try_lock().is_err(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(Error::io("open", &path, e)),
            };
            if !alive {
                tx.execute("DELETE FROM temp_pins WHERE session = ?1", params![id])
                    .map_err(|e| self.db_err(e))?;
                tx.execute("DELETE FROM sessions WHERE id = ?1", params![id])
                    .map_err(|e| self.db_err(e))?;
                remove_if_present(&path)?;
                reaped += 1;
            }
        }
        Ok(reaped)
    }

    /// Removes block files no row points at (a writer killed between rename and commit) and
    /// temp files of dead sessions. Runs under the write lock, so no writer is mid-rename.
    fn remove_strays(&self, tx: &rusqlite::Transaction<'_>) -> Result<u64> {
        let live_sessions: HashSet<String> = self.session_ids(tx)?;
        let mut removed = 0;
        for entry in read_dir(self.fs().tmp_dir())? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let session = name.rsplit_once('-').map_or(name.as_str(), |(s, _)| s);
            if !live_sessions.contains(session) {
                remove_if_present(&entry.path())?;
                removed += 1;
            }
        }
        let mut exists = tx
            .prepare_cached("SELECT 1 FROM blocks WHERE mh = ?1 AND inline = 0")
            .map_err(|e| self.db_err(e))?;
        for (path, mh) in self.fs().block_files()? {
            if !exists.exists(params![mh]).map_err(|e| self.db_err(e))? {
                remove_if_present(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Presence, size, pin and names of `cid`'s DAG.
    pub fn dag_stat(&self, cid: &Cid) -> Result<DagStat> {
        let mh = cid.hash().to_bytes();
        self.read(|conn| {
            let (present, missing, bytes): (i64, i64, i64) = conn
                .prepare_cached(&format!(
                    "{DAG_SQL} SELECT COUNT(blocks.mh), COUNT(*) - COUNT(blocks.mh), COALESCE(SUM(blocks.size), 0)
                     FROM reach LEFT JOIN blocks ON blocks.mh = reach.mh"
                ))
                .and_then(|mut s| s.query_row(params![mh], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))))
                .map_err(|e| self.db_err(e))?;
            let pinned: Option<bool> = conn
                .prepare_cached("SELECT recursive FROM pins WHERE mh = ?1")
                .and_then(|mut s| s.query_row(params![mh], |row| row.get(0)).optional())
                .map_err(|e| self.db_err(e))?;
            let names: Vec<String> = conn
                .prepare_cached("SELECT namespace || '/' || name FROM names WHERE mh = ?1 ORDER BY 1")
                .and_then(|mut s| s.query_map(params![mh], |row| row.get(0))?.collect())
                .map_err(|e| self.db_err(e))?;
            Ok(DagStat {
                blocks_present: present as u64,
                blocks_missing: missing as u64,
                bytes_present: bytes as u64,
                pinned: pinned.map(|r| if r { PinMode::Recursive } else { PinMode::Direct }),
                names,
            })
        })
    }

    /// Totals for the whole store, including what GC would free.
    pub fn usage(&self) -> Result<Usage> {
        // One read snapshot (temp tables live outside the store), so a read-only or full disk
        // still reports.
        self.read(|conn| {
            conn.execute_batch("BEGIN DEFERRED").map_err(|e| self.db_err(e))?;
            let usage = self.usage_in(conn);
            let end = if usage.is_ok() { "COMMIT" } else { "ROLLBACK" };
            conn.execute_batch(end).map_err(|e| self.db_err(e))?;
            usage
        })
    }

    fn usage_in(&self, tx: &rusqlite::Connection) -> Result<Usage> {
        {
            let (blocks, bytes): (i64, i64) = tx
                .query_row("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blocks", [], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .map_err(|e| self.db_err(e))?;
            tx.execute_batch(LIVE_SQL).map_err(|e| self.db_err(e))?;
            let reclaimable: i64 = tx
                .query_row(
                    "SELECT COALESCE(SUM(size), 0) FROM blocks WHERE NOT EXISTS (SELECT 1 FROM temp.live WHERE live.mh = blocks.mh)",
                    [],
                    |row| row.get(0),
                )
                .map_err(|e| self.db_err(e))?;
            tx.execute_batch("DELETE FROM temp.live").map_err(|e| self.db_err(e))?;
            let pins: i64 = tx
                .query_row("SELECT COUNT(*) FROM pins", [], |row| row.get(0))
                .map_err(|e| self.db_err(e))?;
            let names: i64 = tx
                .query_row("SELECT COUNT(*) FROM names", [], |row| row.get(0))
                .map_err(|e| self.db_err(e))?;
            Ok(Usage {
                blocks: blocks as u64,
                bytes: bytes as u64,
                reclaimable_bytes: reclaimable as u64,
                pins: pins as u64,
                names: names as u64,
            })
        }
    }

    /// Rehashes every stored block; reports corrupt and missing ones by CID.
    pub fn verify(&self) -> Result<VerifyReport> {
        let rows: Vec<(Vec<u8>, i64)> = self.read(|conn| {
            conn.prepare("SELECT mh, codec FROM blocks ORDER BY mh")
                .and_then(|mut s| s.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect())
                .map_err(|e| self.db_err(e))
        })?;
        let mut report = VerifyReport::default();
        for (mh, codec) in rows {
            let Ok(hash) = crate::cid::Multihash::from_bytes(&mh) else { continue };
            let cid = Cid::new_v1(codec as u64, hash);
            report.checked += 1;
            match self.get(&cid) {
                Ok(_) => {}
                Err(Error::Corrupt { cid, .. }) => report.corrupt.push(cid),
                Err(Error::NotFound { cid }) => report.missing.push(cid),
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Replaces the bytes of a block that is corrupt or missing with a verified copy.
    pub fn rewrite(&self, block: &Block) -> Result<()> {
        let mh = block.cid().hash().to_bytes();
        self.write(|tx| {
            let inline: Option<bool> = tx
                .prepare_cached("SELECT inline FROM blocks WHERE mh = ?1")
                .and_then(|mut s| s.query_row(params![mh], |row| row.get(0)).optional())
                .map_err(|e| self.db_err(e))?;
            match inline {
                Some(true) => {
                    tx.execute(
                        "UPDATE blocks SET data = ?2 WHERE mh = ?1",
                        params![mh, block.data()],
                    )
                    .map_err(|e| self.db_err(e))?;
                    self.journal().append(&[Record::Block {
                        cid: *block.cid(),
                        data: block.data().to_vec(),
                    }])?;
                }
                Some(false) => {
                    let temp = self
                        .fs()
                        .write_temp(&format!("{}-repair", self.session_id()), block.data())?;
                    self.fs().sync()?;
                    self.fs().commit(&temp, &mh)?;
                    crate::crash::crash_point("repair-renamed");
                    self.fs().sync()?;
                }
                None => return Err(Error::NotFound { cid: block.cid().to_string() }),
            }
            Ok(())
        })
    }
}
