//! Speech skills: Whisper speech recognition on whisper.cpp (CTranslate2 models converted to
//! ggml in Rust) and Piper text-to-speech on ONNX Runtime with espeak-ng phonemes.

pub mod convert;
pub mod ct2;
mod espeak;
pub mod piper;
pub mod whisper;

pub use piper::{PiperSkill, Speech, SynthesizeOptions, Synthesizer};
pub use whisper::{
    Segment, SpeechTask, TranscribeOptions, Transcriber, Transcription, WhisperSkill,
};
