//! Streaming import: fixed-size chunks into Kubo's balanced DAG, with bounded memory.
//!
//! Kubo's balanced builder (boxo `importer/balanced`) grows the tree from the left: leaves fill
//! a node of `max_links` children; when more data follows a full node, that node becomes the
//! first child of a node one level up, which is filled the same way. [`Importer`] does the same
//! iteratively: one pending link list per level, a full level is closed only when another child
//! arrives, and `finish` closes the levels bottom-up. A single chunk is its own root.
//!
//! Memory: the chunk being read plus `max_links` pending links per level, whatever the size.

use std::io::{ErrorKind, Read};

use cid::{Cid, Version};
use prost::Message;

use super::pb::{Link, PbNode, UnixfsData};
use super::Profile;
use crate::cid::{Block, DAG_PB, RAW};
use crate::{Error, Result};

/// What an import produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// The root CID.
    pub root: Cid,
    /// Bytes of file content.
    pub size: u64,
    /// Blocks emitted (including duplicates within the file).
    pub blocks: u64,
}

#[derive(Debug, Clone, Copy)]
struct PendingLink {
    cid: Cid,
    /// Encoded bytes of the child and everything under it (dag-pb `Tsize`).
    tsize: u64,
    /// File bytes under the child (UnixFS `blocksizes` entry).
    filesize: u64,
}

/// Builds a UnixFS file DAG from chunks, handing each finished block to a sink, children before
/// parents, so the root comes last.
#[derive(Debug)]
pub struct Importer {
    profile: Profile,
    levels: Vec<Vec<PendingLink>>,
    size: u64,
    blocks: u64,
}

impl Importer {
    /// Starts an import under `profile`.
    pub fn new(profile: Profile) -> Self {
        Importer { profile, levels: vec![Vec::new()], size: 0, blocks: 0 }
    }

    /// Adds the next chunk (at most [`Profile::chunk_size`] bytes; only the last may be short).
    pub fn push_chunk(
        &mut self,
        chunk: &[u8],
        sink: &mut impl FnMut(Block) -> Result<()>,
    ) -> Result<()> {
        if self.levels[0].len() == self.profile.max_links() {
            self.close_full(0, sink)?;
        }
        let leaf = self.leaf(chunk);
        self.size += chunk.len() as u64;
        let link = self.emit(leaf, chunk.len() as u64, sink)?;
        self.levels[0].push(link);
        Ok(())
    }

    /// Closes every level and returns the root.
    pub fn finish(mut self, sink: &mut impl FnMut(Block) -> Result<()>) -> Result<Imported> {
        if self.levels[0].is_empty() {
            // Empty input: one empty leaf, as Kubo writes it.
            let leaf = self.leaf(&[]);
            let link = self.emit(leaf, 0, sink)?;
            self.levels[0].push(link);
        }
        let root = if self.levels.len() == 1 && self.levels[0].len() == 1 {
            self.levels[0][0].cid
        } else {
            let mut carried = None;
            for level in 0..self.levels.len() {
                let mut links = std::mem::take(&mut self.levels[level]);
                links.extend(carried.take());
                carried = Some(self.node(links, sink)?);
            }
            carried
                .map(|link| link.cid)
                .ok_or_else(|| Error::Task("import produced no root".into()))?
        };
        Ok(Imported { root, size: self.size, blocks: self.blocks })
    }

    /// Turns the full level `level` into a node linked from the level above (closing that level
    /// first if it is full too).
    fn close_full(
        &mut self,
        level: usize,
        sink: &mut impl FnMut(Block) -> Result<()>,
    ) -> Result<()> {
        if self.levels.len() == level + 1 {
            self.levels.push(Vec::new());
        } else if self.levels[level + 1].len() == self.profile.max_links() {
            self.close_full(level + 1, sink)?;
        }
        let links = std::mem::take(&mut self.levels[level]);
        let parent = self.node(links, sink)?;
        self.levels[level + 1].push(parent);
        Ok(())
    }

    fn leaf(&self, chunk: &[u8]) -> Block {
        if self.profile.raw_leaves() {
            Block::new(Version::V1, RAW, chunk.to_vec())
        } else {
            let data = (!chunk.is_empty()).then(|| chunk.to_vec());
            let unixfs = UnixfsData::file(data, chunk.len() as u64, Vec::new()).encode_to_vec();
            let node = PbNode { links: Vec::new(), data: Some(unixfs) }.encode();
            Block::new(self.profile.cid_version(), DAG_PB, node)
        }
    }

    fn node(
        &mut self,
        links: Vec<PendingLink>,
        sink: &mut impl FnMut(Block) -> Result<()>,
    ) -> Result<PendingLink> {
        let filesize = links.iter().map(|l| l.filesize).sum();
        let blocksizes = links.iter().map(|l| l.filesize).collect();
        let children_tsize: u64 = links.iter().map(|l| l.tsize).sum();
        let node = PbNode {
            links: links
                .iter()
                .map(|l| Link { cid: l.cid, name: String::new(), tsize: l.tsize })
                .collect(),
            data: Some(UnixfsData::file(None, filesize, blocksizes).encode_to_vec()),
        };
        let block = Block::new(self.profile.cid_version(), DAG_PB, node.encode());
        let mut link = self.emit(block, filesize, sink)?;
        link.tsize += children_tsize;
        Ok(link)
    }

    fn emit(
        &mut self,
        block: Block,
        filesize: u64,
        sink: &mut impl FnMut(Block) -> Result<()>,
    ) -> Result<PendingLink> {
        let link = PendingLink { cid: *block.cid(), tsize: block.data().len() as u64, filesize };
        self.blocks += 1;
        sink(block)?;
        Ok(link)
    }
}

/// Imports everything `reader` yields under `profile`, handing blocks to `sink`.
///
/// ```
/// use ipfs_accelerate_common::unixfs::{import, Profile};
/// let imported = import(&b"hello world"[..], Profile::UnixfsV0_2015, &mut |_block| Ok(()))?;
/// assert_eq!(imported.root.to_string(), "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD");
/// # Ok::<(), ipfs_accelerate_common::Error>(())
/// ```
pub fn import(
    mut reader: impl Read,
    profile: Profile,
    sink: &mut impl FnMut(Block) -> Result<()>,
) -> Result<Imported> {
    let mut importer = Importer::new(profile);
    let mut chunk = vec![0u8; profile.chunk_size()];
    loop {
        let filled = read_full(&mut reader, &mut chunk)?;
        if filled > 0 {
            importer.push_chunk(&chunk[..filled], sink)?;
        }
        if filled < chunk.len() {
            return importer.finish(sink);
        }
    }
}

/// Imports the file at `path` without storing anything: its CID under `profile`.
pub fn import_path(path: &std::path::Path, profile: Profile) -> Result<Imported> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    import(std::io::BufReader::with_capacity(profile.chunk_size(), file), profile, &mut |_| Ok(()))
}

/// Reads until `buf` is full or the input ends (Kubo's size splitter reads full chunks).
pub(crate) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read input", "<input>", e)),
        }
    }
    Ok(filled)
}
