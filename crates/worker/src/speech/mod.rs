//! Speech and audio skills: Whisper speech recognition on whisper.cpp (CTranslate2 models
//! converted to ggml in Rust), wav2vec2 CTC and embeddings and CLAP zero-shot audio
//! classification in candle, and Piper text-to-speech on ONNX Runtime with espeak-ng phonemes.

pub mod clap;
pub mod convert;
pub mod ct2;
mod espeak;
pub mod piper;
pub mod wav2vec2;
pub mod whisper;

pub use clap::{Clap, LabelScore};
pub use piper::{PiperSkill, Speech, SynthesizeOptions, Synthesizer};
pub use wav2vec2::Wav2Vec2;
pub use whisper::{
    Segment, SpeechTask, TranscribeOptions, Transcriber, Transcription, WhisperSkill,
};
