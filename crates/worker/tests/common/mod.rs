//! What the parity tests share: the fixtures `tools/gen_fixtures.py` writes, and comparing
//! against them.

// Each test binary includes this module and uses part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

/// `crates/worker/tests/fixtures`.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fixture's tensors (`<name>.safetensors`: inputs, processor output, HF's outputs).
pub fn tensors(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join(format!("{name}.safetensors")), &Device::Cpu)
        .unwrap()
}

/// A fixture's JSON side (`<name>.json`).
pub fn json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(format!("{name}.json"))).unwrap())
        .unwrap()
}

/// The texts a fixture's model was given (`texts` in `<name>.json`).
pub fn texts(name: &str) -> Vec<String> {
    json(name)["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

/// A file of a fixture's model directory.
pub fn model_file(model: &str, file: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(model).join(file)).unwrap()
}

/// A tensor's values, flattened, as f32.
pub fn flat(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// The largest absolute difference of two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Samples as a 32-bit float mono WAV (no quantisation on the way).
pub fn float_wav(samples: &[f32], rate: u32) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut wav = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut wav, spec).unwrap();
    for &s in samples {
        writer.write_sample(s).unwrap();
    }
    writer.finalize().unwrap();
    wav.into_inner()
}

/// A two-thread runtime for the worker.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}
