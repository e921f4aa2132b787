//! ViT image classification on candle-transformers' `vit` (its `Config` reads HF's
//! `config.json` as is): top-k labels with softmax scores from the config's `id2label`.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use candle_transformers::models::vit;
use serde::Deserialize;

use super::image::Processor;
use crate::error::{Error, Result};
use crate::skill::{Cancel, Checkpoint, Task};

#[derive(Debug, Deserialize)]
struct Labels {
    #[serde(default)]
    id2label: BTreeMap<String, String>,
}

/// A loaded ViT classifier.
pub struct Vit {
    model: vit::Model,
    labels: Vec<String>,
    processor: Processor,
    device: Device,
    bytes: u64,
}

impl std::fmt::Debug for Vit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vit").field("labels", &self.labels.len()).finish_non_exhaustive()
    }
}

/// A label and its probability.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageLabel {
    /// The class id.
    pub id: usize,
    /// Its name (`id2label`).
    pub label: String,
    /// Softmax probability over all classes.
    pub score: f32,
}

impl Vit {
    /// Loads `ViTForImageClassification` from `config.json`, safetensors weights and optionally
    /// `preprocessor_config.json` (ViT's defaults without one).
    pub fn load(
        config: &[u8],
        weights: Vec<u8>,
        preprocessor: Option<&[u8]>,
        device: &Device,
    ) -> Result<Vit> {
        let bad = |e: &dyn std::fmt::Display| {
            Error::invalid_file("config.json", format!("not a ViT config: {e}"))
        };
        let vit_config: vit::Config = serde_json::from_slice(config).map_err(|e| bad(&e))?;
        let labels: Labels = serde_json::from_slice(config).map_err(|e| bad(&e))?;
        let mut names = Vec::with_capacity(labels.id2label.len());
        for i in 0..labels.id2label.len() {
            names.push(labels.id2label.get(&i.to_string()).cloned().ok_or_else(|| {
                bad(&format!("id2label has no id {i}: ids must be 0..{}", labels.id2label.len()))
            })?);
        }
        if names.is_empty() {
            return Err(bad(&"no id2label: not an image classifier"));
        }
        if vit_config.patch_size == 0
            || !vit_config.image_size.is_multiple_of(vit_config.patch_size)
        {
            return Err(bad(&"image_size must be a multiple of patch_size"));
        }
        let processor = match preprocessor {
            Some(bytes) => Processor::parse(bytes, Processor::vit_default())?,
            None => Processor::vit_default(),
        };
        let size = vit_config.image_size as u32;
        // candle's ViT does not interpolate position embeddings: input must be image_size.
        processor.require_square(
            size,
            "the model's image_size (candle's ViT does not interpolate positions)",
        )?;
        let bytes = weights.len() as u64;
        let vb = crate::nn::var_builder("model.safetensors", weights, device)?;
        let model = vit::Model::new(&vit_config, names.len(), vb)?;
        Ok(Vit { model, labels: names, processor, device: device.clone(), bytes })
    }

    /// Resident bytes (the weights).
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// Logits of `pixel_values`, `(n, labels)`.
    pub fn logits(&self, pixel_values: &Tensor) -> Result<Tensor> {
        Ok(self.model.forward(pixel_values)?)
    }

    /// `pixel_values` of decoded images, `(n, 3, size, size)`.
    pub fn pixel_values(&self, images: &[image::RgbImage]) -> Result<Tensor> {
        self.processor.batch(images, &self.device)
    }

    /// The `top_k` most probable labels of an image, best first.
    pub fn classify(
        &self,
        image: &image::RgbImage,
        top_k: usize,
        cancel: &Cancel,
    ) -> Result<Vec<ImageLabel>> {
        let pixels = self.pixel_values(std::slice::from_ref(image))?;
        cancel.check()?;
        let probs = candle_nn::ops::softmax_last_dim(&self.logits(&pixels)?)?;
        let probs: Vec<f32> = probs.squeeze(0)?.to_vec1()?;
        let mut scored: Vec<ImageLabel> = probs
            .into_iter()
            .enumerate()
            .map(|(id, score)| ImageLabel { id, label: self.labels[id].clone(), score })
            .collect();
        scored.sort_by(|a, b| b.score.total_cmp(&a.score));
        scored.truncate(top_k.max(1));
        Ok(scored)
    }
}

/// ViT image classification.
pub const SKILL: Checkpoint = Checkpoint {
    name: "vit-classify",
    task: Task::ImageClassification,
    families: &["vit"],
    label: "ViT",
    optional: &["preprocessor_config.json"],
    required: None,
    limits: "images resized to the model's image_size",
    output: "the top-k labels (id2label) with softmax probabilities",
    build: |files, device| {
        let preprocessor = files.rest.get("preprocessor_config.json");
        Ok(std::sync::Arc::new(Vit::load(&files.config, files.weights, preprocessor, device)?))
    },
};

crate::capability::loaded!(Vit: image_classifier -> ClassifyImage);

impl crate::capability::ClassifyImage for Vit {
    fn classify_image(
        &self,
        image: &image::RgbImage,
        top_k: usize,
        cancel: &Cancel,
    ) -> Result<Vec<ImageLabel>> {
        self.classify(image, top_k, cancel)
    }
}
