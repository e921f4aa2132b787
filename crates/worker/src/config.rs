//! The `[worker]` settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    #[serde(default, with = "ipfs_accelerate_common::config::size_text")]
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
    #[serde(
        default = "default_max_image_bytes",
        with = "ipfs_accelerate_common::config::size_text"
    )]
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

impl ipfs_accelerate_common::config::Section for WorkerConfig {
    const NAME: &'static str = "worker";
    // For containers and service units, where a file is the awkward layer.
    const ENV: &'static [(&'static str, &'static str)] = &[
        ("memory_budget", "IPFS_ACCELERATE_MEMORY_BUDGET"),
        ("threads", "IPFS_ACCELERATE_THREADS"),
        ("queue_depth", "IPFS_ACCELERATE_QUEUE_DEPTH"),
        ("concurrency", "IPFS_ACCELERATE_CONCURRENCY"),
    ];

    fn validate(&self) -> Result<(), String> {
        if self.threads == Some(0) {
            return Err("threads must be at least 1".into());
        }
        if !self.max_audio_seconds.is_finite() || self.max_audio_seconds <= 0.0 {
            return Err("max_audio_seconds must be positive".into());
        }
        if self.concurrency == 0 {
            return Err("concurrency must be at least 1".into());
        }
        Ok(())
    }
}
