//! Clients for the inference servers users run — OpenAI and compatible servers (vLLM, TGI's
//! `/v1`, llama.cpp, OVMS), Ollama, TGI, TEI and OVMS — behind one [`Router`].
//!
//! Every call has a deadline and a request id (`x-request-id`, in tracing too); every failure
//! is a typed [`Error`] (never a fabricated answer); streamed answers are [`DeltaStream`]s that
//! end in an error if the server stops before saying it is done.
//!
//! Everything this crate persists (the response cache, accumulated figures) goes through
//! [`ipfs_accelerate_common`]'s `Cache`; chat templates render Hugging Face's Jinja as
//! transformers does ([`template`]); [`s3`] is the S3 client the storage tier shares.

mod backend;
pub mod cache;
pub mod config;
mod error;
mod http;
pub mod ollama;
pub mod openai;
pub mod ovms;
pub mod router;
pub mod s3;
pub mod stats;
pub mod tei;
pub mod template;
pub mod tgi;
mod types;

pub use backend::{Backend, BoxFuture, DeltaStream, Kind};
pub use error::{Error, Result};
pub use http::{uuid_form, CallContext, Transport, REQUEST_ID_HEADER};
pub use router::Router;
pub use types::{
    ChatRequest, ChatResponse, Delta, EmbedRequest, Embeddings, Message, ModelInfo, Ranked,
    RerankRequest, SparseEmbedding, Usage,
};
