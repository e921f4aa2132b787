//! Shared helpers for the end-to-end tests in `tests/tests/`, which drive the built binary, and
//! for every crate's tests: Kubo's known answers ([`kubo`]).

pub mod kubo;

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
    let mut cmd = Command::new(binary());
    cmd.env_clear()
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}
