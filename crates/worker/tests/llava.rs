//! LLaVA 1.5 against Hugging Face transformers on a tiny seeded model
//! (`tools/gen_fixtures.py llava`): the image processor, the last-position logits after the
//! prompt (single and expanded image-token forms), and greedy generation token for token;
//! weights under transformers 5's names and the hub's; then through the worker.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

use crate::common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_worker::text::GenerateParams;
use ipfs_accelerate_worker::vision::image::decode;
use ipfs_accelerate_worker::vision::{DecodeLimits, Llava};
use ipfs_accelerate_worker::{Cancel, ImageSource, ImportOptions, Worker, WorkerConfig};

use common::{fixtures, flat, json, max_diff, model_file, runtime, tensors};

fn expected() -> (HashMap<String, Tensor>, serde_json::Value) {
    (tensors("llava"), json("llava"))
}

fn read(file: &str) -> Vec<u8> {
    model_file("llava", file)
}

fn load(weights: Vec<u8>) -> Llava {
    Llava::load(
        &read("config.json"),
        weights,
        &read("tokenizer.json"),
        Some(&read("preprocessor_config.json")),
        &Device::Cpu,
    )
    .unwrap()
}

/// The fixture's weights renamed to the hub layout (`vision_tower.vision_model.*`).
fn hub_weights() -> Vec<u8> {
    let tensors =
        candle_core::safetensors::load_buffer(&read("model.safetensors"), &Device::Cpu).unwrap();
    let renamed: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(name, t)| match name.strip_prefix("vision_tower.") {
            Some(rest) => (format!("vision_tower.vision_model.{rest}"), t),
            None => (name, t),
        })
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    candle_core::safetensors::save(&renamed, file.path()).unwrap();
    std::fs::read(file.path()).unwrap()
}

fn image() -> image::RgbImage {
    decode(&std::fs::read(fixtures().join("image-landscape.png")).unwrap(), DecodeLimits::default())
        .unwrap()
}

#[test]
fn llava_matches_transformers_under_both_weight_layouts() {
    let (want, json) = expected();
    let last_logits: Vec<f32> = {
        let logits = &want["logits"];
        let n = logits.dim(0).unwrap();
        flat(&logits.get(n - 1).unwrap())
    };
    for weights in [read("model.safetensors"), hub_weights()] {
        let model = load(weights);
        let pixels = model.pixel_values(&image()).unwrap();
        assert!(max_diff(&flat(&pixels), &flat(&want["pixel_values"])) < 1e-6);

        let ids = model.tokenize(json["prompt"].as_str().unwrap()).unwrap();
        let want_ids: Vec<u32> = json["prompt_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids, want_ids);

        // One image token (spliced), and HF's expanded form (one per patch).
        let expanded: Vec<u32> = flat(&want["input_ids"]).iter().map(|&v| v as u32).collect();
        for form in [&ids, &expanded] {
            let mut cache = model.cache().unwrap();
            let (logits, length) = model.prompt_logits(form, &pixels, &mut cache).unwrap();
            assert_eq!(length, expanded.len());
            let diff = max_diff(&flat(&logits), &last_logits);
            assert!(diff < 1e-4, "last-position logits differ by {diff}");
        }

        let greedy =
            GenerateParams { temperature: 0.0, max_tokens: 8, ..GenerateParams::default() };
        let question = json["prompt"].as_str().unwrap();
        let question =
            question.trim_start_matches("USER: <image>\n").trim_end_matches(" ASSISTANT:");
        let mut streamed = String::new();
        let answer = model
            .answer(&image(), question, &greedy, &Cancel::new(), &mut |piece| {
                streamed.push_str(piece);
                Ok(())
            })
            .unwrap();
        assert_eq!(answer.usage.completion_tokens, 8);
        assert_eq!(answer.text, json["generated_text"].as_str().unwrap());
        assert_eq!(streamed, answer.text, "the stream is the text");
    }
}

#[test]
fn llava_answers_through_the_worker() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
        let worker = Worker::new(store, WorkerConfig::default());
        let options = ImportOptions { name: Some("llava".into()), ..ImportOptions::default() };
        let model = worker.registry().import(&fixtures().join("llava"), options).await.unwrap();
        assert_eq!(model.manifest.info.family, "llava");
        let png = std::fs::read(fixtures().join("image-landscape.png")).unwrap();
        let (_, json) = expected();
        let greedy =
            GenerateParams { temperature: 0.0, max_tokens: 8, ..GenerateParams::default() };
        let answer = worker
            .ask_image(
                None,
                ImageSource::Bytes(png.clone()),
                "describe the image".into(),
                greedy.clone(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(answer.skill, "llava");
        assert_eq!(answer.output.text, json["generated_text"].as_str().unwrap());
        let err = worker
            .ask_image(None, ImageSource::Bytes(png), "  ".into(), greedy, None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    });
}
