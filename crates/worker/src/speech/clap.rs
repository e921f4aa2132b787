//! CLAP (contrastive language–audio pretraining) in candle, which has none: the HTSAT audio
//! encoder (a Swin transformer over a log-mel "image", with CLAP's attentional feature
//! fusion of long clips), the RoBERTa text tower (candle's XLM-RoBERTa plus the pooler),
//! both projections, and the 48 kHz log-mel front end of `ClapFeatureExtractor`.
//!
//! Names and config fields are Hugging Face's (`ClapModel`: `audio_model.audio_encoder.*`,
//! `text_model.*`, `{audio,text}_projection.*`, `logit_scale_{a,t}`), with HF's defaults for
//! fields a hub config leaves out.
//!
//! Two things HF leaves to chance are fixed here. A clip longer than `max_length_s` is fused
//! from three crops HF draws at random from the front, middle and back thirds; this takes the
//! middle of each third. And HF marks one clip of an all-short batch `is_longer` at random —
//! for a lone clip (how this skill runs) that is always the clip, so a short clip here is
//! always `is_longer` under fusion, as HF's single-clip output is.

use std::collections::HashSet;

use candle_core::{Device, Module, Tensor};
use candle_nn::{layer_norm, linear, linear_no_bias, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::xlm_roberta::{Config as RobertaConfig, XLMRobertaModel};
use serde::Deserialize;

use crate::audio::mel::{shrink_rows, MelBank, MelScale, Stft};
use crate::audio::Audio;
use crate::error::{Error, Result};
use crate::nn::{l2_normalize, no_tokenizer, only_row, softmax, Pad, TextTokenizer};
use crate::skill::{Cancel, Checkpoint, Task};

/// HF's zero-shot audio classification prompt (`hypothesis_template`).
pub const LABEL_TEMPLATE: &str = "This is a sound of {}.";

fn bad_config(reason: impl std::fmt::Display) -> Error {
    Error::invalid_file("config.json", format!("not a CLAP config: {reason}"))
}

/// `ClapConfig` (the fields the model reads, HF's defaults for the rest).
#[derive(Debug, Clone, Deserialize)]
struct Config {
    #[serde(default)]
    text_config: TextConfig,
    #[serde(default)]
    audio_config: AudioConfig,
    #[serde(default = "d512")]
    projection_dim: usize,
    #[serde(default = "relu")]
    projection_hidden_act: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct TextConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    hidden_act: String,
    max_position_embeddings: usize,
    type_vocab_size: usize,
    layer_norm_eps: f64,
    pad_token_id: u32,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            vocab_size: 50_265,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            max_position_embeddings: 514,
            type_vocab_size: 1,
            layer_norm_eps: 1e-12,
            pad_token_id: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct AudioConfig {
    window_size: usize,
    num_mel_bins: usize,
    spec_size: usize,
    hidden_act: String,
    patch_size: usize,
    patch_stride: Stride,
    hidden_size: usize,
    depths: Vec<usize>,
    num_attention_heads: Vec<usize>,
    enable_fusion: bool,
    fusion_type: Option<String>,
    patch_embed_input_channels: usize,
    flatten_patch_embeds: bool,
    patch_embeds_hidden_size: usize,
    enable_patch_layer_norm: bool,
    qkv_bias: bool,
    mlp_ratio: f64,
    aff_block_r: usize,
    layer_norm_eps: f64,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            window_size: 8,
            num_mel_bins: 64,
            spec_size: 256,
            hidden_act: "gelu".into(),
            patch_size: 4,
            patch_stride: Stride::Pair([4, 4]),
            hidden_size: 768,
            depths: vec![2, 2, 6, 2],
            num_attention_heads: vec![4, 8, 16, 32],
            enable_fusion: false,
            fusion_type: None,
            patch_embed_input_channels: 1,
            flatten_patch_embeds: true,
            patch_embeds_hidden_size: 96,
            enable_patch_layer_norm: true,
            qkv_bias: true,
            mlp_ratio: 4.0,
            aff_block_r: 4,
            layer_norm_eps: 1e-5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Stride {
    One(usize),
    Pair([usize; 2]),
}

fn d512() -> usize {
    512
}
fn relu() -> String {
    "relu".into()
}

impl Config {
    fn parse(bytes: &[u8]) -> Result<Config> {
        let config: Config = serde_json::from_slice(bytes).map_err(bad_config)?;
        let audio = &config.audio_config;
        for (name, act) in [
            ("text_config.hidden_act", &config.text_config.hidden_act),
            ("audio_config.hidden_act", &audio.hidden_act),
        ] {
            if act != "gelu" {
                return Err(bad_config(format!("{name} {act:?} is not supported (gelu is)")));
            }
        }
        if config.projection_hidden_act != "relu" {
            return Err(bad_config(format!(
                "projection_hidden_act {:?} is not supported (relu is)",
                config.projection_hidden_act
            )));
        }
        let stride = match audio.patch_stride {
            Stride::One(s) => [s, s],
            Stride::Pair(s) => s,
        };
        if stride != [audio.patch_size, audio.patch_size] {
            return Err(bad_config("patch_stride must equal patch_size (non-overlapping patches)"));
        }
        if audio.depths.is_empty() || audio.depths.len() != audio.num_attention_heads.len() {
            return Err(bad_config("depths and num_attention_heads differ in length"));
        }
        if audio.num_mel_bins == 0 || !audio.spec_size.is_multiple_of(audio.num_mel_bins) {
            return Err(bad_config("spec_size must be a multiple of num_mel_bins"));
        }
        if audio.enable_fusion && audio.fusion_type.as_deref() != Some("aff_2d") {
            return Err(bad_config(format!(
                "fusion_type {:?} is not supported (aff_2d is)",
                audio.fusion_type
            )));
        }
        if audio.patch_embed_input_channels != 1 || !audio.flatten_patch_embeds {
            return Err(bad_config("only one input channel with flattened patches is supported"));
        }
        let features = audio.patch_embeds_hidden_size << (audio.depths.len() - 1);
        if features != audio.hidden_size {
            return Err(bad_config(format!(
                "audio hidden_size {} is not patch_embeds_hidden_size·2^(stages−1) = {features}",
                audio.hidden_size
            )));
        }
        Ok(config)
    }
}

/// `ClapFeatureExtractor`'s settings (`preprocessor_config.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct FeatureConfig {
    feature_size: usize,
    sampling_rate: u32,
    hop_length: usize,
    max_length_s: usize,
    fft_window_size: usize,
    frequency_min: f64,
    frequency_max: f64,
    top_db: Option<f64>,
    truncation: String,
    padding: String,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            feature_size: 64,
            sampling_rate: 48_000,
            hop_length: 480,
            max_length_s: 10,
            fft_window_size: 1024,
            frequency_min: 0.0,
            frequency_max: 14_000.0,
            top_db: None,
            truncation: "fusion".into(),
            padding: "repeatpad".into(),
        }
    }
}

/// CLAP's input: `channels` log-mel spectrograms of `frames × mels`, and whether the clip was
/// longer than the model's window (fusion fuses its crops).
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// `channels × frames × mels`, row-major.
    pub data: Vec<f32>,
    /// 4 with fusion (the whole clip shrunk, then three crops), else 1.
    pub channels: usize,
    /// Frames per spectrogram.
    pub frames: usize,
    /// Mel bands.
    pub mels: usize,
    /// Whether the fusion branch runs.
    pub is_longer: bool,
}

impl FeatureConfig {
    fn parse(bytes: &[u8]) -> Result<FeatureConfig> {
        let bad = |reason: String| Error::invalid_file("preprocessor_config.json", reason);
        let config: FeatureConfig = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("not a CLAP feature extractor config: {e}")))?;
        if !matches!(config.truncation.as_str(), "fusion" | "rand_trunc") {
            return Err(bad(format!("truncation {:?} (fusion or rand_trunc)", config.truncation)));
        }
        if !matches!(config.padding.as_str(), "repeatpad" | "repeat" | "pad") {
            return Err(bad(format!("padding {:?} (repeatpad, repeat or pad)", config.padding)));
        }
        if config.hop_length == 0 || config.fft_window_size < 2 || config.max_length_s == 0 {
            return Err(
                bad("hop_length, fft_window_size and max_length_s must be positive".into()),
            );
        }
        Ok(config)
    }

    /// The sample rate the model listens at.
    pub fn sample_rate(&self) -> u32 {
        self.sampling_rate
    }

    fn fusion(&self) -> bool {
        self.truncation == "fusion"
    }

    fn log_mel(&self, samples: &[f32]) -> Result<Vec<f32>> {
        let fusion = self.fusion();
        let bank = MelBank {
            frequency_bins: self.fft_window_size / 2 + 1,
            mels: self.feature_size,
            min_hz: self.frequency_min,
            max_hz: self.frequency_max,
            sample_rate: self.sampling_rate,
            // HF: torchaudio's filters for fusion, librosa's otherwise.
            scale: if fusion { MelScale::Htk } else { MelScale::Slaney },
            slaney_norm: !fusion,
        };
        let mut mel =
            Stft { n_fft: self.fft_window_size, hop: self.hop_length }.log_mel(samples, &bank)?;
        if let Some(range) = self.top_db {
            let floor = mel.iter().copied().fold(f32::MIN, f32::max) - range as f32;
            mel.iter_mut().for_each(|v| *v = v.max(floor));
        }
        Ok(mel)
    }

    /// The features of one clip at [`FeatureConfig::sample_rate`].
    pub fn features(&self, samples: &[f32]) -> Result<Features> {
        if samples.is_empty() {
            return Err(Error::InvalidInput("the audio has no samples".into()));
        }
        let max = self.max_length_s * self.sampling_rate as usize;
        let mels = self.feature_size;
        if samples.len() > max {
            let chunk = max / self.hop_length + 1;
            if !self.fusion() {
                // rand_trunc: HF crops at random; the middle crop here.
                let start = (samples.len() - max) / 2;
                let data = self.log_mel(&samples[start..start + max])?;
                return Ok(Features {
                    frames: data.len() / mels,
                    data,
                    channels: 1,
                    mels,
                    is_longer: true,
                });
            }
            let mel = self.log_mel(samples)?;
            let total = mel.len() / mels;
            if total == chunk {
                let data = mel.repeat(4);
                return Ok(Features { data, channels: 4, frames: total, mels, is_longer: true });
            }
            // np.array_split(range(total − chunk + 1), 3), then the middle of each part.
            let starts = total - chunk + 1;
            let (base, extra) = (starts / 3, starts % 3);
            let mut offset = 0;
            let mut picks = [0usize; 3];
            for (part, pick) in picks.iter_mut().enumerate() {
                let len = base + usize::from(part < extra);
                *pick = if len == 0 { 0 } else { offset + len / 2 };
                offset += len;
            }
            let mut data = shrink_rows(&mel, total, mels, chunk);
            for start in picks {
                data.extend_from_slice(&mel[start * mels..(start + chunk) * mels]);
            }
            return Ok(Features { data, channels: 4, frames: chunk, mels, is_longer: true });
        }
        let mut padded = samples.to_vec();
        if samples.len() < max {
            match self.padding.as_str() {
                "repeat" => {
                    padded = samples.iter().copied().cycle().take(max).collect();
                }
                "repeatpad" => {
                    let times = max / samples.len();
                    padded = samples.repeat(times);
                }
                _ => {}
            }
            padded.resize(max, 0.0);
        }
        let mel = self.log_mel(&padded)?;
        let frames = mel.len() / mels;
        if self.fusion() {
            Ok(Features { data: mel.repeat(4), channels: 4, frames, mels, is_longer: true })
        } else {
            Ok(Features { data: mel, channels: 1, frames, mels, is_longer: false })
        }
    }
}

/// Eval-mode batch norm as a per-channel affine map, `x·scale + shift`.
#[derive(Debug, Clone)]
struct Affine {
    scale: Tensor,
    shift: Tensor,
}

impl Affine {
    fn batch_norm(channels: usize, vb: VarBuilder) -> Result<Affine> {
        let weight = vb.get(channels, "weight")?;
        let bias = vb.get(channels, "bias")?;
        let mean = vb.get(channels, "running_mean")?;
        let var = vb.get(channels, "running_var")?;
        // PyTorch's BatchNorm ε.
        let scale = weight.div(&(var + 1e-5)?.sqrt()?)?;
        let shift = bias.sub(&mean.mul(&scale)?)?;
        Ok(Affine { scale, shift })
    }

    /// Channels last.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_mul(&self.scale)?.broadcast_add(&self.shift)?)
    }
}

/// A convolution whose stride equals its kernel (no overlap, no padding), as a matmul over
/// patches. Input `(n, c, h, w)`; output channels last, `(n, h/kh, w/kw, out)`, dropping a
/// remainder as PyTorch does.
#[derive(Debug, Clone)]
struct Patchify {
    linear: Linear,
    kernel: (usize, usize),
}

impl Patchify {
    fn new(input: usize, out: usize, kernel: (usize, usize), vb: VarBuilder) -> Result<Patchify> {
        let weight = vb.get((out, input, kernel.0, kernel.1), "weight")?;
        let weight = weight.reshape((out, input * kernel.0 * kernel.1))?;
        Ok(Patchify { linear: Linear::new(weight, Some(vb.get(out, "bias")?)), kernel })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (kh, kw) = self.kernel;
        let (ho, wo) = (h / kh, w / kw);
        let x = x.narrow(2, 0, ho * kh)?.narrow(3, 0, wo * kw)?;
        let patches = x
            .reshape((n, c, ho, kh, wo, kw))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((n * ho * wo, c * kh * kw))?;
        Ok(self.linear.forward(&patches)?.reshape((n, ho, wo, ()))?)
    }
}

/// A 1×1 convolution followed by batch norm, channels last.
#[derive(Debug, Clone)]
struct PointwiseBn {
    linear: Linear,
    norm: Affine,
}

impl PointwiseBn {
    fn new(input: usize, out: usize, conv: VarBuilder, norm: VarBuilder) -> Result<PointwiseBn> {
        let weight = conv.get((out, input, 1, 1), "weight")?.reshape((out, input))?;
        let linear = Linear::new(weight, Some(conv.get(out, "bias")?));
        Ok(PointwiseBn { linear, norm: Affine::batch_norm(out, norm)? })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.norm.forward(&self.linear.forward(x)?)
    }
}

/// CLAP's attentional feature fusion (AFF, 2-D), channels last.
#[derive(Debug, Clone)]
struct Fusion {
    local: [PointwiseBn; 2],
    global: [PointwiseBn; 2],
}

impl Fusion {
    fn new(channels: usize, ratio: usize, vb: VarBuilder) -> Result<Fusion> {
        let inner = channels / ratio.max(1);
        let l = vb.pp("local_att");
        let g = vb.pp("global_att");
        Ok(Fusion {
            local: [
                PointwiseBn::new(channels, inner, l.pp("0"), l.pp("1"))?,
                PointwiseBn::new(inner, channels, l.pp("3"), l.pp("4"))?,
            ],
            global: [
                PointwiseBn::new(channels, inner, g.pp("1"), g.pp("2"))?,
                PointwiseBn::new(inner, channels, g.pp("4"), g.pp("5"))?,
            ],
        })
    }

    /// `(1, h, w, c)` global and local features → fused.
    fn forward(&self, global: &Tensor, local: &Tensor) -> Result<Tensor> {
        let sum = (global + local)?;
        let branch = |layers: &[PointwiseBn; 2], x: &Tensor| -> Result<Tensor> {
            layers[1].forward(&layers[0].forward(x)?.relu()?)
        };
        let pooled = sum.mean_keepdim(1)?.mean_keepdim(2)?;
        let gate = candle_nn::ops::sigmoid(
            &branch(&self.local, &sum)?.broadcast_add(&branch(&self.global, &pooled)?)?,
        )?;
        let kept = (global * &gate)?;
        let mixed = (local * (1.0 - &gate)?)?;
        Ok(((kept + mixed)? * 2.0)?)
    }
}

/// One Swin block: (shifted) window attention with relative position bias, then an MLP.
#[derive(Debug, Clone)]
struct SwinBlock {
    norm_before: LayerNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    norm_after: LayerNorm,
    intermediate: Linear,
    out: Linear,
    heads: usize,
    window: usize,
    shift: usize,
    /// `(heads, window², window²)`.
    bias: Tensor,
    /// `(windows, window², window²)` for shifted blocks.
    mask: Option<Tensor>,
    resolution: (usize, usize),
}

fn linear_maybe_bias(input: usize, out: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    Ok(if bias { linear(input, out, vb)? } else { linear_no_bias(input, out, vb)? })
}

impl SwinBlock {
    fn new(
        config: &AudioConfig,
        dim: usize,
        heads: usize,
        resolution: (usize, usize),
        shifted: bool,
        vb: VarBuilder,
    ) -> Result<SwinBlock> {
        let configured = config.window_size;
        let (window, shift) = if resolution.0.min(resolution.1) <= configured {
            (resolution.0.min(resolution.1), 0)
        } else {
            (configured, if shifted { configured / 2 } else { 0 })
        };
        if window != configured {
            return Err(bad_config(format!(
                "a stage of {}×{} tokens is smaller than window_size {configured}",
                resolution.0, resolution.1
            )));
        }
        if heads == 0 || !dim.is_multiple_of(heads) {
            return Err(bad_config(format!("{dim} channels do not split into {heads} heads")));
        }
        let eps = config.layer_norm_eps;
        let attention = vb.pp("attention");
        let table_rows = (2 * window - 1) * (2 * window - 1);
        let table = attention.get((table_rows, heads), "self.relative_position_bias_table")?;
        let n = window * window;
        let mut index = Vec::with_capacity(n * n);
        for i in 0..n {
            for j in 0..n {
                let (hi, wi, hj, wj) = (i / window, i % window, j / window, j % window);
                let dh = hi + window - 1 - hj;
                let dw = wi + window - 1 - wj;
                index.push((dh * (2 * window - 1) + dw) as u32);
            }
        }
        let index = Tensor::from_vec(index, n * n, table.device())?;
        let bias = table
            .index_select(&index, 0)?
            .reshape((n, n, heads))?
            .permute((2, 0, 1))?
            .contiguous()?;
        let mask = if shift > 0 {
            Some(shift_mask(resolution, window, shift, table.device())?)
        } else {
            None
        };
        let hidden = (config.mlp_ratio * dim as f64) as usize;
        Ok(SwinBlock {
            norm_before: layer_norm(dim, eps, vb.pp("layernorm_before"))?,
            query: linear_maybe_bias(dim, dim, config.qkv_bias, attention.pp("self.query"))?,
            key: linear_maybe_bias(dim, dim, config.qkv_bias, attention.pp("self.key"))?,
            value: linear_maybe_bias(dim, dim, config.qkv_bias, attention.pp("self.value"))?,
            output: linear(dim, dim, attention.pp("output.dense"))?,
            norm_after: layer_norm(dim, eps, vb.pp("layernorm_after"))?,
            intermediate: linear(dim, hidden, vb.pp("intermediate.dense"))?,
            out: linear(hidden, dim, vb.pp("output.dense"))?,
            heads,
            window,
            shift,
            bias,
            mask,
            resolution,
        })
    }

    /// `(b, h·w, c)` → the same shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, c) = x.dims3()?;
        let (h, w) = self.resolution;
        let ws = self.window;
        let mut grid = self.norm_before.forward(x)?.reshape((b, h, w, c))?;
        let (hp, wp) = (h.div_ceil(ws) * ws, w.div_ceil(ws) * ws);
        if (hp, wp) != (h, w) {
            grid = grid.pad_with_zeros(1, 0, hp - h)?.pad_with_zeros(2, 0, wp - w)?;
        }
        if self.shift > 0 {
            let s = -(self.shift as i32);
            grid = grid.roll(s, 1)?.roll(s, 2)?;
        }
        let (nh, nw) = (hp / ws, wp / ws);
        let windows = grid
            .reshape((b, nh, ws, nw, ws, c))?
            .permute((0, 1, 3, 2, 4, 5))?
            .reshape((b * nh * nw, ws * ws, c))?;
        let attended = self.attention(&windows, b * nh * nw)?;
        let mut grid = attended
            .reshape((b, nh, nw, ws, ws, c))?
            .permute((0, 1, 3, 2, 4, 5))?
            .reshape((b, hp, wp, c))?;
        if self.shift > 0 {
            let s = self.shift as i32;
            grid = grid.roll(s, 1)?.roll(s, 2)?;
        }
        if (hp, wp) != (h, w) {
            grid = grid.narrow(1, 0, h)?.narrow(2, 0, w)?;
        }
        let x = (x + grid.reshape((b, h * w, c))?)?;
        let mlp = self.intermediate.forward(&self.norm_after.forward(&x)?)?.gelu_erf()?;
        Ok((&x + self.out.forward(&mlp)?)?)
    }

    /// `(windows, n, c)` → the same shape.
    fn attention(&self, x: &Tensor, windows: usize) -> Result<Tensor> {
        let (_, n, c) = x.dims3()?;
        let head = c / self.heads;
        let split = |t: Tensor| -> Result<Tensor> {
            Ok(t.reshape((windows, n, self.heads, head))?.transpose(1, 2)?.contiguous()?)
        };
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let mut scores = (q.matmul(&k.t()?)? / (head as f64).sqrt())?.broadcast_add(&self.bias)?;
        if let Some(mask) = &self.mask {
            let per_image = mask.dim(0)?;
            scores = scores
                .reshape((windows / per_image, per_image, self.heads, n, n))?
                .broadcast_add(&mask.unsqueeze(1)?.unsqueeze(0)?)?
                .reshape((windows, self.heads, n, n))?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((windows, n, c))?;
        Ok(self.output.forward(&context)?)
    }
}

/// The shifted-window mask: 0 within a region, −100 across regions (HF's values).
fn shift_mask(
    resolution: (usize, usize),
    ws: usize,
    shift: usize,
    device: &Device,
) -> Result<Tensor> {
    let (h, w) = (resolution.0.div_ceil(ws) * ws, resolution.1.div_ceil(ws) * ws);
    let region =
        |i: usize, size: usize| usize::from(i >= size - ws) + usize::from(i >= size - shift);
    let (nh, nw) = (h / ws, w / ws);
    let n = ws * ws;
    let mut mask = Vec::with_capacity(nh * nw * n * n);
    for wh in 0..nh {
        for ww in 0..nw {
            let ids: Vec<usize> = (0..n)
                .map(|p| region(wh * ws + p / ws, h) * 3 + region(ww * ws + p % ws, w))
                .collect();
            for a in &ids {
                for b in &ids {
                    mask.push(if a == b { 0f32 } else { -100.0 });
                }
            }
        }
    }
    Ok(Tensor::from_vec(mask, (nh * nw, n, n), device)?)
}

/// Swin patch merging: 2×2 neighbours concatenated, normalised, projected to twice the width.
#[derive(Debug, Clone)]
struct PatchMerging {
    norm: LayerNorm,
    reduction: Linear,
    resolution: (usize, usize),
}

impl PatchMerging {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, c) = x.dims3()?;
        let (h, w) = self.resolution;
        let mut grid = x.reshape((b, h, w, c))?;
        if h % 2 == 1 || w % 2 == 1 {
            grid = grid.pad_with_zeros(1, 0, h % 2)?.pad_with_zeros(2, 0, w % 2)?;
        }
        let (h2, w2) = (h.div_ceil(2), w.div_ceil(2));
        // HF concatenates [row 0 col 0, row 1 col 0, row 0 col 1, row 1 col 1].
        let merged = grid.reshape((b, h2, 2, w2, 2, c))?.permute((0, 1, 3, 4, 2, 5))?.reshape((
            b,
            h2 * w2,
            4 * c,
        ))?;
        Ok(self.reduction.forward(&self.norm.forward(&merged)?)?)
    }
}

/// HTSAT, CLAP's audio encoder.
#[derive(Debug, Clone)]
struct AudioEncoder {
    mel_norm: Affine,
    proj: Patchify,
    patch_norm: Option<LayerNorm>,
    fusion: Option<(Patchify, Fusion)>,
    stages: Vec<(Vec<SwinBlock>, Option<PatchMerging>)>,
    norm: LayerNorm,
    spec_size: usize,
    freq_ratio: usize,
    mels: usize,
}

impl AudioEncoder {
    fn new(config: &AudioConfig, vb: VarBuilder) -> Result<AudioEncoder> {
        let patch = config.patch_size;
        let hidden = config.patch_embeds_hidden_size;
        let embed = vb.pp("patch_embed");
        let fusion = if config.enable_fusion {
            Some((
                Patchify::new(1, hidden, (patch, patch * 3), embed.pp("mel_conv2d"))?,
                Fusion::new(hidden, config.aff_block_r, embed.pp("fusion_model"))?,
            ))
        } else {
            None
        };
        let grid = config.spec_size / patch;
        let mut stages = Vec::new();
        let last = config.depths.len() - 1;
        for (i, (&depth, &heads)) in
            config.depths.iter().zip(&config.num_attention_heads).enumerate()
        {
            let dim = hidden << i;
            let resolution = (grid >> i, grid >> i);
            let stage = vb.pp(format!("layers.{i}"));
            let blocks = (0..depth)
                .map(|b| {
                    SwinBlock::new(
                        config,
                        dim,
                        heads,
                        resolution,
                        b % 2 == 1,
                        stage.pp(format!("blocks.{b}")),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let merge = if i < last {
                let down = stage.pp("downsample");
                Some(PatchMerging {
                    norm: layer_norm(4 * dim, 1e-5, down.pp("norm"))?,
                    reduction: linear_no_bias(4 * dim, 2 * dim, down.pp("reduction"))?,
                    resolution,
                })
            } else {
                None
            };
            stages.push((blocks, merge));
        }
        Ok(AudioEncoder {
            mel_norm: Affine::batch_norm(config.num_mel_bins, vb.pp("batch_norm"))?,
            proj: Patchify::new(1, hidden, (patch, patch), embed.pp("proj"))?,
            patch_norm: if config.enable_patch_layer_norm {
                Some(layer_norm(hidden, 1e-5, embed.pp("norm"))?)
            } else {
                None
            },
            fusion,
            stages,
            norm: layer_norm(config.hidden_size, 1e-5, vb.pp("norm"))?,
            spec_size: config.spec_size,
            freq_ratio: config.spec_size / config.num_mel_bins,
            mels: config.num_mel_bins,
        })
    }

    /// `(b, channels, frames, mels)` features → `(b, hidden)` pooled output.
    fn forward(&self, features: &Tensor, is_longer: &[bool]) -> Result<Tensor> {
        let (b, channels, frames, mels) = features.dims4()?;
        let width = self.spec_size * self.freq_ratio;
        let height = self.spec_size / self.freq_ratio;
        if mels != self.mels || frames > width {
            return Err(Error::InvalidInput(format!(
                "CLAP takes up to {width} frames of {} mel bands, not {frames} of {mels}",
                self.mels
            )));
        }
        let x = self.mel_norm.forward(features)?;
        // HF's bicubic resize (align_corners) of the time axis to the Swin input width.
        let x = if frames < width {
            let weights = bicubic_matrix(frames, width, x.device())?;
            weights.broadcast_matmul(&x)?
        } else {
            x
        };
        // (b, c, width, mels) → (b, c, mels·ratio, width/ratio): time folded into rows.
        let r = self.freq_ratio;
        let image = x
            .reshape((b, channels * r, width / r, height))?
            .transpose(2, 3)?
            .reshape((b, channels, height * r, width / r))?
            .contiguous()?;

        let global = self.proj.forward(&image.narrow(1, 0, 1)?)?;
        let mut tokens = Vec::with_capacity(b);
        for item in 0..b {
            let mut g = global.narrow(0, item, 1)?;
            if let (Some((mel_conv, fusion)), true) =
                (&self.fusion, is_longer.get(item) == Some(&true))
            {
                if channels < 2 {
                    return Err(Error::InvalidInput(
                        "fusion needs the fused crops (4 channels)".into(),
                    ));
                }
                let crops = image.narrow(0, item, 1)?.narrow(1, 1, channels - 1)?;
                let (_, n, hh, ww) = crops.dims4()?;
                let local = mel_conv.forward(&crops.reshape((n, 1, hh, ww))?)?;
                let (_, lh, lw, lc) = local.dims4()?;
                // (n, lh, lw, c) → (1, lh, n·lw, c), zero-padded to the global width.
                let local = local.transpose(0, 1)?.reshape((1, lh, n * lw, lc))?;
                let target = g.dim(2)?;
                let local = if n * lw < target {
                    local.pad_with_zeros(2, 0, target - n * lw)?
                } else {
                    local.narrow(2, 0, target)?
                };
                g = fusion.forward(&g, &local)?;
            }
            tokens.push(g);
        }
        let grid = Tensor::cat(&tokens, 0)?;
        let (_, gh, gw, gc) = grid.dims4()?;
        let mut x = grid.reshape((b, gh * gw, gc))?;
        if let Some(norm) = &self.patch_norm {
            x = norm.forward(&x)?;
        }
        for (blocks, merge) in &self.stages {
            for block in blocks {
                x = block.forward(&x)?;
            }
            if let Some(merge) = merge {
                x = merge.forward(&x)?;
            }
        }
        // HF's "group 2D CNN" regrouping only reorders tokens before its average pool.
        Ok(self.norm.forward(&x)?.mean(1)?)
    }
}

/// The `(to, from)` matrix of PyTorch's bicubic interpolation (A = −0.75, align_corners,
/// clamped borders) along one axis.
fn bicubic_matrix(from: usize, to: usize, device: &Device) -> Result<Tensor> {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = if to > 1 { (from - 1) as f32 / (to - 1) as f32 } else { 0.0 };
    let mut weights = vec![0f32; to * from];
    for i in 0..to {
        let real = scale * i as f32;
        let base = real.floor();
        let t = real - base;
        let taps = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
        for (k, tap) in taps.iter().enumerate() {
            let j = (base as i64 - 1 + k as i64).clamp(0, from as i64 - 1) as usize;
            weights[i * from + j] += tap;
        }
    }
    Ok(Tensor::from_vec(weights, (to, from), device)?)
}

/// Linear → ReLU → linear.
#[derive(Debug, Clone)]
struct Projection(Linear, Linear);

impl Projection {
    fn new(input: usize, out: usize, vb: VarBuilder) -> Result<Projection> {
        Ok(Projection(linear(input, out, vb.pp("linear1"))?, linear(out, out, vb.pp("linear2"))?))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.1.forward(&self.0.forward(x)?.relu()?)?)
    }
}

/// A loaded CLAP model with its tokenizer and feature extractor.
pub struct Clap {
    audio: AudioEncoder,
    audio_projection: Projection,
    text: XLMRobertaModel,
    pooler: Linear,
    text_projection: Projection,
    tokenizer: Option<TextTokenizer>,
    extractor: FeatureConfig,
    logit_scale_audio: f32,
    logit_scale_text: f32,
    pad: u32,
    device: Device,
    bytes: u64,
}

impl std::fmt::Debug for Clap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clap").field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

/// Audio–text similarity logits, both ways.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    /// `audios × texts`, scaled by `logit_scale_a`.
    pub per_audio: Vec<Vec<f32>>,
    /// `texts × audios`, scaled by `logit_scale_t`.
    pub per_text: Vec<Vec<f32>>,
}

impl Clap {
    /// Loads a model from `config.json`, safetensors weights, and optionally
    /// `preprocessor_config.json` (HF's defaults without one) and `tokenizer.json` (needed for
    /// text input).
    pub fn load(
        config: &[u8],
        weights: Vec<u8>,
        preprocessor: Option<&[u8]>,
        tokenizer: Option<&[u8]>,
        device: &Device,
    ) -> Result<Clap> {
        let config = Config::parse(config)?;
        let extractor = match preprocessor {
            Some(bytes) => FeatureConfig::parse(bytes)?,
            None => FeatureConfig::default(),
        };
        if extractor.feature_size != config.audio_config.num_mel_bins {
            return Err(Error::invalid_file(
                "preprocessor_config.json",
                format!(
                    "{} mel bands, but the model takes {}",
                    extractor.feature_size, config.audio_config.num_mel_bins
                ),
            ));
        }
        if extractor.fusion() != config.audio_config.enable_fusion {
            return Err(Error::invalid_file(
                "preprocessor_config.json",
                "truncation \"fusion\" goes with a fused model (enable_fusion), rand_trunc without",
            ));
        }
        let bytes = weights.len() as u64;
        let vb = crate::nn::var_builder("model.safetensors", weights, device)?;
        let t = &config.text_config;
        let roberta = RobertaConfig {
            hidden_size: t.hidden_size,
            layer_norm_eps: t.layer_norm_eps,
            attention_probs_dropout_prob: 0.0,
            hidden_dropout_prob: 0.0,
            num_attention_heads: t.num_attention_heads,
            position_embedding_type: "absolute".into(),
            intermediate_size: t.intermediate_size,
            hidden_act: candle_nn::Activation::Gelu,
            num_hidden_layers: t.num_hidden_layers,
            vocab_size: t.vocab_size,
            max_position_embeddings: t.max_position_embeddings,
            type_vocab_size: t.type_vocab_size,
            pad_token_id: t.pad_token_id,
        };
        // RoBERTa positions start after the padding index.
        let max_length = t.max_position_embeddings.saturating_sub(t.pad_token_id as usize + 1);
        let tokenizer =
            tokenizer.map(|bytes| TextTokenizer::load(bytes, max_length)).transpose()?;
        let audio_vb = vb.pp("audio_model.audio_encoder");
        let scale =
            |name: &str| -> Result<f32> { Ok(vb.get((), name)?.exp()?.to_scalar::<f32>()?) };
        Ok(Clap {
            audio: AudioEncoder::new(&config.audio_config, audio_vb)?,
            audio_projection: Projection::new(
                config.audio_config.hidden_size,
                config.projection_dim,
                vb.pp("audio_projection"),
            )?,
            text: XLMRobertaModel::new(&roberta, vb.pp("text_model"))?,
            pooler: linear(t.hidden_size, t.hidden_size, vb.pp("text_model.pooler.dense"))?,
            text_projection: Projection::new(
                t.hidden_size,
                config.projection_dim,
                vb.pp("text_projection"),
            )?,
            tokenizer,
            extractor,
            logit_scale_audio: scale("logit_scale_a")?,
            logit_scale_text: scale("logit_scale_t")?,
            pad: t.pad_token_id,
            device: device.clone(),
            bytes,
        })
    }

    /// Resident bytes (the weights).
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// The feature extractor's settings.
    pub fn extractor(&self) -> &FeatureConfig {
        &self.extractor
    }

    /// Unit-norm audio embeddings of feature sets (all the same shape), `(n, projection_dim)`.
    pub fn audio_embeddings(&self, features: &[Features]) -> Result<Tensor> {
        let first = features.first().ok_or_else(|| Error::InvalidInput("no audio".into()))?;
        let mut data = Vec::with_capacity(first.data.len() * features.len());
        for f in features {
            if (f.channels, f.frames, f.mels) != (first.channels, first.frames, first.mels) {
                return Err(Error::InvalidInput("feature sets differ in shape".into()));
            }
            data.extend_from_slice(&f.data);
        }
        let x = Tensor::from_vec(
            data,
            (features.len(), first.channels, first.frames, first.mels),
            &self.device,
        )?;
        let longer: Vec<bool> = features.iter().map(|f| f.is_longer).collect();
        l2_normalize(&self.audio_projection.forward(&self.audio.forward(&x, &longer)?)?)
    }

    /// Token ids and attention mask of texts, padded to the longest.
    pub fn tokenize(&self, texts: &[String]) -> Result<(Tensor, Tensor)> {
        let tokenizer =
            self.tokenizer.as_ref().ok_or_else(|| no_tokenizer("clap", "audio-classification"))?;
        tokenizer.encode(texts, Pad::Id(self.pad), &self.device)
    }

    /// Unit-norm text embeddings from token ids and mask, `(n, projection_dim)`.
    pub fn text_embeddings_from_ids(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let types = ids.zeros_like()?;
        let hidden = self.text.forward(ids, mask, &types, None, None, None)?;
        let cls = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        let pooled = self.pooler.forward(&cls)?.tanh()?;
        l2_normalize(&self.text_projection.forward(&pooled)?)
    }

    /// Unit-norm text embeddings, `(n, projection_dim)`.
    pub fn text_embeddings(&self, texts: &[String]) -> Result<Tensor> {
        let (ids, mask) = self.tokenize(texts)?;
        self.text_embeddings_from_ids(&ids, &mask)
    }

    /// HF's `logits_per_audio` / `logits_per_text` of embeddings.
    pub fn logits(&self, audio: &Tensor, text: &Tensor) -> Result<Logits> {
        let similarity = audio.matmul(&text.t()?)?;
        Ok(Logits {
            per_audio: (&similarity * f64::from(self.logit_scale_audio))?.to_vec2()?,
            per_text: (similarity.t()? * f64::from(self.logit_scale_text))?.to_vec2()?,
        })
    }

    /// The features of a clip (resampled to the extractor's rate).
    pub fn features(&self, audio: Audio) -> Result<Features> {
        let audio = audio.resampled(self.extractor.sampling_rate)?;
        self.extractor.features(&audio.samples)
    }

    /// A clip's unit-norm embedding.
    pub fn embed(&self, audio: Audio, cancel: &Cancel) -> Result<Vec<f32>> {
        let features = self.features(audio)?;
        cancel.check()?;
        Ok(self.audio_embeddings(&[features])?.squeeze(0)?.to_vec1()?)
    }

    /// Zero-shot classification: each label's probability (softmax over the labels of the
    /// audio's logits against [`LABEL_TEMPLATE`] filled with the label), best first.
    pub fn classify(
        &self,
        audio: Audio,
        labels: &[String],
        cancel: &Cancel,
    ) -> Result<Vec<LabelScore>> {
        if labels.is_empty() {
            return Err(Error::InvalidInput("no labels to classify against".into()));
        }
        let features = self.features(audio)?;
        cancel.check()?;
        let audio = self.audio_embeddings(&[features])?;
        cancel.check()?;
        let prompts: Vec<String> = labels.iter().map(|l| LABEL_TEMPLATE.replace("{}", l)).collect();
        let text = self.text_embeddings(&prompts)?;
        let logits = self.logits(&audio, &text)?;
        let probabilities = softmax(&only_row(logits.per_audio)?);
        let mut scores: Vec<LabelScore> = labels
            .iter()
            .zip(probabilities)
            .map(|(label, score)| LabelScore { label: label.clone(), score })
            .collect();
        scores.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(scores)
    }
}

/// A label and its probability.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabelScore {
    /// The label as given.
    pub label: String,
    /// Its probability among the labels given.
    pub score: f32,
}

/// CLAP zero-shot audio classification.
pub const CLASSIFY_SKILL: Checkpoint = Checkpoint {
    name: "clap-classify",
    task: Task::AudioClassification,
    families: &["clap"],
    label: "CLAP",
    optional: crate::skill::PROCESSOR_AND_TOKENIZER,
    required: Some(("tokenizer.json", "labels cannot be read")),
    limits: "audio resampled to the extractor's rate (48 kHz); clips past max_length_s are fused from 3 crops",
    output: "labels with probabilities (softmax over the given labels)",
    build: |files, device| files.with_processor(device, Clap::load),
};

/// CLAP audio embeddings.
pub const EMBED_SKILL: Checkpoint = Checkpoint {
    name: "clap-embed",
    task: Task::AudioEmbedding,
    required: None,
    output: "one unit-norm vector (the projected audio embedding)",
    ..CLASSIFY_SKILL
};

crate::capability::loaded!(Clap: audio_embedder -> EmbedAudio, audio_classifier -> ClassifyAudio);

impl crate::capability::EmbedAudio for Clap {
    fn embed_audio(&self, audio: Audio, cancel: &Cancel) -> Result<Vec<f32>> {
        self.embed(audio, cancel)
    }
}

impl crate::capability::ClassifyAudio for Clap {
    fn classify_audio(
        &self,
        audio: Audio,
        labels: &[String],
        cancel: &Cancel,
    ) -> Result<Vec<LabelScore>> {
        self.classify(audio, labels, cancel)
    }
}

/// Labels from a comma-separated list (trimmed, empty ones dropped, duplicates refused).
pub fn parse_labels(list: &str) -> Result<Vec<String>> {
    let labels: Vec<String> =
        list.split(',').map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if labels.is_empty() {
        return Err(Error::InvalidInput("no labels given (--labels a,b,c)".into()));
    }
    let mut seen = HashSet::new();
    for label in &labels {
        if !seen.insert(label.as_str()) {
            return Err(Error::InvalidInput(format!("label {label:?} is given twice")));
        }
    }
    Ok(labels)
}
