//! The worker: runs skills on models from the registry.
//!
//! It owns the loaded models (endpoints), one per (model, task), kept while the memory budget
//! allows and evicted least-recently-used when a new one needs the room (a model in use is
//! never evicted; it is dropped when its last request ends). Each endpoint has a bounded
//! queue and a concurrency limit: a request past the queue is refused with `QueueFull`, never
//! left to pile up. A request whose caller stops waiting is cancelled at the skill's next
//! step. The device comes from `ipfs-accelerate-install-depends`' selection (its reason goes
//! into every result), and deterministic results are kept in the store's cache by (model
//! CID, skill, input, parameters).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cid::Cid;
use ipfs_accelerate_common::cache::{Cache, CacheConfig, CacheKey};
use ipfs_accelerate_common::store::Store;
use ipfs_accelerate_install_depends::report::{self, LoadOptions};
use ipfs_accelerate_install_depends::select::{self, Needs, Overrides};
use ipfs_accelerate_install_depends::{Backend, BuildInfo, Host};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};
use crate::registry::{Model, Registry};
use crate::skill::{
    self, Cancel, Embeddings, GeneratedText, LoadContext, Loaded, ModelFiles, Similarity, Skill,
    Task,
};
use crate::speech::{SynthesizeOptions, TranscribeOptions, Transcription};
use crate::text::{cosine, GenerateParams, Prompt};

/// The cache namespace of inference results.
pub const RESULTS_NAMESPACE: &str = "worker";
/// Bumped when a skill's output for the same input may change: old results then miss.
const RESULTS_VERSION: u32 = 1;

/// The `[worker]` section of the config file:
///
/// ```toml
/// [worker]
/// memory_budget = "8GiB"        # loaded models; default: half the machine's memory
/// queue_depth = 16              # requests waiting per model before QueueFull
/// concurrency = 1               # requests running at once per model
/// cache_results = true          # keep deterministic results in the store
/// result_ttl = "30d"
/// embed_model = "minilm"        # the model `infer text embed` uses by default
/// generate_model = "smollm2-135m"
/// transcribe_model = "whisper-base"
/// voice = "piper-joe"            # the voice `infer audio synthesize` uses by default
/// audio_classify_model = "clap" # the CLAP model `infer audio classify` uses by default
/// image_classify_model = "vit"  # `infer vision classify`
/// clip_model = "clip"           # `infer vision embed`, `infer multimodal similarity`
/// llava_model = "llava"         # `infer multimodal caption|vqa`
/// xclip_model = "xclip"         # `infer multimodal video-similarity`
/// video_decode_timeout = "60s"  # each ffmpeg run decoding a video file
/// max_image_bytes = "32MiB"     # image files and fetched images larger than this are refused
/// image_fetch_timeout = "30s"
/// image_fetch_allow_private = false   # fetch from loopback/private addresses and plain http
/// threads = 4                   # whisper.cpp / ONNX Runtime threads; default: all cores
/// onnxruntime = "/opt/onnxruntime/lib/libonnxruntime.so"   # else ORT_DYLIB_PATH, else:
/// onnxruntime_model = "onnxruntime" # the onnxruntime wheel imported as a model
/// max_audio_seconds = 3600      # longer input is refused
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Bytes of loaded models (`8GiB` or a number); half the machine's memory when unset.
    #[serde(default, with = "size_text")]
    pub memory_budget: Option<u64>,
    /// Requests waiting per model.
    #[serde(default = "default_queue_depth")]
    pub queue_depth: usize,
    /// Requests running at once per model.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Keep deterministic results in the store's cache.
    #[serde(default = "default_true")]
    pub cache_results: bool,
    /// How long a cached result is reused.
    #[serde(
        default = "default_result_ttl",
        with = "ipfs_accelerate_common::config::duration_text"
    )]
    pub result_ttl: Duration,
    /// The default embedding model (a name or CID).
    #[serde(default = "default_embed_model")]
    pub embed_model: String,
    /// The default generation model (a name or CID).
    #[serde(default = "default_generate_model")]
    pub generate_model: String,
    /// The default speech recognition model.
    #[serde(default = "default_transcribe_model")]
    pub transcribe_model: String,
    /// The default text-to-speech voice.
    #[serde(default = "default_voice")]
    pub voice: String,
    /// The default zero-shot audio classification (CLAP) model.
    #[serde(default = "default_audio_classify_model")]
    pub audio_classify_model: String,
    /// The default image classification (ViT) model.
    #[serde(default = "default_image_classify_model")]
    pub image_classify_model: String,
    /// The default CLIP model (image embeddings, image–text similarity).
    #[serde(default = "default_clip_model")]
    pub clip_model: String,
    /// The default LLaVA model (captions, questions about images).
    #[serde(default = "default_llava_model")]
    pub llava_model: String,
    /// The default X-CLIP model (video–text similarity).
    #[serde(default = "default_xclip_model")]
    pub xclip_model: String,
    /// How long one ffmpeg run decoding a video file may take.
    #[serde(
        default = "default_video_decode_timeout",
        with = "ipfs_accelerate_common::config::duration_text"
    )]
    pub video_decode_timeout: Duration,
    /// The largest image accepted, file or download.
    #[serde(default = "default_max_image_bytes", with = "size_text")]
    pub max_image_bytes: Option<u64>,
    /// How long fetching an image URL may take, redirects and body included.
    #[serde(
        default = "default_image_fetch_timeout",
        with = "ipfs_accelerate_common::config::duration_text"
    )]
    pub image_fetch_timeout: Duration,
    /// Fetch images from loopback, private and link-local addresses, and over plain http
    /// (off: a URL could otherwise reach services behind the firewall).
    #[serde(default)]
    pub image_fetch_allow_private: bool,
    /// Threads for whisper.cpp and ONNX Runtime (candle uses its own pool); all cores when
    /// unset. On a busy 2-core machine use 1: ggml's spinning pool collapses under contention.
    #[serde(default)]
    pub threads: Option<usize>,
    /// The ONNX Runtime shared library Piper voices run on; `ORT_DYLIB_PATH` when unset.
    #[serde(default)]
    pub onnxruntime: Option<std::path::PathBuf>,
    /// The registry model holding ONNX Runtime's library, used when neither `onnxruntime`
    /// nor `ORT_DYLIB_PATH` is set.
    #[serde(default = "default_onnxruntime_model")]
    pub onnxruntime_model: String,
    /// The longest audio input accepted, in seconds.
    #[serde(default = "default_max_audio_seconds")]
    pub max_audio_seconds: f64,
    /// The device to run on (`auto`, `cpu`, `cuda`, `cuda:N`, `metal`) when
    /// `IPFS_ACCELERATE_DEVICE` is not set: the CLI's `--device`, the flag form of that
    /// variable (not read from the config file). A device that cannot be used is an error.
    #[serde(skip)]
    pub device: Option<String>,
}

fn default_queue_depth() -> usize {
    16
}
fn default_concurrency() -> usize {
    1
}
fn default_true() -> bool {
    true
}
fn default_result_ttl() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
fn default_embed_model() -> String {
    "minilm".into()
}
fn default_generate_model() -> String {
    "smollm2-135m".into()
}
fn default_transcribe_model() -> String {
    "whisper-base".into()
}
fn default_voice() -> String {
    "piper-joe".into()
}
fn default_audio_classify_model() -> String {
    "clap".into()
}
fn default_image_classify_model() -> String {
    "vit".into()
}
fn default_clip_model() -> String {
    "clip".into()
}
fn default_llava_model() -> String {
    "llava".into()
}
fn default_xclip_model() -> String {
    "xclip".into()
}
fn default_video_decode_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_onnxruntime_model() -> String {
    "onnxruntime".into()
}
fn default_max_image_bytes() -> Option<u64> {
    Some(32 << 20)
}
fn default_image_fetch_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_audio_seconds() -> f64 {
    3600.0
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            memory_budget: None,
            queue_depth: default_queue_depth(),
            concurrency: default_concurrency(),
            cache_results: true,
            result_ttl: default_result_ttl(),
            embed_model: default_embed_model(),
            generate_model: default_generate_model(),
            transcribe_model: default_transcribe_model(),
            voice: default_voice(),
            audio_classify_model: default_audio_classify_model(),
            image_classify_model: default_image_classify_model(),
            clip_model: default_clip_model(),
            llava_model: default_llava_model(),
            xclip_model: default_xclip_model(),
            video_decode_timeout: default_video_decode_timeout(),
            max_image_bytes: default_max_image_bytes(),
            image_fetch_timeout: default_image_fetch_timeout(),
            image_fetch_allow_private: false,
            threads: None,
            onnxruntime: None,
            onnxruntime_model: default_onnxruntime_model(),
            max_audio_seconds: default_max_audio_seconds(),
            device: None,
        }
    }
}

impl WorkerConfig {
    /// The `[worker]` section (TOML text), or the defaults.
    pub fn load(section: Option<&str>) -> Result<WorkerConfig> {
        let config: WorkerConfig = match section {
            Some(text) => toml::from_str(text)
                .map_err(|e| Error::InvalidInput(format!("config [worker]: {e}")))?,
            None => WorkerConfig::default(),
        };
        if config.threads == Some(0) {
            return Err(Error::InvalidInput("config [worker]: threads must be at least 1".into()));
        }
        if !config.max_audio_seconds.is_finite() || config.max_audio_seconds <= 0.0 {
            return Err(Error::InvalidInput(
                "config [worker]: max_audio_seconds must be positive".into(),
            ));
        }
        if config.concurrency == 0 {
            return Err(Error::InvalidInput(
                "config [worker]: concurrency must be at least 1".into(),
            ));
        }
        Ok(config)
    }
}

mod size_text {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }

    pub fn serialize<S: Serializer>(size: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match size {
            Some(n) => s.serialize_u64(*n),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Size::deserialize(d)? {
            Size::Bytes(n) => Ok(Some(n)),
            Size::Text(t) => {
                ipfs_accelerate_common::config::parse_size(&t).map(Some).ok_or_else(|| {
                    serde::de::Error::custom(format!("{t:?} is not a size (8GiB, 500MB, bytes)"))
                })
            }
        }
    }
}

/// The backends this build has kernels for, as install-depends reports them.
pub fn build_info() -> BuildInfo {
    let mut compiled = Vec::new();
    if cfg!(feature = "cuda") {
        compiled.push(Backend::Cuda);
    }
    if cfg!(feature = "metal") {
        compiled.push(Backend::Metal);
    }
    BuildInfo::new(env!("CARGO_PKG_VERSION"), &compiled)
}

/// Which model answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelRef {
    /// The model's id.
    pub cid: String,
    /// Its name, when it has one.
    pub name: Option<String>,
}

/// Where a request spent its time, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Timings {
    /// Loading the model (0 when it was loaded already).
    pub load_ms: f64,
    /// Waiting for a turn on the model.
    pub queue_ms: f64,
    /// Running the skill.
    pub run_ms: f64,
}

/// A result with what produced it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inference<T> {
    /// The result.
    pub output: T,
    /// The model.
    pub model: ModelRef,
    /// The skill.
    pub skill: &'static str,
    /// The device it ran on (`None` when served from the result cache).
    pub device: Option<String>,
    /// Why that device.
    pub device_reason: Option<String>,
    /// Whether it came from the result cache.
    pub cached: bool,
    /// Timings.
    pub timings: Timings,
}

/// A loaded model, as [`Worker::loaded`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadedModel {
    /// The model's id.
    pub cid: String,
    /// The task it is loaded for.
    pub task: Task,
    /// Its resident bytes.
    pub bytes: u64,
    /// Requests on it now (running or queued).
    pub in_use: usize,
}

/// Runs skills on models from a registry.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("budget", &self.inner.budget).finish_non_exhaustive()
    }
}

struct Inner {
    registry: Registry,
    cache: Cache,
    config: WorkerConfig,
    budget: u64,
    placement: tokio::sync::OnceCell<Placement>,
    /// ONNX Runtime's library, copied (verified) out of the store once per process.
    onnxruntime: tokio::sync::OnceCell<Option<std::path::PathBuf>>,
    endpoints: Mutex<HashMap<(Cid, Task), Arc<Slot>>>,
}

#[derive(Default)]
struct Slot {
    endpoint: tokio::sync::OnceCell<Arc<Endpoint>>,
}

struct Endpoint {
    loaded: Loaded,
    bytes: u64,
    /// Running plus waiting requests allowed.
    depth: usize,
    /// Permits for running plus waiting requests.
    admitted: Arc<Semaphore>,
    /// Permits for running requests.
    running: Arc<Semaphore>,
    last_used: Mutex<Instant>,
}

#[derive(Clone)]
struct Placement {
    device: candle_core::Device,
    name: String,
    reason: String,
}

/// Sets the cancel flag when the request's future is dropped before the skill finished.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Worker {
    /// A worker over the models in `store`.
    pub fn new(store: Store, config: WorkerConfig) -> Worker {
        let budget = config.memory_budget.unwrap_or_else(|| {
            match ipfs_accelerate_install_depends::memory_info() {
                ipfs_accelerate_install_depends::Probed::Available { details } => {
                    details.total_bytes / 2
                }
                ipfs_accelerate_install_depends::Probed::Unavailable { reason, .. } => {
                    tracing::warn!(%reason, "memory size unknown; the worker's budget is 8 GiB");
                    8 << 30
                }
            }
        });
        let cache = Cache::new(store.clone(), CacheConfig::default());
        Worker {
            inner: Arc::new(Inner {
                registry: Registry::new(store),
                cache,
                config,
                budget,
                placement: tokio::sync::OnceCell::new(),
                onnxruntime: tokio::sync::OnceCell::new(),
                endpoints: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The registry it loads models from.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Its settings.
    pub fn config(&self) -> &WorkerConfig {
        &self.inner.config
    }

    /// Bytes of loaded models it may hold.
    pub fn memory_budget(&self) -> u64 {
        self.inner.budget
    }

    /// The models loaded now.
    pub fn loaded(&self) -> Vec<LoadedModel> {
        let map = self.inner.endpoints.lock().map(|m| {
            m.iter()
                .filter_map(|((cid, task), slot)| {
                    let endpoint = slot.endpoint.get()?;
                    Some(LoadedModel {
                        cid: cid.to_string(),
                        task: *task,
                        bytes: endpoint.bytes,
                        in_use: endpoint.depth - endpoint.admitted.available_permits(),
                    })
                })
                .collect()
        });
        map.unwrap_or_default()
    }

    /// Embeds `texts` with `model` (the configured default when `None`).
    pub async fn embed(
        &self,
        model: Option<&str>,
        texts: Vec<String>,
        normalize: Option<bool>,
    ) -> Result<Inference<Embeddings>> {
        let model = model.unwrap_or(&self.inner.config.embed_model).to_string();
        let request = json!({ "texts": texts, "normalize": normalize });
        self.run(&model, Task::TextEmbedding, "embed", request, true, move |loaded, cancel| {
            match loaded {
                Loaded::Embedder(m) => m.embed(&texts, normalize, cancel),
                _ => Err(Error::Task("not an embedding model".into())),
            }
        })
        .await
    }

    /// Cosine similarity of two texts' embeddings.
    pub async fn similarity(
        &self,
        model: Option<&str>,
        a: String,
        b: String,
    ) -> Result<Inference<Similarity>> {
        let embedded = self.embed(model, vec![a, b], Some(true)).await?;
        let vectors = &embedded.output.vectors;
        let output = Similarity {
            cosine: cosine(&vectors[0], &vectors[1]),
            truncated: embedded.output.truncated.iter().any(|t| *t),
        };
        Ok(Inference {
            output,
            model: embedded.model,
            skill: embedded.skill,
            device: embedded.device,
            device_reason: embedded.device_reason,
            cached: embedded.cached,
            timings: embedded.timings,
        })
    }

    /// Generates text with `model` (the configured default when `None`). With `stream`, the
    /// text is also sent there piece by piece as it becomes final (the pieces concatenate to
    /// the returned text; a cached result arrives as one piece).
    pub async fn generate(
        &self,
        model: Option<&str>,
        prompt: Prompt,
        params: GenerateParams,
        stream: Option<mpsc::Sender<String>>,
    ) -> Result<Inference<GeneratedText>> {
        params.validate()?;
        let model = model.unwrap_or(&self.inner.config.generate_model).to_string();
        let request = json!({ "prompt": prompt, "params": params });
        let cacheable = params.is_deterministic();
        let sink = stream.clone();
        let result = self
            .run(
                &model,
                Task::TextGeneration,
                "generate",
                request,
                cacheable,
                move |loaded, cancel| {
                    let Loaded::Generator(m) = loaded else {
                        return Err(Error::Task("not a generation model".into()));
                    };
                    let mut on_text = |piece: &str| send_piece(&sink, piece);
                    m.generate(&prompt, &params, cancel, &mut on_text).map(|(text, _)| text)
                },
            )
            .await?;
        replay_cached(stream, &result).await?;
        Ok(result)
    }

    /// Transcribes (or translates) an audio file's bytes with `model` (the configured default
    /// when `None`). Unreadable, empty or over-long audio is an error before any model loads.
    pub async fn transcribe(
        &self,
        model: Option<&str>,
        audio: Vec<u8>,
        options: TranscribeOptions,
    ) -> Result<Inference<Transcription>> {
        options.validate()?;
        let (digest, decoded) = self.decode_audio(audio).await?;
        let model = model.unwrap_or(&self.inner.config.transcribe_model).to_string();
        let request = json!({ "audio_sha256": digest, "options": options });
        let threads = self.threads();
        self.run(
            &model,
            Task::SpeechRecognition,
            "transcribe",
            request,
            true,
            move |loaded, cancel| match loaded {
                Loaded::Transcriber(m) => m.transcribe(decoded, &options, threads, cancel),
                Loaded::Wav2Vec2(m) => m.transcribe(decoded, &options, cancel),
                _ => Err(Error::Task("not a speech recognition model".into())),
            },
        )
        .await
    }

    /// One vector for an audio file's bytes (wav2vec2: the mean of its last hidden states;
    /// CLAP: the unit-norm projected audio embedding).
    pub async fn embed_audio(
        &self,
        model: &str,
        audio: Vec<u8>,
    ) -> Result<Inference<AudioEmbedding>> {
        let (digest, decoded) = self.decode_audio(audio).await?;
        let request = json!({ "audio_sha256": digest });
        self.run(
            model,
            Task::AudioEmbedding,
            "embed-audio",
            request,
            true,
            move |loaded, cancel| {
                let vector = match loaded {
                    Loaded::Wav2Vec2(m) => m.embed(decoded, cancel)?,
                    Loaded::Clap(m) => m.embed(decoded, cancel)?,
                    _ => return Err(Error::Task("not an audio embedding model".into())),
                };
                Ok(AudioEmbedding { dim: vector.len(), vector })
            },
        )
        .await
    }

    /// Zero-shot classification of an audio file's bytes against `labels` with CLAP `model`
    /// (the configured default when `None`): every label's probability, best first, cut to
    /// `top_k` when given.
    pub async fn classify_audio(
        &self,
        model: Option<&str>,
        audio: Vec<u8>,
        labels: Vec<String>,
        top_k: Option<usize>,
    ) -> Result<Inference<AudioClassification>> {
        if labels.is_empty() {
            return Err(Error::InvalidInput("no labels to classify against".into()));
        }
        if top_k == Some(0) {
            return Err(Error::InvalidInput("top_k must be at least 1".into()));
        }
        let (digest, decoded) = self.decode_audio(audio).await?;
        let model = model.unwrap_or(&self.inner.config.audio_classify_model).to_string();
        let request = json!({ "audio_sha256": digest, "labels": labels, "top_k": top_k });
        self.run(
            &model,
            Task::AudioClassification,
            "classify-audio",
            request,
            true,
            move |loaded, cancel| {
                let Loaded::Clap(m) = loaded else {
                    return Err(Error::Task("not an audio classification model".into()));
                };
                let mut labels = m.classify(decoded, &labels, cancel)?;
                labels.truncate(top_k.unwrap_or(usize::MAX));
                Ok(AudioClassification {
                    labels,
                    template: crate::speech::clap::LABEL_TEMPLATE.into(),
                })
            },
        )
        .await
    }

    /// Speaks `text` with voice `model` (the configured default when `None`). Piper samples
    /// noise, so results are not cached.
    pub async fn synthesize(
        &self,
        model: Option<&str>,
        text: String,
        options: SynthesizeOptions,
    ) -> Result<Inference<SynthesizedSpeech>> {
        if text.trim().is_empty() {
            return Err(Error::InvalidInput("the text to speak is empty".into()));
        }
        let model = model.unwrap_or(&self.inner.config.voice).to_string();
        let request = json!({ "text": text, "options": options });
        self.run(
            &model,
            Task::SpeechSynthesis,
            "synthesize",
            request,
            false,
            move |loaded, cancel| {
                let Loaded::Synthesizer(m) = loaded else {
                    return Err(Error::Task("not a text-to-speech voice".into()));
                };
                let speech = m.synthesize(&text, &options, cancel)?;
                Ok(SynthesizedSpeech {
                    wav: speech.audio.to_wav()?,
                    sample_rate: speech.audio.sample_rate,
                    duration: speech.audio.seconds(),
                    sentences: speech.sentences,
                    phonemes: speech.phonemes,
                })
            },
        )
        .await
    }

    /// An audio file's SHA-256 (its identity in result cache keys) and samples, off the
    /// reactor; bad audio fails here, before any model loads.
    async fn decode_audio(&self, audio: Vec<u8>) -> Result<(String, crate::audio::Audio)> {
        let max_seconds = self.inner.config.max_audio_seconds;
        tokio::task::spawn_blocking(move || {
            let digest = crate::source::sha256_hex(&mut audio.as_slice())
                .map_err(|e| Error::Task(e.to_string()))?;
            Ok((digest, crate::audio::decode(audio, max_seconds)?))
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    /// An image's bytes (fetched first when it is a URL), their SHA-256 and the decoded image.
    async fn load_image(&self, image: ImageSource) -> Result<(String, ::image::RgbImage)> {
        let config = &self.inner.config;
        let max_bytes = config.max_image_bytes.unwrap_or(u64::MAX);
        let bytes = match image {
            ImageSource::Bytes(bytes) => bytes,
            ImageSource::Url(url) => {
                let policy = crate::vision::FetchPolicy {
                    timeout: config.image_fetch_timeout,
                    max_bytes,
                    allow_private: config.image_fetch_allow_private,
                };
                crate::vision::image::fetch(&url, &policy).await?
            }
        };
        if bytes.len() as u64 > max_bytes {
            return Err(Error::InvalidInput(format!(
                "the image is {} bytes, over [worker] max_image_bytes ({max_bytes})",
                bytes.len()
            )));
        }
        tokio::task::spawn_blocking(move || {
            let digest = crate::source::sha256_hex(&mut bytes.as_slice())
                .map_err(|e| Error::Task(e.to_string()))?;
            let image =
                crate::vision::image::decode(&bytes, crate::vision::DecodeLimits::default())?;
            Ok((digest, image))
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    /// The `top_k` most probable labels of an image under classifier `model` (the configured
    /// default when `None`).
    pub async fn classify_image(
        &self,
        model: Option<&str>,
        image: ImageSource,
        top_k: usize,
    ) -> Result<Inference<ImageClassification>> {
        if top_k == 0 {
            return Err(Error::InvalidInput("top_k must be at least 1".into()));
        }
        let (digest, image) = self.load_image(image).await?;
        let model = model.unwrap_or(&self.inner.config.image_classify_model).to_string();
        let request = json!({ "image_sha256": digest, "top_k": top_k });
        self.run(
            &model,
            Task::ImageClassification,
            "classify-image",
            request,
            true,
            move |loaded, cancel| {
                let Loaded::Vit(m) = loaded else {
                    return Err(Error::Task("not an image classification model".into()));
                };
                Ok(ImageClassification { labels: m.classify(&image, top_k, cancel)? })
            },
        )
        .await
    }

    /// An image's unit-norm embedding under CLIP `model` (the configured default when `None`).
    pub async fn embed_image(
        &self,
        model: Option<&str>,
        image: ImageSource,
    ) -> Result<Inference<ImageEmbedding>> {
        let (digest, image) = self.load_image(image).await?;
        let model = model.unwrap_or(&self.inner.config.clip_model).to_string();
        let request = json!({ "image_sha256": digest });
        self.run(
            &model,
            Task::ImageEmbedding,
            "embed-image",
            request,
            true,
            move |loaded, cancel| {
                let Loaded::Clip(m) = loaded else {
                    return Err(Error::Task("not an image embedding model".into()));
                };
                cancel.check()?;
                let vector = m.embed_image(&image)?;
                Ok(ImageEmbedding { dim: vector.len(), vector })
            },
        )
        .await
    }

    /// How well each of `texts` describes an image, under CLIP `model` (the configured default
    /// when `None`): cosine, logit and the softmax over the texts (zero-shot classification).
    pub async fn image_text_similarity(
        &self,
        model: Option<&str>,
        image: ImageSource,
        texts: Vec<String>,
    ) -> Result<Inference<ImageTextSimilarity>> {
        crate::nn::require_texts(&texts)?;
        let (digest, image) = self.load_image(image).await?;
        let model = model.unwrap_or(&self.inner.config.clip_model).to_string();
        let request = json!({ "image_sha256": digest, "texts": texts });
        self.run(
            &model,
            Task::ImageTextSimilarity,
            "image-text-similarity",
            request,
            true,
            move |loaded, cancel| {
                let Loaded::Clip(m) = loaded else {
                    return Err(Error::Task("not an image-text model".into()));
                };
                Ok(ImageTextSimilarity { texts: m.similarity(&image, &texts, cancel)? })
            },
        )
        .await
    }

    /// Answers `question` about an image with LLaVA `model` (the configured default when
    /// `None`), streaming text pieces to `stream` when given. Deterministic (greedy or seeded)
    /// answers are cached like text generation.
    pub async fn ask_image(
        &self,
        model: Option<&str>,
        image: ImageSource,
        question: String,
        params: GenerateParams,
        stream: Option<tokio::sync::mpsc::Sender<String>>,
    ) -> Result<Inference<GeneratedText>> {
        params.validate()?;
        if question.trim().is_empty() {
            return Err(Error::InvalidInput("the question is empty".into()));
        }
        let (digest, image) = self.load_image(image).await?;
        let model = model.unwrap_or(&self.inner.config.llava_model).to_string();
        let request = json!({ "image_sha256": digest, "question": question, "params": params });
        let cacheable = params.is_deterministic();
        let sink = stream.clone();
        let result = self
            .run(
                &model,
                Task::VisualQuestionAnswering,
                "ask-image",
                request,
                cacheable,
                move |loaded, cancel| {
                    let Loaded::Llava(m) = loaded else {
                        return Err(Error::Task("not a visual question answering model".into()));
                    };
                    let mut on_text = |piece: &str| send_piece(&sink, piece);
                    m.answer(&image, &question, &params, cancel, &mut on_text)
                },
            )
            .await?;
        replay_cached(stream, &result).await?;
        Ok(result)
    }

    /// How well each of `texts` describes a video, under X-CLIP `model` (the configured
    /// default when `None`): the model's `num_frames` frames are sampled from the input (see
    /// [`crate::vision::xclip`]).
    pub async fn video_text_similarity(
        &self,
        model: Option<&str>,
        video: VideoSource,
        texts: Vec<String>,
    ) -> Result<Inference<VideoTextSimilarity>> {
        crate::nn::require_texts(&texts)?;
        let max_bytes = self.inner.config.max_image_bytes.unwrap_or(u64::MAX);
        let deadline = self.inner.config.video_decode_timeout;
        let model = model.unwrap_or(&self.inner.config.xclip_model).to_string();
        // The digest keys the cache; decoding waits for the model (it knows its frame count)
        // and is skipped on a cache hit.
        let (digest, video) =
            tokio::task::spawn_blocking(move || -> Result<(String, VideoSource)> {
                let sha256 = |bytes: &[u8]| {
                    crate::source::sha256_hex(&mut &bytes[..])
                        .map_err(|e| Error::Task(e.to_string()))
                };
                let digest = match &video {
                    VideoSource::Frames(files) if files.is_empty() => {
                        return Err(Error::InvalidInput("no frames given".into()))
                    }
                    VideoSource::Frames(files) => {
                        // The digest of the frames' digests, in order.
                        let mut digests = String::new();
                        for bytes in files {
                            if bytes.len() as u64 > max_bytes {
                                return Err(Error::InvalidInput(format!(
                                    "a frame is over [worker] max_image_bytes ({max_bytes})"
                                )));
                            }
                            digests.push_str(&sha256(bytes)?);
                        }
                        sha256(digests.as_bytes())?
                    }
                    VideoSource::File(bytes) => sha256(bytes)?,
                };
                Ok((digest, video))
            })
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        let request = json!({ "video_sha256": digest, "texts": texts });
        self.run(
            &model,
            Task::VideoTextSimilarity,
            "video-text-similarity",
            request,
            true,
            move |loaded, cancel| {
                let Loaded::XClip(m) = loaded else {
                    return Err(Error::Task("not a video-text model".into()));
                };
                let limits = crate::vision::DecodeLimits::default();
                let frames = match video {
                    VideoSource::Frames(files) => files
                        .iter()
                        .map(|bytes| crate::vision::image::decode(bytes, limits))
                        .collect::<Result<Vec<_>>>()?,
                    VideoSource::File(bytes) => crate::vision::xclip::decode_video(
                        &bytes,
                        m.num_frames(),
                        limits,
                        deadline,
                    )?,
                };
                cancel.check()?;
                Ok(VideoTextSimilarity {
                    frames: frames.len(),
                    texts: m.similarity(&frames, &texts, cancel)?,
                })
            },
        )
        .await
    }

    /// Where the ONNX Runtime library Piper voices run on would come from, decided exactly as
    /// [`Worker::onnxruntime_library`] decides it but copying nothing: `None` where none is
    /// configured, an error where the one configured cannot be used (a missing file, a model
    /// under that name that is not the library).
    pub async fn onnxruntime_source(&self) -> Result<Option<String>> {
        let file = |origin: &str, path: &std::path::Path| {
            // storage-audit: allow(whether a configured library file exists; nothing is read or kept)
            if path.is_file() {
                Ok(Some(format!("{origin} {}", path.display())))
            } else {
                Err(Error::Device(format!("{origin} {} is not a file", path.display())))
            }
        };
        if let Some(path) = &self.inner.config.onnxruntime {
            return file("[worker] onnxruntime =", path);
        }
        if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
            return file("ORT_DYLIB_PATH =", std::path::Path::new(&path));
        }
        let name = &self.inner.config.onnxruntime_model;
        Ok(self
            .onnxruntime_model()
            .await?
            .map(|model| format!("model {name} in the store ({})", model.cid)))
    }

    /// The registry's model named `[worker] onnxruntime_model`, checked to be a library.
    async fn onnxruntime_model(&self) -> Result<Option<crate::Model>> {
        let name = &self.inner.config.onnxruntime_model;
        let model = match self.inner.registry.resolve(name).await {
            Ok(model) => model,
            Err(Error::UnknownModel { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if model.manifest.info.format != crate::manifest::Format::Library {
            return Err(Error::Device(format!(
                "model {name} is a {} model, not ONNX Runtime's library (import the onnxruntime wheel under that name)",
                model.manifest.info.family
            )));
        }
        Ok(Some(model))
    }

    /// The ONNX Runtime library for skills that run ONNX graphs: `[worker] onnxruntime` when
    /// set; else, when `ORT_DYLIB_PATH` is unset, the registry's model named
    /// `[worker] onnxruntime_model` (ONNX Runtime's wheel, imported like any model), copied
    /// out of the store — every byte verified against its CID — to `runtimes/<cid>/` beside
    /// the store, where the dynamic loader can open it. `None` leaves it to `ORT_DYLIB_PATH`.
    async fn onnxruntime_library(&self) -> Result<Option<std::path::PathBuf>> {
        if let Some(path) = &self.inner.config.onnxruntime {
            return Ok(Some(path.clone()));
        }
        if std::env::var_os("ORT_DYLIB_PATH").is_some() {
            return Ok(None);
        }
        self.inner
            .onnxruntime
            .get_or_try_init(|| async {
                let Some(model) = self.onnxruntime_model().await? else {
                    return Ok(None);
                };
                let file = &model.manifest.info.weights;
                let entry = model.manifest.file(file)?;
                let store = self.inner.registry.store();
                let dir = store.root().with_file_name("runtimes").join(entry.cid.to_string());
                #[allow(clippy::disallowed_methods)]
                // storage-audit: allow(a verified copy of stored bytes for the dynamic loader)
                tokio::fs::create_dir_all(&dir).await.map_err(|e| {
                    Error::Device(format!("creating {}: {e}", dir.display()))
                })?;
                let path = dir.join(file);
                store.get_to_path(&entry.cid, ipfs_accelerate_common::store::Range::default(), &path).await?;
                tracing::info!(model = %model.cid, path = %path.display(), "ONNX Runtime copied out of the store");
                Ok(Some(path))
            })
            .await
            .cloned()
    }

    /// Threads for whisper.cpp and ONNX Runtime.
    fn threads(&self) -> usize {
        self.inner.config.threads.unwrap_or_else(crate::skill::all_cores)
    }

    /// The common path: resolve, cache lookup, load, queue, run, cache store.
    async fn run<T>(
        &self,
        name: &str,
        task: Task,
        operation: &str,
        request: serde_json::Value,
        cacheable: bool,
        job: impl FnOnce(&Loaded, &Cancel) -> Result<T> + Send + 'static,
    ) -> Result<Inference<T>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let model = self.inner.registry.resolve(name).await?;
        let skill = skill::find(task, name, &model.manifest)?;
        let info = skill.info();
        let model_ref = ModelRef { cid: model.cid.to_string(), name: model.names.first().cloned() };
        let key = (cacheable && self.inner.config.cache_results)
            .then(|| {
                let identity = json!({
                    "version": RESULTS_VERSION,
                    "operation": operation,
                    "skill": info.name,
                    "model": model.cid.to_string(),
                    "request": request,
                });
                CacheKey::content(RESULTS_NAMESPACE, &identity)
                    .inspect_err(|e| tracing::warn!(error = %e, "result not cacheable"))
                    .ok()
            })
            .flatten();
        if let Some(key) = &key {
            match self.inner.cache.get_json::<T>(key).await {
                Ok(Some(output)) => {
                    return Ok(Inference {
                        output,
                        model: model_ref,
                        skill: info.name,
                        device: None,
                        device_reason: None,
                        cached: true,
                        timings: Timings::default(),
                    })
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "result cache unreadable; running the model"),
            }
        }

        let started = Instant::now();
        let (endpoint, placement) = self.endpoint(&model, task, skill).await?;
        let load_ms = ms(started.elapsed());
        let admitted = Arc::clone(&endpoint.admitted).try_acquire_owned().map_err(|_| {
            Error::QueueFull { model: model.label(), depth: self.inner.config.queue_depth }
        })?;
        let queued = Instant::now();
        let running: OwnedSemaphorePermit = Arc::clone(&endpoint.running)
            .acquire_owned()
            .await
            .map_err(|_| Error::Task("the model was closed".into()))?;
        let queue_ms = ms(queued.elapsed());

        let cancel = Cancel::new();
        let guard = CancelOnDrop(cancel.clone());
        let ran = Instant::now();
        let worker_endpoint = Arc::clone(&endpoint);
        let span = tracing::info_span!("skill", skill = info.name, model = %model.cid);
        let output = tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            // The permits live as long as the skill does, even if the caller stopped waiting.
            let _permits = (admitted, running);
            job(&worker_endpoint.loaded, &cancel)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        drop(guard);
        let run_ms = ms(ran.elapsed());
        if let Ok(mut last) = endpoint.last_used.lock() {
            *last = Instant::now();
        }

        if let Some(key) = &key {
            let ttl = Some(self.inner.config.result_ttl);
            if let Err(e) = self.inner.cache.put_json(key, &output, ttl).await {
                tracing::warn!(error = %e, "result cache not writable; result not kept");
            }
        }
        Ok(Inference {
            output,
            model: model_ref,
            skill: info.name,
            device: Some(placement.name.clone()),
            device_reason: Some(placement.reason.clone()),
            cached: false,
            timings: Timings { load_ms, queue_ms, run_ms },
        })
    }

    /// The endpoint of (model, task), loading it (once, whoever asks at the same time) if
    /// needed.
    async fn endpoint(
        &self,
        model: &Model,
        task: Task,
        skill: &'static dyn Skill,
    ) -> Result<(Arc<Endpoint>, Placement)> {
        let key = (model.cid, task);
        let slot = {
            let mut map = self
                .inner
                .endpoints
                .lock()
                .map_err(|_| Error::Task("endpoint map poisoned".into()))?;
            Arc::clone(map.entry(key).or_default())
        };
        let placement = self.placement().await?;
        let mut loaded_now = false;
        let endpoint = slot
            .endpoint
            .get_or_try_init(|| {
                loaded_now = true;
                self.load(model, task, skill, &placement)
            })
            .await?;
        if let Ok(mut last) = endpoint.last_used.lock() {
            *last = Instant::now();
        }
        let endpoint = Arc::clone(endpoint);
        if loaded_now {
            // The size before loading was the files'; a skill may hold more (dequantized
            // tables, re-quantized weights). Settle the budget with what it really holds.
            if endpoint.bytes > self.inner.budget {
                if let Ok(mut map) = self.inner.endpoints.lock() {
                    map.remove(&key);
                }
                return Err(Error::OverBudget {
                    model: model.label(),
                    needed: endpoint.bytes,
                    budget: self.inner.budget,
                });
            }
            self.make_room(0, key);
        }
        Ok((endpoint, placement))
    }

    async fn load(
        &self,
        model: &Model,
        task: Task,
        skill: &'static dyn Skill,
        placement: &Placement,
    ) -> Result<Arc<Endpoint>> {
        let key = (model.cid, task);
        let derived;
        let model = match skill.derive(&model.manifest) {
            Some(derivation) => {
                derived = self.inner.registry.derive(model, &derivation).await?;
                &derived
            }
            None => model,
        };
        let paths = skill.files(&model.manifest);
        let estimate: u64 =
            paths.iter().filter_map(|p| model.manifest.files.get(p)).map(|f| f.size).sum();
        if estimate > self.inner.budget {
            return Err(Error::OverBudget {
                model: model.label(),
                needed: estimate,
                budget: self.inner.budget,
            });
        }
        self.make_room(estimate, key);
        let mut files = std::collections::BTreeMap::new();
        for path in paths {
            let bytes = self.inner.registry.read_file(model, &path).await?;
            files.insert(path, bytes);
        }
        let manifest = model.manifest.clone();
        let onnxruntime = if skill.info().formats.contains(&crate::manifest::Format::Onnx) {
            self.onnxruntime_library().await?
        } else {
            None
        };
        let context =
            LoadContext { device: placement.device.clone(), threads: self.threads(), onnxruntime };
        let started = Instant::now();
        let loaded = tokio::task::spawn_blocking(move || {
            skill.load(&manifest, ModelFiles::new(files), &context)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        let bytes = loaded.memory_bytes();
        tracing::info!(model = %model.cid, skill = skill.info().name, bytes, elapsed = ?started.elapsed(), "model loaded");
        let depth = self.inner.config.queue_depth + self.inner.config.concurrency;
        Ok(Arc::new(Endpoint {
            loaded,
            bytes,
            depth,
            admitted: Arc::new(Semaphore::new(depth)),
            running: Arc::new(Semaphore::new(self.inner.config.concurrency)),
            last_used: Mutex::new(Instant::now()),
        }))
    }

    /// Evicts idle endpoints, least recently used first, until `needed` more bytes fit.
    fn make_room(&self, needed: u64, keep: (Cid, Task)) {
        let Ok(mut map) = self.inner.endpoints.lock() else { return };
        loop {
            let loaded: u64 = map.values().filter_map(|s| s.endpoint.get()).map(|e| e.bytes).sum();
            if loaded + needed <= self.inner.budget {
                return;
            }
            let idle = map
                .iter()
                .filter(|(key, _)| **key != keep)
                .filter_map(|(key, slot)| {
                    let endpoint = slot.endpoint.get()?;
                    // Only the slot holds an idle endpoint (and the caller, if it took the slot).
                    (Arc::strong_count(endpoint) == 1).then(|| {
                        (*key, endpoint.last_used.lock().map_or_else(|_| Instant::now(), |t| *t))
                    })
                })
                .min_by_key(|(_, used)| *used);
            match idle {
                Some((key, _)) => {
                    tracing::info!(model = %key.0, task = %key.1, "unloading to make room");
                    map.remove(&key);
                }
                None => {
                    tracing::warn!(
                        needed,
                        budget = self.inner.budget,
                        "over the memory budget: every loaded model is in use"
                    );
                    return;
                }
            }
        }
    }

    /// The device, selected once per worker.
    async fn placement(&self) -> Result<Placement> {
        self.inner
            .placement
            .get_or_try_init(|| async {
                let host = Host::current();
                let build = build_info();
                let report =
                    report::load(&self.inner.cache, &host, &build, &LoadOptions::default())
                        .await
                        .map_err(|e| Error::Device(format!("hardware report: {e}")))?;
                let mut backends = vec![Backend::Cpu];
                backends
                    .extend([Backend::Cuda, Backend::Metal].into_iter().filter(|b| build.has(*b)));
                let needs = Needs { backends, ..Needs::default() };
                let mut overrides = Overrides::from_host(&host);
                if overrides.device.is_none() {
                    overrides.device.clone_from(&self.inner.config.device);
                }
                let selection = select::select(&report.report, &build, &needs, &overrides)
                    .map_err(|e| Error::Device(e.to_string()))?;
                let device = candle_device(selection.device)?;
                Ok(Placement {
                    device,
                    name: selection.device.to_string(),
                    reason: selection.reason,
                })
            })
            .await
            .cloned()
    }
}

fn candle_device(
    device: ipfs_accelerate_install_depends::select::Device,
) -> Result<candle_core::Device> {
    use ipfs_accelerate_install_depends::select::Device as D;
    let unavailable = |e: candle_core::Error| Error::Device(format!("{device}: {e}"));
    match device {
        D::Cpu => Ok(candle_core::Device::Cpu),
        D::Cuda(ordinal) => candle_core::Device::new_cuda(ordinal as usize).map_err(unavailable),
        D::Metal => candle_core::Device::new_metal(0).map_err(unavailable),
    }
}

/// An audio file's vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioEmbedding {
    /// The vector.
    pub vector: Vec<f32>,
    /// Its dimension.
    pub dim: usize,
}

/// Streams a generated piece to the caller from the skill's thread. A receiver gone means the
/// caller stopped listening: generation stops.
fn send_piece(sink: &Option<tokio::sync::mpsc::Sender<String>>, piece: &str) -> Result<()> {
    match sink {
        Some(tx) => tx.blocking_send(piece.to_string()).map_err(|_| Error::Cancelled),
        None => Ok(()),
    }
}

/// A cached answer was never streamed: it goes to the stream whole.
async fn replay_cached(
    stream: Option<tokio::sync::mpsc::Sender<String>>,
    result: &Inference<GeneratedText>,
) -> Result<()> {
    match stream {
        Some(tx) if result.cached => {
            tx.send(result.output.text.clone()).await.map_err(|_| Error::Cancelled)
        }
        _ => Ok(()),
    }
}

/// An image for the vision skills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// The file's bytes (PNG, JPEG, WebP, BMP, GIF).
    Bytes(Vec<u8>),
    /// An `https://` URL, fetched under the worker's fetch policy.
    Url(String),
}

/// A video for X-CLIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoSource {
    /// Frame image files' bytes, in order.
    Frames(Vec<Vec<u8>>),
    /// A GIF, or a video file ffmpeg decodes.
    File(Vec<u8>),
}

/// Scores from [`Worker::video_text_similarity`], in the order the texts were given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoTextSimilarity {
    /// Frames the input had (before sampling).
    pub frames: usize,
    /// One score per text.
    pub texts: Vec<crate::vision::VideoTextScore>,
}

/// Labels from [`Worker::classify_image`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageClassification {
    /// The most probable labels, best first.
    pub labels: Vec<crate::vision::ImageLabel>,
}

/// A vector from [`Worker::embed_image`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageEmbedding {
    /// The unit-norm vector.
    pub vector: Vec<f32>,
    /// Its dimension.
    pub dim: usize,
}

/// Scores from [`Worker::image_text_similarity`], in the order the texts were given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageTextSimilarity {
    /// One score per text.
    pub texts: Vec<crate::vision::TextScore>,
}

/// Labels scored by [`Worker::classify_audio`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioClassification {
    /// Labels with probabilities, best first.
    pub labels: Vec<crate::speech::LabelScore>,
    /// The prompt each label was put into.
    pub template: String,
}

/// Speech made by [`Worker::synthesize`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthesizedSpeech {
    /// A 16-bit mono WAV file (not in JSON output: write it to a file).
    #[serde(skip)]
    pub wav: Vec<u8>,
    /// Its sample rate.
    pub sample_rate: u32,
    /// Its length in seconds.
    pub duration: f64,
    /// Sentences spoken.
    pub sentences: usize,
    /// espeak-ng's phonemes, one string per sentence.
    pub phonemes: Vec<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
