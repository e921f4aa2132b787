//! The recovery journal (`journal.log`): what lives only in the index, written a second time
//! so that `storage verify --rebuild-index` can restore it — small blocks (stored inline in
//! SQLite, so without a file of their own), pins and names.
//!
//! Each record is appended inside the write transaction that makes it true, just before the
//! commit, with one `write(2)` per transaction, so records are in commit order and GC's
//! compaction (which holds the same lock) never races an append. The journal is not fsynced:
//! a process killed at any point loses nothing (the page cache survives it), and the index
//! stays the durable truth; only a power cut *and* a lost index together could lose the
//! last seconds of records. A record that did not commit (its transaction failed after the
//! append) replays harmlessly: a block is verified against its CID, a pin or name keeps data
//! rather than dropping it.
//!
//! Record: `MAGIC` (4 bytes) · kind (1) · payload length (u32 LE) · payload. Blocks carry
//! their CID, so replay verifies every byte; a torn or damaged record is skipped by scanning
//! for the next `MAGIC`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use cid::Cid;

use crate::{Error, Result};

const MAGIC: [u8; 4] = [0xA5, 0x5A, b'J', b'1'];
const BLOCK: u8 = b'B';
const PIN: u8 = b'P';
const UNPIN: u8 = b'U';
const NAME: u8 = b'N';
const UNNAME: u8 = b'R';

/// One fact to journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// A small block's bytes.
    Block { cid: Cid, data: Vec<u8> },
    /// A pin (recursive or direct).
    Pin { cid: Cid, recursive: bool },
    /// A pin removed.
    Unpin { cid: Cid },
    /// A name pointed at a CID.
    Name { namespace: String, name: String, cid: Cid },
    /// A name removed.
    Unname { namespace: String, name: String },
}

/// Encodes a block record straight from borrowed bytes (the add path: no copy of the block
/// beyond the one into `out`).
pub(crate) fn encode_block(out: &mut Vec<u8>, cid: &Cid, data: &[u8]) {
    let cid = cid.to_bytes();
    let len = 2 + cid.len() + data.len();
    out.extend_from_slice(&MAGIC);
    out.push(BLOCK);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    put_bytes(out, &cid);
    out.extend_from_slice(data);
}

impl Record {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut payload = Vec::new();
        let kind = match self {
            Record::Block { cid, data } => {
                encode_block(out, cid, data);
                return;
            }
            Record::Pin { cid, recursive } => {
                payload.push(u8::from(*recursive));
                payload.extend_from_slice(&cid.to_bytes());
                PIN
            }
            Record::Unpin { cid } => {
                payload.extend_from_slice(&cid.to_bytes());
                UNPIN
            }
            Record::Name { namespace, name, cid } => {
                put_bytes(&mut payload, namespace.as_bytes());
                put_bytes(&mut payload, name.as_bytes());
                payload.extend_from_slice(&cid.to_bytes());
                NAME
            }
            Record::Unname { namespace, name } => {
                put_bytes(&mut payload, namespace.as_bytes());
                payload.extend_from_slice(name.as_bytes());
                UNNAME
            }
        };
        out.extend_from_slice(&MAGIC);
        out.push(kind);
        // Blocks in the journal are at most the inline limit (16 KiB): far inside u32.
        out.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&payload);
    }

    fn decode(kind: u8, payload: &[u8]) -> Option<Record> {
        let cid = |bytes: &[u8]| Cid::try_from(bytes).ok();
        let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).ok();
        Some(match kind {
            BLOCK => {
                let (cid_bytes, data) = take_bytes(payload)?;
                Record::Block { cid: cid(cid_bytes)?, data: data.to_vec() }
            }
            PIN => {
                let (&flag, rest) = payload.split_first()?;
                Record::Pin { cid: cid(rest)?, recursive: flag == 1 }
            }
            UNPIN => Record::Unpin { cid: cid(payload)? },
            NAME => {
                let (namespace, rest) = take_bytes(payload)?;
                let (name, rest) = take_bytes(rest)?;
                Record::Name { namespace: text(namespace)?, name: text(name)?, cid: cid(rest)? }
            }
            UNNAME => {
                let (namespace, name) = take_bytes(payload)?;
                Record::Unname { namespace: text(namespace)?, name: text(name)? }
            }
            _ => return None,
        })
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn take_bytes(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = usize::from(u16::from_le_bytes(input.get(..2)?.try_into().ok()?));
    let bytes = input.get(2..2usize.checked_add(len)?)?;
    Some((bytes, &input[2 + len..]))
}

/// The journal file of a store.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
}

impl Journal {
    pub(crate) fn new(root: &Path) -> Journal {
        Journal { path: root.join("journal.log") }
    }

    /// Appends `records` in one write. The caller holds the store's write lock.
    pub(crate) fn append(&self, records: &[Record]) -> Result<()> {
        let mut bytes = Vec::new();
        for record in records {
            record.encode(&mut bytes);
        }
        self.append_encoded(&bytes)
    }

    /// Appends records already encoded (see [`encode_block`]) in one write.
    pub(crate) fn append_encoded(&self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io("open", &self.path, e))?;
        file.write_all(bytes).map_err(|e| Error::io("append", &self.path, e))
    }

    /// The journal's size in bytes (0 when absent).
    pub(crate) fn len(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Replaces the journal with `records` (temp file, fsync, rename, directory fsync). The
    /// caller holds the store's write lock.
    pub(crate) fn rewrite(&self, records: &[Record]) -> Result<()> {
        let temp = self.path.with_extension("log.tmp");
        let mut bytes = Vec::new();
        for record in records {
            record.encode(&mut bytes);
        }
        let mut file = std::fs::File::create(&temp).map_err(|e| Error::io("create", &temp, e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("write", &temp, e))?;
        std::fs::rename(&temp, &self.path).map_err(|e| Error::io("rename", &self.path, e))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io("fsync", dir, e))?;
        }
        Ok(())
    }

    /// Every readable record in order, and how many bytes were skipped as damaged.
    pub(crate) fn read(&self) -> Result<(Vec<Record>, u64)> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(Error::io("read", &self.path, e)),
        };
        Ok(parse(&bytes))
    }
}

/// Records in `bytes`, resynchronising on `MAGIC` after damage; and the bytes skipped.
pub(crate) fn parse(bytes: &[u8]) -> (Vec<Record>, u64) {
    let mut records = Vec::new();
    let mut skipped = 0u64;
    let mut at = 0usize;
    while at < bytes.len() {
        let record = (|| {
            let header = bytes.get(at..at.checked_add(9)?)?;
            if header[..4] != MAGIC {
                return None;
            }
            let len = usize::try_from(u32::from_le_bytes(header[5..9].try_into().ok()?)).ok()?;
            let end = at.checked_add(9)?.checked_add(len)?;
            let payload = bytes.get(at + 9..end)?;
            Some((Record::decode(header[4], payload)?, end))
        })();
        match record {
            Some((record, end)) => {
                records.push(record);
                at = end;
            }
            None => {
                at += 1;
                skipped += 1;
            }
        }
    }
    (records, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_skipped() {
        let cid = crate::cid::raw_cid(b"x");
        let records = vec![
            Record::Block { cid, data: b"x".to_vec() },
            Record::Pin { cid, recursive: true },
            Record::Name { namespace: "model".into(), name: "a".into(), cid },
            Record::Unname { namespace: "model".into(), name: "a".into() },
            Record::Unpin { cid },
        ];
        let mut bytes = Vec::new();
        for r in &records {
            r.encode(&mut bytes);
        }
        assert_eq!(parse(&bytes), (records.clone(), 0));
        // A torn first record: the rest is still read.
        let mut torn = bytes.clone();
        torn[10] ^= 0xff;
        let (read, skipped) = parse(&torn[..]);
        assert!(skipped > 0);
        assert!(read.ends_with(&records[2..]), "{read:?}");
        // Truncation mid-record loses only that record.
        let (read, _) = parse(&bytes[..bytes.len() - 3]);
        assert_eq!(read, records[..4]);
    }
}
