//! Block bodies as files, laid out like Kubo's flatfs (`next-to-last/2` sharding).
//!
//! A block lives at `blocks/<shard>/<KEY>.data`, where `KEY` is the unpadded upper-case base32
//! of its multihash (Kubo's datastore key, e.g. `CIQ…`) and `<shard>` its next-to-last two
//! characters. Files appear only by rename from `tmp/`, so a reader never sees a partial file.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The flatfs key of a multihash: unpadded RFC 4648 base32, upper case.
pub fn key(multihash: &[u8]) -> String {
    let mut out = String::with_capacity(multihash.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in multihash {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The directory tree holding block files.
#[derive(Debug)]
pub struct FlatFs {
    blocks: PathBuf,
    tmp: PathBuf,
}

impl FlatFs {
    /// Opens (creating) `blocks/` and `tmp/` under `root`.
    pub fn open(root: &Path) -> Result<FlatFs> {
        let blocks = root.join("blocks");
        let tmp = root.join("tmp");
        for dir in [&blocks, &tmp] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        }
        Ok(FlatFs { blocks, tmp })
    }

    /// Every block file with the multihash its name gives. Only shard directories hold
    /// blocks: anything else in `blocks/` is left alone (a stray regular file once made every
    /// GC fail), and so is any file not named like a block.
    pub fn block_files(&self) -> Result<Vec<(PathBuf, Vec<u8>)>> {
        let mut files = Vec::new();
        for shard in read_dir(&self.blocks)? {
            if !shard.file_type().is_ok_and(|t| t.is_dir()) {
                tracing::warn!(path = %shard.path().display(), "not a shard directory; left alone");
                continue;
            }
            for entry in read_dir(&shard.path())? {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(mh) = name.strip_suffix(".data").and_then(decode_key) {
                    files.push((entry.path(), mh));
                }
            }
        }
        Ok(files)
    }

    /// Where the block with this multihash lives.
    pub fn path(&self, multihash: &[u8]) -> PathBuf {
        let key = key(multihash);
        let shard = &key[key.len().saturating_sub(3)..key.len().saturating_sub(1)];
        self.blocks.join(shard).join(format!("{key}.data"))
    }

    /// The temp directory; temp files are named `<session>-<n>` so GC can tell whose they are.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Writes `data` to a new temp file (not yet durable: see [`FlatFs::sync`]).
    pub fn write_temp(&self, name: &str, data: &[u8]) -> Result<PathBuf> {
        let path = self.tmp.join(name);
        let mut file = File::create(&path).map_err(|e| Error::io("create", &path, e))?;
        file.write_all(data).map_err(|e| Error::io("write", &path, e))?;
        Ok(path)
    }

    /// Moves a temp file to its final place, creating the shard directory on first use.
    pub fn commit(&self, temp: &Path, multihash: &[u8]) -> Result<()> {
        let dest = self.path(multihash);
        match std::fs::rename(temp, &dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if let Some(shard) = dest.parent() {
                    std::fs::create_dir_all(shard)
                        .map_err(|e| Error::io("create directory", shard, e))?;
                }
                std::fs::rename(temp, &dest).map_err(|e| Error::io("rename", &dest, e))
            }
            Err(e) => Err(Error::io("rename", &dest, e)),
        }
    }

    /// Makes every write and rename so far durable with one `syncfs(2)` of the filesystem:
    /// one flush per batch instead of one `fsync` per block.
    pub fn sync(&self) -> Result<()> {
        let dir = File::open(&self.tmp).map_err(|e| Error::io("open", &self.tmp, e))?;
        rustix::fs::syncfs(&dir).map_err(|e| Error::io("syncfs", &self.tmp, e.into()))
    }

    /// Reads a block file; `Ok(None)` when there is none.
    pub fn read(&self, multihash: &[u8]) -> Result<Option<Vec<u8>>> {
        let path = self.path(multihash);
        match std::fs::read(&path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", &path, e)),
        }
    }

    /// Whether the block file is there.
    pub fn exists(&self, multihash: &[u8]) -> Result<bool> {
        let path = self.path(multihash);
        path.try_exists().map_err(|e| Error::io("stat", &path, e))
    }

    /// Removes a block file; a missing file is fine (the goal is its absence).
    pub fn remove(&self, multihash: &[u8]) -> Result<()> {
        remove_if_present(&self.path(multihash))
    }
}

/// Inverse of [`key`]: the multihash a block file is named by.
pub(super) fn decode_key(key: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(key.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in key.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

/// The entries of `dir`, all read (an error names the directory).
pub(super) fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    std::fs::read_dir(dir)
        .and_then(|entries| entries.collect())
        .map_err(|e| Error::io("list", dir, e))
}

/// Removes `path`, treating "already gone" as success.
pub fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kubo_flatfs_keys() {
        // Kubo stores `hello world` (raw, sha2-256) as blocks/<shard>/CIQ….data.
        let mh = crate::cid::sha256(b"hello world").to_bytes();
        let key = key(&mh);
        assert!(key.starts_with("CIQ"), "{key}");
        assert_eq!(key.len(), 55);
        let fs = FlatFs { blocks: "/b".into(), tmp: "/t".into() };
        let path = fs.path(&mh);
        assert_eq!(path.parent().unwrap().file_name().unwrap().to_str().unwrap(), &key[52..54]);
        assert_eq!(decode_key(&key), Some(mh));
    }
}
