//! Local inference skills for ipfs-accelerate on candle and whisper.cpp, with a model registry addressed by CID.
//!
//! Status: not built yet (issue 11); only the error type exists so later work follows the workspace conventions.
//!
//! Everything this crate persists goes through [`ipfs_accelerate_common`].

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage layer failed.
    #[error(transparent)]
    Storage(#[from] ipfs_accelerate_common::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
