//! UnixFS: Kubo-exact file import (chunking and the balanced DAG), directories, and verified
//! export.
//!
//! ```
//! use std::collections::HashMap;
//! use ipfs_accelerate_common::cid::{Block, Cid};
//! use ipfs_accelerate_common::unixfs::{import, read_range, BlockSource, Profile};
//!
//! struct Memory(HashMap<Cid, Block>);
//! impl BlockSource for Memory {
//!     fn block(&self, cid: &Cid) -> ipfs_accelerate_common::Result<Block> {
//!         self.0.get(cid).cloned().ok_or(ipfs_accelerate_common::Error::NotFound { cid: cid.to_string() })
//!     }
//! }
//!
//! let data = vec![7u8; 3 * 256 * 1024 + 5];
//! let mut blocks = Memory(HashMap::new());
//! let imported = import(&data[..], Profile::KuboCidV1, &mut |b: Block| {
//!     blocks.0.insert(*b.cid(), b);
//!     Ok(())
//! })?;
//! let mut out = Vec::new();
//! read_range(&blocks, &imported.root, 256 * 1024 - 2, Some(4), &mut |bytes| Ok(out.extend_from_slice(bytes)))?;
//! assert_eq!(out, [7, 7, 7, 7]);
//! # Ok::<(), ipfs_accelerate_common::Error>(())
//! ```

pub mod dir;
mod export;
mod import;
pub mod pb;
mod profile;

pub use export::{file_size, read_range, BlockSource};
pub use import::{import, import_path, Imported, Importer};
pub use profile::{Profile, UnknownProfile};
