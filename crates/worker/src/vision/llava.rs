//! LLaVA 1.5 (`LlavaForConditionalGeneration`, the llava-hf layout) on candle's CLIP vision
//! transformer and Llama, assembled here rather than with candle's `llava` module, which is
//! written for LLaVA-NeXT: it requires an `image_newline` tensor 1.5 checkpoints lack,
//! hard-codes `mm_hidden_size`, and its `vision_feature_layer` is off by one (its list of
//! hidden states has no embeddings entry, so −2 selects the last layer where HF selects the
//! one before). Here the vision transformer is built with exactly the layers HF's selected
//! feature layer has run through, and its last hidden state is the feature.
//!
//! Weights load under hub names (`vision_tower.vision_model.*`, `language_model.model.*`,
//! `language_model.lm_head`, `multi_modal_projector.linear_{1,2}`) and under the names
//! transformers ≥ 5 writes (`vision_tower.embeddings.*`, `model.language_model.*`, `lm_head`).
//! The prompt is LLaVA 1.5's conversation form, `USER: <image>\n{question} ASSISTANT:`; one
//! `<image>` token is replaced by the projected patches (HF's processor repeats it once per
//! patch instead; both forms are accepted).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{linear, Linear, Module, VarBuilder};
use candle_transformers::models::clip::text_model::Activation;
use candle_transformers::models::clip::vision_model::{ClipVisionConfig, ClipVisionTransformer};
use candle_transformers::models::llama::{self, Cache, Llama, LlamaConfig};
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::image::Processor;
use crate::error::{Error, Result};
use crate::skill::{Cancel, Checkpoint, GeneratedText, Task};
use crate::text::{decode_loop, Decoding, GenerateParams};

fn bad_config(reason: impl std::fmt::Display) -> Error {
    Error::invalid_file("config.json", format!("not a LLaVA config: {reason}"))
}

#[derive(Debug, Clone, Deserialize)]
struct Config {
    vision_config: VisionConfig,
    text_config: serde_json::Value,
    image_token_index: u32,
    #[serde(default = "gelu")]
    projector_hidden_act: String,
    #[serde(default = "minus_two")]
    vision_feature_layer: i64,
    #[serde(default = "default_strategy")]
    vision_feature_select_strategy: String,
}

fn gelu() -> String {
    "gelu".into()
}
fn minus_two() -> i64 {
    -2
}
fn default_strategy() -> String {
    "default".into()
}

#[derive(Debug, Clone, Deserialize)]
struct VisionConfig {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default = "three")]
    num_channels: usize,
    image_size: usize,
    patch_size: usize,
    #[serde(default = "quick_gelu")]
    hidden_act: String,
}

fn three() -> usize {
    3
}
fn quick_gelu() -> String {
    "quick_gelu".into()
}

/// Hub names for a tensor saved under transformers 5's names (or already hub names).
fn hub_name(name: &str) -> String {
    let name = name.strip_prefix("model.").map_or(name.to_string(), |rest| {
        match rest.strip_prefix("language_model.") {
            Some(inner) => format!("language_model.model.{inner}"),
            None => rest.to_string(),
        }
    });
    if name == "lm_head.weight" {
        return "language_model.lm_head.weight".into();
    }
    match name.strip_prefix("vision_tower.") {
        Some(rest) if !rest.starts_with("vision_model.") => {
            format!("vision_tower.vision_model.{rest}")
        }
        _ => name,
    }
}

/// The language model's config: hub LLaVA configs save only what differs from
/// `LlamaConfig`'s defaults (llava-1.5-7b-hf's names five fields), so those defaults fill the
/// rest; HF ≥ 5 keeps `rope_theta` under `rope_parameters`.
fn llama_config(text: &serde_json::Value) -> Result<LlamaConfig> {
    let mut text = text.clone();
    let object = text.as_object_mut().ok_or_else(|| bad_config("text_config is not an object"))?;
    let defaults = [
        ("hidden_size", serde_json::json!(4096)),
        ("intermediate_size", serde_json::json!(11008)),
        ("num_hidden_layers", serde_json::json!(32)),
        ("num_attention_heads", serde_json::json!(32)),
        ("rms_norm_eps", serde_json::json!(1e-6)),
        ("max_position_embeddings", serde_json::json!(2048)),
        ("vocab_size", serde_json::json!(32000)),
        ("bos_token_id", serde_json::json!(1)),
        ("eos_token_id", serde_json::json!(2)),
    ];
    for (key, value) in defaults {
        let missing = object.get(key).is_none_or(serde_json::Value::is_null);
        if missing {
            object.insert(key.to_string(), value);
        }
    }
    if let Some(theta) = object.get("rope_parameters").and_then(|p| p.get("rope_theta")).cloned() {
        object.insert("rope_theta".into(), theta);
    }
    serde_json::from_value(text).map_err(bad_config)
}

/// A loaded LLaVA 1.5 model.
pub struct Llava {
    vision: ClipVisionTransformer,
    projector: (Linear, Linear),
    keep_cls: bool,
    llama: Llama,
    llama_config: llama::Config,
    tokenizer: Tokenizer,
    processor: Processor,
    image_token: u32,
    stop_ids: Vec<u32>,
    context: usize,
    device: Device,
    bytes: u64,
}

impl std::fmt::Debug for Llava {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llava").field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

impl Llava {
    /// Loads a model from `config.json`, safetensors weights, `tokenizer.json` and optionally
    /// `preprocessor_config.json` (CLIP's defaults at the vision tower's size without one).
    pub fn load(
        config: &[u8],
        weights: Vec<u8>,
        tokenizer: &[u8],
        preprocessor: Option<&[u8]>,
        device: &Device,
    ) -> Result<Llava> {
        let config: Config = serde_json::from_slice(config).map_err(bad_config)?;
        let v = &config.vision_config;
        if v.hidden_act != "quick_gelu" {
            return Err(bad_config(format!(
                "vision_config.hidden_act {:?} is not supported: candle's CLIP has quick_gelu only",
                v.hidden_act
            )));
        }
        if config.projector_hidden_act != "gelu" {
            return Err(bad_config(format!(
                "projector_hidden_act {:?} is not supported (gelu is)",
                config.projector_hidden_act
            )));
        }
        let keep_cls = match config.vision_feature_select_strategy.as_str() {
            "default" => false,
            "full" => true,
            other => return Err(bad_config(format!("vision_feature_select_strategy {other:?}"))),
        };
        // HF's hidden_states are [embeddings, after layer 1, …, after layer N].
        let layers = v.num_hidden_layers as i64;
        let ran = if config.vision_feature_layer < 0 {
            layers + 1 + config.vision_feature_layer
        } else {
            config.vision_feature_layer
        };
        if ran < 1 || ran > layers {
            return Err(bad_config(format!(
                "vision_feature_layer {} of {layers} layers is not supported (a layer's output is)",
                config.vision_feature_layer
            )));
        }
        let vision_config = ClipVisionConfig {
            embed_dim: v.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: v.intermediate_size,
            num_hidden_layers: ran as usize,
            num_attention_heads: v.num_attention_heads,
            projection_dim: v.hidden_size,
            num_channels: v.num_channels,
            image_size: v.image_size,
            patch_size: v.patch_size,
        };
        let text_config = llama_config(&config.text_config)?;
        if let Some(head_dim) = config.text_config.get("head_dim").and_then(|h| h.as_u64()) {
            if head_dim as usize * text_config.num_attention_heads != text_config.hidden_size {
                return Err(bad_config("head_dim × heads must equal hidden_size"));
            }
        }
        if text_config.rope_scaling.is_some() {
            return Err(bad_config("rope_scaling is not supported"));
        }
        let mut stop_ids = match &text_config.eos_token_id {
            Some(llama::LlamaEosToks::Single(id)) => vec![*id],
            Some(llama::LlamaEosToks::Multiple(ids)) => ids.clone(),
            None => vec![],
        };
        stop_ids.dedup();
        let context = text_config.max_position_embeddings;
        let hidden = text_config.hidden_size;
        let llama_config = text_config.into_config(false);

        let bytes = weights.len() as u64;
        let tensors = candle_core::safetensors::load_buffer(&weights, device)
            .map_err(|e| Error::invalid_file("model.safetensors", e))?;
        drop(weights);
        let tensors: HashMap<String, Tensor> =
            tensors.into_iter().map(|(name, t)| (hub_name(&name), t)).collect();
        for i in 0..llama_config.num_hidden_layers {
            let name = format!("language_model.model.layers.{i}.self_attn.q_proj.weight");
            if !tensors.contains_key(&name) {
                return Err(Error::invalid_file("model.safetensors", format!("no tensor {name}")));
            }
        }
        let vb = VarBuilder::from_tensors(crate::nn::for_matmul(tensors)?, DType::F32, device);
        let vision =
            ClipVisionTransformer::new(vb.pp("vision_tower.vision_model"), &vision_config)?;
        let projector = (
            linear(v.hidden_size, hidden, vb.pp("multi_modal_projector.linear_1"))?,
            linear(hidden, hidden, vb.pp("multi_modal_projector.linear_2"))?,
        );
        // candle's Llama::load unwraps each block's load: a malformed block would panic.
        let language = vb.pp("language_model");
        let llama = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Llama::load(language, &llama_config)
        }))
        .map_err(|_| {
            Error::invalid_file(
                "model.safetensors",
                "a language model layer does not load (missing tensor or wrong shape)",
            )
        })??;

        let tokenizer = Tokenizer::from_bytes(tokenizer)
            .map_err(|e| Error::invalid_file("tokenizer.json", e))?;
        if tokenizer.id_to_token(config.image_token_index).is_none() {
            return Err(bad_config(format!(
                "image_token_index {} is not in the tokenizer",
                config.image_token_index
            )));
        }
        let size = v.image_size as u32;
        let processor = match preprocessor {
            Some(bytes) => Processor::parse(bytes, Processor::default())?,
            None => Processor::default().with_size(size),
        };
        processor.require_square(size, "the vision tower's image_size")?;
        Ok(Llava {
            vision,
            projector,
            keep_cls,
            llama,
            llama_config,
            tokenizer,
            processor,
            image_token: config.image_token_index,
            stop_ids,
            context,
            device: device.clone(),
            bytes,
        })
    }

    /// Resident bytes (the weights).
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// `pixel_values` of an image, `(1, 3, size, size)`.
    pub fn pixel_values(&self, image: &image::RgbImage) -> Result<Tensor> {
        self.processor.batch([image], &self.device)
    }

    /// The projected image features, `(patches, hidden)`.
    pub fn image_features(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let states = self.vision.output_hidden_states(pixel_values)?;
        // [after layer 1, …, after the last layer built, pooled]
        let last = states
            .len()
            .checked_sub(2)
            .and_then(|i| states.get(i))
            .ok_or_else(|| Error::Inference("the vision tower returned no states".into()))?;
        let features =
            if self.keep_cls { last.clone() } else { last.narrow(1, 1, last.dim(1)? - 1)? };
        let projected = self.projector.0.forward(&features)?.gelu_erf()?;
        Ok(self.projector.1.forward(&projected)?.squeeze(0)?)
    }

    /// Input embeddings for prompt ids with the image features in place of the image token
    /// (one token, or as many as there are patches).
    fn embeddings(&self, ids: &[u32], features: &Tensor) -> Result<Tensor> {
        let patches = features.dim(0)?;
        let positions: Vec<usize> = ids
            .iter()
            .enumerate()
            .filter(|(_, id)| **id == self.image_token)
            .map(|(i, _)| i)
            .collect();
        let (start, count) = match positions.as_slice() {
            [one] => (*one, 1),
            [first, ..]
                if positions.len() == patches && positions.windows(2).all(|w| w[1] == w[0] + 1) =>
            {
                (*first, patches)
            }
            [] => return Err(Error::InvalidInput("the prompt has no <image> token".into())),
            _ => {
                return Err(Error::InvalidInput(format!(
                    "the prompt has {} <image> tokens; one image takes one (or {patches} in a row)",
                    positions.len()
                )))
            }
        };
        let embed = |part: &[u32]| -> Result<Option<Tensor>> {
            if part.is_empty() {
                return Ok(None);
            }
            let t = Tensor::new(part, &self.device)?.unsqueeze(0)?;
            Ok(Some(self.llama.embed(&t)?.squeeze(0)?))
        };
        let mut pieces = Vec::new();
        pieces.extend(embed(&ids[..start])?);
        pieces.push(features.clone());
        pieces.extend(embed(&ids[start + count..])?);
        Ok(Tensor::cat(&pieces, 0)?.unsqueeze(0)?)
    }

    /// The logits after the prompt (the last position), `(vocabulary,)`; and the length of
    /// the sequence the model saw.
    pub fn prompt_logits(
        &self,
        ids: &[u32],
        pixel_values: &Tensor,
        cache: &mut Cache,
    ) -> Result<(Tensor, usize)> {
        let features = self.image_features(pixel_values)?;
        let embeds = self.embeddings(ids, &features)?;
        let length = embeds.dim(1)?;
        if length >= self.context {
            return Err(Error::InvalidInput(format!(
                "the prompt with the image is {length} tokens; the model's context is {}",
                self.context
            )));
        }
        let logits = self.llama.forward_input_embed(&embeds, 0, cache)?;
        Ok((logits.squeeze(0)?, length))
    }

    /// A fresh key/value cache.
    pub fn cache(&self) -> Result<Cache> {
        Ok(Cache::new(true, DType::F32, &self.llama_config, &self.device)?)
    }

    /// LLaVA 1.5's prompt for a question about one image.
    pub fn prompt(question: &str) -> String {
        format!("USER: <image>\n{question} ASSISTANT:")
    }

    /// Token ids of a prompt (with the tokenizer's own special tokens).
    pub fn tokenize(&self, prompt: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode(prompt, true)
            .map_err(|e| Error::Inference(format!("tokenizing the prompt: {e}")))?
            .get_ids()
            .to_vec())
    }

    /// Answers `question` about `image`, passing text to `on_text` as it becomes final.
    pub fn answer(
        &self,
        image: &image::RgbImage,
        question: &str,
        params: &GenerateParams,
        cancel: &Cancel,
        on_text: &mut dyn FnMut(&str) -> Result<()>,
    ) -> Result<GeneratedText> {
        params.validate()?;
        if question.trim().is_empty() {
            return Err(Error::InvalidInput("the question is empty".into()));
        }
        let ids = self.tokenize(&Self::prompt(question))?;
        let pixels = self.pixel_values(image)?;
        cancel.check()?;
        let mut cache = self.cache()?;
        let (logits, length) = self.prompt_logits(&ids, &pixels, &mut cache)?;
        let budget = params.max_tokens.min(self.context - length);
        let mut position = length;
        let step = |next: u32| -> Result<Tensor> {
            let input = Tensor::new(&[next], &self.device)?.unsqueeze(0)?;
            let logits = self.llama.forward(&input, position, &mut cache)?.squeeze(0)?;
            position += 1;
            Ok(logits)
        };
        let run = Decoding {
            tokenizer: &self.tokenizer,
            stop_ids: &self.stop_ids,
            params,
            prompt_tokens: length,
            budget,
        };
        decode_loop(&run, logits, step, cancel, on_text)
    }
}

/// LLaVA visual question answering (captions are answers to "describe the image").
pub const SKILL: Checkpoint = Checkpoint {
    name: "llava",
    task: Task::VisualQuestionAnswering,
    families: &["llava"],
    label: "LLaVA",
    optional: &["tokenizer.json", "preprocessor_config.json"],
    required: Some(("tokenizer.json", "the prompt cannot be read")),
    limits: "one image per prompt; the prompt and the image's patches within the context",
    output: "generated text (streamed), with finish reason and token counts",
    build: |mut files, device| {
        let tokenizer = files.rest.take("tokenizer.json")?;
        let preprocessor = files.rest.get("preprocessor_config.json");
        Ok(std::sync::Arc::new(Llava::load(
            &files.config,
            files.weights,
            &tokenizer,
            preprocessor,
            device,
        )?))
    },
};

crate::capability::loaded!(Llava: image_answerer -> AnswerImage);

impl crate::capability::AnswerImage for Llava {
    fn answer(
        &self,
        image: &image::RgbImage,
        question: &str,
        params: &GenerateParams,
        cancel: &Cancel,
        on_text: crate::capability::OnText<'_>,
    ) -> Result<GeneratedText> {
        Llava::answer(self, image, question, params, cancel, on_text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_hub_text_config_takes_llamas_defaults() {
        // llava-hf/llava-1.5-7b-hf's text_config, as the hub has it.
        let text = serde_json::json!({
            "_name_or_path": "lmsys/vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"],
            "max_position_embeddings": 4096, "model_type": "llama", "rms_norm_eps": 1e-05,
            "torch_dtype": "float16", "vocab_size": 32064
        });
        let config = llama_config(&text).unwrap();
        assert_eq!(
            (config.hidden_size, config.num_hidden_layers, config.num_attention_heads),
            (4096, 32, 32)
        );
        assert_eq!((config.vocab_size, config.max_position_embeddings), (32064, 4096));
        assert_eq!(config.num_key_value_heads(), 32);
        assert!((config.rms_norm_eps - 1e-5).abs() < 1e-12);
        let v5 = serde_json::json!({"rope_parameters": {"rope_theta": 500000.0}});
        assert!((llama_config(&v5).unwrap().rope_theta - 500_000.0).abs() < 1e-3);
    }
}
