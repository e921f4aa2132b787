//! CLIP and ViT against Hugging Face transformers on tiny seeded models
//! (`tools/gen_fixtures.py clip vit`): the PIL image processors' `pixel_values` from PNG files
//! (to the bit), tokenizer ids, embeddings and logits; then the skills through the worker, the
//! image fetcher on a loopback server, and the errors a user sees.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

use crate::common;

use candle_core::Device;
use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_worker::vision::image::{decode, fetch, FetchPolicy};
use ipfs_accelerate_worker::vision::{Clip, DecodeLimits, Vit};
use ipfs_accelerate_worker::{ImageSource, ImportOptions, Worker, WorkerConfig};

use common::{fixtures, flat, max_diff, model_file, runtime, tensors, texts};

fn png(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(format!("image-{name}.png"))).unwrap()
}

fn images() -> Vec<image::RgbImage> {
    ["landscape", "portrait"].map(|n| decode(&png(n), DecodeLimits::default()).unwrap()).to_vec()
}

fn load_clip() -> Clip {
    Clip::load(
        &model_file("clip", "config.json"),
        model_file("clip", "model.safetensors"),
        Some(&model_file("clip", "preprocessor_config.json")),
        Some(&model_file("clip", "tokenizer.json")),
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn clip_matches_the_hf_processor_and_model() {
    let model = load_clip();
    let want = tensors("clip");
    // Downscaled (antialiased) landscape, upscaled portrait: PIL bicubic, crop, normalise.
    let pixels = model.pixel_values(&images()).unwrap();
    let diff = max_diff(&flat(&pixels), &flat(&want["pixel_values"]));
    assert!(diff < 1e-6, "pixel_values differ by {diff}");

    let ids = model.tokenize(&texts("clip")).unwrap();
    let want_ids: Vec<i64> = want["input_ids"].flatten_all().unwrap().to_vec1().unwrap();
    let got: Vec<i64> = flat(&ids).iter().map(|&v| v as i64).collect();
    assert_eq!(got, want_ids);

    let image = model.image_embeddings(&pixels).unwrap();
    let diff = max_diff(&flat(&image), &flat(&want["image_embeds"]));
    assert!(diff < 1e-4, "image embeddings differ by {diff}");
    let text = model.text_embeddings(&texts("clip")).unwrap();
    let diff = max_diff(&flat(&text), &flat(&want["text_embeds"]));
    assert!(diff < 1e-4, "text embeddings differ by {diff}");
    let logits = model.logits_per_image(&image, &text).unwrap().concat();
    let diff = max_diff(&logits, &flat(&want["logits_per_image"]));
    assert!(diff < 1e-4, "logits_per_image differ by {diff}");
}

#[test]
fn vit_matches_the_hf_processor_and_model() {
    let model = Vit::load(
        &model_file("vit", "config.json"),
        model_file("vit", "model.safetensors"),
        Some(&model_file("vit", "preprocessor_config.json")),
        &Device::Cpu,
    )
    .unwrap();
    let want = tensors("vit");
    let pixels = model.pixel_values(&images()).unwrap();
    let diff = max_diff(&flat(&pixels), &flat(&want["pixel_values"]));
    assert!(diff < 1e-6, "pixel_values differ by {diff}");
    let logits = model.logits(&pixels).unwrap();
    let diff = max_diff(&flat(&logits), &flat(&want["logits"]));
    assert!(diff < 1e-4, "logits differ by {diff}");
}

#[test]
fn an_unsupported_clip_activation_is_a_clear_error() {
    let mut config: serde_json::Value =
        serde_json::from_slice(&model_file("clip", "config.json")).unwrap();
    config["vision_config"]["hidden_act"] = "gelu".into();
    let err = Clip::load(
        &serde_json::to_vec(&config).unwrap(),
        model_file("clip", "model.safetensors"),
        None,
        None,
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("hidden_act") && err.contains("quick_gelu"), "{err}");
}

async fn worker_with_models(config: WorkerConfig) -> (tempfile::TempDir, Worker) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
    let worker = Worker::new(store, config);
    for name in ["clip", "vit"] {
        let options = ImportOptions { name: Some(name.into()), ..ImportOptions::default() };
        let model = worker.registry().import(&fixtures().join(name), options).await.unwrap();
        assert_eq!(model.manifest.info.family, name);
    }
    (dir, worker)
}

#[test]
fn vision_skills_run_through_the_worker() {
    runtime().block_on(async {
        let (_dir, worker) = worker_with_models(WorkerConfig::default()).await;
        let image = ImageSource::Bytes(png("landscape"));

        let labels = worker.classify_image(None, image.clone(), 2).await.unwrap();
        assert_eq!(labels.skill, "vit-classify");
        assert_eq!(labels.output.labels.len(), 2);
        let want = flat(&tensors("vit")["logits"])[..5].to_vec();
        let best = want.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(labels.output.labels[0].id, best);
        assert!(labels.output.labels[0].score >= labels.output.labels[1].score);

        let embedded = worker.embed_image(None, image.clone()).await.unwrap();
        assert_eq!(embedded.skill, "clip-embed");
        let want = flat(&tensors("clip")["image_embeds"])[..16].to_vec();
        assert!(max_diff(&embedded.output.vector, &want) < 1e-4);

        let texts = texts("clip");
        let scored =
            worker.image_text_similarity(None, image.clone(), texts.clone()).await.unwrap();
        assert_eq!(scored.skill, "clip-similarity");
        let logits: Vec<f32> = scored.output.texts.iter().map(|t| t.logit).collect();
        let want = flat(&tensors("clip")["logits_per_image"])[..3].to_vec();
        assert!(max_diff(&logits, &want) < 1e-4, "{logits:?} vs {want:?}");
        let total: f32 = scored.output.texts.iter().map(|t| t.probability).sum();
        assert!((total - 1.0).abs() < 1e-5);
        let again = worker.image_text_similarity(None, image, texts).await.unwrap();
        assert!(again.cached, "deterministic results are cached");
    });
}

#[test]
fn bad_images_are_clear_errors_and_nothing_is_cached() {
    runtime().block_on(async {
        let (_dir, worker) = worker_with_models(WorkerConfig::default()).await;
        let text = ImageSource::Bytes(b"GIF? no, plain text".to_vec());
        let err = worker.classify_image(None, text, 1).await.unwrap_err().to_string();
        assert!(err.contains("not an image"), "{err}");

        // A PNG header claiming 100000 × 100000 pixels: refused before any allocation.
        let mut huge = Vec::new();
        image::RgbImage::new(2, 2)
            .write_to(&mut std::io::Cursor::new(&mut huge), image::ImageFormat::Png)
            .unwrap();
        // IHDR width/height live at bytes 16..24; the CRC no longer matches, so the decoder
        // must refuse on the header (dimension limit) or the checksum, never allocate 30 GB.
        huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let err = worker.embed_image(None, ImageSource::Bytes(huge)).await.unwrap_err();
        assert!(matches!(err, ipfs_accelerate_worker::Error::InvalidInput(_)), "{err}");

        // Private and loopback addresses, and plain http, are refused by default.
        for url in [
            "https://127.0.0.1/cat.png",
            "https://localhost:8443/cat.png",
            "https://[::1]/x.png",
            "https://169.254.169.254/latest",
            "http://example.com/cat.png",
            "file:///etc/passwd",
        ] {
            let err = worker
                .embed_image(None, ImageSource::Url(url.into()))
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("private or local") || err.contains("only https"), "{url}: {err}");
        }

        let err =
            worker.classify_image(None, ImageSource::Bytes(png("portrait")), 0).await.unwrap_err();
        assert!(err.to_string().contains("top_k"), "{err}");
        let err = worker
            .image_text_similarity(None, ImageSource::Bytes(png("portrait")), vec![" ".into()])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("text"), "{err}");
    });
}

/// A loopback HTTP server: `/image.png` (the fixture), `/page` (HTML), `/big.png` (over the
/// limit), `/moved` (a redirect to `/image.png`), `/slow.png` (never finishes).
async fn image_server() -> String {
    use axum::http::header::{CONTENT_TYPE, LOCATION};
    use axum::http::StatusCode;
    use axum::routing::get;
    let picture = png("landscape");
    let app = axum::Router::new()
        .route("/image.png", get(move || async move { ([(CONTENT_TYPE, "image/png")], picture) }))
        .route("/page", get(|| async { ([(CONTENT_TYPE, "text/html")], "<html></html>") }))
        .route("/big.png", get(|| async { ([(CONTENT_TYPE, "image/png")], vec![0u8; 3 << 20]) }))
        .route("/moved", get(|| async { (StatusCode::FOUND, [(LOCATION, "/image.png")]) }))
        .route(
            "/slow.png",
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                ([(CONTENT_TYPE, "image/png")], Vec::<u8>::new())
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

#[test]
fn the_fetcher_checks_type_size_redirects_and_time() {
    runtime().block_on(async {
        let base = image_server().await;
        let strict = FetchPolicy::default();
        let err = fetch(&format!("{base}/image.png"), &strict).await.unwrap_err().to_string();
        assert!(err.contains("only https"), "{err}");

        let local = FetchPolicy {
            allow_private: true,
            max_bytes: 1 << 20,
            timeout: std::time::Duration::from_secs(2),
        };
        assert_eq!(fetch(&format!("{base}/image.png"), &local).await.unwrap(), png("landscape"));
        assert_eq!(fetch(&format!("{base}/moved"), &local).await.unwrap(), png("landscape"));
        let err = fetch(&format!("{base}/page"), &local).await.unwrap_err().to_string();
        assert!(err.contains("not an image") && err.contains("text/html"), "{err}");
        let err = fetch(&format!("{base}/big.png"), &local).await.unwrap_err().to_string();
        assert!(err.contains("byte limit"), "{err}");
        let err = fetch(&format!("{base}/slow.png"), &local).await.unwrap_err().to_string();
        assert!(err.contains("longer than"), "{err}");

        // Through the worker, with the configured policy.
        let config = WorkerConfig { image_fetch_allow_private: true, ..WorkerConfig::default() };
        let (_dir, worker) = worker_with_models(config).await;
        let url = ImageSource::Url(format!("{base}/image.png"));
        let by_url = worker.embed_image(None, url).await.unwrap();
        let by_bytes =
            worker.embed_image(None, ImageSource::Bytes(png("landscape"))).await.unwrap();
        assert_eq!(by_url.output, by_bytes.output);
        assert!(by_bytes.cached, "the same bytes hit the same cache entry");
    });
}

#[test]
fn older_clip_configs_with_sub_config_dicts_load() {
    // Checkpoints saved before transformers 4.2x keep the sub-configs as `*_config_dict`.
    let mut config: serde_json::Value =
        serde_json::from_slice(&model_file("clip", "config.json")).unwrap();
    let object = config.as_object_mut().unwrap();
    let text = object.remove("text_config").unwrap();
    let vision = object.remove("vision_config").unwrap();
    object.insert("text_config_dict".into(), text);
    object.insert("vision_config_dict".into(), vision);
    object.insert("text_config".into(), serde_json::Value::Null);
    let model = Clip::load(
        &serde_json::to_vec(&config).unwrap(),
        model_file("clip", "model.safetensors"),
        Some(&model_file("clip", "preprocessor_config.json")),
        Some(&model_file("clip", "tokenizer.json")),
        &Device::Cpu,
    )
    .unwrap();
    let pixels = model.pixel_values(&images()).unwrap();
    let image = model.image_embeddings(&pixels).unwrap();
    let diff = max_diff(&flat(&image), &flat(&tensors("clip")["image_embeds"]));
    assert!(diff < 1e-4, "image embeddings differ by {diff}");
}
