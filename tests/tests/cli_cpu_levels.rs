//! One binary on CPUs other than the host's: real transcription, embedding and generation
//! under QEMU's user-mode emulator with a chosen CPU model, so the claim "runs on every x86-64
//! CPU, AVX-512 only where the CPU has it" is checked on any machine, AVX-512 host or not.
//!
//! QEMU (7.2, Debian's `qemu-user`) emulates AVX2, FMA and F16C but no AVX-512 instruction:
//! under `-cpu Haswell` anything that reaches AVX-512 code dies of SIGILL, even on a host that
//! has it. Each model is first run natively (converting Whisper once, and giving the answers to
//! compare with), then under emulation with `--no-cache`, so the emulated process computes.

// Tests write their input files directly.
#![allow(clippy::disallowed_methods)]

use serde_json::Value;
use tests::{servers, Env};

/// x86-64-v3 without AVX-512: the AMD EPYC this project runs on, most laptops.
const HASWELL: &str = "Haswell";
/// SSE4.2 and nothing newer: below x86-64-v3.
const NEHALEM: &str = "Nehalem";

/// Runs the binary under `qemu-x86_64 -cpu <cpu>` with `--json ARGS`; parses stdout.
fn emulated(env: &Env, cpu: &str, args: &[&str]) -> Value {
    let output = env
        .emulated_cmd(cpu)
        .arg("--json")
        .args(args)
        .output()
        .expect("qemu-x86_64 runs (`cargo xtask test` installs qemu-user)");
    assert!(
        output.status.success(),
        "{args:?} under -cpu {cpu}: {}\n{}",
        output.status,
        // QEMU warns about CPUID bits its translator lacks; the rest is ours.
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .filter(|l| !l.contains("TCG doesn't support requested feature"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

fn import(env: &Env, wheels: &[std::path::PathBuf], name: &str) {
    let mut args = vec!["models", "import"];
    args.extend(wheels.iter().map(|w| w.to_str().unwrap()));
    args.extend(["--name", name]);
    env.json(&args);
}

/// The kernels row of `hardware` for `engine`.
fn kernels(hardware: &Value, engine: &str) -> String {
    hardware["kernels"]
        .as_array()
        .expect("kernels in the hardware report")
        .iter()
        .find(|k| k["engine"] == engine)
        .unwrap_or_else(|| panic!("no {engine} kernels in {hardware}"))["kernels"]
        .as_str()
        .unwrap()
        .to_string()
}

fn cosine(a: &Value, b: &Value) -> f64 {
    let a: Vec<f64> = a.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let b: Vec<f64> = b.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(&a) * norm(&b))
}

const EMBED: [&str; 5] = ["infer", "text", "embed", "--text", "A man is playing a guitar."];
// A few tokens of raw prompt: QEMU runs AVX2 code some hundred times slower than the host.
const GENERATE: [&str; 10] = [
    "infer",
    "text",
    "generate",
    "--raw",
    "--prompt",
    "The capital of France is",
    "--temperature",
    "0",
    "--max-tokens",
    "2",
];

#[test]
fn every_engine_runs_with_avx512_hidden() {
    let env = Env::new();
    import(&env, &[servers::minilm_wheel()], "minilm");
    import(&env, &[servers::smollm2_wheel()], "smollm2-135m");
    import(&env, &servers::whisper_wheels(), "whisper-base");
    let wav = env.home().join("elephants.wav");
    std::fs::write(
        &wav,
        servers::espeak_wav("Seven purple elephants are dancing in the library tonight."),
    )
    .unwrap();
    // The clip is about 3.8 s: 200 encoder positions (4 s) instead of the 30 s window, or the
    // encoder alone takes a quarter of an hour under emulation.
    let transcribe = [
        "infer",
        "audio",
        "transcribe",
        "--audio-file",
        wav.to_str().unwrap(),
        "--language",
        "en",
        "--threads",
        "2",
        "--audio-context",
        "200",
        "--no-cache",
    ];
    // Natively first: Whisper's CTranslate2 weights are converted once and kept.
    let native_heard = env.json(&transcribe);
    // A context that would cut the clip is refused, not silently truncated.
    let mut short = transcribe.to_vec();
    short[10] = "150";
    let output = env.std_cmd().arg("--json").args(&short).output().unwrap();
    assert!(!output.status.success());
    let error: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"]["kind"], "invalid_input", "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("covers 3.00 s"), "{error}");
    let native_embedded = env.json(&EMBED);

    let hardware = emulated(&env, HASWELL, &["hardware", "--refresh"]);
    assert!(kernels(&hardware, "whisper.cpp").starts_with("haswell: "), "{hardware}");
    assert_eq!(kernels(&hardware, "candle gemm"), "AVX2+FMA (x86-64-v3)");
    assert_eq!(kernels(&hardware, "candle quantized"), "AVX2+FMA");
    assert_eq!(kernels(&hardware, "onnx runtime"), "AVX2+FMA");

    let heard = emulated(&env, HASWELL, &transcribe);
    let text = heard["output"]["text"].as_str().unwrap().to_lowercase();
    assert!(text.contains("elephant") && text.contains("library"), "{heard}");
    assert_eq!(heard["cached"], false);
    // The host's kernels (AVX-512 ones on an AVX-512 host) hear the same words; the text is
    // not compared whole, as greedy decoding may break a near-tie the other way there.
    let native = native_heard["output"]["text"].as_str().unwrap().to_lowercase();
    assert!(native.contains("elephant") && native.contains("library"), "{native_heard}");

    embeds_and_generates(&env, HASWELL, &native_embedded);
}

/// Embedding (as the host computed it) and a few tokens of generation under `cpu`.
fn embeds_and_generates(env: &Env, cpu: &str, native_embedded: &Value) {
    let mut embed = EMBED.to_vec();
    embed.push("--no-cache");
    let embedded = emulated(env, cpu, &embed);
    assert_eq!(embedded["cached"], false);
    let similarity =
        cosine(&embedded["output"]["vectors"][0], &native_embedded["output"]["vectors"][0]);
    assert!(similarity > 0.9999, "cosine {similarity} against the host's vector");

    let mut generate = GENERATE.to_vec();
    generate.push("--no-cache");
    let answer = emulated(env, cpu, &generate);
    assert_eq!(answer["cached"], false);
    assert!(!answer["output"]["text"].as_str().unwrap().trim().is_empty(), "{answer}");
    assert_eq!(answer["output"]["usage"]["completion_tokens"], 2, "{answer}");
}

#[test]
fn below_x86_64_v3_the_same_binary_runs_its_baseline_kernels() {
    let env = Env::new();
    import(&env, &[servers::minilm_wheel()], "minilm");
    import(&env, &[servers::smollm2_wheel()], "smollm2-135m");
    let native_embedded = env.json(&EMBED);

    let hardware = emulated(&env, NEHALEM, &["hardware", "--refresh"]);
    assert_eq!(kernels(&hardware, "whisper.cpp"), "x64: SSE2", "{hardware}");
    assert_eq!(kernels(&hardware, "candle gemm"), "scalar");
    assert_eq!(kernels(&hardware, "candle quantized"), "scalar");
    assert_eq!(kernels(&hardware, "onnx runtime"), "SSE");

    // doctor says so, as a warning: every engine still runs.
    let doctor = emulated(&env, NEHALEM, &["doctor"]);
    assert_eq!(doctor["failures"], 0, "{doctor}");
    let level = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["area"] == "kernels" && c["name"] == "cpu level")
        .unwrap_or_else(|| panic!("no cpu level check in {doctor}"));
    assert_eq!(level["level"], "warn", "{level}");
    assert!(level["detail"].as_str().unwrap().contains("avx2"), "{level}");

    embeds_and_generates(&env, NEHALEM, &native_embedded);
}
