//! Pieces the candle skills share: loading weights, unmasked attention, normalising and scoring,
//! and text tokenized into a padded batch.

use std::collections::HashMap;

use candle_core::Module;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{linear, linear_no_bias, Linear, VarBuilder};
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{Error, Result};

/// The safetensors bytes of `file` as an f32 `VarBuilder`, every tensor loaded (the bytes are
/// freed), linear weights laid out by [`for_matmul`].
pub(crate) fn var_builder(
    file: &str,
    weights: Vec<u8>,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    let tensors = candle_core::safetensors::load_buffer(&weights, device)
        .map_err(|e| Error::invalid_file(file, e))?;
    drop(weights);
    Ok(VarBuilder::from_tensors(for_matmul(tensors)?, DType::F32, device))
}

/// Tensors in f32, with the linear layers' weights laid out for candle's CPU matmul.
///
/// candle's `Linear` multiplies by `weight.t()`. Stored as the checkpoint has it (`[out, in]`
/// row-major), that right-hand side is column-major, and gemm packs it one scalar at a time:
/// at a batch of one image the packing cost more than the multiply. So on the CPU each such
/// weight is stored transposed and shown as `[out, in]` through its strides; `weight.t()` is
/// then row-major and packs with vector copies. Same values, same shapes; only the CPU is
/// affected (GPU BLAS takes either layout). Embedding tables stay as they are, since candle's
/// row lookup needs them contiguous.
pub(crate) fn for_matmul(tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    tensors
        .into_iter()
        .map(|(name, tensor)| {
            let tensor = tensor.to_dtype(DType::F32)?;
            let linear = tensor.device().is_cpu()
                && tensor.rank() == 2
                && name.ends_with(".weight")
                && !name.contains("embed");
            let tensor = if linear { tensor.t()?.contiguous()?.t()? } else { tensor };
            Ok((name, tensor))
        })
        .collect()
}

/// Multi-head attention without a mask: `q_proj`/`k_proj`/`v_proj` (biased or not) and an
/// output projection named by the model (`out_proj`, `out`, ...).
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

impl Attention {
    pub(crate) fn new(
        dim: usize,
        heads: usize,
        bias: bool,
        out_name: &str,
        vb: VarBuilder,
    ) -> Result<Attention> {
        let project = |name: &str| -> Result<Linear> {
            Ok(if bias {
                linear(dim, dim, vb.pp(name))?
            } else {
                linear_no_bias(dim, dim, vb.pp(name))?
            })
        };
        if heads == 0 || !dim.is_multiple_of(heads) {
            return Err(Error::invalid_file(
                "config.json",
                format!("{dim} channels do not split into {heads} heads"),
            ));
        }
        Ok(Attention {
            q: project("q_proj")?,
            k: project("k_proj")?,
            v: project("v_proj")?,
            out: linear(dim, dim, vb.pp(out_name))?,
            heads,
        })
    }

    /// `query (b, n, d)` attending to `context (b, m, d)`.
    pub(crate) fn forward(&self, query: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, n, d) = query.dims3()?;
        let m = context.dim(1)?;
        let head = d / self.heads;
        let split = |t: Tensor, len: usize| -> Result<Tensor> {
            Ok(t.reshape((b, len, self.heads, head))?.transpose(1, 2)?.contiguous()?)
        };
        let q = (split(self.q.forward(query)?, n)? * (head as f64).powf(-0.5))?;
        let k = split(self.k.forward(context)?, m)?;
        let v = split(self.v.forward(context)?, m)?;
        let probs = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
        let mixed = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
        Ok(self.out.forward(&mixed)?)
    }
}

/// Rows scaled to unit L2 norm.
pub(crate) fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_div(&x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)?)
}

/// The softmax of logits (as probabilities over the candidates they score).
pub(crate) fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let total: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / total).collect()
}

/// The one row a single-input similarity produced.
pub(crate) fn only_row(rows: Vec<Vec<f32>>) -> Result<Vec<f32>> {
    rows.into_iter().next().ok_or_else(|| Error::Inference("the model scored no input".into()))
}

/// Refuses an empty list of texts, or a blank one among them.
pub(crate) fn require_texts(texts: &[String]) -> Result<()> {
    if texts.is_empty() || texts.iter().any(|t| t.trim().is_empty()) {
        return Err(Error::InvalidInput("give at least one text, none of them empty".into()));
    }
    Ok(())
}

/// How a batch of token rows is padded to the longest.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pad {
    /// With this id, under an attention mask (RoBERTa).
    Id(u32),
    /// With each row's last token (CLIP's EOS: causal attention never sees the padding).
    LastToken,
}

/// A model's `tokenizer.json`, truncating to its positions, with padding left to [`Pad`].
pub(crate) struct TextTokenizer(Tokenizer);

impl TextTokenizer {
    /// Loads `tokenizer.json` bytes; texts are cut to `max_length` tokens (specials included).
    pub(crate) fn load(bytes: &[u8], max_length: usize) -> Result<TextTokenizer> {
        let mut tokenizer =
            Tokenizer::from_bytes(bytes).map_err(|e| Error::invalid_file("tokenizer.json", e))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length, ..TruncationParams::default() }))
            .map_err(|e| Error::invalid_file("tokenizer.json", e))?;
        Ok(TextTokenizer(tokenizer))
    }

    /// `(ids, mask)`, each `(texts, longest)`: special tokens added, rows padded by `pad`.
    pub(crate) fn encode(
        &self,
        texts: &[String],
        pad: Pad,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        require_texts(texts)?;
        let encodings = self
            .0
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Inference(format!("tokenizing: {e}")))?;
        let longest = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for e in &encodings {
            let row = e.get_ids();
            let filler = match pad {
                Pad::Id(id) => id,
                Pad::LastToken => row.last().copied().unwrap_or(0),
            };
            ids.extend_from_slice(row);
            ids.extend(std::iter::repeat_n(filler, longest - row.len()));
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.extend(std::iter::repeat_n(0u32, longest - row.len()));
        }
        let shape = (texts.len(), longest);
        Ok((Tensor::from_vec(ids, shape, device)?, Tensor::from_vec(mask, shape, device)?))
    }
}

/// The error for text input to a model without `tokenizer.json`.
pub(crate) fn no_tokenizer(model: &str, task: &'static str) -> Error {
    Error::Unsupported {
        model: model.into(),
        task,
        reason: "the model has no tokenizer.json, so it cannot read text".into(),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Module;

    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 3.0, 2.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[1] > p[2] && p[2] > p[0]);
        assert!(softmax(&[1000.0, 1000.0]).iter().all(|v| (v - 0.5).abs() < 1e-6));
    }

    #[test]
    fn linear_weights_are_relaid_for_the_matmul_and_compute_the_same() -> Result<()> {
        let device = Device::Cpu;
        let weight = Tensor::arange(0f32, 12.0, &device)?.reshape((4, 3))?;
        let table = weight.clone();
        let half = Tensor::arange(0f32, 6.0, &device)?.reshape((2, 3))?.to_dtype(DType::F16)?;
        let tensors = for_matmul(HashMap::from([
            ("layer.dense.weight".to_string(), weight.clone()),
            ("embeddings.word_embeddings.weight".to_string(), table),
            ("layer.half.weight".to_string(), half),
        ]))?;

        // Same shape and values; `weight.t()` (what `Linear` multiplies by) is now row-major.
        let relaid = &tensors["layer.dense.weight"];
        assert_eq!(relaid.dims(), &[4, 3]);
        assert!(!relaid.is_contiguous() && relaid.t()?.is_contiguous());
        assert_eq!(relaid.to_vec2::<f32>()?, weight.to_vec2::<f32>()?);
        let x = Tensor::arange(0f32, 6.0, &device)?.reshape((1, 2, 3))?;
        let ours = candle_nn::Linear::new(relaid.clone(), None).forward(&x)?;
        let plain = candle_nn::Linear::new(weight, None).forward(&x)?;
        assert_eq!(ours.to_vec3::<f32>()?, plain.to_vec3::<f32>()?);

        // Embedding tables stay contiguous for row lookups; everything comes out f32.
        assert!(tensors["embeddings.word_embeddings.weight"].is_contiguous());
        assert_eq!(tensors["layer.half.weight"].dtype(), DType::F32);
        assert!(tensors["layer.half.weight"].t()?.is_contiguous());
        Ok(())
    }
}
