//! Verified export: walk a file DAG in order, fetching only the blocks a byte range needs.
//!
//! Every block comes from a [`BlockSource`] as a [`Block`], which exists only once its bytes
//! matched its CID, so no unverified byte can be yielded.

use cid::Cid;

use super::pb::{DataType, PbNode, UnixfsData};
use crate::cid::{Block, DAG_PB, RAW};
use crate::{Error, Result};

/// Where an export gets verified blocks from (a store, a remote tier, a CAR in memory).
pub trait BlockSource {
    /// The verified block for `cid`, or [`Error::NotFound`].
    fn block(&self, cid: &Cid) -> Result<Block>;
}

/// Deepest DAG accepted: 1024-ary trees of 1 MiB leaves reach exabytes by depth 6; anything
/// deeper is malformed or hostile, and must not exhaust the stack.
const MAX_DEPTH: usize = 64;

/// Writes the bytes of file `root` in `[offset, offset + length)` to `out`, in order.
///
/// `length` of `None` means to the end. Subtrees outside the range are never fetched.
pub fn read_range(
    source: &dyn BlockSource,
    root: &Cid,
    offset: u64,
    length: Option<u64>,
    out: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let end = length.map_or(u64::MAX, |len| offset.saturating_add(len));
    if end <= offset {
        return Ok(());
    }
    visit(source, root, 0, offset, end, 0, out).map(|_| ())
}

/// The size in bytes of file `root` (read from the root block only).
pub fn file_size(source: &dyn BlockSource, root: &Cid) -> Result<u64> {
    let block = source.block(root)?;
    match root.codec() {
        RAW => Ok(block.data().len() as u64),
        _ => {
            let (_, unixfs) = decode_file_node(root, block.data())?;
            let own = unixfs.data.as_ref().map_or(0, |d| d.len() as u64);
            Ok(unixfs.filesize.unwrap_or(own + unixfs.blocksizes.iter().sum::<u64>()))
        }
    }
}

/// Emits the part of the node at `cid` (whose content starts at file offset `start`) that lies
/// in `[from, to)`; returns the content length the node declares, which its parent checks
/// against its own `blocksizes` entry.
fn visit(
    source: &dyn BlockSource,
    cid: &Cid,
    start: u64,
    from: u64,
    to: u64,
    depth: usize,
    out: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    if depth > MAX_DEPTH {
        return Err(Error::MalformedBlock {
            cid: cid.to_string(),
            format: "UnixFS",
            reason: format!("file DAG deeper than {MAX_DEPTH} levels"),
        });
    }
    let block = source.block(cid)?;
    if cid.codec() == RAW {
        emit_slice(block.data(), start, from, to, out)?;
        return Ok(block.data().len() as u64);
    }
    let (node, unixfs) = decode_file_node(cid, block.data())?;
    let own = unixfs.data.as_deref().unwrap_or_default();
    emit_slice(own, start, from, to, out)?;
    let mut child_start = start + own.len() as u64;
    if node.links.len() != unixfs.blocksizes.len() {
        return Err(Error::MalformedBlock {
            cid: cid.to_string(),
            format: "UnixFS",
            reason: format!(
                "{} links but {} blocksizes",
                node.links.len(),
                unixfs.blocksizes.len()
            ),
        });
    }
    let declared = own.len() as u64 + unixfs.blocksizes.iter().sum::<u64>();
    for (link, &size) in node.links.iter().zip(&unixfs.blocksizes) {
        let child_end = child_start.saturating_add(size);
        if child_start >= to {
            break;
        }
        if child_end > from {
            let actual = visit(source, &link.cid, child_start, from, to, depth + 1, out)?;
            if actual != size {
                return Err(Error::MalformedBlock {
                    cid: cid.to_string(),
                    format: "UnixFS",
                    reason: format!(
                        "child {} holds {actual} bytes, blocksizes says {size}",
                        link.cid
                    ),
                });
            }
        }
        child_start = child_end;
    }
    Ok(declared)
}

fn decode_file_node(cid: &Cid, bytes: &[u8]) -> Result<(PbNode, UnixfsData)> {
    debug_assert_eq!(cid.codec(), DAG_PB);
    let node = PbNode::decode(cid, bytes)?;
    let data = node.data.as_deref().ok_or_else(|| Error::MalformedBlock {
        cid: cid.to_string(),
        format: "UnixFS",
        reason: "dag-pb node has no UnixFS data".into(),
    })?;
    let unixfs = UnixfsData::decode_for(cid, data)?;
    if unixfs.r#type != DataType::File as i32 && unixfs.r#type != DataType::Raw as i32 {
        return Err(Error::MalformedBlock {
            cid: cid.to_string(),
            format: "UnixFS file",
            reason: format!(
                "node type {} is not a file (directories are not supported yet)",
                unixfs.r#type
            ),
        });
    }
    Ok((node, unixfs))
}

fn emit_slice(
    data: &[u8],
    start: u64,
    from: u64,
    to: u64,
    out: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let end = start + data.len() as u64;
    if data.is_empty() || end <= from || start >= to {
        return Ok(());
    }
    let lo = (from.max(start) - start) as usize;
    let hi = (to.min(end) - start) as usize;
    out(&data[lo..hi])
}
