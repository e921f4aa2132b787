//! `ipfs-accelerate infer vision|multimodal …` through the binary, on the tiny CLIP and ViT
//! models of the worker's parity fixtures (real HF layouts, seeded weights).

// Tests write their input files directly.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};

use tests::Env;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/worker/tests/fixtures")
}

fn import(env: &Env) -> String {
    for name in ["clip", "vit"] {
        let dir = fixtures().join(name);
        let model = env.json(&["models", "import", dir.to_str().unwrap(), "--name", name]);
        assert_eq!(model["manifest"]["family"], name, "{model}");
    }
    fixtures().join("image-landscape.png").to_str().unwrap().to_string()
}

/// Runs `cmd --json ARGS`, expecting failure; returns the error body.
fn failure(env: &Env, args: &[&str]) -> serde_json::Value {
    let output = env.std_cmd().arg("--json").args(args).output().unwrap();
    assert!(!output.status.success(), "{args:?} succeeded");
    let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    body["error"].clone()
}

#[test]
fn classify_embed_and_compare_images_through_the_cli() {
    let env = Env::new();
    let image = import(&env);

    let labels = env.json(&["infer", "vision", "classify", "--image-file", &image, "--top-k", "3"]);
    assert_eq!(labels["skill"], "vit-classify", "{labels}");
    let labels = labels["output"]["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 3);
    let known = ["tabby cat", "golden retriever", "red square", "gradient", "static noise"];
    assert!(labels.iter().all(|l| known.contains(&l["label"].as_str().unwrap())));

    let embedded = env.json(&["infer", "vision", "embed", "--image-file", &image]);
    assert_eq!(embedded["output"]["dim"], 16, "{embedded}");
    let norm: f64 = embedded["output"]["vector"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap().powi(2))
        .sum();
    assert!((norm - 1.0).abs() < 1e-4, "unit norm: {norm}");

    let args = ["infer", "multimodal", "similarity", "--image-file", &image];
    let scored = env.json(&[&args[..], &["--text", "a photo of a cat", "a red square"]].concat());
    let texts = scored["output"]["texts"].as_array().unwrap();
    assert_eq!(texts.len(), 2, "{scored}");
    assert_eq!(texts[0]["text"], "a photo of a cat", "input order is kept");
    let total: f64 = texts.iter().map(|t| t["probability"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4, "{scored}");

    // Human output: one line per text.
    let out = env.cmd().args(args).args(["--text", "dog", "--text", "cat"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
}

#[test]
fn vision_errors_name_the_problem() {
    let env = Env::new();
    import(&env);
    let notes = env.home().join("notes.txt");
    std::fs::write(&notes, "not an image").unwrap();
    let error =
        failure(&env, &["infer", "vision", "classify", "--image-file", notes.to_str().unwrap()]);
    assert_eq!(error["kind"], "invalid_input", "{error}");
    assert!(error["message"].as_str().unwrap().contains("not an image"), "{error}");

    // A URL to this machine is refused unless configured.
    let error =
        failure(&env, &["infer", "vision", "embed", "--image-url", "https://127.0.0.1/cat.png"]);
    assert!(error["message"].as_str().unwrap().contains("private or local"), "{error}");

    // A ViT model cannot compare texts: the error names the task and why.
    let image = fixtures().join("image-portrait.png");
    let error = failure(
        &env,
        &[
            "infer",
            "multimodal",
            "similarity",
            "--image-file",
            image.to_str().unwrap(),
            "--text",
            "x",
            "--model",
            "vit",
        ],
    );
    assert!(error["message"].as_str().unwrap().contains("image-text-similarity"), "{error}");

    // Exactly one image source.
    let out = env.cmd().args(["infer", "vision", "embed"]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn caption_and_vqa_through_the_cli() {
    let env = Env::new();
    let dir = fixtures().join("llava");
    let model = env.json(&["models", "import", dir.to_str().unwrap(), "--name", "llava"]);
    assert_eq!(model["manifest"]["family"], "llava", "{model}");
    let image = fixtures().join("image-landscape.png");
    let image = image.to_str().unwrap();

    let answer = env.json(&[
        "infer",
        "multimodal",
        "vqa",
        "--image-file",
        image,
        "--question",
        "describe the image",
        "--max-length",
        "8",
    ]);
    assert_eq!(answer["skill"], "llava", "{answer}");
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("llava.json")).unwrap()).unwrap();
    assert_eq!(answer["output"]["text"], want["generated_text"], "greedy, token for token");
    assert_eq!(answer["output"]["usage"]["completion_tokens"], 8);

    let caption =
        env.json(&["infer", "multimodal", "caption", "--image-file", image, "--max-length", "4"]);
    assert_eq!(caption["output"]["usage"]["completion_tokens"], 4, "{caption}");

    // Streamed text ends with a newline and the summary goes to stderr.
    let out = env
        .cmd()
        .args([
            "infer",
            "multimodal",
            "caption",
            "--image-file",
            image,
            "--max-length",
            "4",
            "--stream",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).ends_with('\n'));

    let error =
        failure(&env, &["infer", "multimodal", "vqa", "--image-file", image, "--question", " "]);
    assert!(error["message"].as_str().unwrap().contains("empty"), "{error}");
}

#[test]
fn video_similarity_through_the_cli() {
    let env = Env::new();
    let dir = fixtures().join("xclip");
    let model = env.json(&["models", "import", dir.to_str().unwrap(), "--name", "xclip"]);
    assert_eq!(model["manifest"]["family"], "xclip", "{model}");
    let gif = fixtures().join("video.gif");
    let gif = gif.to_str().unwrap();
    let scored = env.json(&[
        "infer",
        "multimodal",
        "video-similarity",
        "--video",
        gif,
        "--text",
        "a cat",
        "noise",
    ]);
    assert_eq!(scored["skill"], "xclip", "{scored}");
    assert_eq!(scored["output"]["frames"], 4);
    assert_eq!(scored["output"]["texts"].as_array().map(Vec::len), Some(2));

    // Frames as files: the landscape and portrait images, sampled up to the model's 4.
    let a = fixtures().join("image-landscape.png");
    let b = fixtures().join("image-portrait.png");
    let framed = env.json(&[
        "infer",
        "multimodal",
        "video-similarity",
        "--frames",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--text",
        "a cat",
    ]);
    assert_eq!(framed["output"]["frames"], 2, "{framed}");

    // A video file without ffmpeg on PATH: the error names the tool to install.
    let fake = env.home().join("clip.mp4");
    std::fs::write(&fake, b"\x00\x00\x00\x18ftypmp42 not really").unwrap();
    let empty = env.home().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let output = env
        .std_cmd()
        .env("PATH", &empty)
        .args([
            "--json",
            "infer",
            "multimodal",
            "video-similarity",
            "--video",
            fake.to_str().unwrap(),
            "--text",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("is not installed") && message.contains("ffmpeg"), "{body}");
}
