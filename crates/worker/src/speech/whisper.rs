//! Speech recognition with Whisper on whisper.cpp (`whisper-rs`).
//!
//! The skill runs ggml Whisper models directly and CTranslate2 (faster-whisper) ones after
//! converting them ([`super::convert`]) into a derived model the registry keeps. whisper.cpp
//! computes the log-mel itself from 16 kHz mono, detects the language when none is given, and
//! walks audio longer than 30 s window by window.

use std::sync::Once;

use serde::{Deserialize, Serialize};
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::convert;
use crate::audio::Audio;
use crate::error::{Error, Result};
use crate::manifest::{Format, Manifest, ModelInfo};
use crate::skill::{
    Cancel, Derivation, Derived, LoadContext, Loaded, ModelFiles, Skill, SkillInfo, Task,
};

/// The sample rate Whisper listens at.
pub const SAMPLE_RATE: u32 = 16_000;
/// The converted model's file name.
pub const GGML_FILE: &str = "ggml-model.bin";

/// Transcribe (same language) or translate (into English).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpeechTask {
    /// Text in the spoken language.
    #[default]
    Transcribe,
    /// English text.
    Translate,
}

/// How to transcribe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TranscribeOptions {
    /// The spoken language (`en`, `de`, …); detected when `None`.
    pub language: Option<String>,
    /// Transcribe or translate.
    pub task: SpeechTask,
    /// Decode with timestamp tokens (segments end where the model says, not per window).
    pub timestamps: bool,
    /// Encode only this many of the window's 1500 audio positions (20 ms each; whisper.cpp's
    /// `audio_ctx`): the encoder's cost shrinks with it, so short clips transcribe several
    /// times faster, at some cost in accuracy. It must cover the clip (or the 30 s window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_context: Option<u32>,
}

/// Audio positions in one 30 s window (whisper's encoder context).
pub const AUDIO_POSITIONS: u32 = 1500;
/// Seconds of audio per encoder position.
const SECONDS_PER_POSITION: f64 = 30.0 / AUDIO_POSITIONS as f64;

impl TranscribeOptions {
    /// Checks the language code.
    pub fn validate(&self) -> Result<()> {
        if let Some(language) = &self.language {
            if whisper_rs::get_lang_id(language).is_none() {
                return Err(Error::InvalidInput(format!(
                    "{language:?} is not a language Whisper knows (use a code such as en, de, fr, or leave it out to detect)"
                )));
            }
        }
        if let Some(positions) = self.audio_context {
            if !(1..=AUDIO_POSITIONS).contains(&positions) {
                return Err(Error::InvalidInput(format!(
                    "an audio context of {positions} positions is outside 1..={AUDIO_POSITIONS} (20 ms each)"
                )));
            }
        }
        Ok(())
    }

    /// Checks that the audio context covers `seconds` of audio (one window at most).
    fn check_covers(&self, seconds: f64) -> Result<()> {
        let Some(positions) = self.audio_context else { return Ok(()) };
        let needed = (seconds.min(30.0) / SECONDS_PER_POSITION).ceil();
        if f64::from(positions) < needed {
            return Err(Error::InvalidInput(format!(
                "an audio context of {positions} positions covers {:.2} s, but the clip is {seconds:.2} s (use at least {needed} or leave it out)",
                f64::from(positions) * SECONDS_PER_POSITION
            )));
        }
        Ok(())
    }
}

/// One stretch of speech.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Start, seconds from the beginning.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// Its text.
    pub text: String,
}

/// What was said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcription {
    /// The whole text.
    pub text: String,
    /// The language (given, or detected); `None` for a model that does not identify it
    /// (wav2vec2 transcribes the one language it was trained on).
    pub language: Option<String>,
    /// Segments in order.
    pub segments: Vec<Segment>,
    /// Seconds of audio heard.
    pub duration: f64,
}

/// The Whisper skill.
#[derive(Debug, Clone, Copy)]
pub struct WhisperSkill;

impl Skill for WhisperSkill {
    fn info(&self) -> SkillInfo {
        SkillInfo {
            name: "whisper",
            task: Task::SpeechRecognition,
            families: &["whisper"],
            formats: &[Format::Ggml, Format::Ctranslate2],
            // whisper.cpp is built for the CPU here (its own CUDA build is a separate feature).
            devices: vec!["cpu".into()],
            limits: "WAV/FLAC/OGG/MP3 up to [worker] max_audio_seconds; resampled to 16 kHz mono; 30 s windows",
            output: "text, language, segments with start/end seconds",
        }
    }

    fn accepts(&self, manifest: &Manifest) -> std::result::Result<(), String> {
        match (manifest.info.family.as_str(), manifest.info.format) {
            ("whisper", Format::Ggml | Format::Ctranslate2) => Ok(()),
            ("whisper", format) => Err(format!(
                "Whisper as {} is not runnable here (ggml or CTranslate2 are)",
                format.name()
            )),
            (family, _) => Err(format!("a {family} model is not Whisper")),
        }
    }

    fn derive(&self, manifest: &Manifest) -> Option<Derivation> {
        (manifest.info.format == Format::Ctranslate2).then(|| Derivation {
            converter: convert::CONVERTER,
            inputs: vec![manifest.info.weights.clone(), "vocabulary.txt".into()],
            convert: to_ggml,
        })
    }

    fn files(&self, manifest: &Manifest) -> Vec<String> {
        vec![manifest.info.weights.clone()]
    }

    fn load(
        &self,
        manifest: &Manifest,
        mut files: ModelFiles,
        load: &LoadContext,
    ) -> Result<std::sync::Arc<dyn Loaded>> {
        static LOGS: Once = Once::new();
        LOGS.call_once(whisper_rs::install_logging_hooks);
        // ggml picks its CPU variant on first use; a CPU none can serve is a typed error here,
        // before whisper.cpp touches the backend.
        let variant = crate::kernels::whisper_variant()?;
        tracing::info!(variant, "whisper.cpp CPU variant");
        let bytes = files.take(&manifest.info.weights)?;
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false);
        let context = WhisperContext::new_from_buffer_with_params(&bytes, params).map_err(|e| {
            Error::invalid_file(&manifest.info.weights, format!("whisper.cpp cannot load it: {e}"))
        })?;
        Ok(std::sync::Arc::new(Transcriber {
            context,
            idle: std::sync::Mutex::new(None),
            // The weights plus whisper.cpp's per-request buffers (KV caches, mel, encoder out).
            bytes: bytes.len() as u64 + (96 << 20),
            threads: load.threads,
        }))
    }
}

crate::capability::loaded!(Transcriber: transcriber -> Transcribe);

impl crate::capability::Transcribe for Transcriber {
    fn transcribe(
        &self,
        audio: Audio,
        options: &TranscribeOptions,
        cancel: &Cancel,
    ) -> Result<Transcription> {
        Transcriber::transcribe(self, audio, options, self.threads, cancel)
    }
}

fn to_ggml(manifest: &Manifest, mut files: ModelFiles) -> Result<Derived> {
    let model_bin = files.take(&manifest.info.weights)?;
    let vocabulary = files.take("vocabulary.txt")?;
    let ggml = convert::convert(&model_bin, &vocabulary)?;
    let info = ModelInfo {
        family: "whisper".into(),
        architecture: "whisper.cpp".into(),
        format: Format::Ggml,
        weights: GGML_FILE.into(),
        ..manifest.info.clone()
    };
    Ok(Derived { files: [(GGML_FILE.to_string(), ggml)].into(), info })
}

/// A loaded Whisper model.
pub struct Transcriber {
    context: WhisperContext,
    /// The state the last request used, kept for the next. A fresh state allocates (and the
    /// kernel zeroes) whisper.cpp's KV caches and compute buffers on every request; one idle
    /// state is kept, which the memory estimate covers. Reuse carries nothing between
    /// requests: `no_context` clears the previous request's text context as each starts.
    idle: std::sync::Mutex<Option<WhisperState>>,
    bytes: u64,
    /// whisper.cpp's threads, from the load context.
    threads: usize,
}

impl std::fmt::Debug for Transcriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcriber").field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

impl Transcriber {
    /// Resident bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// Transcribes `audio` (any rate; resampled to 16 kHz) on `threads` threads.
    pub fn transcribe(
        &self,
        audio: Audio,
        options: &TranscribeOptions,
        threads: usize,
        cancel: &Cancel,
    ) -> Result<Transcription> {
        options.validate()?;
        let audio = audio.resampled(SAMPLE_RATE)?;
        options.check_covers(audio.seconds())?;
        cancel.check()?;
        let failed = |e: whisper_rs::WhisperError| Error::Inference(format!("whisper.cpp: {e}"));
        let idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let mut state = match idle {
            Some(state) => state,
            None => self.context.create_state().map_err(failed)?,
        };
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(i32::try_from(threads.max(1)).unwrap_or(1));
        params.set_language(Some(options.language.as_deref().unwrap_or("auto")));
        params.set_translate(options.task == SpeechTask::Translate);
        params.set_no_timestamps(!options.timestamps);
        if let Some(positions) = options.audio_context {
            // Validated to 1..=1500 above.
            params.set_audio_ctx(i32::try_from(positions).unwrap_or(0));
        }
        // whisper.cpp's default, stated because a reused state depends on it (see `idle`).
        params.set_no_context(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        state.full(params, &audio.samples).map_err(failed)?;
        cancel.check()?;
        let language = match &options.language {
            Some(given) => given.clone(),
            None => {
                let id = state.full_lang_id_from_state();
                whisper_rs::get_lang_str(id)
                    .ok_or_else(|| {
                        Error::Inference(format!(
                            "whisper.cpp detected language id {id}, which it cannot name"
                        ))
                    })?
                    .to_string()
            }
        };
        let mut segments = Vec::new();
        for segment in state.as_iter() {
            let text = segment.to_str_lossy().map_err(failed)?.trim().to_string();
            if text.is_empty() {
                continue;
            }
            // whisper.cpp counts in centiseconds; without timestamps its segment bounds can be
            // garbage (a negative start was seen), so they are kept within the audio.
            let duration = audio.seconds();
            let start = (segment.start_timestamp() as f64 / 100.0).clamp(0.0, duration);
            let end = (segment.end_timestamp() as f64 / 100.0).clamp(start, duration);
            segments.push(Segment { start, end, text });
        }
        *self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(state);
        let text = segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" ");
        Ok(Transcription { text, language: Some(language), segments, duration: audio.seconds() })
    }
}
