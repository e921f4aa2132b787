//! What a loaded model can do: one trait per capability, implemented by the models that have
//! it. The scheduler holds an `Arc<dyn Loaded>` and asks for a capability by type
//! ([`Capability::of`]); it never names a model family, so a new family is a new skill and
//! its trait impls, with no change to the scheduler or the task facade.

use image::RgbImage;

use crate::audio::Audio;
use crate::error::Result;
use crate::skill::{Cancel, Embeddings, GeneratedText, Task};
use crate::speech::{LabelScore, Speech, SynthesizeOptions, TranscribeOptions, Transcription};
use crate::text::{GenerateParams, Prompt};
use crate::vision::{ImageLabel, TextScore, VideoTextScore};

/// Receives generated text as it becomes final; an error stops generation.
pub type OnText<'a> = &'a mut dyn FnMut(&str) -> Result<()>;

/// A model a skill loaded, shared by the requests running on it.
///
/// Each accessor answers `Some(self)` for a capability the model has; the defaults say it
/// has none.
pub trait Loaded: Send + Sync + std::fmt::Debug {
    /// Resident bytes (weights, tokenizer tables, engine buffers), for the memory budget.
    fn memory_bytes(&self) -> u64;

    /// The concrete model, for callers that know what they loaded (tests, benchmarks).
    fn as_any(&self) -> &dyn std::any::Any;

    /// Text → vectors.
    fn embedder(&self) -> Option<&(dyn Embed + 'static)> {
        None
    }
    /// Prompt → text.
    fn generator(&self) -> Option<&(dyn Generate + 'static)> {
        None
    }
    /// Speech → text.
    fn transcriber(&self) -> Option<&(dyn Transcribe + 'static)> {
        None
    }
    /// Text → speech.
    fn synthesizer(&self) -> Option<&(dyn Synthesize + 'static)> {
        None
    }
    /// Audio → one vector.
    fn audio_embedder(&self) -> Option<&(dyn EmbedAudio + 'static)> {
        None
    }
    /// Audio + labels → probabilities.
    fn audio_classifier(&self) -> Option<&(dyn ClassifyAudio + 'static)> {
        None
    }
    /// Image → labels.
    fn image_classifier(&self) -> Option<&(dyn ClassifyImage + 'static)> {
        None
    }
    /// Image → one vector.
    fn image_embedder(&self) -> Option<&(dyn EmbedImage + 'static)> {
        None
    }
    /// Image + texts → scores.
    fn image_text(&self) -> Option<&(dyn ImageText + 'static)> {
        None
    }
    /// Image + question → answer.
    fn image_answerer(&self) -> Option<&(dyn AnswerImage + 'static)> {
        None
    }
    /// Video frames + texts → scores.
    fn video_text(&self) -> Option<&(dyn VideoText + 'static)> {
        None
    }
}

/// Text embeddings.
pub trait Embed: Send + Sync {
    /// One vector per text, normalised per `normalize` or the model's default.
    fn embed(
        &self,
        texts: &[String],
        normalize: Option<bool>,
        cancel: &Cancel,
    ) -> Result<Embeddings>;
}

/// Text generation.
pub trait Generate: Send + Sync {
    /// Generates from `prompt`, passing text to `on_text` as it becomes final.
    fn generate(
        &self,
        prompt: &Prompt,
        params: &GenerateParams,
        cancel: &Cancel,
        on_text: OnText<'_>,
    ) -> Result<GeneratedText>;
}

/// Speech recognition.
pub trait Transcribe: Send + Sync {
    /// The text of `audio` (or its English translation, per `options`).
    fn transcribe(
        &self,
        audio: Audio,
        options: &TranscribeOptions,
        cancel: &Cancel,
    ) -> Result<Transcription>;
}

/// Speech synthesis.
pub trait Synthesize: Send + Sync {
    /// `text`, spoken.
    fn synthesize(
        &self,
        text: &str,
        options: &SynthesizeOptions,
        cancel: &Cancel,
    ) -> Result<Speech>;
}

/// One vector per audio clip.
pub trait EmbedAudio: Send + Sync {
    /// The clip's vector.
    fn embed_audio(&self, audio: Audio, cancel: &Cancel) -> Result<Vec<f32>>;
}

/// Zero-shot audio classification.
pub trait ClassifyAudio: Send + Sync {
    /// Each label's probability, best first.
    fn classify_audio(
        &self,
        audio: Audio,
        labels: &[String],
        cancel: &Cancel,
    ) -> Result<Vec<LabelScore>>;
}

/// Image classification over the model's own labels.
pub trait ClassifyImage: Send + Sync {
    /// The `top_k` most probable labels.
    fn classify_image(
        &self,
        image: &RgbImage,
        top_k: usize,
        cancel: &Cancel,
    ) -> Result<Vec<ImageLabel>>;
}

/// One vector per image.
pub trait EmbedImage: Send + Sync {
    /// The image's unit-norm vector.
    fn embed_image(&self, image: &RgbImage, cancel: &Cancel) -> Result<Vec<f32>>;
}

/// How well texts describe an image.
pub trait ImageText: Send + Sync {
    /// Per text: cosine, logit and probability.
    fn image_text_similarity(
        &self,
        image: &RgbImage,
        texts: &[String],
        cancel: &Cancel,
    ) -> Result<Vec<TextScore>>;
}

/// Questions about an image.
pub trait AnswerImage: Send + Sync {
    /// The answer to `question`, streamed to `on_text`.
    fn answer(
        &self,
        image: &RgbImage,
        question: &str,
        params: &GenerateParams,
        cancel: &Cancel,
        on_text: OnText<'_>,
    ) -> Result<GeneratedText>;
}

/// How well texts describe a video.
pub trait VideoText: Send + Sync {
    /// Frames the model looks at (what a video is sampled to).
    fn num_frames(&self) -> usize;
    /// Per text: logit and probability.
    fn video_text_similarity(
        &self,
        frames: &[RgbImage],
        texts: &[String],
        cancel: &Cancel,
    ) -> Result<Vec<VideoTextScore>>;
}

/// A capability the scheduler can ask a loaded model for: the task it serves, and how to get
/// it from a model.
pub trait Capability: Send + Sync + 'static {
    /// The task a model is loaded for to have it.
    const TASK: Task;
    /// The capability of `model`, if it has it.
    fn of(model: &dyn Loaded) -> Option<&Self>;
}

macro_rules! capabilities {
    ($($trait:ident: $task:ident via $accessor:ident;)+) => {
        $(impl Capability for dyn $trait {
            const TASK: Task = Task::$task;
            fn of(model: &dyn Loaded) -> Option<&Self> {
                model.$accessor()
            }
        })+
    };
}

capabilities! {
    Embed: TextEmbedding via embedder;
    Generate: TextGeneration via generator;
    Transcribe: SpeechRecognition via transcriber;
    Synthesize: SpeechSynthesis via synthesizer;
    EmbedAudio: AudioEmbedding via audio_embedder;
    ClassifyAudio: AudioClassification via audio_classifier;
    ClassifyImage: ImageClassification via image_classifier;
    EmbedImage: ImageEmbedding via image_embedder;
    ImageText: ImageTextSimilarity via image_text;
    AnswerImage: VisualQuestionAnswering via image_answerer;
    VideoText: VideoTextSimilarity via video_text;
}

/// `impl Loaded` for a model: its size method and the accessors of the capabilities it has.
macro_rules! loaded {
    ($model:ty: $($accessor:ident -> $trait:ident),* $(,)?) => {
        impl $crate::capability::Loaded for $model {
            fn memory_bytes(&self) -> u64 {
                <$model>::memory_bytes(self)
            }
            fn as_any(&self) -> &dyn std::any::Any {
                self
            }
            $(fn $accessor(&self) -> Option<&(dyn $crate::capability::$trait + 'static)> {
                Some(self)
            })*
        }
    };
}
pub(crate) use loaded;
