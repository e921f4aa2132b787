//! Text embeddings with BERT-family encoders on candle, as sentence-transformers computes
//! them: tokens (truncated to the model's limit, flagged) → encoder → pooling with the
//! attention mask (mean, or CLS, per `1_Pooling/config.json`) → optional L2 normalisation
//! (on by default when the model's `modules.json` ends in `Normalize`).
//!
//! Texts are batched by a token budget: sorted by length so padding stays small, each batch's
//! padded size kept under the budget, results put back in input order.

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};
use crate::manifest::{Format, Manifest};
use crate::skill::{
    compiled_devices, Cancel, Embeddings, LoadContext, Loaded, ModelFiles, Skill, SkillInfo, Task,
};

/// Padded tokens per forward pass (batch × longest sequence).
const BATCH_TOKENS: usize = 8192;

/// The optional files of a sentence-transformers model directory.
const PIPELINE_FILES: [&str; 4] =
    ["sentence_bert_config.json", "modules.json", "1_Pooling/config.json", "tokenizer_config.json"];

/// BERT-family text embeddings (sentence-transformers models such as all-MiniLM-L6-v2).
#[derive(Debug)]
pub struct EmbeddingSkill;

impl Skill for EmbeddingSkill {
    fn info(&self) -> SkillInfo {
        SkillInfo {
            name: "bert-embedding",
            task: Task::TextEmbedding,
            families: &["bert"],
            formats: &[Format::Safetensors],
            devices: compiled_devices(),
            limits: "each text is cut to the model's limit (sentence-transformers max_seq_length, else max_position_embeddings) and flagged; empty texts are refused",
            output: "one vector per text (mean or CLS pooling), optionally L2-normalised; cosine similarity of two texts",
        }
    }

    fn accepts(&self, manifest: &Manifest) -> std::result::Result<(), String> {
        if manifest.info.family != "bert" {
            return Err(format!("runs BERT models, not {}", manifest.info.family));
        }
        if manifest.info.format != Format::Safetensors {
            return Err(format!("loads safetensors weights, not {}", manifest.info.format.name()));
        }
        for needed in ["config.json", "tokenizer.json"] {
            if !manifest.files.contains_key(needed) {
                return Err(format!("the model has no {needed}"));
            }
        }
        Ok(())
    }

    fn files(&self, manifest: &Manifest) -> Vec<String> {
        let mut files = vec![
            "config.json".to_string(),
            "tokenizer.json".to_string(),
            manifest.info.weights.clone(),
        ];
        files.extend(
            PIPELINE_FILES
                .iter()
                .filter(|f| manifest.files.contains_key(**f))
                .map(|f| f.to_string()),
        );
        files
    }

    fn load(
        &self,
        manifest: &Manifest,
        files: ModelFiles,
        context: &LoadContext,
    ) -> Result<std::sync::Arc<dyn Loaded>> {
        Ok(std::sync::Arc::new(TextEmbedder::load(manifest, files, &context.device)?))
    }
}

crate::capability::loaded!(TextEmbedder: embedder -> Embed);

impl crate::capability::Embed for TextEmbedder {
    fn embed(
        &self,
        texts: &[String],
        normalize: Option<bool>,
        cancel: &Cancel,
    ) -> Result<Embeddings> {
        TextEmbedder::embed(self, texts, normalize, cancel)
    }
}

/// How token vectors become one text vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    /// The mean of the token vectors under the attention mask.
    Mean,
    /// The first token's (`[CLS]`) vector.
    Cls,
}

/// A loaded BERT embedding model.
pub struct TextEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    max_tokens: usize,
    dim: usize,
    pad_id: u32,
    device: Device,
    bytes: u64,
}

impl std::fmt::Debug for TextEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEmbedder")
            .field("dim", &self.dim)
            .field("max_tokens", &self.max_tokens)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .finish_non_exhaustive()
    }
}

impl TextEmbedder {
    /// Loads the encoder, tokenizer and pooling settings from the model's files.
    pub fn load(
        manifest: &Manifest,
        mut files: ModelFiles,
        device: &Device,
    ) -> Result<TextEmbedder> {
        let config_bytes = files.take("config.json")?;
        let config: Config = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::invalid_file("config.json", format!("not a BERT config: {e}")))?;
        let json = |file: &str| -> Result<Option<serde_json::Value>> {
            files
                .get(file)
                .map(|bytes| {
                    serde_json::from_slice(bytes).map_err(|e| Error::invalid_file(file, e))
                })
                .transpose()
        };
        let pooling = match json("1_Pooling/config.json")? {
            None => Pooling::Mean,
            Some(p) if p["pooling_mode_mean_tokens"].as_bool() == Some(true) => Pooling::Mean,
            Some(p) if p["pooling_mode_cls_token"].as_bool() == Some(true) => Pooling::Cls,
            Some(p) => {
                return Err(Error::invalid_file(
                    "1_Pooling/config.json",
                    format!("unsupported pooling (mean and CLS are supported): {p}"),
                ))
            }
        };
        let normalize = json("modules.json")?.is_some_and(|modules| {
            modules.as_array().is_some_and(|list| {
                list.iter().any(|m| m["type"].as_str().is_some_and(|t| t.ends_with("Normalize")))
            })
        });
        let limit = json("sentence_bert_config.json")?
            .and_then(|c| c["max_seq_length"].as_u64())
            .or_else(|| {
                json("tokenizer_config.json")
                    .ok()
                    .flatten()
                    .and_then(|c| c["model_max_length"].as_u64())
                    .filter(|n| *n < 1_000_000)
            });
        let positions = config.max_position_embeddings;
        let max_tokens = limit.map_or(positions, |n| (n as usize).min(positions));

        let mut tokenizer = Tokenizer::from_bytes(files.take("tokenizer.json")?)
            .map_err(|e| Error::invalid_file("tokenizer.json", e))?;
        // Padding is ours (per batch, under the mask); keep the tokenizer's pad id.
        let pad_id = tokenizer.get_padding().map_or(0, |p| p.pad_id);
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::invalid_file("tokenizer.json", e))?;

        let weights = files.take(&manifest.info.weights)?;
        let bytes = weights.len() as u64;
        let vb = crate::nn::var_builder(&manifest.info.weights, weights, device)?;
        let model = BertModel::load(vb, &config).map_err(|e| {
            Error::invalid_file(
                &manifest.info.weights,
                format!("not the BERT weights config.json describes: {e}"),
            )
        })?;
        Ok(TextEmbedder {
            model,
            tokenizer,
            pooling,
            normalize,
            max_tokens,
            dim: config.hidden_size,
            pad_id,
            device: device.clone(),
            bytes,
        })
    }

    /// The vector size.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The most tokens a text keeps (special tokens included).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Whether the model's own pipeline normalises (the default of [`TextEmbedder::embed`]).
    pub fn normalizes_by_default(&self) -> bool {
        self.normalize
    }

    /// Resident bytes (the weights).
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// Embeds `texts` (each non-blank), normalising per `normalize` or the model's default.
    pub fn embed(
        &self,
        texts: &[String],
        normalize: Option<bool>,
        cancel: &Cancel,
    ) -> Result<Embeddings> {
        if texts.is_empty() {
            return Err(Error::InvalidInput("no text to embed".into()));
        }
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(Error::InvalidInput(format!("text {} is empty", i + 1)));
        }
        let normalize = normalize.unwrap_or(self.normalize);
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Inference(format!("tokenizing: {e}")))?;
        let tokens: Vec<usize> = encodings.iter().map(|e| e.get_ids().len()).collect();
        let truncated: Vec<bool> =
            encodings.iter().map(|e| !e.get_overflowing().is_empty()).collect();

        // Longest first, so each batch pads to its first member.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(tokens[i]));
        let mut vectors = vec![Vec::new(); texts.len()];
        let mut start = 0;
        while start < order.len() {
            cancel.check()?;
            let longest = tokens[order[start]].max(1);
            let size = (BATCH_TOKENS / longest).clamp(1, order.len() - start);
            let batch = &order[start..start + size];
            let rows =
                self.forward(batch.iter().map(|&i| encodings[i].get_ids()), longest, normalize)?;
            for (&i, row) in batch.iter().zip(rows) {
                vectors[i] = row;
            }
            start += size;
        }
        Ok(Embeddings { vectors, dim: self.dim, normalized: normalize, tokens, truncated })
    }

    /// One padded batch through the encoder and the pooling.
    fn forward<'a>(
        &self,
        rows: impl Iterator<Item = &'a [u32]>,
        width: usize,
        normalize: bool,
    ) -> Result<Vec<Vec<f32>>> {
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        let mut count = 0;
        for row in rows {
            ids.extend_from_slice(row);
            ids.extend(std::iter::repeat_n(self.pad_id, width - row.len()));
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.extend(std::iter::repeat_n(0u32, width - row.len()));
            count += 1;
        }
        let ids = Tensor::from_vec(ids, (count, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (count, width), &self.device)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        let pooled = match self.pooling {
            Pooling::Mean => {
                let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
                sum.broadcast_div(&mask.sum(1)?)?
            }
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
        };
        let pooled = if normalize {
            // As torch.nn.functional.normalize: x / max(‖x‖, 1e-12).
            let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
            pooled.broadcast_div(&norm)?
        } else {
            pooled
        };
        Ok(pooled.to_vec2::<f32>()?)
    }
}

/// Cosine similarity of two vectors (0 for a zero vector).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}
