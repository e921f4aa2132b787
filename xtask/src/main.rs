//! `cargo xtask …`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask test [--no-lint] [-- ARGS]`: `cargo fmt --check`, clippy with `-D warnings`,
//!   then the whole test suite (nextest when installed, else `cargo test`) plus doc tests, with
//!   the real local servers the tests need started before and stopped after.
//! - `cargo xtask bench storage`: storage throughput against reference tools, same run.
//! - `cargo xtask storage-audit`: where the code touches the filesystem directly.

// xtask is tooling, not the product: it prepares caches and starts servers, so it may touch the
// filesystem directly (invariant 1 governs what the product persists).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

// The first servers (IPFS node, S3) arrive with the storage tiers; the orchestration is tested now.
mod audit;
mod bench;
#[allow(dead_code)]
mod service;
mod test;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("storage-audit") => audit::run(&args[1..]),
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
  storage-audit [--check] [--json] [--explain FILE] [--update-baseline]
                               filesystem call sites vs storage-crate calls (docs/storage-audit.md)
";
