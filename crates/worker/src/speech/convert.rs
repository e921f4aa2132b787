//! CTranslate2 Whisper (`model.bin` + `vocabulary.txt`) → whisper.cpp's ggml model file.
//!
//! No ggml Whisper weights ship in the package registries, but CTranslate2 ones
//! (faster-whisper) do. The conversion is a rename, split and retype, nothing numeric: CT2
//! fuses Q/K/V (and the cross-attention's K/V) into one matrix, which whisper.cpp wants
//! apart; whisper.cpp wants 1-D tensors, conv biases and positional embeddings in f32 and
//! the rest in the file's type. The header carries the mel filterbank (Slaney, as librosa and
//! OpenAI's `mel_filters.npz` compute it) and the BPE vocabulary as raw bytes (CT2 keeps
//! GPT-2's byte-to-unicode form). The output depends only on the input bytes: the same model
//! converts to the same file, so its CID is stable and any worker sharing the store reuses it.

use half::f16;

use super::ct2::{self, DType, Variable};
use crate::audio::mel::{MelBank, MelScale};
use crate::error::{Error, Result};

/// Names the conversion in derived models' manifests; bump it when the output changes.
pub const CONVERTER: &str = "ct2-whisper-ggml/1";

const MAGIC: u32 = 0x6767_6d6c;
const SAMPLE_RATE: f64 = 16_000.0;
const N_FFT: usize = 400;

/// Whisper's hyper-parameters, read from the tensors' shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Vocabulary size (51865 multilingual, 51864 English-only).
    pub n_vocab: usize,
    /// Encoder positions (1500).
    pub n_audio_ctx: usize,
    /// Encoder width.
    pub n_audio_state: usize,
    /// Encoder heads.
    pub n_audio_head: usize,
    /// Encoder layers.
    pub n_audio_layer: usize,
    /// Decoder positions (448).
    pub n_text_ctx: usize,
    /// Decoder width.
    pub n_text_state: usize,
    /// Decoder heads.
    pub n_text_head: usize,
    /// Decoder layers.
    pub n_text_layer: usize,
    /// Mel bands (80; 128 for large-v3).
    pub n_mels: usize,
}

/// Reads a CT2 Whisper model's dimensions, checking it is one whisper.cpp can run.
pub fn dims(model: &ct2::Model<'_>) -> Result<Dims> {
    if model.spec != "WhisperSpec" {
        return Err(Error::invalid_file(
            "model.bin",
            format!("spec {:?} is not WhisperSpec: not a Whisper model", model.spec),
        ));
    }
    let shape = |name: &str, rank: usize| -> Result<Vec<usize>> {
        let shape = model.require(name)?.shape();
        if shape.len() != rank {
            return Err(Error::invalid_file("model.bin", format!("{name} has shape {shape:?}")));
        }
        Ok(shape)
    };
    let int = |name: &str| -> Result<i64> {
        model.require(name)?.as_int().ok_or_else(|| {
            Error::invalid_file("model.bin", format!("{name} is not an integer scalar"))
        })
    };
    for (name, want) in [("decoder/activation", 3), ("decoder/pre_norm", 1), ("decoder/alibi", 0)] {
        if let Some(value) = model.get(name).and_then(Variable::as_int) {
            if value != want {
                return Err(Error::invalid_file(
                    "model.bin",
                    format!("{name} = {value}: whisper.cpp runs only Whisper's own architecture ({name} = {want})"),
                ));
            }
        }
    }
    let layers = |prefix: &str| {
        (0..)
            .take_while(|i| model.get(&format!("{prefix}/layer_{i}/ffn/linear_0/bias")).is_some())
            .count()
    };
    let embeddings = shape("decoder/embeddings/weight", 2)?;
    let audio = shape("encoder/position_encodings/encodings", 2)?;
    let text = shape("decoder/position_encodings/encodings", 2)?;
    let conv1 = shape("encoder/conv1/weight", 3)?;
    let dims = Dims {
        n_vocab: embeddings[0],
        n_audio_ctx: audio[0],
        n_audio_state: audio[1],
        n_audio_head: usize::try_from(int("encoder/num_heads")?).unwrap_or(0),
        n_audio_layer: layers("encoder"),
        n_text_ctx: text[0],
        n_text_state: embeddings[1],
        n_text_head: usize::try_from(int("decoder/num_heads")?).unwrap_or(0),
        n_text_layer: layers("decoder"),
        n_mels: conv1[1],
    };
    if dims.n_audio_head == 0
        || dims.n_text_head == 0
        || dims.n_audio_layer == 0
        || dims.n_text_layer == 0
    {
        return Err(Error::invalid_file(
            "model.bin",
            format!("implausible Whisper dimensions {dims:?}"),
        ));
    }
    Ok(dims)
}

/// How one ggml tensor is cut from a CT2 variable.
struct Piece {
    name: String,
    source: String,
    /// Rows `[from, to)` of the variable's first dimension (all when `None`).
    rows: Option<(usize, usize)>,
    /// Shape written (numpy order) when it differs from the source's.
    shape: Option<Vec<usize>>,
    /// Kept in f32 whatever the file type.
    f32: bool,
}

/// Collects the pieces in the order OpenAI's checkpoint lists its tensors.
#[derive(Default)]
struct Pieces(Vec<Piece>);

impl Pieces {
    fn push(&mut self, name: String, source: String, rows: Option<(usize, usize)>, f32: bool) {
        self.0.push(Piece { name, source, rows, shape: None, f32 });
    }

    fn linear(&mut self, ggml: &str, ct2: &str, rows: Option<(usize, usize)>, bias: bool) {
        self.push(format!("{ggml}.weight"), format!("{ct2}/weight"), rows, false);
        if bias {
            self.push(format!("{ggml}.bias"), format!("{ct2}/bias"), rows, true);
        }
    }

    fn norm(&mut self, ggml: &str, ct2: &str) {
        self.push(format!("{ggml}.weight"), format!("{ct2}/gamma"), None, true);
        self.push(format!("{ggml}.bias"), format!("{ct2}/beta"), None, true);
    }

    /// Self-attention with CT2's fused QKV: rows `[0, d)` query, `[d, 2d)` key (Whisper's key
    /// has no bias; CT2 stores zeros there), `[2d, 3d)` value.
    fn self_attention(&mut self, ggml: &str, ct2: &str, d: usize) {
        let fused = format!("{ct2}/linear_0");
        self.linear(&format!("{ggml}.query"), &fused, Some((0, d)), true);
        self.linear(&format!("{ggml}.key"), &fused, Some((d, 2 * d)), false);
        self.linear(&format!("{ggml}.value"), &fused, Some((2 * d, 3 * d)), true);
        self.linear(&format!("{ggml}.out"), &format!("{ct2}/linear_1"), None, true);
    }

    fn mlp(&mut self, ggml: &str, ct2: &str) {
        self.linear(&format!("{ggml}.mlp.0"), &format!("{ct2}/ffn/linear_0"), None, true);
        self.linear(&format!("{ggml}.mlp.2"), &format!("{ct2}/ffn/linear_1"), None, true);
        self.norm(&format!("{ggml}.mlp_ln"), &format!("{ct2}/ffn/layer_norm"));
    }
}

fn pieces(dims: &Dims) -> Vec<Piece> {
    let mut p = Pieces::default();
    let (a, t) = (dims.n_audio_state, dims.n_text_state);
    p.push(
        "encoder.positional_embedding".into(),
        "encoder/position_encodings/encodings".into(),
        None,
        true,
    );
    for conv in ["conv1", "conv2"] {
        p.push(format!("encoder.{conv}.weight"), format!("encoder/{conv}/weight"), None, false);
        p.0.push(Piece {
            name: format!("encoder.{conv}.bias"),
            source: format!("encoder/{conv}/bias"),
            rows: None,
            shape: Some(vec![a, 1]),
            f32: true,
        });
    }
    for i in 0..dims.n_audio_layer {
        let (g, c) = (format!("encoder.blocks.{i}"), format!("encoder/layer_{i}"));
        p.self_attention(&format!("{g}.attn"), &format!("{c}/self_attention"), a);
        p.norm(&format!("{g}.attn_ln"), &format!("{c}/self_attention/layer_norm"));
        p.mlp(&g, &c);
    }
    p.norm("encoder.ln_post", "encoder/layer_norm");
    p.push(
        "decoder.positional_embedding".into(),
        "decoder/position_encodings/encodings".into(),
        None,
        true,
    );
    p.push(
        "decoder.token_embedding.weight".into(),
        "decoder/embeddings/weight".into(),
        None,
        false,
    );
    for i in 0..dims.n_text_layer {
        let (g, c) = (format!("decoder.blocks.{i}"), format!("decoder/layer_{i}"));
        p.self_attention(&format!("{g}.attn"), &format!("{c}/self_attention"), t);
        p.norm(&format!("{g}.attn_ln"), &format!("{c}/self_attention/layer_norm"));
        let (gx, x) = (format!("{g}.cross_attn"), format!("{c}/attention"));
        p.linear(&format!("{gx}.query"), &format!("{x}/linear_0"), None, true);
        // Fused KV: rows [0, d) key (no bias), [d, 2d) value.
        p.linear(&format!("{gx}.key"), &format!("{x}/linear_1"), Some((0, t)), false);
        p.linear(&format!("{gx}.value"), &format!("{x}/linear_1"), Some((t, 2 * t)), true);
        p.linear(&format!("{gx}.out"), &format!("{x}/linear_2"), None, true);
        p.norm(&format!("{g}.cross_attn_ln"), &format!("{x}/layer_norm"));
        p.mlp(&g, &c);
    }
    p.norm("decoder.ln", "decoder/layer_norm");
    p.0
}

/// Converts a CT2 Whisper model to whisper.cpp's ggml format. `vocabulary` is the model's
/// `vocabulary.txt`.
pub fn convert(model_bin: &[u8], vocabulary: &[u8]) -> Result<Vec<u8>> {
    let model = ct2::Model::parse("model.bin", model_bin)?;
    let dims = dims(&model)?;
    let tokens = byte_vocabulary(vocabulary)?;
    let dtype = model.dominant_dtype().unwrap_or(DType::F32);
    // Quantised CT2 weights are dequantised into f16; f32 models stay f32.
    let f16_file = dtype != DType::F32;

    let mut out = Vec::with_capacity(model_bin.len() + (4 << 20));
    let i32s = |out: &mut Vec<u8>, values: &[usize]| -> Result<()> {
        for v in values {
            let v = i32::try_from(*v).map_err(|_| {
                Error::invalid_file("model.bin", format!("dimension {v} too large"))
            })?;
            out.extend_from_slice(&v.to_le_bytes());
        }
        Ok(())
    };
    out.extend_from_slice(&MAGIC.to_le_bytes());
    i32s(
        &mut out,
        &[
            dims.n_vocab,
            dims.n_audio_ctx,
            dims.n_audio_state,
            dims.n_audio_head,
            dims.n_audio_layer,
            dims.n_text_ctx,
            dims.n_text_state,
            dims.n_text_head,
            dims.n_text_layer,
            dims.n_mels,
            usize::from(f16_file),
        ],
    )?;
    let n_freq = N_FFT / 2 + 1;
    i32s(&mut out, &[dims.n_mels, n_freq])?;
    for w in mel_filters(dims.n_mels) {
        out.extend_from_slice(&w.to_le_bytes());
    }
    i32s(&mut out, &[tokens.len()])?;
    for token in &tokens {
        i32s(&mut out, &[token.len()])?;
        out.extend_from_slice(token);
    }

    for piece in pieces(&dims) {
        write_tensor(&mut out, &model, &piece, f16_file)?;
    }
    Ok(out)
}

/// Writes one tensor: `i32 n_dims, i32 name_len, i32 type (0 f32, 1 f16)`, the dimensions
/// innermost first, the name, the data.
fn write_tensor(
    out: &mut Vec<u8>,
    model: &ct2::Model<'_>,
    piece: &Piece,
    f16_file: bool,
) -> Result<()> {
    let variable = model.require(&piece.source)?;
    let mut shape = variable.shape();
    let values = values(model, &piece.source, variable)?;
    let row: usize = shape.iter().skip(1).product();
    let values = match piece.rows {
        Some((from, to)) => {
            if shape.first().is_none_or(|rows| *rows < to) {
                return Err(Error::invalid_file(
                    "model.bin",
                    format!("{} has shape {shape:?}; rows {from}..{to} expected", piece.source),
                ));
            }
            shape[0] = to - from;
            let range = from * row..to * row;
            match values {
                Values::F32(v) => Values::F32(v[range].to_vec()),
                Values::F16(v) => Values::F16(v[range].to_vec()),
            }
        }
        None => values,
    };
    let shape = piece.shape.clone().unwrap_or(shape);
    let as_f16 = f16_file && !piece.f32 && shape.len() >= 2;
    let write_i32 = |out: &mut Vec<u8>, v: usize| -> Result<()> {
        let v = i32::try_from(v)
            .map_err(|_| Error::invalid_file("model.bin", "dimension too large"))?;
        out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    };
    write_i32(out, shape.len())?;
    write_i32(out, piece.name.len())?;
    write_i32(out, usize::from(as_f16))?;
    for d in shape.iter().rev() {
        write_i32(out, *d)?;
    }
    out.extend_from_slice(piece.name.as_bytes());
    if as_f16 {
        for v in values.into_f16() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    } else {
        for v in values.into_f32() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(())
}

/// A tensor's values as read: f16 kept as f16 (no round trip through f32), else f32.
enum Values {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl Values {
    fn into_f16(self) -> Vec<f16> {
        match self {
            Values::F16(v) => v,
            Values::F32(v) => v.into_iter().map(f16::from_f32).collect(),
        }
    }

    fn into_f32(self) -> Vec<f32> {
        match self {
            Values::F32(v) => v,
            Values::F16(v) => v.into_iter().map(f16::to_f32).collect(),
        }
    }
}

/// A variable's values. int8 weights (CT2's `int8*` quantisations) are dequantised with
/// their per-row `_scale` (CT2 stores `127 / max|row|`).
fn values(model: &ct2::Model<'_>, name: &str, variable: &Variable<'_>) -> Result<Values> {
    let data = variable.data;
    Ok(match variable.dtype {
        DType::F32 => Values::F32(
            data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        ),
        DType::F16 => {
            Values::F16(data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect())
        }
        DType::Bf16 => Values::F32(
            data.chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        ),
        DType::I8 => {
            let scale_name = format!("{name}_scale");
            let scale = model.get(&scale_name).ok_or_else(|| {
                Error::invalid_file(
                    "model.bin",
                    format!("{name} is int8 but {scale_name} is missing"),
                )
            })?;
            let scales = values(model, &scale_name, scale)?.into_f32();
            let rows = variable.shape().first().copied().unwrap_or(0);
            if scales.len() != rows || rows == 0 {
                return Err(Error::invalid_file(
                    "model.bin",
                    format!("{scale_name} has {} scales for {rows} rows", scales.len()),
                ));
            }
            let per_row = data.len() / rows;
            let f32 = data
                .iter()
                .enumerate()
                .map(|(i, q)| f32::from(*q as i8) / scales[i / per_row])
                .collect();
            Values::F32(f32)
        }
        DType::I16 | DType::I32 => {
            return Err(Error::invalid_file(
                "model.bin",
                format!(
                    "{name} is {}: only float16/float32/bfloat16/int8 CTranslate2 exports convert",
                    variable.dtype.name()
                ),
            ))
        }
    })
}

/// `vocabulary.txt` (one token per line, GPT-2's byte-to-unicode form) as raw bytes, up to
/// `<|endoftext|>`: whisper.cpp builds the special tokens itself from the vocabulary size.
pub fn byte_vocabulary(vocabulary: &[u8]) -> Result<Vec<Vec<u8>>> {
    let text = std::str::from_utf8(vocabulary)
        .map_err(|_| Error::invalid_file("vocabulary.txt", "not UTF-8"))?;
    let decoder = byte_decoder();
    let mut tokens = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "<|endoftext|>" {
            return Ok(tokens);
        }
        let bytes = line
            .chars()
            .map(|c| {
                decoder.get(&c).copied().ok_or_else(|| {
                    Error::invalid_file(
                        "vocabulary.txt",
                        format!("line {}: {c:?} is not in GPT-2's byte alphabet", i + 1),
                    )
                })
            })
            .collect::<Result<Vec<u8>>>()?;
        tokens.push(bytes);
    }
    Err(Error::invalid_file("vocabulary.txt", "no <|endoftext|> token: not a Whisper vocabulary"))
}

/// GPT-2's `bytes_to_unicode`, inverted: printable Latin-1 bytes stand for themselves, the
/// other 68 map to U+0100 onwards in byte order.
fn byte_decoder() -> std::collections::HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = std::collections::HashMap::with_capacity(256);
    let mut next = 256u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            u32::from(b)
        } else {
            next += 1;
            next - 1
        };
        if let Some(c) = char::from_u32(c) {
            map.insert(c, b);
        }
    }
    map
}

/// The mel filterbank of `n_mels` bands over a 400-point FFT at 16 kHz: librosa's
/// `filters.mel(sr=16000, n_fft=400, n_mels)` (Slaney scale, Slaney area normalisation),
/// which OpenAI's `mel_filters.npz` holds.
pub fn mel_filters(n_mels: usize) -> Vec<f32> {
    let bank = MelBank {
        frequency_bins: N_FFT / 2 + 1,
        mels: n_mels,
        min_hz: 0.0,
        max_hz: SAMPLE_RATE / 2.0,
        sample_rate: SAMPLE_RATE as u32,
        scale: MelScale::Slaney,
        slaney_norm: true,
    };
    bank.weights().into_iter().map(|w| w as f32).collect()
}
