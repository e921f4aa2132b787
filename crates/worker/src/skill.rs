//! Skills: what the worker can do with which models, behind one trait, with typed outputs.
//!
//! The registry of skills is static — a skill is code compiled into this crate, never code
//! loaded from a model (the Python original `exec`ed skill files and passed
//! `trust_remote_code=True`). A skill says which model families and formats it runs
//! ([`Skill::accepts`]), which files it needs, and loads them into a [`Loaded`] model.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;

pub use crate::capability::Loaded;
use crate::error::{Error, Result};
use crate::manifest::{Format, Manifest};

/// What a caller asks a model to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Text → vectors (and similarity of texts).
    TextEmbedding,
    /// Prompt → text.
    TextGeneration,
    /// Speech → text (transcription or translation).
    SpeechRecognition,
    /// Text → speech.
    SpeechSynthesis,
    /// Audio → one vector.
    AudioEmbedding,
    /// Audio + candidate labels → label probabilities (zero-shot).
    AudioClassification,
    /// Image → its model's labels with probabilities.
    ImageClassification,
    /// Image → one vector.
    ImageEmbedding,
    /// Image + texts → how well each text describes it.
    ImageTextSimilarity,
    /// Image + question → generated answer (captions are answers to "describe the image").
    VisualQuestionAnswering,
    /// Video frames + texts → how well each text describes the video.
    VideoTextSimilarity,
}

impl Task {
    /// Its name in output and errors.
    pub fn name(self) -> &'static str {
        match self {
            Task::TextEmbedding => "text-embedding",
            Task::TextGeneration => "text-generation",
            Task::SpeechRecognition => "speech-recognition",
            Task::SpeechSynthesis => "speech-synthesis",
            Task::AudioEmbedding => "audio-embedding",
            Task::AudioClassification => "audio-classification",
            Task::ImageClassification => "image-classification",
            Task::ImageEmbedding => "image-embedding",
            Task::ImageTextSimilarity => "image-text-similarity",
            Task::VisualQuestionAnswering => "visual-question-answering",
            Task::VideoTextSimilarity => "video-text-similarity",
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A skill's description: `describe()` of the Python original, as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkillInfo {
    /// The skill's name.
    pub name: &'static str,
    /// The task it performs.
    pub task: Task,
    /// Model families (`config.json` `model_type` or GGUF architecture) it runs.
    pub families: &'static [&'static str],
    /// Weight formats it loads.
    pub formats: &'static [Format],
    /// Devices this build can run it on.
    pub devices: Vec<String>,
    /// Input limits.
    pub limits: &'static str,
    /// What it returns.
    pub output: &'static str,
}

/// The bytes of a model's files, read and verified through the store.
#[derive(Debug, Default)]
pub struct ModelFiles {
    files: BTreeMap<String, Vec<u8>>,
}

impl ModelFiles {
    /// Files by path.
    pub fn new(files: BTreeMap<String, Vec<u8>>) -> ModelFiles {
        ModelFiles { files }
    }

    /// Takes file `path` out (skills keep large weights without a copy).
    pub fn take(&mut self, path: &str) -> Result<Vec<u8>> {
        self.files
            .remove(path)
            .ok_or_else(|| Error::invalid_file(path, "the model has no such file"))
    }

    /// File `path`, if the model has it.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }
}

/// What a skill loads a model with, besides its files.
#[derive(Debug, Clone)]
pub struct LoadContext {
    /// The candle device (candle skills).
    pub device: candle_core::Device,
    /// Threads for engines that take a count (whisper.cpp, ONNX Runtime).
    pub threads: usize,
    /// The ONNX Runtime library, when configured (else `ORT_DYLIB_PATH`).
    pub onnxruntime: Option<std::path::PathBuf>,
}

impl LoadContext {
    /// The CPU, one thread per core, ONNX Runtime from `ORT_DYLIB_PATH`.
    pub fn cpu() -> LoadContext {
        LoadContext { device: candle_core::Device::Cpu, threads: all_cores(), onnxruntime: None }
    }
}

/// The machine's core count (the default thread count of whisper.cpp and ONNX Runtime).
pub(crate) fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A conversion of a model into one a skill loads (stored as a model of its own; see
/// [`crate::Registry::derive`]).
#[derive(Debug, Clone)]
pub struct Derivation {
    /// The converter's name and version (`ct2-whisper-ggml/1`).
    pub converter: &'static str,
    /// The original's files it reads.
    pub inputs: Vec<String>,
    /// The conversion: deterministic, blocking.
    pub convert: fn(&Manifest, ModelFiles) -> Result<Derived>,
}

/// What a conversion made.
#[derive(Debug)]
pub struct Derived {
    /// Files by path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// What the converted model is.
    pub info: crate::manifest::ModelInfo,
}

/// One skill: a task on some model families.
pub trait Skill: Send + Sync {
    /// What it does, on which models and devices.
    fn info(&self) -> SkillInfo;

    /// Whether it runs `manifest`'s model; the reason when not.
    fn accepts(&self, manifest: &Manifest) -> std::result::Result<(), String>;

    /// The files of `manifest`'s model it reads to load it.
    fn files(&self, manifest: &Manifest) -> Vec<String>;

    /// The conversion this skill needs before it can load `manifest`'s model (whose format
    /// it accepts but does not run directly), if any. The worker loads the converted model.
    fn derive(&self, _manifest: &Manifest) -> Option<Derivation> {
        None
    }

    /// Loads the model from its files. Blocking (run it off the async reactor).
    fn load(
        &self,
        manifest: &Manifest,
        files: ModelFiles,
        context: &LoadContext,
    ) -> Result<Arc<dyn Loaded>>;
}

/// A skill over a Hugging Face safetensors checkpoint, as data: the family it runs, the
/// files it reads, the one it cannot work without, and how its model is built. CLIP, CLAP,
/// ViT, LLaVA and X-CLIP are each one or two of these.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint {
    /// The skill's name.
    pub name: &'static str,
    /// Its task.
    pub task: Task,
    /// The `model_type`s it runs.
    pub families: &'static [&'static str],
    /// The family's name in reasons ("CLIP").
    pub label: &'static str,
    /// Files read when the model has them, besides `config.json` and the weights.
    pub optional: &'static [&'static str],
    /// A file without which this task cannot run, and what its absence means.
    pub required: Option<(&'static str, &'static str)>,
    /// Input limits (see [`SkillInfo::limits`]).
    pub limits: &'static str,
    /// What it returns.
    pub output: &'static str,
    /// Builds the model. Blocking.
    pub build: fn(CheckpointFiles, &candle_core::Device) -> Result<Arc<dyn Loaded>>,
}

/// A checkpoint's files, as [`Checkpoint::build`] gets them.
#[derive(Debug)]
pub struct CheckpointFiles {
    /// `config.json`.
    pub config: Vec<u8>,
    /// The weights file.
    pub weights: Vec<u8>,
    /// The optional files the model has.
    pub rest: ModelFiles,
}

/// What the CLIP-family checkpoints (CLIP, CLAP, X-CLIP) read besides config and weights.
pub const PROCESSOR_AND_TOKENIZER: &[&str] = &["preprocessor_config.json", "tokenizer.json"];

/// How a CLIP-family model is loaded: config, weights, then its processor and tokenizer
/// files when the checkpoint has them.
pub type ProcessorLoad<M> =
    fn(&[u8], Vec<u8>, Option<&[u8]>, Option<&[u8]>, &candle_core::Device) -> Result<M>;

impl CheckpointFiles {
    /// Builds a CLIP-family model from these files with `load`.
    pub fn with_processor<M: Loaded + 'static>(
        self,
        device: &candle_core::Device,
        load: ProcessorLoad<M>,
    ) -> Result<Arc<dyn Loaded>> {
        let (preprocessor, tokenizer) =
            (self.rest.get(PROCESSOR_AND_TOKENIZER[0]), self.rest.get(PROCESSOR_AND_TOKENIZER[1]));
        Ok(Arc::new(load(&self.config, self.weights, preprocessor, tokenizer, device)?))
    }
}

impl Skill for Checkpoint {
    fn info(&self) -> SkillInfo {
        SkillInfo {
            name: self.name,
            task: self.task,
            families: self.families,
            formats: &[Format::Safetensors],
            devices: compiled_devices(),
            limits: self.limits,
            output: self.output,
        }
    }

    fn accepts(&self, manifest: &Manifest) -> std::result::Result<(), String> {
        accepts_safetensors(manifest, self.families, self.label, self.required)
    }

    fn files(&self, manifest: &Manifest) -> Vec<String> {
        hf_files(manifest, self.optional)
    }

    fn load(
        &self,
        manifest: &Manifest,
        mut files: ModelFiles,
        context: &LoadContext,
    ) -> Result<Arc<dyn Loaded>> {
        let config = files.take("config.json")?;
        let weights = files.take(&manifest.info.weights)?;
        (self.build)(CheckpointFiles { config, weights, rest: files }, &context.device)
    }
}

/// The check every safetensors skill's `accepts` starts with: the model is of `family`
/// (named `label` in the reason) and stored as safetensors; then, when `required` is given,
/// the model has that file (the reason says what its absence means).
pub(crate) fn accepts_safetensors(
    manifest: &Manifest,
    families: &[&str],
    label: &str,
    required: Option<(&str, &str)>,
) -> std::result::Result<(), String> {
    if !families.contains(&manifest.info.family.as_str()) {
        return Err(format!("a {} model is not {label}", manifest.info.family));
    }
    if manifest.info.format != Format::Safetensors {
        return Err(format!(
            "{label} as {} is not loadable (safetensors is)",
            manifest.info.format.name()
        ));
    }
    match required {
        Some((file, why)) if !manifest.files.contains_key(file) => Err(format!("no {file}: {why}")),
        _ => Ok(()),
    }
}

/// What a Hugging Face checkpoint's skill reads: `config.json`, the weights, and those of
/// `optional` the model has.
pub(crate) fn hf_files(manifest: &Manifest, optional: &[&str]) -> Vec<String> {
    let mut files = vec!["config.json".to_string(), manifest.info.weights.clone()];
    files.extend(
        optional.iter().filter(|f| manifest.files.contains_key(**f)).map(|f| f.to_string()),
    );
    files
}

/// Every skill this build has.
pub fn skills() -> &'static [&'static dyn Skill] {
    &[
        &crate::text::EmbeddingSkill,
        &crate::text::GenerationSkill,
        &crate::speech::WhisperSkill,
        &crate::speech::wav2vec2::RECOGNIZE_SKILL,
        &crate::speech::wav2vec2::EMBED_SKILL,
        &crate::speech::PiperSkill,
        &crate::speech::clap::CLASSIFY_SKILL,
        &crate::speech::clap::EMBED_SKILL,
        &crate::vision::vit::SKILL,
        &crate::vision::clip::EMBED_SKILL,
        &crate::vision::clip::SIMILARITY_SKILL,
        &crate::vision::llava::SKILL,
        &crate::vision::xclip::SKILL,
    ]
}

/// The skill that performs `task` on `manifest`'s model, or why none does.
pub fn find(task: Task, model: &str, manifest: &Manifest) -> Result<&'static dyn Skill> {
    let mut reasons = Vec::new();
    for skill in skills() {
        if skill.info().task != task {
            continue;
        }
        match skill.accepts(manifest) {
            Ok(()) => return Ok(*skill),
            Err(reason) => reasons.push(format!("{}: {reason}", skill.info().name)),
        }
    }
    // A model another task's skill runs is the wrong model for this task, not an
    // unsupported one: say what it is for.
    let mut its_tasks: Vec<&str> = Vec::new();
    for skill in skills().iter().filter(|s| s.accepts(manifest).is_ok()) {
        let name = skill.info().task.name();
        if !its_tasks.contains(&name) {
            its_tasks.push(name);
        }
    }
    if !its_tasks.is_empty() {
        return Err(Error::WrongTask {
            model: model.to_string(),
            task: its_tasks.join(" / "),
            asked: task.name(),
        });
    }
    Err(Error::Unsupported {
        model: model.to_string(),
        task: task.name(),
        reason: if reasons.is_empty() { "no skill performs it".into() } else { reasons.join("; ") },
    })
}

/// The devices this build has kernels for, by name.
pub(crate) fn compiled_devices() -> Vec<String> {
    let mut devices = vec!["cpu".to_string()];
    if cfg!(feature = "cuda") {
        devices.push("cuda".into());
    }
    if cfg!(feature = "metal") {
        devices.push("metal".into());
    }
    devices
}

/// A cancellation flag a running skill checks between steps (tokens, batches). The worker
/// sets it when the caller stops waiting.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag not yet set.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks the skill to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// `Err(Cancelled)` once cancelled.
    pub fn check(&self) -> Result<()> {
        if self.0.load(Ordering::Relaxed) {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Text embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Embeddings {
    /// One vector per input text, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Their dimension.
    pub dim: usize,
    /// Whether each vector has unit L2 norm.
    pub normalized: bool,
    /// Tokens each text used (after truncation, special tokens included).
    pub tokens: Vec<usize>,
    /// Which texts were cut to the model's limit.
    pub truncated: Vec<bool>,
}

/// How similar two texts are.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Similarity {
    /// Cosine similarity of their embeddings, in [-1, 1].
    pub cosine: f32,
    /// Whether either text was truncated.
    pub truncated: bool,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its answer (an end-of-sequence token) or a stop sequence matched.
    Stop,
    /// `max_tokens` (or the context) ran out.
    Length,
}

/// Token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub struct Usage {
    /// Tokens of the prompt (after the chat template).
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
}

/// Generated text.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct GeneratedText {
    /// The text (stop sequence excluded).
    pub text: String,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// The stop sequence that ended it, if one did.
    pub stop_sequence: Option<String>,
    /// Token counts.
    pub usage: Usage,
}
