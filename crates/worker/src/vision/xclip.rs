//! X-CLIP (video–text similarity) in candle, which has none: the CLIP vision transformer run
//! per frame with cross-frame "message tokens" in every layer, the multi-frame integration
//! transformer (candle's CLIP encoder), the video-specific prompt generator (text attends to
//! the frames' patches), and candle's CLIP text transformer (pooled at the argmax id, as
//! X-CLIP forces).
//!
//! Frames: a list of images, an animated GIF, or a video decoded by `ffmpeg` when installed.
//! HF leaves frame sampling to the caller; here `num_frames` frames are taken at the centres of
//! equal segments of the input (frame `⌊(i + ½)·N / T⌋` of `N`), repeating frames when the
//! input has fewer than `T`.

use std::time::Duration;

use candle_core::{Device, IndexOp, Module, Tensor, D};
use candle_nn::{layer_norm, linear, linear_no_bias, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::clip::text_model::{
    Activation, ClipEncoder, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::clip::vision_model::ClipVisionConfig;
use candle_transformers::models::clip::EncoderConfig;
use serde::Deserialize;

use super::image::{DecodeLimits, Processor};
use crate::error::{Error, Result};
use crate::nn::{l2_normalize, no_tokenizer, softmax, Attention, Pad, TextTokenizer};
use crate::skill::{Cancel, Checkpoint, Task};

fn bad_config(reason: impl std::fmt::Display) -> Error {
    Error::invalid_file("config.json", format!("not an X-CLIP config: {reason}"))
}

#[derive(Debug, Clone, Deserialize)]
struct Config {
    text_config: TextConfig,
    vision_config: VisionConfig,
    #[serde(default = "d512")]
    projection_dim: usize,
    #[serde(default = "two")]
    prompt_layers: usize,
    #[serde(default = "eight")]
    prompt_num_attention_heads: usize,
    #[serde(default = "quick_gelu")]
    prompt_hidden_act: String,
}

fn d512() -> usize {
    512
}
fn two() -> usize {
    2
}
fn eight() -> usize {
    8
}
fn quick_gelu() -> String {
    "quick_gelu".into()
}

#[derive(Debug, Clone, Deserialize)]
struct TextConfig {
    #[serde(default = "text_vocab")]
    vocab_size: usize,
    #[serde(default = "d512")]
    hidden_size: usize,
    #[serde(default = "d2048")]
    intermediate_size: usize,
    #[serde(default = "twelve")]
    num_hidden_layers: usize,
    #[serde(default = "eight")]
    num_attention_heads: usize,
    #[serde(default = "seventy_seven")]
    max_position_embeddings: usize,
    #[serde(default = "quick_gelu")]
    hidden_act: String,
}

fn text_vocab() -> usize {
    49_408
}
fn d2048() -> usize {
    2048
}
fn twelve() -> usize {
    12
}
fn seventy_seven() -> usize {
    77
}

#[derive(Debug, Clone, Deserialize)]
struct VisionConfig {
    #[serde(default = "d768")]
    hidden_size: usize,
    #[serde(default = "d3072")]
    intermediate_size: usize,
    #[serde(default = "twelve")]
    num_hidden_layers: usize,
    #[serde(default = "twelve")]
    num_attention_heads: usize,
    #[serde(default = "d224")]
    image_size: usize,
    #[serde(default = "d32")]
    patch_size: usize,
    #[serde(default = "eight")]
    num_frames: usize,
    #[serde(default = "d512")]
    mit_hidden_size: usize,
    #[serde(default = "d2048")]
    mit_intermediate_size: usize,
    #[serde(default = "one")]
    mit_num_hidden_layers: usize,
    #[serde(default = "eight")]
    mit_num_attention_heads: usize,
    #[serde(default = "quick_gelu")]
    hidden_act: String,
    #[serde(default = "eps")]
    layer_norm_eps: f64,
}

fn d768() -> usize {
    768
}
fn d3072() -> usize {
    3072
}
fn d224() -> usize {
    224
}
fn d32() -> usize {
    32
}
fn one() -> usize {
    1
}
fn eps() -> f64 {
    1e-5
}

/// A CLIP vision layer with X-CLIP's cross-frame message token.
#[derive(Debug, Clone)]
struct FrameLayer {
    attention: Attention,
    norm1: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    norm2: LayerNorm,
    message_fc: Linear,
    message_norm: LayerNorm,
    message_attention: Attention,
}

impl FrameLayer {
    fn new(v: &VisionConfig, vb: VarBuilder) -> Result<FrameLayer> {
        let d = v.hidden_size;
        let e = v.layer_norm_eps;
        Ok(FrameLayer {
            attention: Attention::new(
                d,
                v.num_attention_heads,
                true,
                "out_proj",
                vb.pp("self_attn"),
            )?,
            norm1: layer_norm(d, e, vb.pp("layer_norm1"))?,
            fc1: linear(d, v.intermediate_size, vb.pp("mlp.fc1"))?,
            fc2: linear(v.intermediate_size, d, vb.pp("mlp.fc2"))?,
            norm2: layer_norm(d, e, vb.pp("layer_norm2"))?,
            message_fc: linear(d, d, vb.pp("message_fc"))?,
            message_norm: layer_norm(d, e, vb.pp("message_ln"))?,
            message_attention: Attention::new(
                d,
                v.num_attention_heads,
                true,
                "out_proj",
                vb.pp("message_attn"),
            )?,
        })
    }

    /// `(frames, tokens, d)` of one video → the same shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (frames, tokens, d) = x.dims3()?;
        let message = self.message_fc.forward(&x.i((.., 0, ..))?)?.reshape((1, frames, d))?;
        let normed = self.message_norm.forward(&message)?;
        let message = (&message + self.message_attention.forward(&normed, &normed)?)?;
        let message = message.reshape((frames, 1, d))?;
        let h = Tensor::cat(&[x, &message], 1)?;
        let normed = self.norm1.forward(&h)?;
        let h = (&h + self.attention.forward(&normed, &normed)?)?.narrow(1, 0, tokens)?;
        let mlp = self.fc2.forward(
            &Activation::QuickGelu.forward(&self.fc1.forward(&self.norm2.forward(&h)?)?)?,
        )?;
        Ok((h + mlp)?)
    }
}

/// One prompt-generator layer: text attends to the video's patches, then an MLP.
#[derive(Debug, Clone)]
struct PromptLayer {
    cross: Attention,
    norm1: LayerNorm,
    norm3: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// A loaded X-CLIP model.
pub struct XClip {
    patch_embedding: candle_nn::Conv2d,
    class_embedding: Tensor,
    position_embedding: Tensor,
    pre_norm: LayerNorm,
    layers: Vec<FrameLayer>,
    post_norm: LayerNorm,
    visual_projection: Linear,
    mit_position: Tensor,
    mit: ClipEncoder,
    prompts_visual_norm: LayerNorm,
    prompts_visual_projection: Tensor,
    prompt_norm: LayerNorm,
    prompt_layers: Vec<PromptLayer>,
    prompt_alpha: Tensor,
    text: ClipTextTransformer,
    text_projection: Linear,
    logit_scale: f32,
    tokenizer: Option<TextTokenizer>,
    processor: Processor,
    frames: usize,
    device: Device,
    bytes: u64,
}

impl std::fmt::Debug for XClip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XClip").field("frames", &self.frames).finish_non_exhaustive()
    }
}

/// A text scored against a video.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VideoTextScore {
    /// The text as given.
    pub text: String,
    /// HF's `logits_per_video` entry.
    pub logit: f32,
    /// Softmax of the logits over the texts given.
    pub probability: f32,
}

impl XClip {
    /// Loads a model from `config.json`, safetensors weights, and optionally
    /// `preprocessor_config.json` (VideoMAE's defaults without one) and `tokenizer.json`.
    pub fn load(
        config: &[u8],
        weights: Vec<u8>,
        preprocessor: Option<&[u8]>,
        tokenizer: Option<&[u8]>,
        device: &Device,
    ) -> Result<XClip> {
        let config: Config = super::clip_family_config(config)
            .and_then(serde_json::from_value)
            .map_err(bad_config)?;
        let (t, v) = (&config.text_config, &config.vision_config);
        for (name, act) in [
            ("text_config.hidden_act", &t.hidden_act),
            ("vision_config.hidden_act", &v.hidden_act),
            ("prompt_hidden_act", &config.prompt_hidden_act),
        ] {
            if act != "quick_gelu" {
                return Err(bad_config(format!("{name} {act:?} is not supported (quick_gelu is)")));
            }
        }
        if v.mit_hidden_size != config.projection_dim {
            return Err(bad_config("vision_config.mit_hidden_size must equal projection_dim"));
        }
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) || v.num_frames == 0 {
            return Err(bad_config("image_size must be a multiple of patch_size; num_frames > 0"));
        }
        let processor = match preprocessor {
            Some(bytes) => Processor::parse(bytes, Processor::videomae_default())?,
            None => Processor::videomae_default().with_size(v.image_size as u32),
        };
        let size = v.image_size as u32;
        processor.require_square(size, "the model's image_size")?;
        let bytes = weights.len() as u64;
        let vb = crate::nn::var_builder("model.safetensors", weights, device)?;
        let p = config.projection_dim;
        let d = v.hidden_size;
        let vision = vb.pp("vision_model");
        let conv = candle_nn::Conv2dConfig { stride: v.patch_size, ..Default::default() };
        let patch_embedding = candle_nn::conv2d_no_bias(
            3,
            d,
            v.patch_size,
            conv,
            vision.pp("embeddings.patch_embedding"),
        )?;
        let positions = (v.image_size / v.patch_size).pow(2) + 1;
        let layers = (0..v.num_hidden_layers)
            .map(|i| FrameLayer::new(v, vision.pp(format!("encoder.layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let mit_config = EncoderConfig::Vision(ClipVisionConfig {
            embed_dim: v.mit_hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: v.mit_intermediate_size,
            num_hidden_layers: v.mit_num_hidden_layers,
            num_attention_heads: v.mit_num_attention_heads,
            projection_dim: p,
            num_channels: 3,
            image_size: v.image_size,
            patch_size: v.patch_size,
        });
        let text_config = ClipTextConfig {
            vocab_size: t.vocab_size,
            embed_dim: t.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: t.intermediate_size,
            max_position_embeddings: t.max_position_embeddings,
            pad_with: None,
            num_hidden_layers: t.num_hidden_layers,
            num_attention_heads: t.num_attention_heads,
            projection_dim: p,
        };
        let generator = vb.pp("prompts_generator");
        let prompt_layers = (0..config.prompt_layers)
            .map(|i| -> Result<PromptLayer> {
                let l = generator.pp(format!("decoder.{i}"));
                Ok(PromptLayer {
                    cross: Attention::new(
                        p,
                        config.prompt_num_attention_heads,
                        false,
                        "proj",
                        l.pp("cross_attn"),
                    )?,
                    norm1: layer_norm(p, 1e-5, l.pp("norm1"))?,
                    norm3: layer_norm(p, 1e-5, l.pp("norm3"))?,
                    fc1: linear(p, 4 * p, l.pp("mlp.0"))?,
                    fc2: linear(4 * p, p, l.pp("mlp.3"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let tokenizer = tokenizer
            .map(|bytes| TextTokenizer::load(bytes, t.max_position_embeddings))
            .transpose()?;
        Ok(XClip {
            patch_embedding,
            class_embedding: vision.get(d, "embeddings.class_embedding")?,
            position_embedding: vision
                .get((positions, d), "embeddings.position_embedding.weight")?,
            pre_norm: layer_norm(d, v.layer_norm_eps, vision.pp("pre_layernorm"))?,
            layers,
            post_norm: layer_norm(d, v.layer_norm_eps, vision.pp("post_layernorm"))?,
            visual_projection: linear_no_bias(d, p, vb.pp("visual_projection"))?,
            mit_position: vb.get((1, v.num_frames, p), "mit.position_embedding")?,
            mit: ClipEncoder::new(vb.pp("mit.encoder"), &mit_config)?,
            prompts_visual_norm: layer_norm(
                d,
                v.layer_norm_eps,
                vb.pp("prompts_visual_layernorm"),
            )?,
            prompts_visual_projection: vb.get((d, p), "prompts_visual_projection")?,
            prompt_norm: layer_norm(p, v.layer_norm_eps, generator.pp("layernorm"))?,
            prompt_layers,
            prompt_alpha: generator.get(p, "alpha")?,
            text: ClipTextTransformer::new(vb.pp("text_model"), &text_config)?,
            text_projection: linear_no_bias(t.hidden_size, p, vb.pp("text_projection"))?,
            logit_scale: vb.get((), "logit_scale")?.exp()?.to_scalar::<f32>()?,
            tokenizer,
            processor,
            frames: v.num_frames,
            device: device.clone(),
            bytes,
        })
    }

    /// Resident bytes (the weights).
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// Frames per video the model takes.
    pub fn num_frames(&self) -> usize {
        self.frames
    }

    /// `pixel_values` of sampled frames, `(frames, 3, size, size)`.
    pub fn pixel_values(&self, frames: &[image::RgbImage]) -> Result<Tensor> {
        let picked = sample_frames(frames.len(), self.frames)?;
        self.processor.batch(picked.iter().map(|&i| &frames[i]), &self.device)
    }

    /// The unit-norm video embedding and the per-patch features the prompt generator reads,
    /// from one video's `(frames, 3, size, size)` pixel values.
    fn video(&self, pixel_values: &Tensor) -> Result<(Tensor, Tensor)> {
        let frames = pixel_values.dim(0)?;
        if frames != self.frames {
            return Err(Error::InvalidInput(format!(
                "the model takes {} frames, not {frames}",
                self.frames
            )));
        }
        let patches =
            self.patch_embedding.forward(pixel_values)?.flatten_from(2)?.transpose(1, 2)?;
        let d = patches.dim(2)?;
        let class = self.class_embedding.reshape((1, 1, d))?.broadcast_as((frames, 1, d))?;
        let x = Tensor::cat(&[&class, &patches], 1)?.broadcast_add(&self.position_embedding)?;
        let mut x = self.pre_norm.forward(&x)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        let pooled = self.post_norm.forward(&x.i((.., 0, ..))?)?;
        let cls = self.visual_projection.forward(&pooled)?.unsqueeze(0)?;
        let integrated = self.mit.forward(&cls.broadcast_add(&self.mit_position)?, None)?;
        let video = (integrated + &cls)?.mean(1)?;
        let tokens = x.narrow(1, 1, x.dim(1)? - 1)?;
        let features = self
            .prompts_visual_norm
            .forward(&tokens)?
            .broadcast_matmul(&self.prompts_visual_projection)?;
        Ok((l2_normalize(&video)?.squeeze(0)?, features.mean_keepdim(0)?))
    }

    /// Token ids of texts, padded with the last id of each row's own EOS (argmax pooling).
    pub fn tokenize(&self, texts: &[String]) -> Result<Tensor> {
        let tokenizer = self
            .tokenizer
            .as_ref()
            .ok_or_else(|| no_tokenizer("xclip", "video-text-similarity"))?;
        Ok(tokenizer.encode(texts, Pad::LastToken, &self.device)?.0)
    }

    /// HF's `logits_per_video` of one video against token ids: `(texts,)`.
    pub fn logits(&self, pixel_values: &Tensor, ids: &Tensor) -> Result<Vec<f32>> {
        let (video, features) = self.video(pixel_values)?;
        let hidden = self.text.forward_with_mask(ids, usize::MAX)?;
        let positions: Vec<u32> = ids.argmax(D::Minus1)?.to_vec1()?;
        let pooled = positions
            .iter()
            .enumerate()
            .map(|(i, &p)| hidden.i((i, p as usize)).and_then(|t| t.unsqueeze(0)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let text = self.text_projection.forward(&Tensor::cat(&pooled, 0)?)?.unsqueeze(0)?;
        let visual = self.prompt_norm.forward(&features)?;
        let mut prompt = text.clone();
        for layer in &self.prompt_layers {
            prompt = (&prompt + layer.cross.forward(&layer.norm1.forward(&prompt)?, &visual)?)?;
            let mlp = layer.fc2.forward(
                &Activation::QuickGelu
                    .forward(&layer.fc1.forward(&layer.norm3.forward(&prompt)?)?)?,
            )?;
            prompt = (prompt + mlp)?;
        }
        let text = l2_normalize(&(text + prompt.broadcast_mul(&self.prompt_alpha)?)?.squeeze(0)?)?;
        let logits = text.matmul(&video.unsqueeze(1)?)?.squeeze(1)?;
        Ok((logits * f64::from(self.logit_scale))?.to_vec1()?)
    }

    /// How well each text describes a video's frames: logit and softmax over the texts.
    pub fn similarity(
        &self,
        frames: &[image::RgbImage],
        texts: &[String],
        cancel: &Cancel,
    ) -> Result<Vec<VideoTextScore>> {
        let pixels = self.pixel_values(frames)?;
        let ids = self.tokenize(texts)?;
        cancel.check()?;
        let logits = self.logits(&pixels, &ids)?;
        Ok(texts
            .iter()
            .zip(logits.iter().zip(softmax(&logits)))
            .map(|(text, (logit, probability))| VideoTextScore {
                text: text.clone(),
                logit: *logit,
                probability,
            })
            .collect())
    }
}

/// Which of `available` frames to use for `wanted`: the centre of each of `wanted` equal
/// segments, `⌊(i + ½)·N / T⌋`.
pub fn sample_frames(available: usize, wanted: usize) -> Result<Vec<usize>> {
    if available == 0 {
        return Err(Error::InvalidInput("the video has no frames".into()));
    }
    Ok((0..wanted).map(|i| ((2 * i + 1) * available / (2 * wanted)).min(available - 1)).collect())
}

/// A video's frames: a GIF's frames decoded in full (disposal applied), else the file decoded
/// by `ffmpeg` at `count` evenly spaced times.
pub fn decode_video(
    bytes: &[u8],
    count: usize,
    limits: DecodeLimits,
    deadline: Duration,
) -> Result<Vec<image::RgbImage>> {
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return decode_gif(bytes, limits);
    }
    ffmpeg_frames(bytes, count, limits, deadline)
}

fn decode_gif(bytes: &[u8], limits: DecodeLimits) -> Result<Vec<image::RgbImage>> {
    use image::AnimationDecoder;
    let mut decoder = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::InvalidInput(format!("decoding the GIF: {e}")))?;
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    decoder_limits.max_alloc = Some(limits.max_alloc);
    image::ImageDecoder::set_limits(&mut decoder, decoder_limits)
        .map_err(|e| Error::InvalidInput(format!("the GIF is too large: {e}")))?;
    let mut frames = Vec::new();
    let mut total = 0u64;
    for frame in decoder.into_frames() {
        let frame = frame.map_err(|e| Error::InvalidInput(format!("decoding a GIF frame: {e}")))?;
        let rgb = image::DynamicImage::ImageRgba8(frame.into_buffer()).to_rgb8();
        total += rgb.as_raw().len() as u64;
        if total > limits.max_alloc {
            return Err(Error::InvalidInput(format!(
                "the GIF's frames exceed {} MiB decoded",
                limits.max_alloc >> 20
            )));
        }
        frames.push(rgb);
    }
    if frames.is_empty() {
        return Err(Error::InvalidInput("the GIF has no frames".into()));
    }
    Ok(frames)
}

/// `count` frames of a video, chosen as a frame list is ([`sample_frames`] over the video's
/// frame count, which `ffprobe` reads), decoded by one `ffmpeg` run that selects them by index
/// and writes them as PNGs to stdout. Each run is under `deadline`.
fn ffmpeg_frames(
    bytes: &[u8],
    count: usize,
    limits: DecodeLimits,
    deadline: Duration,
) -> Result<Vec<image::RgbImage>> {
    // The video for ffmpeg to read: a scratch file, removed with the directory.
    let failed = |e: std::io::Error| Error::Inference(format!("a scratch copy for ffmpeg: {e}"));
    // storage-audit: allow(scratch directory for ffmpeg's input; removed after decoding)
    let dir = tempfile::tempdir().map_err(failed)?;
    let input = dir.path().join("video");
    #[allow(clippy::disallowed_methods)]
    // storage-audit: allow(scratch copy of the user's video for ffmpeg; removed after decoding)
    std::fs::write(&input, bytes).map_err(failed)?;
    let total = frame_count(&input, deadline)?;
    let picked = sample_frames(total, count)?;
    let mut wanted = picked.clone();
    wanted.dedup();
    let select: Vec<String> = wanted.iter().map(|i| format!("eq(n\\,{i})")).collect();
    let filter = format!("select={}", select.join("+"));
    let output = run_tool(
        "ffmpeg",
        &["-v", "error", "-i"],
        &input,
        &["-vf", &filter, "-vsync", "0", "-f", "image2pipe", "-vcodec", "png", "-"],
        deadline,
    )?;
    let decoded = split_pngs(&output)
        .into_iter()
        .map(|png| super::image::decode(png, limits))
        .collect::<Result<Vec<_>>>()?;
    if decoded.len() != wanted.len() {
        return Err(Error::InvalidInput(format!(
            "ffmpeg gave {} of the {} frames asked for (fewer frames than the header says?)",
            decoded.len(),
            wanted.len()
        )));
    }
    // Back to one image per pick (a short video repeats frames).
    Ok(picked
        .iter()
        .map(|i| decoded[wanted.iter().position(|w| w == i).unwrap_or(0)].clone())
        .collect())
}

/// The video stream's frame count: the container's, else counted by decoding.
fn frame_count(input: &std::path::Path, deadline: Duration) -> Result<usize> {
    let probe = |entry: &str, extra: &[&str]| -> Result<Option<usize>> {
        let show = format!("stream={entry}");
        let mut args = vec!["-v", "error", "-select_streams", "v:0"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-show_entries", &show, "-of", "csv=p=0"]);
        let output = run_tool("ffprobe", &args, input, &[], deadline)?;
        Ok(String::from_utf8_lossy(&output).trim().parse::<usize>().ok().filter(|n| *n > 0))
    };
    match probe("nb_frames", &[])? {
        Some(n) => Ok(n),
        None => probe("nb_read_frames", &["-count_frames"])?.ok_or_else(|| {
            Error::InvalidInput("not a video ffprobe can read (no video frames)".into())
        }),
    }
}

/// Splits concatenated PNG files (ffmpeg's image2pipe) by walking their chunks to `IEND`.
fn split_pngs(mut data: &[u8]) -> Vec<&[u8]> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    let mut pngs = Vec::new();
    while data.starts_with(SIGNATURE) {
        let mut at = SIGNATURE.len();
        let mut end = None;
        while let Some(header) = data.get(at..at + 8) {
            let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let next = at.saturating_add(12).saturating_add(length);
            if &header[4..8] == b"IEND" {
                end = Some(next.min(data.len()));
                break;
            }
            at = next;
        }
        let Some(end) = end else { break };
        pngs.push(&data[..end]);
        data = &data[end..];
    }
    pngs
}

/// Runs `tool before… input after…` with a deadline; its stdout.
fn run_tool(
    tool: &str,
    before: &[&str],
    input: &std::path::Path,
    after: &[&str],
    deadline: Duration,
) -> Result<Vec<u8>> {
    let mut child = std::process::Command::new(tool)
        .args(before)
        .arg(input)
        .args(after)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Device(format!(
                "{tool} is not installed: video files are decoded with ffmpeg (Debian: apt install ffmpeg); give --frames or a GIF instead"
            )),
            _ => Error::Inference(format!("running {tool}: {e}")),
        })?;
    // Both pipes drain while the tool runs: a frame stream larger than the pipe buffer
    // would otherwise block it until the deadline.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    use std::io::Read as _;
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::InvalidInput(format!("{tool} took longer than {deadline:?}")));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(Error::Inference(format!("waiting for {tool}: {e}"))),
        }
    };
    let joined = |t: std::thread::JoinHandle<Vec<u8>>| {
        t.join().map_err(|_| Error::Inference(format!("reading {tool}'s output failed")))
    };
    let (stdout, stderr) = (joined(stdout)?, joined(stderr)?);
    if !status.success() {
        return Err(Error::InvalidInput(format!(
            "{tool} could not read the video: {}",
            String::from_utf8_lossy(&stderr).trim()
        )));
    }
    Ok(stdout)
}

/// X-CLIP video–text similarity.
pub const SKILL: Checkpoint = Checkpoint {
    name: "xclip",
    task: Task::VideoTextSimilarity,
    families: &["xclip"],
    label: "X-CLIP",
    optional: crate::skill::PROCESSOR_AND_TOKENIZER,
    required: Some(("tokenizer.json", "texts cannot be read")),
    limits: "num_frames frames sampled at segment centres; GIF, frame images, or video via ffmpeg",
    output: "per text: logit and softmax probability",
    build: |files, device| files.with_processor(device, XClip::load),
};

crate::capability::loaded!(XClip: video_text -> VideoText);

impl crate::capability::VideoText for XClip {
    fn num_frames(&self) -> usize {
        XClip::num_frames(self)
    }

    fn video_text_similarity(
        &self,
        frames: &[image::RgbImage],
        texts: &[String],
        cancel: &Cancel,
    ) -> Result<Vec<VideoTextScore>> {
        self.similarity(frames, texts, cancel)
    }
}
