//! CLIP on candle-transformers' text and vision transformers, bridged from HF's
//! `config.json` (candle's config structs have no serde): image and text embeddings,
//! similarity logits, zero-shot classification.
//!
//! Pooling and projections are ours rather than candle's `ClipModel`, because candle pools the
//! text at `argmax(input_ids)` — HF's legacy rule, right only when EOS is the largest id. HF
//! uses it only when `eos_token_id == 2`; otherwise it pools at the first EOS, and so does this.

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{linear_no_bias, Linear};
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::clip::vision_model::{ClipVisionConfig, ClipVisionTransformer};
use serde::Deserialize;

use super::image::Processor;
use crate::error::{Error, Result};
use crate::nn::{l2_normalize, no_tokenizer, only_row, softmax, Pad, TextTokenizer};
use crate::skill::{Cancel, Checkpoint, Task};

fn bad_config(reason: impl std::fmt::Display) -> Error {
    Error::invalid_file("config.json", format!("not a CLIP config: {reason}"))
}

#[derive(Debug, Clone, Deserialize)]
struct Config {
    #[serde(default)]
    text_config: TextConfig,
    #[serde(default)]
    vision_config: VisionConfig,
    #[serde(default = "d512")]
    projection_dim: usize,
    #[serde(default = "scale")]
    logit_scale_init_value: f32,
}

fn d512() -> usize {
    512
}
fn scale() -> f32 {
    2.6592
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct TextConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    hidden_act: String,
    layer_norm_eps: f64,
    eos_token_id: u32,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            vocab_size: 49_408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
            eos_token_id: 49_407,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct VisionConfig {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_channels: usize,
    image_size: usize,
    patch_size: usize,
    hidden_act: String,
    layer_norm_eps: f64,
}

impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        }
    }
}

impl Config {
    fn parse(bytes: &[u8]) -> Result<Config> {
        let config: Config = super::clip_family_config(bytes)
            .and_then(serde_json::from_value)
            .map_err(bad_config)?;
        for (name, act, eps) in [
            ("text_config", &config.text_config.hidden_act, config.text_config.layer_norm_eps),
            (
                "vision_config",
                &config.vision_config.hidden_act,
                config.vision_config.layer_norm_eps,
            ),
        ] {
            if act != "quick_gelu" {
                return Err(bad_config(format!(
                    "{name}.hidden_act {act:?} is not supported: candle's CLIP has quick_gelu only"
                )));
            }
            if (eps - 1e-5).abs() > 1e-12 {
                return Err(bad_config(format!(
                    "{name}.layer_norm_eps {eps} is not supported: candle's CLIP uses 1e-5"
                )));
            }
        }
        let v = &config.vision_config;
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(bad_config("image_size must be a multiple of patch_size"));
        }
        Ok(config)
    }
}

/// A loaded CLIP model with its tokenizer and image processor.
pub struct Clip {
    text: ClipTextTransformer,
    vision: ClipVisionTransformer,
    text_projection: Linear,
    visual_projection: Linear,
    logit_scale: f32,
    eos: u32,
    legacy_pooling: bool,
    tokenizer: Option<TextTokenizer>,
    processor: Processor,
    device: Device,
    bytes: u64,
}

impl std::fmt::Debug for Clip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clip").field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

impl Clip {
    /// Loads a model from `config.json`, safetensors weights, and optionally
    /// `preprocessor_config.json` (OpenAI CLIP's defaults without one) and `tokenizer.json`
    /// (needed for text).
    pub fn load(
        config: &[u8],
        weights: Vec<u8>,
        preprocessor: Option<&[u8]>,
        tokenizer: Option<&[u8]>,
        device: &Device,
    ) -> Result<Clip> {
        let config = Config::parse(config)?;
        let processor = match preprocessor {
            Some(bytes) => Processor::parse(bytes, Processor::default())?,
            None => Processor::default(),
        };
        let v = &config.vision_config;
        let size = v.image_size as u32;
        // A probe image of the processor's output: the model takes exactly image_size.
        processor.require_square(size, "the model's image_size")?;
        let t = &config.text_config;
        let text_config = ClipTextConfig {
            vocab_size: t.vocab_size,
            embed_dim: t.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: t.intermediate_size,
            max_position_embeddings: t.max_position_embeddings,
            pad_with: None,
            num_hidden_layers: t.num_hidden_layers,
            num_attention_heads: t.num_attention_heads,
            projection_dim: config.projection_dim,
        };
        let vision_config = ClipVisionConfig {
            embed_dim: v.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: v.intermediate_size,
            num_hidden_layers: v.num_hidden_layers,
            num_attention_heads: v.num_attention_heads,
            projection_dim: config.projection_dim,
            num_channels: v.num_channels,
            image_size: v.image_size,
            patch_size: v.patch_size,
        };
        let bytes = weights.len() as u64;
        let vb = crate::nn::var_builder("model.safetensors", weights, device)?;
        let logit_scale = if vb.contains_tensor("logit_scale") {
            vb.get((), "logit_scale")?.to_scalar::<f32>()?
        } else {
            config.logit_scale_init_value
        };
        let tokenizer = tokenizer
            .map(|bytes| TextTokenizer::load(bytes, t.max_position_embeddings))
            .transpose()?;
        Ok(Clip {
            text: ClipTextTransformer::new(vb.pp("text_model"), &text_config)?,
            vision: ClipVisionTransformer::new(vb.pp("vision_model"), &vision_config)?,
            text_projection: linear_no_bias(
                t.hidden_size,
                config.projection_dim,
                vb.pp("text_projection"),
            )?,
            visual_projection: linear_no_bias(
                v.hidden_size,
                config.projection_dim,
                vb.pp("visual_projection"),
            )?,
            logit_scale: logit_scale.exp(),
            eos: t.eos_token_id,
            legacy_pooling: t.eos_token_id == 2,
            tokenizer,
            processor,
            device: device.clone(),
            bytes,
        })
    }

    /// Resident bytes (the weights).
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// The image processor.
    pub fn processor(&self) -> &Processor {
        &self.processor
    }

    /// `pixel_values` of decoded images, `(n, 3, size, size)`.
    pub fn pixel_values(&self, images: &[image::RgbImage]) -> Result<Tensor> {
        self.processor.batch(images, &self.device)
    }

    /// Unit-norm image embeddings of `pixel_values`, `(n, projection_dim)`.
    pub fn image_embeddings(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let pooled = self.vision.forward(pixel_values)?;
        l2_normalize(&self.visual_projection.forward(&pooled)?)
    }

    /// Token ids of texts (`<|startoftext|> … <|endoftext|>`), padded with EOS to the longest.
    pub fn tokenize(&self, texts: &[String]) -> Result<Tensor> {
        let tokenizer =
            self.tokenizer.as_ref().ok_or_else(|| no_tokenizer("clip", "image-text-similarity"))?;
        // Each row ends in EOS, so EOS pads: causal attention never sees the padding.
        Ok(tokenizer.encode(texts, Pad::LastToken, &self.device)?.0)
    }

    /// Unit-norm text embeddings of token ids, `(n, projection_dim)`.
    pub fn text_embeddings_from_ids(&self, ids: &Tensor) -> Result<Tensor> {
        let hidden = self.text.forward_with_mask(ids, usize::MAX)?;
        let rows: Vec<Vec<u32>> = ids.to_dtype(DType::U32)?.to_vec2()?;
        let mut pooled = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let position = if self.legacy_pooling {
                row.iter()
                    .enumerate()
                    .max_by_key(|(j, id)| (**id, std::cmp::Reverse(*j)))
                    .map_or(0, |(j, _)| j)
            } else {
                row.iter().position(|id| *id == self.eos).unwrap_or(0)
            };
            pooled.push(hidden.i((i, position))?.unsqueeze(0)?);
        }
        l2_normalize(&self.text_projection.forward(&Tensor::cat(&pooled, 0)?)?)
    }

    /// Unit-norm text embeddings, `(n, projection_dim)`.
    pub fn text_embeddings(&self, texts: &[String]) -> Result<Tensor> {
        self.text_embeddings_from_ids(&self.tokenize(texts)?)
    }

    /// HF's `logits_per_image`, `(images, texts)`: cosine similarity times the learnt scale.
    pub fn logits_per_image(&self, images: &Tensor, texts: &Tensor) -> Result<Vec<Vec<f32>>> {
        Ok((images.matmul(&texts.t()?)? * f64::from(self.logit_scale))?.to_vec2()?)
    }

    /// How well each text describes the image: cosine similarity, the scaled logit, and the
    /// softmax over the texts given (CLIP's zero-shot classification).
    pub fn similarity(
        &self,
        image: &image::RgbImage,
        texts: &[String],
        cancel: &Cancel,
    ) -> Result<Vec<TextScore>> {
        let pixels = self.pixel_values(std::slice::from_ref(image))?;
        let image = self.image_embeddings(&pixels)?;
        cancel.check()?;
        let text = self.text_embeddings(texts)?;
        let logits = only_row(self.logits_per_image(&image, &text)?)?;
        Ok(texts
            .iter()
            .zip(logits.iter().zip(softmax(&logits)))
            .map(|(text, (logit, probability))| TextScore {
                text: text.clone(),
                cosine: logit / self.logit_scale,
                logit: *logit,
                probability,
            })
            .collect())
    }

    /// An image's unit-norm embedding.
    pub fn embed_image(&self, image: &image::RgbImage) -> Result<Vec<f32>> {
        let pixels = self.pixel_values(std::slice::from_ref(image))?;
        Ok(self.image_embeddings(&pixels)?.squeeze(0)?.to_vec1()?)
    }
}

/// A text scored against an image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TextScore {
    /// The text as given.
    pub text: String,
    /// Cosine similarity of the embeddings, in [−1, 1].
    pub cosine: f32,
    /// The cosine times the model's logit scale (HF's `logits_per_image`).
    pub logit: f32,
    /// Softmax of the logits over the texts given.
    pub probability: f32,
}

/// CLIP image embeddings.
pub const EMBED_SKILL: Checkpoint = Checkpoint {
    name: "clip-embed",
    task: Task::ImageEmbedding,
    required: None,
    output: "one unit-norm vector per image",
    ..SIMILARITY_SKILL
};

/// CLIP image–text similarity (zero-shot classification).
pub const SIMILARITY_SKILL: Checkpoint = Checkpoint {
    name: "clip-similarity",
    task: Task::ImageTextSimilarity,
    families: &["clip"],
    label: "CLIP",
    optional: crate::skill::PROCESSOR_AND_TOKENIZER,
    required: Some(("tokenizer.json", "texts cannot be read")),
    limits: "images resized and cropped to the model's image_size; texts cut to max_position_embeddings tokens",
    output: "per text: cosine, logit and softmax probability",
    build: |files, device| files.with_processor(device, Clip::load),
};

crate::capability::loaded!(Clip: image_embedder -> EmbedImage, image_text -> ImageText);

impl crate::capability::EmbedImage for Clip {
    fn embed_image(&self, image: &image::RgbImage, cancel: &Cancel) -> Result<Vec<f32>> {
        cancel.check()?;
        Clip::embed_image(self, image)
    }
}

impl crate::capability::ImageText for Clip {
    fn image_text_similarity(
        &self,
        image: &image::RgbImage,
        texts: &[String],
        cancel: &Cancel,
    ) -> Result<Vec<TextScore>> {
        self.similarity(image, texts, cancel)
    }
}
