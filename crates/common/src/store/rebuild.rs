//! Rebuilding a lost index (`meta.sqlite`) from what the store keeps outside it: `storage
//! verify --rebuild-index`.
//!
//! Large blocks are files named by multihash, so each is verified against its own name; what a
//! file cannot say is its codec: it is taken as dag-pb when it decodes as a dag-pb node *and*
//! re-encodes to the same bytes (dag-pb's encoding is canonical, so raw data passes only by
//! being a canonical dag-pb node already), otherwise raw. Small blocks, pins and names come
//! from the recovery journal (`journal.rs`), each block verified against its CID. Roots that
//! no restored pin or name protects are named `recovered/<cid>`, so nothing recovered is
//! collected until someone decides it may be. Cache entries and name history are not rebuilt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cid::Cid;
use rusqlite::params;
use serde::Serialize;

use super::engine::{now, Engine};

/// A block whose body is a file: its row, with no inline bytes.
const INSERT_FILE_BLOCK: &str =
    "INSERT OR IGNORE INTO blocks (mh, codec, size, inline, atime, data) VALUES (?1, ?2, ?3, 0, ?4, NULL)";
use super::gc::PinMode;
use super::journal::Record;
use super::names::{Expect, Name};
use crate::cid::{Block, Multihash, DAG_PB, RAW};
use crate::unixfs::pb::PbNode;
use crate::{Error, Result};

/// What a rebuild found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RebuildReport {
    /// Where the old, unreadable index was moved (kept for forensics), if there was one.
    pub old_index: Option<PathBuf>,
    /// Block files read.
    pub files: u64,
    /// Blocks verified and indexed: files and journal together.
    pub blocks: u64,
    /// Of those, small blocks from the journal.
    pub journal_blocks: u64,
    /// Of those, dag-pb nodes.
    pub dag_pb: u64,
    /// Damaged journal bytes skipped (a torn last record, say).
    pub journal_skipped_bytes: u64,
    /// Files whose bytes do not match their name, moved to `quarantine/`.
    pub quarantined: Vec<PathBuf>,
    /// Pins restored.
    pub pins: u64,
    /// Names restored.
    pub names: u64,
    /// Pins and names that could not be restored, with why (content lost).
    pub unrestorable: Vec<String>,
    /// Names `recovered/<cid>` given to roots nothing else protects.
    pub recovered: Vec<String>,
}

impl Engine {
    /// Moves the old index aside and builds a new one from the block files; see the module
    /// docs. Refuses when the store's index is readable (there is nothing to rebuild).
    pub fn rebuild_index(root: &Path, budget: Option<u64>) -> Result<(Engine, RebuildReport)> {
        let db_path = root.join("meta.sqlite");
        let mut report = RebuildReport::default();
        match Engine::open(root, budget) {
            Err(Error::StoreIndex { .. }) => {}
            Ok(_) => return Err(Error::IndexReadable { path: db_path }),
            Err(e) => return Err(e),
        }
        if db_path.exists() {
            let aside = root.join(format!("meta.sqlite.lost-{}", now()));
            for suffix in ["", "-wal", "-shm"] {
                let from = PathBuf::from(format!("{}{suffix}", db_path.display()));
                let to = PathBuf::from(format!("{}{suffix}", aside.display()));
                match std::fs::rename(&from, &to) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("rename", &from, e)),
                }
            }
            report.old_index = Some(aside);
        } else {
            // An empty file or a missing one: nothing worth keeping.
            let _ = std::fs::remove_file(&db_path);
        }
        let engine = Engine::open_checked(root, budget, false)?;
        engine.index_block_files(&mut report)?;
        Ok((engine, report))
    }

    fn index_block_files(&self, report: &mut RebuildReport) -> Result<()> {
        let quarantine = self.root().join("quarantine");
        let t = now();
        self.write(|tx| {
            for (path, mh) in self.fs().block_files()? {
                let name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
                report.files += 1;
                let data = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
                let block = Multihash::from_bytes(&mh)
                    .map_err(|e| e.to_string())
                    .and_then(|hash| guess_block(hash, data).map_err(|e| e.to_string()));
                let block = match block {
                    Ok(block) => block,
                    Err(why) => {
                        tracing::warn!(file = %path.display(), %why, "quarantining a block file");
                        std::fs::create_dir_all(&quarantine)
                            .map_err(|e| Error::io("create directory", &quarantine, e))?;
                        let to = quarantine.join(&name);
                        std::fs::rename(&path, &to).map_err(|e| Error::io("rename", &path, e))?;
                        report.quarantined.push(to);
                        continue;
                    }
                };
                let size = i64::try_from(block.data().len()).unwrap_or(i64::MAX);
                tx.prepare_cached(INSERT_FILE_BLOCK)
                    .and_then(|mut s| s.execute(params![mh, block.cid().codec() as i64, size, t]))
                    .map_err(|e| self.db_err(e))?;
                report.blocks += 1;
                if block.cid().codec() == DAG_PB {
                    report.dag_pb += 1;
                    self.insert_refs(tx, &mh, &block)?;
                }
            }
            self.replay_journal(tx, report)?;
            // Roots (blocks no other links to) that nothing restored protects.
            tx.execute_batch(super::gc::LIVE_SQL).map_err(|e| self.db_err(e))?;
            let roots: Vec<(Vec<u8>, i64)> = tx
                .prepare(
                    "SELECT mh, codec FROM blocks WHERE NOT EXISTS (SELECT 1 FROM refs WHERE refs.child = blocks.mh)
                     AND NOT EXISTS (SELECT 1 FROM temp.live WHERE live.mh = blocks.mh) ORDER BY mh",
                )
                .and_then(|mut s| s.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect())
                .map_err(|e| self.db_err(e))?;
            tx.execute_batch("DELETE FROM temp.live").map_err(|e| self.db_err(e))?;
            for (mh, codec) in roots {
                let Ok(hash) = Multihash::from_bytes(&mh) else { continue };
                let cid = Cid::new_v1(u64::try_from(codec).unwrap_or(RAW), hash);
                let name = Name::new("recovered", &cid.to_string())?;
                if let Err(e) = self.name_set_in(tx, &name, &cid, Expect::Any) {
                    // An incomplete DAG cannot be named; pin its root directly instead.
                    tracing::debug!(%cid, error = %e, "recovered root pinned directly");
                    self.pin_in(tx, &cid, PinMode::Direct)?;
                }
                report.recovered.push(name.to_string());
            }
            // The journal now says exactly what the new index holds.
            self.journal().rewrite(&self.journal_state(tx)?)
        })
    }

    /// Replays the journal into the new index: small blocks (verified), then the pins and
    /// names that were in force at its end.
    fn replay_journal(
        &self,
        tx: &rusqlite::Transaction<'_>,
        report: &mut RebuildReport,
    ) -> Result<()> {
        let (records, skipped) = self.journal().read()?;
        report.journal_skipped_bytes = skipped;
        let mut pins: BTreeMap<Vec<u8>, (Cid, bool)> = BTreeMap::new();
        let mut names: BTreeMap<(String, String), Cid> = BTreeMap::new();
        let t = now();
        for record in records {
            match record {
                Record::Block { cid, data } => {
                    let Ok(block) = Block::verified(cid, data) else {
                        report.journal_skipped_bytes += 1;
                        continue;
                    };
                    let mh = cid.hash().to_bytes();
                    let size = i64::try_from(block.data().len()).unwrap_or(i64::MAX);
                    let inserted = tx
                        .prepare_cached("INSERT OR IGNORE INTO blocks (mh, codec, size, inline, atime, data) VALUES (?1, ?2, ?3, 1, ?4, ?5)")
                        .and_then(|mut s| s.execute(params![mh, cid.codec() as i64, size, t, block.data()]))
                        .map_err(|e| self.db_err(e))?;
                    if inserted == 0 {
                        continue;
                    }
                    report.blocks += 1;
                    report.journal_blocks += 1;
                    if cid.codec() == DAG_PB {
                        report.dag_pb += 1;
                        self.insert_refs(tx, &mh, &block)?;
                    }
                }
                Record::Pin { cid, recursive } => {
                    let entry = pins.entry(cid.hash().to_bytes()).or_insert((cid, false));
                    *entry = (cid, entry.1 || recursive);
                }
                Record::Unpin { cid } => {
                    pins.remove(&cid.hash().to_bytes());
                }
                Record::Name { namespace, name, cid } => {
                    names.insert((namespace, name), cid);
                }
                Record::Unname { namespace, name } => {
                    names.remove(&(namespace, name));
                }
            }
        }
        for (cid, recursive) in pins.into_values() {
            let mode = if recursive { PinMode::Recursive } else { PinMode::Direct };
            match self.pin_in(tx, &cid, mode) {
                Ok(()) => report.pins += 1,
                Err(Error::NotFound { cid: missing }) => {
                    report.unrestorable.push(format!("pin {cid}: block {missing} is lost"))
                }
                Err(e) => return Err(e),
            }
        }
        for ((namespace, name), cid) in names {
            let full = Name::new(&namespace, &name)?;
            match self.name_set_in(tx, &full, &cid, Expect::Any) {
                Ok(_) => report.names += 1,
                Err(Error::NotFound { cid: missing }) => report
                    .unrestorable
                    .push(format!("name {full} → {cid}: block {missing} is lost")),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn insert_refs(&self, tx: &rusqlite::Transaction<'_>, mh: &[u8], block: &Block) -> Result<()> {
        for child in crate::unixfs::pb::links(block.cid(), block.data())? {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO refs (parent, child, child_cid) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![mh, child.hash().to_bytes(), child.to_bytes()]))
            .map_err(|e| self.db_err(e))?;
        }
        Ok(())
    }
}

/// The block these bytes are under `hash`: dag-pb when they are a canonical dag-pb node,
/// raw otherwise; an error when they do not hash to `hash`.
fn guess_block(hash: Multihash, data: Vec<u8>) -> Result<Block> {
    let as_pb = Cid::new_v1(DAG_PB, hash);
    let canonical_pb =
        PbNode::decode(&as_pb, &data).is_ok_and(|node| node.encode() == data) && !data.is_empty();
    let cid = if canonical_pb { as_pb } else { Cid::new_v1(RAW, hash) };
    Block::verified(cid, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_are_told_apart_by_canonical_dag_pb() {
        let leaf = b"not protobuf at all".to_vec();
        let block = guess_block(crate::cid::sha256(&leaf), leaf).unwrap();
        assert_eq!(block.cid().codec(), RAW);
        let node = PbNode { links: Vec::new(), data: Some(vec![8, 2]) }.encode();
        let block = guess_block(crate::cid::sha256(&node), node).unwrap();
        assert_eq!(block.cid().codec(), DAG_PB);
        let wrong = guess_block(crate::cid::sha256(b"a"), b"b".to_vec());
        assert!(matches!(wrong, Err(Error::Corrupt { .. })), "{wrong:?}");
    }
}
