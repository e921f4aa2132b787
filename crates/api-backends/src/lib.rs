//! Clients for OpenAI, Ollama, vLLM, TGI, TEI, OVMS and S3 inference backends behind one router, for ipfs-accelerate.
//!
//! Status: not built yet (issue 9); only the error type exists so later work follows the workspace conventions.
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
