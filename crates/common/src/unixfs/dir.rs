//! UnixFS directories as Kubo writes them for `ipfs add -r`: one dag-pb node per directory,
//! `Data` = `{Type: Directory}`, one link per entry with its name and the cumulative size of
//! the entry's DAG, links sorted by name bytes (dag-pb's canonical order).
//!
//! Only basic directories are built. Kubo switches a directory to a HAMT shard when its links
//! outgrow 256 KiB (thousands of entries); such a tree is refused here rather than given a CID
//! Kubo would not give it.

use cid::Cid;
use prost::Message;

use super::pb::{DataType, Link, PbNode, UnixfsData};
use super::Profile;
use crate::cid::{Block, DAG_PB};
use crate::{Error, Result};

/// Kubo's `Import.UnixFSHAMTDirectorySizeThreshold` default: above this estimated size of the
/// links (names + CIDs), `ipfs add` writes a sharded directory.
pub const HAMT_THRESHOLD: usize = 256 * 1024;

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name (one path component).
    pub name: String,
    /// The entry's root CID.
    pub cid: Cid,
    /// The cumulative size of the entry's DAG: every block's encoded bytes.
    pub tsize: u64,
}

/// The directory node linking `entries`, in the profile's CID version.
///
/// Entries are sorted by name; a duplicate or invalid name, or a directory large enough for
/// Kubo to shard, is an error.
pub fn directory_block(mut entries: Vec<DirEntry>, profile: Profile) -> Result<Block> {
    entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    for entry in &entries {
        validate_component(&entry.name)?;
    }
    if let Some(pair) = entries.windows(2).find(|pair| pair[0].name == pair[1].name) {
        return Err(Error::InvalidPath {
            path: pair[0].name.clone(),
            reason: "appears twice in one directory".into(),
        });
    }
    let estimate: usize = entries.iter().map(|e| e.name.len() + e.cid.encoded_len()).sum();
    if estimate > HAMT_THRESHOLD {
        return Err(Error::InvalidPath {
            path: entries.first().map(|e| e.name.clone()).unwrap_or_default(),
            reason: format!(
                "its directory has {} entries ({estimate} bytes of links): Kubo would shard it (HAMT), which this store does not build",
                entries.len()
            ),
        });
    }
    let node = PbNode {
        links: entries
            .into_iter()
            .map(|e| Link { cid: e.cid, name: e.name, tsize: e.tsize })
            .collect(),
        data: Some(directory_data()),
    };
    Ok(Block::new(profile.cid_version(), DAG_PB, node.encode()))
}

/// The entries of directory block `block`, in link order; an error if it is not a directory.
pub fn entries(block: &Block) -> Result<Vec<DirEntry>> {
    let cid = block.cid();
    let not_a_directory =
        |reason: &str| Error::NotADirectory { cid: cid.to_string(), reason: reason.to_string() };
    if cid.codec() != DAG_PB {
        return Err(not_a_directory("it is a raw block (a file)"));
    }
    let node = PbNode::decode(cid, block.data())?;
    let data = UnixfsData::decode_for(cid, node.data.as_deref().unwrap_or_default())?;
    match data.r#type {
        t if t == DataType::Directory as i32 => {}
        t if t == DataType::HamtShard as i32 => {
            return Err(not_a_directory("it is a sharded (HAMT) directory, not supported"))
        }
        _ => return Err(not_a_directory("it is a UnixFS file")),
    }
    Ok(node
        .links
        .into_iter()
        .map(|l| DirEntry { name: l.name, cid: l.cid, tsize: l.tsize })
        .collect())
}

/// The cumulative size of the DAG under `root`, as a parent's link records it: the root's
/// bytes plus its links' sizes (dag-pb carries them, so only the root is read).
pub fn cumulative_size(root: &Block) -> Result<u64> {
    let own = root.data().len() as u64;
    if root.cid().codec() != DAG_PB {
        return Ok(own);
    }
    let node = PbNode::decode(root.cid(), root.data())?;
    Ok(own + node.links.iter().map(|l| l.tsize).sum::<u64>())
}

/// Checks one path component: non-empty, not `.`/`..`, no `/` or NUL.
pub fn validate_component(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty path component"
    } else if name == "." || name == ".." {
        "relative path components (. or ..) are not allowed"
    } else if name.contains('/') {
        "a directory entry name cannot contain /"
    } else if name.contains('\0') {
        "NUL in a name"
    } else {
        return Ok(());
    };
    Err(Error::InvalidPath { path: name.to_string(), reason: reason.into() })
}

/// Splits a relative `/`-separated path into checked components.
pub fn split_path(path: &str) -> Result<Vec<&str>> {
    let invalid =
        |reason: &str| Error::InvalidPath { path: path.to_string(), reason: reason.into() };
    if path.starts_with('/') {
        return Err(invalid("must be relative"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        validate_component(part).map_err(|e| match e {
            Error::InvalidPath { reason, .. } => invalid(&reason),
            other => other,
        })?;
    }
    Ok(parts)
}

fn directory_data() -> Vec<u8> {
    UnixfsData {
        r#type: DataType::Directory as i32,
        data: None,
        filesize: None,
        blocksizes: Vec::new(),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::raw_cid;

    #[test]
    fn empty_directory_has_kubos_well_known_cids() {
        // `ipfs object new unixfs-dir` and `ipfs add -r` of an empty directory.
        let v0 = directory_block(vec![], Profile::UnixfsV0_2015).unwrap();
        assert_eq!(v0.cid().to_string(), "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn");
        let v1 = directory_block(vec![], Profile::UnixfsV1_2025).unwrap();
        assert_eq!(
            v1.cid().to_string(),
            "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
        );
    }

    #[test]
    fn links_are_sorted_by_name_bytes_and_round_trip() {
        let entry =
            |name: &str| DirEntry { name: name.into(), cid: raw_cid(name.as_bytes()), tsize: 1 };
        let block =
            directory_block(vec![entry("b"), entry("B"), entry("a.json")], Profile::KuboCidV1)
                .unwrap();
        let names: Vec<String> = entries(&block).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["B", "a.json", "b"]);
        assert_eq!(cumulative_size(&block).unwrap(), block.data().len() as u64 + 3);
    }

    #[test]
    fn bad_names_are_refused() {
        let entry = |name: &str| DirEntry { name: name.into(), cid: raw_cid(b"x"), tsize: 1 };
        for bad in ["", ".", "..", "a/b"] {
            assert!(matches!(
                directory_block(vec![entry(bad)], Profile::UnixfsV1_2025),
                Err(Error::InvalidPath { .. })
            ));
        }
        assert!(matches!(
            directory_block(vec![entry("x"), entry("x")], Profile::UnixfsV1_2025),
            Err(Error::InvalidPath { .. })
        ));
        assert!(split_path("/abs").is_err());
        assert!(split_path("a//b").is_err());
        assert_eq!(split_path("1_Pooling/config.json").unwrap(), ["1_Pooling", "config.json"]);
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let file = Block::new(cid::Version::V1, crate::cid::RAW, b"hi".to_vec());
        assert!(matches!(entries(&file), Err(Error::NotADirectory { .. })));
    }
}
