//! End-to-end checks on real checkpoints, when one is on this machine: no registry ships
//! these weights, so each check runs only if a model directory is named by its variable
//! (`IPFS_ACCELERATE_CLIP_MODEL`, `_VIT_MODEL`, `_LLAVA_MODEL`, `_XCLIP_MODEL`) or the
//! Hugging Face cache holds the checkpoint. `cargo xtask test` prints which ran; a check
//! without its checkpoint passes and says so on stderr.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::PathBuf;

use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_worker::text::GenerateParams;
use ipfs_accelerate_worker::{ImageSource, ImportOptions, VideoSource, Worker, WorkerConfig};

/// The checkpoint for `family`, if present: its variable, else the HF cache's snapshot.
fn checkpoint(family: &str) -> Option<PathBuf> {
    tests::servers::real_checkpoint(family)
}

fn solid_png(rgb: [u8; 3]) -> Vec<u8> {
    let mut png = Vec::new();
    image::RgbImage::from_pixel(320, 240, image::Rgb(rgb))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

/// Records what a check did where `cargo xtask test` reports it (target/tmp).
fn record(family: &str, status: &str) {
    eprintln!("real-weight check {family}: {status}");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("real-weight-checks");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{family}.txt")), status).unwrap();
}

fn with_worker(family: &str, check: impl AsyncFnOnce(Worker)) {
    let Some(dir) = checkpoint(family) else {
        let (_, var, hub) =
            tests::servers::REAL_CHECKPOINTS.iter().find(|(f, _, _)| *f == family).unwrap();
        record(family, &format!("skipped: no checkpoint (set {var} or cache {hub})"));
        return;
    };
    record(family, &format!("ran on {} (passed unless the test failed)", dir.display()));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store_dir = tempfile::tempdir().unwrap();
            let store = Store::open(store_dir.path(), StoreOptions::default()).await.unwrap();
            let worker = Worker::new(store, WorkerConfig::default());
            let options = ImportOptions { name: Some(family.into()), ..ImportOptions::default() };
            worker.registry().import(&dir, options).await.unwrap();
            check(worker).await;
        });
}

#[test]
fn real_clip_tells_red_from_a_dog() {
    with_worker("clip", async |worker| {
        let texts = vec!["a plain red image".to_string(), "a photo of a dog".to_string()];
        let scored = worker
            .image_text_similarity(None, ImageSource::Bytes(solid_png([220, 20, 20])), texts)
            .await
            .unwrap();
        let t = &scored.output.texts;
        assert!(t[0].probability > t[1].probability, "{t:?}");
    });
}

#[test]
fn real_vit_names_classes_from_its_labels() {
    with_worker("vit", async |worker| {
        let labels = worker
            .classify_image(None, ImageSource::Bytes(solid_png([30, 90, 200])), 5)
            .await
            .unwrap();
        assert_eq!(labels.output.labels.len(), 5);
        assert!(labels.output.labels.iter().all(|l| !l.label.is_empty()));
    });
}

#[test]
fn real_llava_describes_an_image() {
    with_worker("llava", async |worker| {
        let params =
            GenerateParams { temperature: 0.0, max_tokens: 12, ..GenerateParams::default() };
        let answer = worker
            .ask_image(
                None,
                ImageSource::Bytes(solid_png([220, 20, 20])),
                "What colour is this image?".into(),
                params,
                None,
            )
            .await
            .unwrap();
        assert!(answer.output.text.to_lowercase().contains("red"), "{}", answer.output.text);
    });
}

#[test]
fn real_xclip_scores_a_video() {
    with_worker("xclip", async |worker| {
        let frames: Vec<Vec<u8>> = (0..8u8).map(|i| solid_png([200, 20 * i, 20])).collect();
        let texts = vec!["a red screen".to_string(), "people playing football".to_string()];
        let scored =
            worker.video_text_similarity(None, VideoSource::Frames(frames), texts).await.unwrap();
        let total: f32 = scored.output.texts.iter().map(|t| t.probability).sum();
        assert!((total - 1.0).abs() < 1e-4);
    });
}
