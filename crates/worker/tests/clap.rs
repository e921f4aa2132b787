//! CLAP in candle against Hugging Face transformers on a tiny seeded fused model
//! (`tools/gen_fixtures.py`): the 48 kHz log-mel features of a short and a long clip, the
//! tokenizer's ids, text and audio embeddings through both fusion paths, and the logits; then
//! zero-shot classification through the worker.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

use crate::common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_worker::speech::clap::{Clap, Features};
use ipfs_accelerate_worker::{Cancel, ImportOptions, Worker, WorkerConfig};

use common::{fixtures, flat, float_wav, max_diff, runtime, tensors, texts};

fn load() -> Clap {
    let dir = fixtures().join("clap");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    Clap::load(
        &read("config.json"),
        read("model.safetensors"),
        Some(&read("preprocessor_config.json")),
        Some(&read("tokenizer.json")),
        &Device::Cpu,
    )
    .unwrap()
}

fn fixture_features(want: &HashMap<String, Tensor>, name: &str, is_longer: bool) -> Features {
    let t = &want[name];
    let (channels, frames, mels) = t.dims3().unwrap();
    Features { data: flat(t), channels, frames, mels, is_longer }
}

#[test]
fn clap_features_match_the_hf_extractor() {
    let model = load();
    let want = tensors("clap");
    for (raw, features) in [("raw_short", "features_short"), ("raw_long", "features_long")] {
        let got = model.extractor().features(&flat(&want[raw])).unwrap();
        let expected = fixture_features(&want, features, true);
        assert_eq!((got.channels, got.frames, got.mels), (4, 101, 64), "{raw}");
        assert!(got.is_longer, "{raw}: HF marks a lone clip is_longer");
        // Decibels, about −100…+40: 1e-4 absolute.
        let diff = max_diff(&got.data, &expected.data);
        assert!(diff < 1e-4, "{raw}: features differ by {diff}");
    }
}

#[test]
fn clap_embeddings_and_logits_match_transformers() {
    let model = load();
    let want = tensors("clap");
    let (ids, mask) = model.tokenize(&texts("clap")).unwrap();
    let want_ids: Vec<i64> = want["input_ids"].flatten_all().unwrap().to_vec1().unwrap();
    let got_ids: Vec<u32> = ids.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(got_ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>(), want_ids);
    let want_mask: Vec<i64> = want["attention_mask"].flatten_all().unwrap().to_vec1().unwrap();
    let got_mask: Vec<u32> = mask.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(got_mask.iter().map(|&i| i64::from(i)).collect::<Vec<_>>(), want_mask);

    let text = model.text_embeddings(&texts("clap")).unwrap();
    let diff = max_diff(&flat(&text), &flat(&want["text_embeds"]));
    assert!(diff < 1e-4, "text embeddings differ by {diff}");

    // The short clip through the plain path, the long one through fusion.
    let batch = [
        fixture_features(&want, "features_short", false),
        fixture_features(&want, "features_long", true),
    ];
    let audio = model.audio_embeddings(&batch).unwrap();
    let diff = max_diff(&flat(&audio), &flat(&want["audio_embeds"]));
    assert!(diff < 1e-4, "audio embeddings differ by {diff}");

    let logits = model.logits(&audio, &text).unwrap();
    let per_audio: Vec<f32> = logits.per_audio.concat();
    let per_text: Vec<f32> = logits.per_text.concat();
    let diff = max_diff(&per_audio, &flat(&want["logits_per_audio"]));
    assert!(diff < 1e-4, "logits_per_audio differ by {diff}");
    let diff = max_diff(&per_text, &flat(&want["logits_per_text"]));
    assert!(diff < 1e-4, "logits_per_text differ by {diff}");

    // A lone short clip, from raw samples, as HF's single-clip call computes it.
    let alone = model
        .embed(
            ipfs_accelerate_worker::audio::Audio {
                samples: flat(&want["raw_short"]),
                sample_rate: 48_000,
            },
            &Cancel::new(),
        )
        .unwrap();
    let diff = max_diff(&alone, &flat(&want["audio_embeds_alone"]));
    assert!(diff < 1e-4, "the lone clip's embedding differs by {diff}");
}

#[test]
fn a_clap_directory_classifies_and_embeds_through_the_worker() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
        let worker = Worker::new(store, WorkerConfig::default());
        let options = ImportOptions { name: Some("clap".into()), ..ImportOptions::default() };
        let model = worker.registry().import(&fixtures().join("clap"), options).await.unwrap();
        assert_eq!(model.manifest.info.family, "clap");

        let want = tensors("clap");
        let wav = float_wav(&flat(&want["raw_short"]), 48_000);
        let labels: Vec<String> =
            ["a dog barking", "rain on a window", "a bell"].map(String::from).to_vec();

        // The default classification model is the one named "clap".
        let scored = worker.classify_audio(None, wav.clone(), labels.clone(), None).await.unwrap();
        assert_eq!(scored.skill, "clap-classify");
        let result = &scored.output;
        assert_eq!(result.labels.len(), 3);
        let total: f32 = result.labels.iter().map(|l| l.score).sum();
        assert!((total - 1.0).abs() < 1e-5, "probabilities sum to {total}");
        assert!(result.labels.windows(2).all(|w| w[0].score >= w[1].score), "best first");

        // The same scores as the model computes directly from the prompts.
        let direct = load();
        let prompts: Vec<String> =
            labels.iter().map(|l| format!("This is a sound of {l}.")).collect();
        let text = direct.text_embeddings(&prompts).unwrap();
        let audio = want["audio_embeds_alone"].to_dtype(DType::F32).unwrap();
        let logits = direct.logits(&audio, &text).unwrap().per_audio.concat();
        let best = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(result.labels[0].label, labels[best]);

        let top = worker.classify_audio(Some("clap"), wav.clone(), labels, Some(1)).await.unwrap();
        assert_eq!(top.output.labels.len(), 1);
        assert!(top.cached || top.output.labels[0] == result.labels[0]);

        let embedded = worker.embed_audio("clap", wav.clone()).await.unwrap();
        assert_eq!(embedded.skill, "clap-embed");
        let diff = max_diff(&embedded.output.vector, &flat(&want["audio_embeds_alone"]));
        assert!(diff < 1e-4, "embedding through the worker differs by {diff}");

        // No labels, top-k 0, and not audio: clear errors.
        let none = worker.classify_audio(None, wav.clone(), vec![], None).await.unwrap_err();
        assert!(none.to_string().contains("no labels"), "{none}");
        let zero = worker.classify_audio(None, wav, vec!["a".into()], Some(0)).await.unwrap_err();
        assert!(zero.to_string().contains("top_k"), "{zero}");
        let junk = worker
            .classify_audio(None, b"not audio".to_vec(), vec!["a".into()], None)
            .await
            .unwrap_err();
        assert!(junk.to_string().contains("audio"), "{junk}");
    });
}

#[test]
fn an_unsupported_clap_activation_is_a_clear_error() {
    let dir = fixtures().join("clap");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    config["audio_config"]["hidden_act"] = "swish".into();
    let err = Clap::load(
        &serde_json::to_vec(&config).unwrap(),
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        None,
        None,
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("hidden_act") && err.contains("swish"), "{err}");
}
