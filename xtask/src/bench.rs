//! `cargo xtask bench storage`: the storage figures against reference tools, in one run, on
//! the same 1 GiB file (page-cached for every contender), best of three runs each.
//!
//! - add (`storage add`, durable) vs `dd bs=1M conv=fsync` of the same file: target ≥ 0.9×
//! - CID only (`storage cid`) vs `openssl dgst -sha256`: target ≥ 0.8×
//! - verified cat (`storage cat > /dev/null`) vs `openssl dgst -sha256`: target ≥ 0.6×
//! - 4 KiB objects through the batch API (examples/blockbench): ≥ 66k puts/s, ≥ 117k gets/s
//!
//! Results are printed as a table and written to `target/bench/storage.json`.
//!
//! `cargo xtask bench backends`: the router's overhead against bare reqwest (see [`backends`]),
//! written to `target/bench/backends.json`.
//!
//! `cargo xtask bench worker [--threads N]`: local inference (see [`worker`]), written to
//! `target/bench/worker.json`.
//!
//! `cargo xtask bench vision [--threads N] [--runs N] [--reference-python PY]`: CLIP and ViT
//! against PyTorch (see [`vision`]), written to `target/bench/vision.json`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

const INPUT_BYTES: u64 = 1 << 30;
const RUNS: usize = 3;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("storage") | None => storage(),
        Some("backends") => backends(),
        Some("worker") => worker(&args[1..]),
        Some("speech") => speech(&args[1..]),
        Some("vision") => vision(&args[1..]),
        Some(other) => {
            bail!(
                "unknown benchmark {other:?}; available: storage, backends, worker, speech, vision"
            )
        }
    }
}

/// `cargo xtask bench backends`: the router's overhead against a bare `reqwest` call to the
/// same local server, both at 2,000 requests/s for 20 s, in one run (the example
/// `router_overhead` does the measuring). Target: p99 overhead < 0.5 ms.
fn backends() -> anyhow::Result<()> {
    const TARGET_P99_US: i64 = 500;
    let root = crate::service::workspace_root()?;
    let router_overhead = example(&root, "ipfs-accelerate-backends", "router_overhead")?;
    let output = Command::new(&router_overhead)
        .args(["--rate", "2000", "--seconds", "20"])
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        bail!("router_overhead failed");
    }
    let figures: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let get = |path: &str| figures.pointer(path).and_then(serde_json::Value::as_i64).unwrap_or(-1);
    println!(
        "backends: {} req/s for {} s each; {} + {} requests, {} + {} failed",
        get("/rate"),
        get("/seconds"),
        get("/requests/bare"),
        get("/requests/router"),
        get("/failures/bare"),
        get("/failures/router")
    );
    println!("{:<34} {:>8} {:>8}", "latency (µs)", "p50", "p99");
    println!("{:<34} {:>8} {:>8}", "bare reqwest", get("/bare_us/p50"), get("/bare_us/p99"));
    println!("{:<34} {:>8} {:>8}", "router", get("/router_us/p50"), get("/router_us/p99"));
    println!(
        "{:<34} {:>8} {:>8}",
        "router − bare",
        get("/difference_us/p50"),
        get("/difference_us/p99")
    );
    println!(
        "{:<34} {:>8} {:>8}",
        "router overhead metric",
        get("/overhead_metric_us/p50"),
        get("/overhead_metric_us/p99")
    );
    let p99 = get("/difference_us/p99");
    let verdict = if p99 < TARGET_P99_US { "meets" } else { "MISSES" };
    println!("p99 overhead {p99} µs {verdict} the target < {TARGET_P99_US} µs");
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("backends.json"), serde_json::to_vec_pretty(&figures)?)?;
    Ok(())
}

struct Row {
    name: &'static str,
    ours: f64,
    reference: Option<(&'static str, f64)>,
    unit: &'static str,
    target: f64,
}

fn storage() -> anyhow::Result<()> {
    let root = crate::service::workspace_root()?;
    let work = root.join("target/bench/storage");
    std::fs::create_dir_all(&work)?;
    for tool in ["dd", "openssl"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()?;
        if !found.success() {
            bail!("{tool} is needed as the reference tool and was not found");
        }
    }
    eprintln!("bench: building release binaries");
    cargo(
        &root,
        &["build", "--release", "--locked", "-p", "ipfs-accelerate", "--bin", "ipfs-accelerate"],
    )?;
    let blockbench = example(&root, "ipfs-accelerate-common", "blockbench")?;
    let cli = root.join("target/release/ipfs-accelerate");

    let input = work.join("input-1gib.bin");
    ensure_input(&input)?;
    // Warm the page cache so every contender reads the same cached bytes.
    std::io::copy(&mut File::open(&input)?, &mut std::io::sink())?;
    let mib = INPUT_BYTES as f64 / (1 << 20) as f64;

    eprintln!("bench: dd conv=fsync");
    let dd_out = work.join("dd.out");
    let dd = best(|| {
        let _ = std::fs::remove_file(&dd_out);
        settle()?;
        timed(
            Command::new("dd")
                .arg(format!("if={}", input.display()))
                .arg(format!("of={}", dd_out.display()))
                .args(["bs=1M", "conv=fsync", "status=none"]),
        )
    })?;
    let _ = std::fs::remove_file(&dd_out);

    eprintln!("bench: storage add");
    let data = work.join("store");
    let add = best(|| {
        let _ = std::fs::remove_dir_all(&data);
        settle()?;
        timed(
            Command::new(&cli)
                .arg("--data-dir")
                .arg(&data)
                .args(["storage", "add", "-Q"])
                .arg(&input),
        )
    })?;
    let cid = String::from_utf8(
        Command::new(&cli)
            .arg("--data-dir")
            .arg(&data)
            .args(["storage", "cid"])
            .arg(&input)
            .output()?
            .stdout,
    )?
    .trim()
    .to_string();

    eprintln!("bench: openssl dgst -sha256");
    let openssl = best(|| timed(Command::new("openssl").args(["dgst", "-sha256"]).arg(&input)))?;
    eprintln!("bench: storage cid");
    let hash = best(|| timed(Command::new(&cli).args(["storage", "cid"]).arg(&input)))?;
    eprintln!("bench: storage cat");
    let cat = best(|| {
        timed(Command::new(&cli).arg("--data-dir").arg(&data).args(["storage", "cat", &cid]))
    })?;
    let _ = std::fs::remove_dir_all(&data);

    eprintln!("bench: 4 KiB objects (100k puts, then 100k verified gets)");
    let blocks_dir = work.join("blocks");
    let mut puts: f64 = 0.0;
    let mut gets: f64 = 0.0;
    for _ in 0..RUNS {
        let _ = std::fs::remove_dir_all(&blocks_dir);
        let output = Command::new(&blockbench).arg(&blocks_dir).arg("100000").output()?;
        if !output.status.success() {
            bail!("blockbench failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let line = String::from_utf8(output.stdout)?;
        let figures: serde_json::Value = serde_json::from_str(&line)?;
        puts = puts.max(figures["puts_per_sec"].as_f64().context("puts_per_sec")?);
        gets = gets.max(figures["gets_per_sec"].as_f64().context("gets_per_sec")?);
    }
    let _ = std::fs::remove_dir_all(&blocks_dir);

    let rate = |d: Duration| mib / d.as_secs_f64();
    let rows = [
        Row {
            name: "add (durable)",
            ours: rate(add),
            reference: Some(("dd conv=fsync", rate(dd))),
            unit: "MiB/s",
            target: 0.9,
        },
        Row {
            name: "CID only",
            ours: rate(hash),
            reference: Some(("openssl sha256", rate(openssl))),
            unit: "MiB/s",
            target: 0.8,
        },
        Row {
            name: "verified cat",
            ours: rate(cat),
            reference: Some(("openssl sha256", rate(openssl))),
            unit: "MiB/s",
            target: 0.6,
        },
        Row {
            name: "4 KiB puts (1k/commit)",
            ours: puts,
            reference: None,
            unit: "ops/s",
            target: 66_000.0,
        },
        Row {
            name: "4 KiB verified gets",
            ours: gets,
            reference: None,
            unit: "ops/s",
            target: 117_000.0,
        },
    ];

    println!("storage benchmark: 1 GiB file, best of {RUNS} runs, same machine and run");
    println!(
        "{:<24} {:>12} {:<16} {:>12} {:>7} {:>9}",
        "measure", "ours", "reference", "ref", "ratio", "target"
    );
    let mut json = Vec::new();
    for row in &rows {
        let (ratio, met) = match row.reference {
            Some((_, reference)) => {
                let ratio = row.ours / reference;
                (Some(ratio), ratio >= row.target)
            }
            None => (None, row.ours >= row.target),
        };
        println!(
            "{:<24} {:>12.0} {:<16} {:>12} {:>7} {:>9}  {} {}",
            row.name,
            row.ours,
            row.reference.map_or("-", |r| r.0),
            row.reference.map_or("-".to_string(), |r| format!("{:.0}", r.1)),
            ratio.map_or("-".to_string(), |r| format!("{r:.2}x")),
            if row.reference.is_some() {
                format!("{:.1}x", row.target)
            } else {
                format!("{:.0}", row.target)
            },
            row.unit,
            if met { "met" } else { "MISSED" },
        );
        json.push(serde_json::json!({
            "measure": row.name,
            "ours": row.ours,
            "unit": row.unit,
            "reference": row.reference.map(|r| r.0),
            "reference_value": row.reference.map(|r| r.1),
            "ratio": ratio,
            "target": row.target,
            "met": met,
        }));
    }
    let report = work.join("../storage.json");
    File::create(&report)?.write_all(serde_json::to_string_pretty(&json)?.as_bytes())?;
    eprintln!("bench: wrote {}", report.display());
    Ok(())
}

/// A deterministic, incompressible 1 GiB input, written once and reused.
fn ensure_input(path: &Path) -> anyhow::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == INPUT_BYTES) {
        return Ok(());
    }
    eprintln!("bench: writing {}", path.display());
    let mut file = std::io::BufWriter::new(File::create(path)?);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..(INPUT_BYTES >> 20) {
        for chunk in buf.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&buf)?;
    }
    file.flush()?;
    Ok(())
}

/// Flushes deletions before a timed write: on a filesystem mounted with `discard`, freeing a
/// gigabyte queues TRIMs that the next writer would otherwise wait behind.
fn settle() -> anyhow::Result<()> {
    let status = Command::new("sync").status()?;
    if !status.success() {
        bail!("sync failed");
    }
    Ok(())
}

fn best(mut f: impl FnMut() -> anyhow::Result<Duration>) -> anyhow::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..RUNS {
        best = best.min(f()?);
    }
    Ok(best)
}

fn timed(command: &mut Command) -> anyhow::Result<Duration> {
    command.stdout(Stdio::null());
    let started = Instant::now();
    let status = command.status().with_context(|| format!("running {command:?}"))?;
    let elapsed = started.elapsed();
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(elapsed)
}

fn cargo(root: &PathBuf, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(args)
        .status()?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// Builds example `name` of `package` (release) and returns its path.
fn example(root: &PathBuf, package: &str, name: &str) -> anyhow::Result<PathBuf> {
    eprintln!("bench: building the {name} example (release)");
    cargo(root, &["build", "--release", "--locked", "-p", package, "--example", name])?;
    Ok(root.join("target/release/examples").join(name))
}

/// llama.cpp (llama-cpp-python, the venv the test server uses) on the same GGUF, prompt and
/// thread count: prompt tokens/s from the time to the first streamed token, decode tokens/s
/// from the rest. Prints one JSON object.
const LLAMA_BENCH: &str = r#"
import json, sys, time
from llama_cpp import Llama
model, threads, prompt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
llm = Llama(model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=1024, verbose=False)
n_prompt = len(llm.tokenize(prompt.encode(), add_bos=False))
best_prompt = best_decode = 0.0
tokens = 0
for run in range(4):
    llm.reset()
    started = time.perf_counter(); first = None; tokens = 0
    for chunk in llm.create_completion(prompt, max_tokens=128, temperature=0.0, top_k=1, stream=True):
        tokens += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    if run == 0:
        continue  # warm-up
    best_prompt = max(best_prompt, n_prompt / (first - started))
    if tokens > 1:
        best_decode = max(best_decode, (tokens - 1) / (end - first))
print(json.dumps({"prompt_tokens": n_prompt, "prompt_tokens_per_sec": best_prompt,
                  "decode_tokens_per_sec": best_decode, "completion_tokens": tokens}))
"#;

/// `cargo xtask bench worker`: in one run, at one thread and at every core (or `--threads
/// N`), each contender at the same thread count — candle's f32 matmul peak on this machine;
/// MiniLM embeddings (sentences/s at batch 1 and 32, and the compute efficiency they imply:
/// model FLOPs × rate ÷ the matmul peak at that thread count; target ≥ 50%); SmolLM2-135M
/// prompt and decode tokens/s against llama.cpp on the same GGUF and prompt (target: decode
/// ≥ 0.8× llama.cpp).
fn worker(args: &[String]) -> anyhow::Result<()> {
    let all = std::thread::available_parallelism().map_or(2, |n| n.get());
    let counts: Vec<usize> = match args {
        [] if all > 1 => vec![1, all],
        [] => vec![1],
        [flag, n] if flag == "--threads" => vec![n.parse().context("--threads takes a number")?],
        _ => bail!("usage: cargo xtask bench worker [--threads N]"),
    };
    let root = crate::service::workspace_root()?;
    let wheels = crate::models::fetch(&root)?;
    let minilm = crate::models::fetched(&wheels, &crate::models::MINILM)?;
    let smollm2 = crate::models::fetched(&wheels, &crate::models::SMOLLM2)?;
    // llama-cpp-python, built as the test server's (never GGML_NATIVE: its AMX path crashes).
    crate::servers::install(&root)?;
    let workerbench = example(&root, "ipfs-accelerate-worker", "workerbench")?;

    let mut runs = Vec::new();
    for threads in counts {
        eprintln!("bench: candle matmul peak, MiniLM, SmolLM2 ({threads} threads)");
        let output = Command::new(&workerbench)
            .arg(&minilm)
            .arg(&smollm2)
            .env("RAYON_NUM_THREADS", threads.to_string())
            .stderr(Stdio::inherit())
            .output()?;
        if !output.status.success() {
            bail!("workerbench failed");
        }
        let ours: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        let prompt = ours["prompt"].as_str().context("workerbench printed no prompt")?;
        eprintln!("bench: llama.cpp on the same GGUF ({threads} threads)");
        let output = Command::new(crate::servers::llama_python(&root))
            .args(["-c", LLAMA_BENCH])
            .arg(crate::servers::smollm2_gguf(&root))
            .arg(threads.to_string())
            .arg(prompt)
            .stderr(Stdio::inherit())
            .output()?;
        if !output.status.success() {
            bail!("the llama.cpp benchmark failed");
        }
        let llama: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        report_worker(threads, &ours, &llama);
        runs.push(serde_json::json!({ "cpu": cpu_model(), "threads": threads, "ours": ours, "llama_cpp": llama }));
    }
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("worker.json"), serde_json::to_vec_pretty(&runs)?)?;
    Ok(())
}

fn report_worker(threads: usize, ours: &serde_json::Value, llama: &serde_json::Value) {
    let num = |v: &serde_json::Value, path: &str| {
        v.pointer(path).and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN)
    };
    let peak = num(ours, "/matmul_peak_gflops");
    println!();
    println!("worker, {threads} thread(s): candle f32 matmul peak {peak:.1} GFLOP/s");
    print_machine(ours);
    println!("{:<40} {:>12} {:>12} {:>8}", "", "ours", "reference", "ratio");
    for batch in [1, 32] {
        let rate = num(ours, &format!("/embeddings/batch_{batch}/sentences_per_sec"));
        let efficiency = num(ours, &format!("/embeddings/batch_{batch}/efficiency"));
        let verdict = match (batch, efficiency >= 0.5) {
            (32, true) => " (meets ≥ 50%)",
            (32, false) => " (MISSES ≥ 50%)",
            _ => "",
        };
        println!("{:<40} {rate:>12.1}", format!("MiniLM sentences/s, batch {batch}"));
        println!(
            "{:<40} {:>11.1}% {:>12}{verdict}",
            format!("  of the matmul peak, batch {batch}"),
            efficiency * 100.0,
            "-"
        );
    }
    let rows = [
        (
            "SmolLM2 prompt tokens/s",
            num(ours, "/generation/prompt_tokens_per_sec"),
            num(llama, "/prompt_tokens_per_sec"),
            None,
        ),
        (
            "SmolLM2 decode tokens/s",
            num(ours, "/generation/decode_tokens_per_sec"),
            num(llama, "/decode_tokens_per_sec"),
            Some(0.8),
        ),
    ];
    for (name, ours_rate, reference, target) in rows {
        let ratio = ours_rate / reference;
        let verdict = match target {
            Some(t) if ratio >= t => format!(" (meets ≥ {t}× llama.cpp)"),
            Some(t) => format!(" (MISSES ≥ {t}× llama.cpp)"),
            None => String::new(),
        };
        println!("{name:<40} {ours_rate:>12.1} {reference:>12.1} {ratio:>7.2}×{verdict}");
    }
}

/// The CPU the benchmark ran on (`/proc/cpuinfo`'s model name) and the kernels each engine
/// chose on it, as the benchmark binary reported them: ratios mean little without both.
fn print_machine(ours: &serde_json::Value) {
    let cpu = cpu_model();
    println!("cpu: {cpu}");
    for k in ours["kernels"].as_array().into_iter().flatten() {
        println!(
            "  {:<18} {}",
            k["engine"].as_str().unwrap_or("?"),
            k["kernels"].as_str().unwrap_or("?")
        );
    }
    if let Ok(variant) = std::env::var("GGML_CPU_VARIANT") {
        println!("  (GGML_CPU_VARIANT={variant} asked for that whisper.cpp variant)");
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The paragraph both speech benchmarks use: espeak-ng speaks it for Whisper (about 24 s),
/// the Piper voice speaks it for synthesis.
const SPEECH_TEXT: &str =
    "Speech recognition turns spoken words into text. This test reads a longer \
passage so that the real-time factor can be measured on a full thirty second window. The weather \
today is sunny with a light breeze from the west. Please remember to bring your notebook, a pen, \
and a bottle of water to the meeting on Thursday afternoon. Thank you for listening and have a \
wonderful day.";

/// The reference tools' venv (faster-whisper and piper-tts from PyPI), made once.
const SPEECH_VENV: &str = "bench/speech-venv";

/// `cargo xtask bench speech [--threads N] [--runs N]`: Whisper base's real-time factor
/// against CTranslate2 (faster-whisper, the engine the model was exported for) on the
/// original model, and Piper synthesis against piper-tts on the same voice; same audio, same
/// text, same thread count, best of N after a warm-up, in one run. Targets: Whisper at least
/// as fast as CTranslate2, Piper ≥ 1.0× piper-tts.
fn speech(args: &[String]) -> anyhow::Result<()> {
    let mut threads = 1usize;
    let mut runs = RUNS;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().context("a flag without its value")?;
        match flag.as_str() {
            "--threads" => threads = value.parse().context("--threads takes a number")?,
            "--runs" => runs = value.parse().context("--runs takes a number")?,
            _ => bail!("usage: cargo xtask bench speech [--threads N] [--runs N]"),
        }
    }
    let root = crate::service::workspace_root()?;
    crate::service::ensure_apt_tool("cmake", "cmake")?;
    crate::service::ensure_apt_tool("espeak-ng", "espeak-ng")?;
    let wheels = crate::models::fetch(&root)?;
    let ort = crate::models::onnxruntime_library(&root, &wheels)?;
    let wheel = |w: &crate::models::Wheel| crate::models::fetched(&wheels, w);
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    let audio = out.join("speech-paragraph.wav");
    let status = Command::new("timeout")
        .args(["60", "espeak-ng", "-v", "en-us", "-s", "150", "-w"])
        .arg(&audio)
        .arg(SPEECH_TEXT)
        .status()?;
    if !status.success() {
        bail!("espeak-ng failed ({status})");
    }

    let venv = crate::service::cache_dir(&root).join(SPEECH_VENV);
    let python = venv.join("bin/python");
    if !python.exists() {
        eprintln!(
            "bench: making the reference venv (faster-whisper, piper-tts) in {}",
            venv.display()
        );
        let status = Command::new("python3").args(["-m", "venv"]).arg(&venv).status()?;
        if !status.success() {
            bail!("python3 -m venv failed ({status})");
        }
    }
    let status = Command::new("timeout")
        .args(["900"])
        .arg(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(["faster-whisper==1.2.1", "piper-tts==1.8.0"])
        .status()?;
    if !status.success() {
        bail!("installing faster-whisper and piper-tts failed ({status})");
    }

    let arguments = serde_json::json!({
        "whisper_wheels": [wheel(&crate::models::WHISPER_BASE_1)?, wheel(&crate::models::WHISPER_BASE_2)?],
        "voice_wheel": wheel(&crate::models::PIPER_JOE)?,
        "onnxruntime": ort,
        "audio": audio,
        "text": SPEECH_TEXT,
        "threads": threads,
        "runs": runs,
    })
    .to_string();
    let speechbench = example(&root, "ipfs-accelerate-worker", "speechbench")?;
    eprintln!("bench: ours — whisper.cpp and ONNX Runtime ({threads} thread(s), best of {runs})");
    let output = Command::new(&speechbench).arg(&arguments).stderr(Stdio::inherit()).output()?;
    if !output.status.success() {
        bail!("speechbench failed");
    }
    let ours: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    eprintln!(
        "bench: reference — faster-whisper and piper-tts ({threads} thread(s), best of {runs})"
    );
    let output = Command::new(&python)
        .arg(root.join("xtask/bench/speech_reference.py"))
        .arg(&arguments)
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        bail!("the reference speech benchmark failed");
    }
    let reference: serde_json::Value = serde_json::from_slice(&output.stdout)?;

    let num = |v: &serde_json::Value, path: &str| {
        v.pointer(path).and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN)
    };
    println!();
    println!("speech, {threads} thread(s), best of {runs} (RTF = seconds of work per second of audio; lower is faster)");
    print_machine(&ours);
    println!("{:<44} {:>10} {:>10} {:>8}", "", "ours", "reference", "speed");
    for (name, path, target) in [
        ("Whisper base RTF (vs CTranslate2)", "/whisper/rtf", 1.0),
        ("Piper joe-medium RTF (vs piper-tts)", "/piper/rtf", 1.0),
    ] {
        let (a, b) = (num(&ours, path), num(&reference, path));
        let speed = b / a;
        let verdict = if speed >= target { "meets" } else { "MISSES" };
        println!("{name:<44} {a:>10.3} {b:>10.3} {speed:>7.2}× ({verdict} ≥ {target}×)");
    }
    println!(
        "audio {:.1} s; ours heard: {}",
        num(&ours, "/whisper/audio_seconds"),
        ours["whisper"]["text"]
    );
    println!(
        "CTranslate2 ({} compute) heard: {}",
        reference["whisper"]["compute_type"].as_str().unwrap_or("unknown"),
        reference["whisper"]["text"]
    );
    std::fs::write(
        out.join("speech.json"),
        serde_json::to_vec_pretty(
            &serde_json::json!({ "cpu": cpu_model(), "threads": threads, "runs": runs, "ours": ours, "reference": reference }),
        )?,
    )?;
    Ok(())
}

/// PyTorch's figures for `bench vision` when no `--reference-python` is given: measured by hand
/// with `xtask/bench/vision_reference.py` in the fixture venv (torch 2.15.0, transformers 5.25)
/// on the 2-core development machine, 2 threads, best of 3, on 2026-12-04.
const VISION_TORCH_RECORDED: [(&str, f64); 4] = [
    ("clip_b32_batch1", 14.48),
    ("clip_b32_batch16", 18.56),
    ("vit_b16_batch1", 4.06),
    ("vit_b16_batch16", 4.77),
];

/// `cargo xtask bench vision [--threads N] [--runs N] [--reference-python PY]`: images/s of
/// CLIP ViT-B/32 (image embeddings) and ViT-B/16 (classification) at batch 1 and 16, random
/// weights at real sizes, against the same architectures in PyTorch on the same thread count.
/// PyTorch runs live when `--reference-python` names a Python with torch and transformers
/// (the fixture venv); otherwise the recorded figures above are the reference (torch is a
/// 5 GB install, never made by this command). Target: ≥ 1.0× PyTorch.
fn vision(args: &[String]) -> anyhow::Result<()> {
    let usage = "usage: cargo xtask bench vision [--threads N] [--runs N] [--reference-python PY]";
    let mut threads = 2usize;
    let mut runs = RUNS;
    let mut python: Option<PathBuf> = None;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().context(usage)?;
        match flag.as_str() {
            "--threads" => threads = value.parse().context("--threads takes a number")?,
            "--runs" => runs = value.parse().context("--runs takes a number")?,
            "--reference-python" => python = Some(PathBuf::from(value)),
            _ => bail!(usage),
        }
    }
    let root = crate::service::workspace_root()?;
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    let arguments = serde_json::json!({ "threads": threads, "runs": runs }).to_string();
    let visionbench = example(&root, "ipfs-accelerate-worker", "visionbench")?;
    eprintln!("bench: ours — candle ({threads} thread(s), best of {runs})");
    let output = Command::new(&visionbench)
        .arg(&arguments)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        bail!("visionbench failed");
    }
    let ours: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let (reference, source) = match &python {
        Some(python) => {
            eprintln!("bench: reference — PyTorch ({threads} thread(s), best of {runs})");
            let output = Command::new("timeout")
                .arg("1800")
                .arg(python)
                .arg(root.join("xtask/bench/vision_reference.py"))
                .arg(&arguments)
                .stderr(Stdio::inherit())
                .output()?;
            if !output.status.success() {
                bail!(
                    "the PyTorch reference failed (does {} have torch and transformers?)",
                    python.display()
                );
            }
            (serde_json::from_slice::<serde_json::Value>(&output.stdout)?, "measured now")
        }
        None => {
            if threads != 2 {
                eprintln!("bench: the recorded PyTorch figures are for 2 threads; pass --reference-python to measure at {threads}");
            }
            let recorded: serde_json::Map<String, serde_json::Value> = VISION_TORCH_RECORDED
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                .collect();
            (serde_json::Value::Object(recorded), "recorded 2026-12-04, 2 threads")
        }
    };
    println!();
    println!("vision, {threads} thread(s), best of {runs}, images/s (PyTorch {source})");
    print_machine(&ours);
    println!("{:<36} {:>10} {:>10} {:>8}", "", "ours", "PyTorch", "speed");
    for (name, key) in [
        ("CLIP ViT-B/32 image embeds, batch 1", "clip_b32_batch1"),
        ("CLIP ViT-B/32 image embeds, batch 16", "clip_b32_batch16"),
        ("ViT-B/16 classification, batch 1", "vit_b16_batch1"),
        ("ViT-B/16 classification, batch 16", "vit_b16_batch16"),
    ] {
        let a = ours[key].as_f64().unwrap_or(f64::NAN);
        let b = reference[key].as_f64().unwrap_or(f64::NAN);
        let speed = a / b;
        let verdict = if speed >= 1.0 { "meets" } else { "MISSES" };
        println!("{name:<36} {a:>10.2} {b:>10.2} {speed:>7.2}× ({verdict} ≥ 1.0×)");
    }
    std::fs::write(
        out.join("vision.json"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "cpu": cpu_model(), "threads": threads, "runs": runs, "ours": ours,
            "reference": reference, "reference_source": source,
        }))?,
    )?;
    Ok(())
}
