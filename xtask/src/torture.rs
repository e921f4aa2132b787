//! `cargo xtask torture [--minutes N]`: the fault harnesses of `cargo xtask test`, run long.
//!
//! The suite runs each harness briefly (a few kill rounds, a few hundred fuzz cases) so CI
//! stays fast; this task repeats them with far larger counts until the time is up, each pass
//! with fresh proptest seeds: kill -9 loops and crash points (`crash_points`), the
//! model-based store test (`store_model`), full-disk, read-only and syscall faults
//! (`store_faults`), and every fuzz property (`fuzz_*`, the parser properties). It prints
//! what ran; any failure stops it with the failing test's output.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Kill-loop rounds per `crash_points` pass.
const ROUNDS: u32 = 100;
/// Sequences per `store_model` pass.
const MODEL_CASES: u32 = 100;
/// Cases per fuzz property per pass.
const FUZZ_CASES: u32 = 20_000;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut minutes = 60u64;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--minutes" => {
                let value = args.next().context("--minutes needs a number")?;
                minutes = value.parse().with_context(|| format!("--minutes {value:?}"))?;
            }
            other => bail!("unknown flag {other:?} for `cargo xtask torture`"),
        }
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(minutes.saturating_mul(60));
    // What it is, cargo's arguments, the test-name filters, the environment.
    type Pass<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a [(&'a str, u32)]);
    let passes: [Pass; 4] = [
        (
            "kill loops, crash points, store model, store faults",
            &["-p", "tests", "--test", "integration"],
            &["crash_points::", "store_model::", "store_faults::"],
            &[("IPFS_ACCELERATE_TORTURE_ROUNDS", ROUNDS), ("PROPTEST_CASES", MODEL_CASES)],
        ),
        (
            "fuzz: CID, CAR, dag-pb, headers, framing",
            &["-p", "ipfs-accelerate-common", "--test", "integration"],
            &["parsers::"],
            &[("PROPTEST_CASES", FUZZ_CASES)],
        ),
        (
            "fuzz: wheels, images, audio, safetensors",
            &["-p", "ipfs-accelerate-worker", "--lib"],
            &["fuzz"],
            &[("PROPTEST_CASES", FUZZ_CASES)],
        ),
        (
            "fuzz: peer records",
            &["-p", "ipfs-accelerate-github", "--lib"],
            &["fuzz"],
            &[("PROPTEST_CASES", FUZZ_CASES)],
        ),
    ];
    let mut pass = 0u64;
    while Instant::now() < deadline {
        pass += 1;
        for (what, args, filters, env) in &passes {
            let clock = Instant::now();
            let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cargo.args(["test", "--release", "--locked"]).args(*args).arg("--").args(*filters);
            cargo.args(["--test-threads", "2", "--nocapture"]);
            for (name, value) in env.iter() {
                cargo.env(name, value.to_string());
            }
            let status = cargo.status().context("running cargo test")?;
            if !status.success() {
                bail!("torture pass {pass}: {what} failed ({status})");
            }
            eprintln!("torture pass {pass}: {what}: ok in {:.0} s", clock.elapsed().as_secs_f64());
        }
    }
    eprintln!(
        "torture: {pass} passes in {:.1} min: each {ROUNDS} kill rounds, {MODEL_CASES} model sequences, {FUZZ_CASES} cases per fuzz property; no failure",
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}
