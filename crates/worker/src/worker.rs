//! The task facade: one method per thing a caller asks of a model (embed, generate,
//! transcribe, classify an image, …). Each checks its input, decodes audio and images off
//! the reactor, names the capability it needs and hands the rest to the
//! scheduler (`scheduler.rs`): which model, loaded where, queued how, cached or not.
//! Nothing here knows a model family: a model's capabilities are traits
//! ([`crate::capability`]).

use std::sync::Arc;

use ipfs_accelerate_common::store::Store;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use crate::capability::{
    AnswerImage, ClassifyAudio, ClassifyImage, Embed, EmbedAudio, EmbedImage, Generate, ImageText,
    Synthesize, Transcribe, VideoText,
};
use crate::config::WorkerConfig;
use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::scheduler::{Inference, LoadedModel, Scheduler};
use crate::skill::{Cancel, Embeddings, GeneratedText, Similarity};
use crate::speech::{SynthesizeOptions, TranscribeOptions, Transcription};
use crate::text::{cosine, GenerateParams, Prompt};

/// Runs skills on models from a registry.
#[derive(Clone)]
pub struct Worker {
    scheduler: Arc<Scheduler>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("budget", &self.scheduler.budget).finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker over the models in `store`.
    pub fn new(store: Store, config: WorkerConfig) -> Worker {
        Worker { scheduler: Arc::new(Scheduler::new(store, config)) }
    }

    /// The registry it loads models from.
    pub fn registry(&self) -> &Registry {
        &self.scheduler.registry
    }

    /// Its settings.
    pub fn config(&self) -> &WorkerConfig {
        &self.scheduler.config
    }

    /// Bytes of loaded models it may hold.
    pub fn memory_budget(&self) -> u64 {
        self.scheduler.budget
    }

    /// The models loaded now.
    pub fn loaded(&self) -> Vec<LoadedModel> {
        self.scheduler.loaded()
    }

    /// Where the ONNX Runtime library Piper voices run on would come from: `[worker]
    /// onnxruntime`, `ORT_DYLIB_PATH`, or the registry's `onnxruntime_model` (decided as the
    /// scheduler decides it when it loads a voice, but copying nothing).
    pub async fn onnxruntime_source(&self) -> Result<Option<String>> {
        self.scheduler.onnxruntime_source().await
    }

    /// Embeds `texts` with `model` (the configured default when `None`).
    pub async fn embed(
        &self,
        model: Option<&str>,
        texts: Vec<String>,
        normalize: Option<bool>,
    ) -> Result<Inference<Embeddings>> {
        let model = model.unwrap_or(&self.scheduler.config.embed_model).to_string();
        let request = json!({ "texts": texts, "normalize": normalize });
        self.scheduler
            .run::<dyn Embed, _>(&model, "embed", request, true, move |m, cancel| {
                m.embed(&texts, normalize, cancel)
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
        let model = model.unwrap_or(&self.scheduler.config.generate_model).to_string();
        let request = json!({ "prompt": prompt, "params": params });
        let cacheable = params.is_deterministic();
        let sink = stream.clone();
        let result = self
            .scheduler
            .run::<dyn Generate, _>(&model, "generate", request, cacheable, move |m, cancel| {
                let mut on_text = |piece: &str| send_piece(&sink, piece);
                m.generate(&prompt, &params, cancel, &mut on_text)
            })
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
        let model = model.unwrap_or(&self.scheduler.config.transcribe_model).to_string();
        let request = json!({ "audio_sha256": digest, "options": options });
        self.scheduler
            .run::<dyn Transcribe, _>(&model, "transcribe", request, true, move |m, cancel| {
                m.transcribe(decoded, &options, cancel)
            })
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
        self.scheduler
            .run::<dyn EmbedAudio, _>(model, "embed-audio", request, true, move |m, cancel| {
                let vector = m.embed_audio(decoded, cancel)?;
                Ok(AudioEmbedding { dim: vector.len(), vector })
            })
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
        let model = model.unwrap_or(&self.scheduler.config.audio_classify_model).to_string();
        let request = json!({ "audio_sha256": digest, "labels": labels, "top_k": top_k });
        self.scheduler
            .run::<dyn ClassifyAudio, _>(
                &model,
                "classify-audio",
                request,
                true,
                move |m, cancel| {
                    let mut labels = m.classify_audio(decoded, &labels, cancel)?;
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
        let model = model.unwrap_or(&self.scheduler.config.voice).to_string();
        let request = json!({ "text": text, "options": options });
        self.scheduler
            .run::<dyn Synthesize, _>(&model, "synthesize", request, false, move |m, cancel| {
                let speech = m.synthesize(&text, &options, cancel)?;
                Ok(SynthesizedSpeech {
                    wav: speech.audio.to_wav()?,
                    sample_rate: speech.audio.sample_rate,
                    duration: speech.audio.seconds(),
                    sentences: speech.sentences,
                    phonemes: speech.phonemes,
                })
            })
            .await
    }

    /// An audio file's SHA-256 (its identity in result cache keys) and samples, off the
    /// reactor; bad audio fails here, before any model loads.
    async fn decode_audio(&self, audio: Vec<u8>) -> Result<(String, crate::audio::Audio)> {
        let max_seconds = self.scheduler.config.max_audio_seconds;
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
        let config = &self.scheduler.config;
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
        let model = model.unwrap_or(&self.scheduler.config.image_classify_model).to_string();
        let request = json!({ "image_sha256": digest, "top_k": top_k });
        self.scheduler
            .run::<dyn ClassifyImage, _>(
                &model,
                "classify-image",
                request,
                true,
                move |m, cancel| {
                    Ok(ImageClassification { labels: m.classify_image(&image, top_k, cancel)? })
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
        let model = model.unwrap_or(&self.scheduler.config.clip_model).to_string();
        let request = json!({ "image_sha256": digest });
        self.scheduler
            .run::<dyn EmbedImage, _>(&model, "embed-image", request, true, move |m, cancel| {
                let vector = m.embed_image(&image, cancel)?;
                Ok(ImageEmbedding { dim: vector.len(), vector })
            })
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
        let model = model.unwrap_or(&self.scheduler.config.clip_model).to_string();
        let request = json!({ "image_sha256": digest, "texts": texts });
        let job = move |m: &(dyn ImageText + 'static), cancel: &Cancel| {
            Ok(ImageTextSimilarity { texts: m.image_text_similarity(&image, &texts, cancel)? })
        };
        self.scheduler.run(&model, "image-text-similarity", request, true, job).await
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
        let model = model.unwrap_or(&self.scheduler.config.llava_model).to_string();
        let request = json!({ "image_sha256": digest, "question": question, "params": params });
        let cacheable = params.is_deterministic();
        let sink = stream.clone();
        let result = self
            .scheduler
            .run::<dyn AnswerImage, _>(&model, "ask-image", request, cacheable, move |m, cancel| {
                let mut on_text = |piece: &str| send_piece(&sink, piece);
                m.answer(&image, &question, &params, cancel, &mut on_text)
            })
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
        let max_bytes = self.scheduler.config.max_image_bytes.unwrap_or(u64::MAX);
        let deadline = self.scheduler.config.video_decode_timeout;
        let model = model.unwrap_or(&self.scheduler.config.xclip_model).to_string();
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
        let job = move |m: &(dyn VideoText + 'static), cancel: &Cancel| {
            let limits = crate::vision::DecodeLimits::default();
            let frames = match video {
                VideoSource::Frames(files) => files
                    .iter()
                    .map(|bytes| crate::vision::image::decode(bytes, limits))
                    .collect::<Result<Vec<_>>>()?,
                VideoSource::File(bytes) => {
                    crate::vision::xclip::decode_video(&bytes, m.num_frames(), limits, deadline)?
                }
            };
            cancel.check()?;
            Ok(VideoTextSimilarity {
                frames: frames.len(),
                texts: m.video_text_similarity(&frames, &texts, cancel)?,
            })
        };
        self.scheduler.run(&model, "video-text-similarity", request, true, job).await
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
