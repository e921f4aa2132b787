//! Shared helpers for the end-to-end tests in `tests/tests/`, which drive the built binary, and
//! for every crate's tests: Kubo's known answers ([`kubo`]).

// Test support reads the files the product wrote, on purpose.
#![allow(clippy::disallowed_methods)]

pub mod fake_github;
pub mod kubo;
pub mod servers;

/// The Python original's cache-key vectors (`fixtures/python-cache-keys.json`).
pub const PYTHON_CACHE_KEYS: &str = include_str!("fixtures/python-cache-keys.json");

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The path of an up-to-date `ipfs-accelerate` binary.
///
/// Integration tests of this package do not make cargo build another package's binary, so the
/// first call builds it (a no-op when it is fresh) with the same profile as the tests.
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args([
                "build",
                "--quiet",
                "--package",
                "ipfs-accelerate",
                "--bin",
                "ipfs-accelerate",
            ]);
            if !cfg!(debug_assertions) {
                build.arg("--release");
            }
            let status = build.status().expect("cargo could not be started");
            assert!(status.success(), "building ipfs-accelerate failed: {status}");
            let exe = std::env::current_exe().expect("test executable path");
            // target/<profile>/deps/<test> → target/<profile>/ipfs-accelerate
            let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
            profile_dir.join(format!("ipfs-accelerate{}", std::env::consts::EXE_SUFFIX))
        })
        .clone()
}

/// A `Command` for the binary with a clean environment rooted in `home`: no user config, no
/// inherited variables of ours, XDG directories inside `home`.
pub fn cli(home: &std::path::Path) -> assert_cmd::Command {
    assert_cmd::Command::from_std(cli_std(home))
}

/// [`cli`] as a plain `std::process::Command`, for tests that stream stdin or kill the child.
pub fn cli_std(home: &std::path::Path) -> Command {
    clean_env(Command::new(binary()), home)
}

fn clean_env(mut cmd: Command, home: &std::path::Path) -> Command {
    cmd.env_clear()
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

/// A private home for one test: XDG directories and the data directory inside a temp dir.
pub struct Env {
    home: tempfile::TempDir,
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Env {
    /// A fresh, empty home.
    pub fn new() -> Env {
        Env { home: tempfile::tempdir().expect("temp dir") }
    }

    /// The home directory.
    pub fn home(&self) -> &std::path::Path {
        self.home.path()
    }

    /// The binary with this home's environment and data directory.
    pub fn cmd(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.std_cmd())
    }

    /// [`Env::cmd`] as a plain `std::process::Command` (to stream stdin or kill the child).
    pub fn std_cmd(&self) -> Command {
        let mut cmd = cli_std(self.home());
        cmd.env("IPFS_ACCELERATE_DATA_DIR", self.home().join("data"));
        cmd
    }

    /// [`Env::std_cmd`] with the binary run by `qemu-x86_64 -cpu <cpu>`: the process sees
    /// only that CPU model's instruction sets (QEMU's `Haswell` has AVX2, FMA and F16C and no
    /// AVX-512, and QEMU cannot run AVX-512 at all), so anything the binary runs that the
    /// model lacks dies of SIGILL, whatever the host has. `cargo xtask test` installs QEMU.
    pub fn emulated_cmd(&self, cpu: &str) -> Command {
        let mut qemu = Command::new("qemu-x86_64");
        qemu.args(["-cpu", cpu]).arg(binary());
        let mut cmd = clean_env(qemu, self.home());
        cmd.env("IPFS_ACCELERATE_DATA_DIR", self.home().join("data"));
        cmd
    }

    /// Runs `--json ARGS`, asserts success, and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        json_of(self.std_cmd(), args)
    }

    /// Writes `data` to `name` in the home directory; returns its path.
    #[allow(clippy::disallowed_methods)] // a test's input file, not product state
    pub fn write_file(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.home().join(name);
        std::fs::write(&path, data).expect("writing a test file");
        path
    }

    /// Runs the binary with `args` and returns what it did.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.std_cmd().args(args).output().expect("running ipfs-accelerate")
    }

    /// Runs the binary with `args`, asserts it succeeded, and returns its stdout, trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// `storage add -Q [--pin] PATH`: the CID.
    pub fn add(&self, path: &std::path::Path, pin: bool) -> String {
        let path = path.to_str().expect("a UTF-8 test path");
        if pin {
            self.ok(&["storage", "add", "-Q", "--pin", path])
        } else {
            self.ok(&["storage", "add", "-Q", path])
        }
    }
}

/// Asserts the binary reported an error (exit 1) containing `needle`, and did not crash.
pub fn assert_reported(output: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "a reported error, not a crash: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(needle), "wanted {needle:?} in: {stderr}");
}

/// Deterministic pseudo-random bytes (xorshift64): distinct per seed and incompressible, so
/// files made from different seeds share no block.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs `cmd --json ARGS`, asserts it succeeded (showing its output if not), and parses stdout.
pub fn json_of(mut cmd: Command, args: &[&str]) -> serde_json::Value {
    let output = cmd.arg("--json").args(args).output().expect("run the binary");
    assert!(
        output.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

/// Every file under `dir` (recursively) with its bytes, sorted by path; empty if `dir` is absent.
pub fn files_under(dir: &std::path::Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}
