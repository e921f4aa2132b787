//! Directory trees: [`Store::add_tree`](super::Store::add_tree), as `ipfs add -r` builds them,
//! and path lookups under a directory.

use std::collections::BTreeMap;
use std::sync::Arc;

use cid::Cid;
use serde::Serialize;

use super::engine::Engine;
use super::{commit, import_blocks, release_after, AddInput, AddOptions, Progress};
use crate::cid::Block;
use crate::unixfs::dir::{self, DirEntry};
use crate::unixfs::Profile;
use crate::{Error, Result};

/// One file of a tree to add.
#[derive(Debug)]
pub struct TreeEntry {
    /// Its path inside the tree: relative, `/`-separated, no `.` or `..` components.
    pub path: String,
    /// Its content.
    pub input: AddInput,
}

/// One file of an added tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeFile {
    /// Its path inside the tree.
    pub path: String,
    /// Its root CID.
    #[serde(serialize_with = "super::serialize_cid")]
    pub cid: Cid,
    /// Bytes of content.
    pub size: u64,
}

/// What [`Store::add_tree`](super::Store::add_tree) stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddedTree {
    /// The root directory's CID.
    #[serde(serialize_with = "super::serialize_cid")]
    pub root: Cid,
    /// Every file, in the order given (an index's entries last).
    pub files: Vec<TreeFile>,
    /// Bytes newly written (content already present costs nothing).
    pub bytes_new: u64,
}

enum Node {
    File { cid: Cid, tsize: u64 },
    Dir(BTreeMap<String, Node>),
}

/// Makes entries from the CIDs of the files already added (a manifest listing them).
pub(super) type Index = Box<dyn FnOnce(&[TreeFile]) -> Result<Vec<TreeEntry>> + Send>;

pub(super) fn add_tree(
    engine: &Engine,
    entries: Vec<TreeEntry>,
    index: Option<Index>,
    options: &AddOptions,
) -> Result<AddedTree> {
    // Every path is checked first: nothing is read or written for a tree that cannot be stored.
    let paths = entries
        .iter()
        .map(|e| {
            dir::split_path(&e.path).map(|parts| parts.into_iter().map(String::from).collect())
        })
        .collect::<Result<Vec<Vec<String>>>>()?;
    let mut shape = BTreeMap::new();
    for (entry, parts) in entries.iter().zip(&paths) {
        let placeholder = Node::File { cid: crate::cid::raw_cid(b""), tsize: 0 };
        insert(&mut shape, parts, placeholder, &entry.path)?;
    }
    let grand_total: Option<u64> = entries.iter().map(|e| e.input.size_hint()).sum();

    let temp = engine.temp_pin();
    let result = (|| {
        let mut tree = BTreeMap::new();
        let mut files = Vec::with_capacity(entries.len());
        let (mut done, mut bytes_new) = (0u64, 0u64);
        let mut add = |entry: TreeEntry, parts: &[String], files: &mut Vec<TreeFile>| {
            let (reader, total) = entry.input.open()?;
            let progress = options.progress.clone().map(|progress| {
                let base = done;
                Arc::new(move |read: u64, _: Option<u64>| progress(base + read, grand_total))
                    as Progress
            });
            let (imported, new) =
                import_blocks(engine, reader, total, options.profile, progress, temp)?;
            done += imported.size;
            bytes_new += new;
            let tsize = dir::cumulative_size(&engine.get(&imported.root)?)?;
            insert(&mut tree, parts, Node::File { cid: imported.root, tsize }, &entry.path)?;
            files.push(TreeFile { path: entry.path, cid: imported.root, size: imported.size });
            Ok::<_, Error>(())
        };
        for (entry, parts) in entries.into_iter().zip(&paths) {
            add(entry, parts, &mut files)?;
        }
        if let Some(index) = index {
            for entry in index(&files)? {
                let parts: Vec<String> =
                    dir::split_path(&entry.path)?.into_iter().map(String::from).collect();
                add(entry, &parts, &mut files)?;
            }
        }
        let mut blocks = Vec::new();
        let (root, _) = build(tree, options.profile, &mut blocks)?;
        bytes_new += engine.put_blocks(&blocks, Some(temp))?;
        commit(engine, &root, options, None)?;
        Ok(AddedTree { root, files, bytes_new })
    })();
    release_after(engine, temp, result)
}

/// Puts `node` at `parts` under `dir`; a path given twice, or both as a file and as a directory,
/// is an error naming it.
fn insert(
    dir: &mut BTreeMap<String, Node>,
    parts: &[String],
    node: Node,
    path: &str,
) -> Result<()> {
    let conflict =
        |reason: &str| Error::InvalidPath { path: path.to_string(), reason: reason.into() };
    match parts {
        [] => Err(conflict("empty path")),
        [name] => match dir.entry(name.clone()) {
            std::collections::btree_map::Entry::Occupied(_) => {
                Err(conflict("given twice, or both as a file and as a directory"))
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(node);
                Ok(())
            }
        },
        [name, rest @ ..] => {
            match dir.entry(name.clone()).or_insert_with(|| Node::Dir(BTreeMap::new())) {
                Node::Dir(children) => insert(children, rest, node, path),
                Node::File { .. } => Err(conflict("a parent of it is also given as a file")),
            }
        }
    }
}

/// Encodes the directories under `tree` bottom-up into `blocks`; returns the root's CID and
/// cumulative size.
fn build(
    tree: BTreeMap<String, Node>,
    profile: Profile,
    blocks: &mut Vec<Block>,
) -> Result<(Cid, u64)> {
    let mut entries = Vec::with_capacity(tree.len());
    for (name, node) in tree {
        let (cid, tsize) = match node {
            Node::File { cid, tsize } => (cid, tsize),
            Node::Dir(children) => build(children, profile, blocks)?,
        };
        entries.push(DirEntry { name, cid, tsize });
    }
    let block = dir::directory_block(entries, profile)?;
    let result = (*block.cid(), dir::cumulative_size(&block)?);
    blocks.push(block);
    Ok(result)
}

pub(super) fn resolve(engine: &Engine, root: &Cid, path: &str) -> Result<Cid> {
    let mut current = *root;
    for part in dir::split_path(path)? {
        let entries = dir::entries(&engine.get(&current)?)?;
        current =
            entries.into_iter().find(|e| e.name == part).map(|e| e.cid).ok_or_else(|| {
                Error::NoSuchPath { root: root.to_string(), path: path.to_string() }
            })?;
    }
    Ok(current)
}
