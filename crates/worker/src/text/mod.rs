//! Text skills: embeddings (BERT family, safetensors) and generation (llama GGUF).

mod embed;
mod generate;
mod llama;

pub use embed::{cosine, EmbeddingSkill, TextEmbedder};
pub use generate::{
    decode_loop, Decoding, GenerateParams, GenerationSkill, GenerationStats, Prompt, TextGenerator,
};
