//! Rebuilding a lost index (`meta.sqlite`) from the block files: `storage verify
//! --rebuild-index`.
//!
//! Block files are named by multihash, so each is verified against its own name. What a file
//! cannot say is its codec: a block is taken as dag-pb when it decodes as a dag-pb node *and*
//! re-encodes to the same bytes (dag-pb's encoding is canonical, so raw data passes this only
//! by being a canonical dag-pb node already), otherwise raw. Blocks of 16 KiB or less lived
//! inside the index and are gone with it; so are pins and names. What is recovered stays
//! safe from GC: every root (a block no recovered block links to) is pinned, recursively when
//! its DAG is complete, directly otherwise — so nothing recovered is collected until someone
//! decides it may be.

use std::path::{Path, PathBuf};

use cid::Cid;
use rusqlite::params;
use serde::Serialize;

use super::engine::{now, Engine};
use super::gc::{decode_key, PinMode};
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
    /// Blocks verified and indexed.
    pub blocks: u64,
    /// Of those, dag-pb nodes.
    pub dag_pb: u64,
    /// Files whose bytes do not match their name, moved to `quarantine/`.
    pub quarantined: Vec<PathBuf>,
    /// Roots pinned recursively (their whole DAG is present).
    pub pinned_recursive: Vec<String>,
    /// Roots pinned directly (blocks under them were lost with the index).
    pub pinned_direct: Vec<String>,
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
            for shard in super::gc::read_dir(self.fs().blocks_dir())? {
                if !shard.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                for entry in super::gc::read_dir(&shard.path())? {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let Some(mh) = name.strip_suffix(".data").and_then(decode_key) else { continue };
                    report.files += 1;
                    let path = entry.path();
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
                    tx.prepare_cached("INSERT OR IGNORE INTO blocks (mh, codec, size, inline, atime, data) VALUES (?1, ?2, ?3, 0, ?4, NULL)")
                        .and_then(|mut s| s.execute(params![mh, block.cid().codec() as i64, size, t]))
                        .map_err(|e| self.db_err(e))?;
                    report.blocks += 1;
                    if block.cid().codec() == DAG_PB {
                        report.dag_pb += 1;
                        for child in crate::unixfs::pb::links(block.cid(), block.data())? {
                            tx.prepare_cached("INSERT OR IGNORE INTO refs (parent, child, child_cid) VALUES (?1, ?2, ?3)")
                                .and_then(|mut s| s.execute(params![mh, child.hash().to_bytes(), child.to_bytes()]))
                                .map_err(|e| self.db_err(e))?;
                        }
                    }
                }
            }
            let roots: Vec<(Vec<u8>, i64)> = tx
                .prepare("SELECT mh, codec FROM blocks WHERE NOT EXISTS (SELECT 1 FROM refs WHERE refs.child = blocks.mh) ORDER BY mh")
                .and_then(|mut s| s.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect())
                .map_err(|e| self.db_err(e))?;
            for (mh, codec) in roots {
                let Ok(hash) = Multihash::from_bytes(&mh) else { continue };
                let cid = Cid::new_v1(u64::try_from(codec).unwrap_or(RAW), hash);
                let mode = match self.check_complete(tx, &cid, PinMode::Recursive) {
                    Ok(()) => PinMode::Recursive,
                    Err(Error::NotFound { .. }) => PinMode::Direct,
                    Err(e) => return Err(e),
                };
                self.pin_in(tx, &cid, mode)?;
                match mode {
                    PinMode::Recursive => report.pinned_recursive.push(cid.to_string()),
                    PinMode::Direct => report.pinned_direct.push(cid.to_string()),
                }
            }
            Ok(())
        })
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
