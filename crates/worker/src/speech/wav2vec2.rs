//! wav2vec2 (CTC) in candle, which has none: the convolutional feature encoder, the weight-
//! normed positional convolution, the transformer (post-norm as in base models, pre-norm
//! with `do_stable_layer_norm` as in large-lv60), the CTC head with greedy decoding over the
//! model's `vocab.json`, and a mean-pooled embedding of the last hidden states.
//!
//! Names are Hugging Face's (`wav2vec2.feature_extractor.conv_layers.N.conv.weight`, …); the
//! positional convolution's weight norm is read as `weight_g`/`weight_v` (older checkpoints)
//! or `parametrizations.weight.original0/1` (current PyTorch). Input is 16 kHz mono,
//! normalised to zero mean and unit variance as `Wav2Vec2FeatureExtractor` does.

use std::collections::HashMap;

use candle_core::{Device, Module, Tensor, D};
use candle_nn::{layer_norm, linear, LayerNorm, LayerNormConfig, Linear};
use serde::Deserialize;

use crate::audio::Audio;
use crate::error::{Error, Result};
use crate::nn::Attention;
use crate::skill::{Cancel, Checkpoint, Task};
use crate::speech::{Segment, SpeechTask, TranscribeOptions, Transcription};

/// The sample rate wav2vec2 listens at.
pub const SAMPLE_RATE: u32 = 16_000;

/// The parts of `config.json` the model reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    conv_dim: Vec<usize>,
    conv_stride: Vec<usize>,
    conv_kernel: Vec<usize>,
    #[serde(default)]
    conv_bias: bool,
    num_conv_pos_embeddings: usize,
    num_conv_pos_embedding_groups: usize,
    #[serde(default = "default_norm")]
    feat_extract_norm: String,
    #[serde(default)]
    do_stable_layer_norm: bool,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_act")]
    feat_extract_activation: String,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    vocab_size: usize,
    #[serde(default)]
    pad_token_id: Option<u32>,
}

fn default_norm() -> String {
    "group".into()
}
fn default_act() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-5
}

impl Config {
    fn parse(bytes: &[u8]) -> Result<Config> {
        let config: Config = serde_json::from_slice(bytes).map_err(|e| {
            Error::invalid_file("config.json", format!("not a wav2vec2 config: {e}"))
        })?;
        let layers = config.conv_dim.len();
        if layers == 0 || config.conv_stride.len() != layers || config.conv_kernel.len() != layers {
            return Err(Error::invalid_file(
                "config.json",
                "conv_dim, conv_stride and conv_kernel differ in length",
            ));
        }
        for (name, act) in [
            ("hidden_act", &config.hidden_act),
            ("feat_extract_activation", &config.feat_extract_activation),
        ] {
            if act != "gelu" {
                return Err(Error::invalid_file(
                    "config.json",
                    format!("{name} {act:?}: only gelu is supported"),
                ));
            }
        }
        if !matches!(config.feat_extract_norm.as_str(), "group" | "layer") {
            return Err(Error::invalid_file(
                "config.json",
                format!("feat_extract_norm {:?}", config.feat_extract_norm),
            ));
        }
        if config.num_attention_heads == 0
            || !config.hidden_size.is_multiple_of(config.num_attention_heads)
        {
            return Err(Error::invalid_file(
                "config.json",
                "hidden_size is not a multiple of num_attention_heads",
            ));
        }
        Ok(config)
    }
}

enum ConvNorm {
    None,
    Group(candle_nn::GroupNorm),
    Layer(LayerNorm),
}

struct ConvLayer {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    norm: ConvNorm,
}

impl ConvLayer {
    /// `x`: (batch, channels, time).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.conv1d(&self.weight, 0, self.stride, 1, 1)?;
        if let Some(bias) = &self.bias {
            x = x.broadcast_add(&bias.reshape((1, (), 1))?)?;
        }
        x = match &self.norm {
            ConvNorm::None => x,
            ConvNorm::Group(norm) => norm.forward(&x)?,
            ConvNorm::Layer(norm) => norm.forward(&x.transpose(1, 2)?)?.transpose(1, 2)?,
        };
        Ok(x.gelu_erf()?)
    }
}

struct Layer {
    attention: Attention,
    layer_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    final_layer_norm: LayerNorm,
}

impl Layer {
    fn feed_forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.output.forward(&self.intermediate.forward(x)?.gelu_erf()?)?)
    }

    fn forward(&self, x: &Tensor, stable: bool) -> Result<Tensor> {
        if stable {
            let normed = self.layer_norm.forward(x)?;
            let x = (x + self.attention.forward(&normed, &normed)?)?;
            Ok((&x + self.feed_forward(&self.final_layer_norm.forward(&x)?)?)?)
        } else {
            let x = self.layer_norm.forward(&(x + self.attention.forward(x, x)?)?)?;
            Ok(self.final_layer_norm.forward(&(&x + self.feed_forward(&x)?)?)?)
        }
    }
}

/// A wav2vec2 CTC model.
pub struct Wav2Vec2 {
    conv: Vec<ConvLayer>,
    projection_norm: LayerNorm,
    projection: Linear,
    pos_weight: Tensor,
    pos_bias: Tensor,
    pos_kernel: usize,
    pos_groups: usize,
    encoder_norm: LayerNorm,
    layers: Vec<Layer>,
    stable: bool,
    lm_head: Option<Linear>,
    vocabulary: HashMap<u32, String>,
    pad: u32,
    device: Device,
    bytes: u64,
}

impl std::fmt::Debug for Wav2Vec2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wav2Vec2").field("layers", &self.layers.len()).finish_non_exhaustive()
    }
}

impl Wav2Vec2 {
    /// Loads a model from its `config.json`, safetensors weights and (for CTC) `vocab.json`.
    pub fn load(
        config: &[u8],
        weights: Vec<u8>,
        vocab: Option<&[u8]>,
        device: &Device,
    ) -> Result<Wav2Vec2> {
        let config = Config::parse(config)?;
        let bytes = weights.len() as u64;
        let vb = crate::nn::var_builder("model.safetensors", weights, device)?;
        // `Wav2Vec2ForCTC` nests the model under `wav2vec2.`; a bare `Wav2Vec2Model` does not.
        let root = if vb.contains_tensor("wav2vec2.feature_projection.projection.weight") {
            vb.pp("wav2vec2")
        } else {
            vb.clone()
        };
        let eps = LayerNormConfig { eps: config.layer_norm_eps, ..LayerNormConfig::default() };
        let mut conv = Vec::new();
        let mut in_channels = 1;
        for (i, ((&out, &kernel), &stride)) in
            config.conv_dim.iter().zip(&config.conv_kernel).zip(&config.conv_stride).enumerate()
        {
            let vb = root.pp(format!("feature_extractor.conv_layers.{i}"));
            let weight = vb.get((out, in_channels, kernel), "conv.weight")?;
            let bias = if config.conv_bias { Some(vb.get(out, "conv.bias")?) } else { None };
            let norm = match (config.feat_extract_norm.as_str(), i) {
                // PyTorch's defaults (ε 1e-5), not the config's layer_norm_eps.
                ("layer", _) => ConvNorm::Layer(layer_norm(out, 1e-5, vb.pp("layer_norm"))?),
                ("group", 0) => {
                    ConvNorm::Group(candle_nn::group_norm(out, out, 1e-5, vb.pp("layer_norm"))?)
                }
                _ => ConvNorm::None,
            };
            conv.push(ConvLayer { weight, bias, stride, norm });
            in_channels = out;
        }
        let last = in_channels;
        let projection_norm = layer_norm(last, eps, root.pp("feature_projection.layer_norm"))?;
        let projection =
            linear(last, config.hidden_size, root.pp("feature_projection.projection"))?;

        let (h, k, g) = (
            config.hidden_size,
            config.num_conv_pos_embeddings,
            config.num_conv_pos_embedding_groups,
        );
        let pos = root.pp("encoder.pos_conv_embed.conv");
        let (weight_g, weight_v) = if pos.contains_tensor("weight_g") {
            (pos.get((1, 1, k), "weight_g")?, pos.get((h, h / g, k), "weight_v")?)
        } else {
            (
                pos.get((1, 1, k), "parametrizations.weight.original0")?,
                pos.get((h, h / g, k), "parametrizations.weight.original1")?,
            )
        };
        // Weight norm over dim 2: each kernel position's slice scaled to norm g.
        let norm = weight_v.sqr()?.sum_keepdim(0)?.sum_keepdim(1)?.sqrt()?;
        let pos_weight = weight_v.broadcast_mul(&weight_g.broadcast_div(&norm)?)?;
        let pos_bias = pos.get(h, "bias")?;

        let encoder_norm = layer_norm(h, eps, root.pp("encoder.layer_norm"))?;
        let mut layers = Vec::new();
        for i in 0..config.num_hidden_layers {
            let vb = root.pp(format!("encoder.layers.{i}"));
            layers.push(Layer {
                attention: Attention::new(
                    h,
                    config.num_attention_heads,
                    true,
                    "out_proj",
                    vb.pp("attention"),
                )?,
                layer_norm: layer_norm(h, eps, vb.pp("layer_norm"))?,
                intermediate: linear(
                    h,
                    config.intermediate_size,
                    vb.pp("feed_forward.intermediate_dense"),
                )?,
                output: linear(config.intermediate_size, h, vb.pp("feed_forward.output_dense"))?,
                final_layer_norm: layer_norm(h, eps, vb.pp("final_layer_norm"))?,
            });
        }
        let lm_head = if vb.contains_tensor("lm_head.weight") {
            Some(linear(h, config.vocab_size, vb.pp("lm_head"))?)
        } else {
            None
        };
        let vocabulary: HashMap<u32, String> = match vocab {
            Some(bytes) => serde_json::from_slice::<HashMap<String, u32>>(bytes)
                .map_err(|e| Error::invalid_file("vocab.json", e))?
                .into_iter()
                .map(|(token, id)| (id, token))
                .collect(),
            None => HashMap::new(),
        };
        let pad = config
            .pad_token_id
            .or_else(|| vocabulary.iter().find(|(_, t)| *t == "<pad>").map(|(id, _)| *id))
            .unwrap_or(0);
        Ok(Wav2Vec2 {
            conv,
            projection_norm,
            projection,
            pos_weight,
            pos_bias,
            pos_kernel: k,
            pos_groups: g,
            encoder_norm,
            layers,
            stable: config.do_stable_layer_norm,
            lm_head,
            vocabulary,
            pad,
            device: device.clone(),
            bytes,
        })
    }

    /// Resident bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// `Wav2Vec2FeatureExtractor` with `do_normalize`: zero mean, unit variance (ε 1e-7).
    pub fn normalize(samples: &[f32]) -> Vec<f32> {
        let n = samples.len().max(1) as f64;
        let mean = samples.iter().map(|s| f64::from(*s)).sum::<f64>() / n;
        let var = samples.iter().map(|s| (f64::from(*s) - mean).powi(2)).sum::<f64>() / n;
        let scale = 1.0 / (var + 1e-7).sqrt();
        samples.iter().map(|s| ((f64::from(*s) - mean) * scale) as f32).collect()
    }

    /// The last hidden states, (frames, hidden), for normalised input values.
    pub fn hidden_states(&self, input_values: &[f32]) -> Result<Tensor> {
        let mut receptive = 1;
        for layer in self.conv.iter().rev() {
            receptive = (receptive - 1) * layer.stride + layer.weight.dim(2)?;
        }
        if input_values.len() < receptive {
            return Err(Error::InvalidInput(format!(
                "the audio is too short for wav2vec2 ({} samples; at least {receptive})",
                input_values.len()
            )));
        }
        let mut x = Tensor::from_slice(input_values, (1, 1, input_values.len()), &self.device)?;
        for layer in &self.conv {
            x = layer.forward(&x)?;
        }
        let x = self.projection_norm.forward(&x.transpose(1, 2)?)?;
        let x = self.projection.forward(&x)?;
        // Positional convolution: padding k/2 both sides, the last frame dropped when k is
        // even (HF's SamePadLayer), then GELU.
        let t = x.dim(1)?;
        let pos = x.transpose(1, 2)?.contiguous()?.conv1d(
            &self.pos_weight,
            self.pos_kernel / 2,
            1,
            1,
            self.pos_groups,
        )?;
        let pos =
            pos.broadcast_add(&self.pos_bias.reshape((1, (), 1))?)?.narrow(2, 0, t)?.gelu_erf()?;
        let mut x = (x + pos.transpose(1, 2)?)?;
        if !self.stable {
            x = self.encoder_norm.forward(&x)?;
        }
        for layer in &self.layers {
            x = layer.forward(&x, self.stable)?;
        }
        if self.stable {
            x = self.encoder_norm.forward(&x)?;
        }
        Ok(x.squeeze(0)?)
    }

    /// CTC logits, (frames, vocabulary).
    pub fn logits(&self, input_values: &[f32]) -> Result<Tensor> {
        let head = self.lm_head.as_ref().ok_or_else(|| Error::Unsupported {
            model: "wav2vec2".into(),
            task: "speech-recognition",
            reason: "the model has no CTC head (lm_head)".into(),
        })?;
        Ok(head.forward(&self.hidden_states(input_values)?)?)
    }

    /// Greedy CTC: the best token per frame, repeats merged, blanks (padding) then special
    /// tokens dropped, `|` a space. One segment spanning the audio: CTC has no timestamps
    /// here, and the model speaks the one language it was trained on, so options asking for
    /// a language, translation or timestamps are refused rather than ignored.
    pub fn transcribe(
        &self,
        audio: Audio,
        options: &TranscribeOptions,
        cancel: &Cancel,
    ) -> Result<Transcription> {
        if options.language.is_some()
            || options.task == SpeechTask::Translate
            || options.timestamps
            || options.audio_context.is_some()
        {
            return Err(Error::InvalidInput(
                "wav2vec2 transcribes its one language without timestamps over the whole clip: --language, --task translate, --timestamps and --audio-context do not apply".into(),
            ));
        }
        let audio = audio.resampled(SAMPLE_RATE)?;
        let duration = audio.seconds();
        cancel.check()?;
        let logits = self.logits(&Self::normalize(&audio.samples))?;
        let ids: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
        let mut text = String::new();
        let mut previous = None;
        for id in &ids {
            if Some(*id) != previous && *id != self.pad {
                match self.vocabulary.get(id).map(String::as_str) {
                    Some("|") => text.push(' '),
                    Some(token) if !(token.starts_with('<') && token.ends_with('>')) => {
                        text.push_str(token)
                    }
                    _ => {}
                }
            }
            previous = Some(*id);
        }
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let segments = vec![Segment { start: 0.0, end: duration, text: text.clone() }];
        Ok(Transcription { text, language: None, segments, duration })
    }

    /// The mean of the last hidden states over time.
    pub fn embed(&self, audio: Audio, cancel: &Cancel) -> Result<Vec<f32>> {
        let audio = audio.resampled(SAMPLE_RATE)?;
        cancel.check()?;
        Ok(self.hidden_states(&Self::normalize(&audio.samples))?.mean(0)?.to_vec1()?)
    }
}

/// wav2vec2 speech recognition (greedy CTC).
pub const RECOGNIZE_SKILL: Checkpoint = Checkpoint {
    name: "wav2vec2-ctc",
    task: Task::SpeechRecognition,
    families: &["wav2vec2"],
    label: "wav2vec2",
    optional: &["vocab.json"],
    required: Some(("vocab.json", "not a CTC model")),
    limits: "audio resampled to 16 kHz mono, up to [worker] max_audio_seconds",
    output: "text (greedy CTC)",
    build: |files, device| {
        let vocab = files.rest.get("vocab.json");
        Ok(std::sync::Arc::new(Wav2Vec2::load(&files.config, files.weights, vocab, device)?))
    },
};

/// wav2vec2 audio embeddings.
pub const EMBED_SKILL: Checkpoint = Checkpoint {
    name: "wav2vec2-embed",
    task: Task::AudioEmbedding,
    required: None,
    output: "one vector (mean of the last hidden states)",
    ..RECOGNIZE_SKILL
};

crate::capability::loaded!(Wav2Vec2: transcriber -> Transcribe, audio_embedder -> EmbedAudio);

impl crate::capability::Transcribe for Wav2Vec2 {
    fn transcribe(
        &self,
        audio: Audio,
        options: &TranscribeOptions,
        cancel: &Cancel,
    ) -> Result<Transcription> {
        Wav2Vec2::transcribe(self, audio, options, cancel)
    }
}

impl crate::capability::EmbedAudio for Wav2Vec2 {
    fn embed_audio(&self, audio: Audio, cancel: &Cancel) -> Result<Vec<f32>> {
        self.embed(audio, cancel)
    }
}
