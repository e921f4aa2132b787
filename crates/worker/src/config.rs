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
// A missing key takes its value from `Default`: the one place defaults are written.
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Bytes of loaded models (`8GiB` or a number); half the machine's memory when unset.
    #[serde(with = "ipfs_accelerate_common::config::size_text")]
    pub memory_budget: Option<u64>,
    /// Requests waiting per model.
    pub queue_depth: usize,
    /// Requests running at once per model.
    pub concurrency: usize,
    /// Keep deterministic results in the store's cache.
    pub cache_results: bool,
    /// How long a cached result is reused.
    #[serde(with = "ipfs_accelerate_common::config::duration_text")]
    pub result_ttl: Duration,
    /// The default embedding model (a name or CID).
    pub embed_model: String,
    /// The default generation model (a name or CID).
    pub generate_model: String,
    /// The default speech recognition model.
    pub transcribe_model: String,
    /// The default text-to-speech voice.
    pub voice: String,
    /// The default zero-shot audio classification (CLAP) model.
    pub audio_classify_model: String,
    /// The default image classification (ViT) model.
    pub image_classify_model: String,
    /// The default CLIP model (image embeddings, image–text similarity).
    pub clip_model: String,
    /// The default LLaVA model (captions, questions about images).
    pub llava_model: String,
    /// The default X-CLIP model (video–text similarity).
    pub xclip_model: String,
    /// How long one ffmpeg run decoding a video file may take.
    #[serde(with = "ipfs_accelerate_common::config::duration_text")]
    pub video_decode_timeout: Duration,
    /// The largest image accepted, file or download.
    #[serde(with = "ipfs_accelerate_common::config::size_text")]
    pub max_image_bytes: Option<u64>,
    /// How long fetching an image URL may take, redirects and body included.
    #[serde(with = "ipfs_accelerate_common::config::duration_text")]
    pub image_fetch_timeout: Duration,
    /// Fetch images from loopback, private and link-local addresses, and over plain http
    /// (off: a URL could otherwise reach services behind the firewall).
    pub image_fetch_allow_private: bool,
    /// Threads for whisper.cpp and ONNX Runtime (candle uses its own pool); all cores when
    /// unset. On a busy 2-core machine use 1: ggml's spinning pool collapses under contention.
    pub threads: Option<usize>,
    /// The ONNX Runtime shared library Piper voices run on; `ORT_DYLIB_PATH` when unset.
    pub onnxruntime: Option<std::path::PathBuf>,
    /// The registry model holding ONNX Runtime's library, used when neither `onnxruntime`
    /// nor `ORT_DYLIB_PATH` is set.
    pub onnxruntime_model: String,
    /// The longest audio input accepted, in seconds.
    pub max_audio_seconds: f64,
    /// The device to run on (`auto`, `cpu`, `cuda`, `cuda:N`, `metal`) when
    /// `IPFS_ACCELERATE_DEVICE` is not set: the CLI's `--device`, the flag form of that
    /// variable (not read from the config file). A device that cannot be used is an error.
    #[serde(skip)]
    pub device: Option<String>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            memory_budget: None,
            queue_depth: 16,
            concurrency: 1,
            cache_results: true,
            result_ttl: Duration::from_secs(30 * 24 * 3600),
            embed_model: "minilm".into(),
            generate_model: "smollm2-135m".into(),
            transcribe_model: "whisper-base".into(),
            voice: "piper-joe".into(),
            audio_classify_model: "clap".into(),
            image_classify_model: "vit".into(),
            clip_model: "clip".into(),
            llava_model: "llava".into(),
            xclip_model: "xclip".into(),
            video_decode_timeout: Duration::from_secs(60),
            max_image_bytes: Some(32 << 20),
            image_fetch_timeout: Duration::from_secs(30),
            image_fetch_allow_private: false,
            threads: None,
            onnxruntime: None,
            onnxruntime_model: "onnxruntime".into(),
            max_audio_seconds: 3600.0,
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
