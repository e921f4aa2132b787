//! The Rust side of `cargo xtask bench speech`: Whisper base (converted from its CTranslate2
//! wheels through the store) transcribing a WAV, and the Piper joe voice speaking a text,
//! each the best of N runs after a warm-up, on a given thread count. Prints one JSON object.
//!
//! `speechbench '{"whisper_wheels": [P1, P2], "voice_wheel": W, "onnxruntime": LIB,
//!   "audio": WAV, "text": T, "threads": N, "runs": R}'`

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use std::path::PathBuf;
use std::time::Instant;

use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_worker::speech::TranscribeOptions;
use ipfs_accelerate_worker::{ImportOptions, Worker, WorkerConfig};
use serde_json::json;

/// The allocator the `ipfs-accelerate` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let args: serde_json::Value =
        serde_json::from_str(&std::env::args().nth(1).expect("JSON arguments")).unwrap();
    let path = |v: &serde_json::Value| PathBuf::from(v.as_str().unwrap());
    let threads = args["threads"].as_u64().unwrap() as usize;
    let runs = args["runs"].as_u64().unwrap() as usize;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
    let config = WorkerConfig {
        threads: Some(threads),
        onnxruntime: Some(path(&args["onnxruntime"])),
        cache_results: false,
        ..WorkerConfig::default()
    };
    let worker = Worker::new(store, config);
    let named = |name: &str| ImportOptions { name: Some(name.into()), ..ImportOptions::default() };
    let parts: Vec<PathBuf> = args["whisper_wheels"].as_array().unwrap().iter().map(path).collect();
    let started = Instant::now();
    worker.registry().import_parts(&parts, named("whisper-base")).await.unwrap();
    let import_s = started.elapsed().as_secs_f64();
    worker.registry().import(&path(&args["voice_wheel"]), named("piper-joe")).await.unwrap();

    let audio = std::fs::read(path(&args["audio"])).unwrap();
    let options = TranscribeOptions { language: Some("en".into()), ..TranscribeOptions::default() };
    let mut best = f64::MAX;
    let mut heard = None;
    for _ in 0..=runs {
        // The first run loads the model (timed apart); the rest are the measurement.
        let started = Instant::now();
        let result = worker.transcribe(None, audio.clone(), options.clone()).await.unwrap();
        if heard.is_some() {
            best = best.min(started.elapsed().as_secs_f64());
        }
        heard = Some(result.output);
    }
    let heard = heard.unwrap();

    let text = args["text"].as_str().unwrap().to_string();
    let mut piper_best = f64::MAX;
    let mut speech_s = 0.0;
    for i in 0..=runs {
        let started = Instant::now();
        let spoken = worker.synthesize(None, text.clone(), Default::default()).await.unwrap();
        if i > 0 {
            piper_best = piper_best.min(started.elapsed().as_secs_f64());
        }
        speech_s = spoken.output.duration;
    }
    println!(
        "{}",
        json!({
            "whisper": {
                "seconds": best,
                "audio_seconds": heard.duration,
                "rtf": best / heard.duration,
                "text": heard.text,
                "import_and_convert_seconds": import_s,
            },
            "piper": { "seconds": piper_best, "audio_seconds": speech_s, "rtf": piper_best / speech_s },
            "whisper_system_info": whisper_rs::print_system_info(),
            "kernels": ipfs_accelerate_worker::kernels::cpu_kernels(),
        })
    );
}
