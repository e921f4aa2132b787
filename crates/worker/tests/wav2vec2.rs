//! wav2vec2 in candle against Hugging Face transformers on tiny seeded models
//! (`tools/gen_fixtures.py`): preprocessing, logits, the CTC text and the embedding, for the
//! base layout (group norm, post-norm) and the stable-layer-norm one (large-lv60).

#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

use crate::common;

use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_worker::speech::{TranscribeOptions, Wav2Vec2};
use ipfs_accelerate_worker::{Cancel, ImportOptions, Worker, WorkerConfig};

use common::{fixtures, float_wav, max_diff, runtime};

fn expected(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(format!("{name}.json"))).unwrap())
        .unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn check(name: &str) {
    let dir = fixtures().join(name);
    let want = expected(name);
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let vocab = read("vocab.json");
    let model = Wav2Vec2::load(
        &read("config.json"),
        read("model.safetensors"),
        Some(&vocab),
        &candle_core::Device::Cpu,
    )
    .unwrap();

    let audio = floats(&want["audio"]);
    let input = Wav2Vec2::normalize(&audio);
    let diff = max_diff(&input, &floats(&want["input_values"]));
    assert!(diff < 1e-4, "{name}: preprocessing differs by {diff}");

    let logits = model.logits(&input).unwrap();
    let got: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
    let rows: Vec<f32> = want["logits"].as_array().unwrap().iter().flat_map(floats).collect();
    let diff = max_diff(&got, &rows);
    assert!(diff < 1e-4, "{name}: logits differ by {diff}");

    let samples =
        ipfs_accelerate_worker::audio::Audio { samples: audio.clone(), sample_rate: 16_000 };
    let heard =
        model.transcribe(samples.clone(), &TranscribeOptions::default(), &Cancel::new()).unwrap();
    assert_eq!(heard.text, want["text"].as_str().unwrap(), "{name}");
    let embedding = model.embed(samples, &Cancel::new()).unwrap();
    let diff = max_diff(&embedding, &floats(&want["embedding"]));
    assert!(diff < 1e-4, "{name}: embedding differs by {diff}");
}

#[test]
fn wav2vec2_base_layout_matches_transformers() {
    check("wav2vec2");
}

#[test]
fn wav2vec2_stable_layer_norm_layout_matches_transformers() {
    check("wav2vec2-stable");
}

#[test]
fn a_wav2vec2_directory_imports_and_runs_through_the_worker() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
        let worker = Worker::new(store, WorkerConfig::default());
        let options = ImportOptions { name: Some("w2v".into()), ..ImportOptions::default() };
        let model = worker.registry().import(&fixtures().join("wav2vec2"), options).await.unwrap();
        assert_eq!(model.manifest.info.family, "wav2vec2");

        // The fixture's audio as a float WAV (no quantisation on the way).
        let want = expected("wav2vec2");
        let wav = float_wav(&floats(&want["audio"]), 16_000);

        let heard = worker
            .transcribe(Some("w2v"), wav.clone(), TranscribeOptions::default())
            .await
            .unwrap();
        assert_eq!(heard.skill, "wav2vec2-ctc");
        assert_eq!(heard.output.text, want["text"].as_str().unwrap());
        let embedded = worker.embed_audio("w2v", wav.clone()).await.unwrap();
        assert!(max_diff(&embedded.output.vector, &floats(&want["embedding"])) < 1e-4);
        // Options wav2vec2 cannot honour are refused, not ignored.
        let translate =
            TranscribeOptions { language: Some("de".into()), ..TranscribeOptions::default() };
        let refused = worker.transcribe(Some("w2v"), wav, translate).await.unwrap_err().to_string();
        assert!(refused.contains("do not apply"), "{refused}");
    });
}
