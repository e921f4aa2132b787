//! The machine the probes look at: its files under `/proc`, `/sys`, `/etc` and the library
//! directories, its environment, its programs and its NVIDIA management library.
//!
//! Every probe reads the machine through a [`Host`], never directly, so tests can point one at
//! a fake sysfs tree, a fake environment, fake programs on a fake `PATH` and a fake NVML, and
//! cover the paths (a ROCm GPU, an Intel GPU, an NVIDIA GPU) this machine cannot have.
//!
//! Paths are of two kinds. System paths (`/sys/class/kfd`, `/etc/ld.so.conf`) are read under
//! [`Host::root`], `/` on a real machine. Paths that come from the environment (`PATH`,
//! `LD_LIBRARY_PATH`, `ORT_DYLIB_PATH`) are used as they are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::nvidia::{NvmlApi, SystemNvml};

/// How long a probe waits for a program (`rocm-smi --version`, `cmake --version`).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The machine under inspection. Cheap to clone; clones share the probe counter.
#[derive(Clone)]
pub struct Host {
    root: PathBuf,
    env: Arc<BTreeMap<String, String>>,
    nvml: Arc<dyn NvmlApi>,
    os: &'static str,
    probe_runs: Arc<AtomicU64>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("root", &self.root).field("os", &self.os).finish()
    }
}

/// What running a program gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    /// It ran and exited 0.
    Ok {
        /// Its standard output.
        stdout: String,
    },
    /// It ran and failed.
    Failed {
        /// Its exit status, as the OS says it.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// It was not on `PATH`.
    NotFound,
    /// It did not finish in time and was killed.
    TimedOut(Duration),
    /// It could not be started.
    Error(String),
}

impl CommandOutcome {
    /// A short explanation of a failure, naming the program.
    pub fn describe_failure(&self, program: &str) -> String {
        match self {
            CommandOutcome::Ok { .. } => format!("{program} ran"),
            CommandOutcome::Failed { status, stderr } if stderr.is_empty() => {
                format!("{program} failed ({status})")
            }
            CommandOutcome::Failed { status, stderr } => {
                format!("{program} failed ({status}): {stderr}")
            }
            CommandOutcome::NotFound => format!("{program} not found on PATH"),
            CommandOutcome::TimedOut(limit) => {
                format!("{program} did not answer within {} s and was killed", limit.as_secs())
            }
            CommandOutcome::Error(e) => format!("{program} could not be started: {e}"),
        }
    }
}

impl Host {
    /// This machine: root `/`, the process environment, the system's NVML.
    pub fn current() -> Host {
        Host::new("/", std::env::vars(), Arc::new(SystemNvml::from_env()))
    }

    /// A host rooted at `root` with exactly the environment `env` and the given NVML.
    pub fn new(
        root: impl Into<PathBuf>,
        env: impl IntoIterator<Item = (String, String)>,
        nvml: Arc<dyn NvmlApi>,
    ) -> Host {
        Host {
            root: root.into(),
            env: Arc::new(env.into_iter().collect()),
            nvml,
            os: std::env::consts::OS,
            probe_runs: Arc::default(),
        }
    }

    /// The same host, told it runs `os` (`linux`, `macos`): for tests of other platforms' paths.
    pub fn with_os(mut self, os: &'static str) -> Host {
        self.os = os;
        self
    }

    /// Where system paths are read.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The operating system, as `std::env::consts::OS` names it.
    pub fn os(&self) -> &'static str {
        self.os
    }

    /// The NVIDIA management library seam.
    pub(crate) fn nvml(&self) -> &Arc<dyn NvmlApi> {
        &self.nvml
    }

    /// An environment variable, if set and not empty.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// An environment variable as set, empty included (`CUDA_VISIBLE_DEVICES=""` hides all GPUs).
    pub fn var_raw(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    /// How many full hardware probes ran through this host (and its clones).
    pub fn probe_runs(&self) -> u64 {
        self.probe_runs.load(Ordering::Relaxed)
    }

    pub(crate) fn count_probe_run(&self) {
        self.probe_runs.fetch_add(1, Ordering::Relaxed);
    }

    /// `system_path` (absolute, e.g. `/sys/class/kfd`) under the root.
    pub fn system_path(&self, system_path: &str) -> PathBuf {
        self.root.join(system_path.trim_start_matches('/'))
    }

    /// A system file's text, trimmed; `None` when absent or unreadable.
    pub fn read_system(&self, system_path: &str) -> Option<String> {
        read_text(&self.system_path(system_path))
    }

    /// The text of a file named by a path taken from the environment (used as is), trimmed.
    pub fn read_path(&self, path: &Path) -> Option<String> {
        read_text(path)
    }

    /// Whether a path taken from the environment or configuration (used as is) exists.
    pub fn path_exists(&self, path: &Path) -> bool {
        exists(path)
    }

    /// Whether a system path exists.
    pub fn system_exists(&self, system_path: &str) -> bool {
        exists(&self.system_path(system_path))
    }

    /// The sorted entry names of a system directory; empty when absent.
    pub fn list_system(&self, system_path: &str) -> Vec<String> {
        list_dir(&self.system_path(system_path))
    }

    /// The file name a system symlink points at (`/sys/class/drm/card0/device/driver` → `i915`).
    pub fn system_link_name(&self, system_path: &str) -> Option<String> {
        let target = read_link(&self.system_path(system_path))?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// The first executable called `program` on the host's `PATH`.
    pub fn find_program(&self, program: &str) -> Option<PathBuf> {
        let path = self.var("PATH")?;
        std::env::split_paths(path).map(|dir| dir.join(program)).find(|p| is_executable(p))
    }

    /// Runs `program args…` found on the host's `PATH`, with the host's environment, killed
    /// after `timeout`.
    pub async fn run(&self, program: &str, args: &[&str], timeout: Duration) -> CommandOutcome {
        let Some(path) = self.find_program(program) else {
            return CommandOutcome::NotFound;
        };
        self.run_path(&path, args, timeout).await
    }

    /// Runs the program at `path` (not looked up on `PATH`), like [`Host::run`].
    pub async fn run_path(&self, path: &Path, args: &[&str], timeout: Duration) -> CommandOutcome {
        let mut command = tokio::process::Command::new(path);
        command
            .args(args)
            .env_clear()
            .envs(self.env.iter())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        tracing::debug!(program = %path.display(), ?args, "running probe command");
        match tokio::time::timeout(timeout, command.output()).await {
            Err(_) => CommandOutcome::TimedOut(timeout),
            Ok(Err(e)) => CommandOutcome::Error(e.to_string()),
            Ok(Ok(output)) if output.status.success() => {
                CommandOutcome::Ok { stdout: String::from_utf8_lossy(&output.stdout).into_owned() }
            }
            Ok(Ok(output)) => CommandOutcome::Failed {
                status: output.status.to_string(),
                stderr: tail(&String::from_utf8_lossy(&output.stderr), 400),
            },
        }
    }

    /// The directories the dynamic linker searches, in its order: `LD_LIBRARY_PATH` (or
    /// `DYLD_LIBRARY_PATH` on macOS), the `ld.so.conf` directories, then the default ones.
    pub fn library_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(paths) = self.var(self.library_path_var()) {
            dirs.extend(std::env::split_paths(paths).filter(|p| p.is_absolute()));
        }
        if self.os == "macos" {
            for dir in ["/usr/local/lib", "/opt/homebrew/lib", "/usr/lib"] {
                dirs.push(self.system_path(dir));
            }
        } else {
            for dir in self.ld_so_conf_dirs("/etc/ld.so.conf", 0) {
                dirs.push(self.system_path(&dir));
            }
            for dir in [
                "/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu",
                "/lib/aarch64-linux-gnu",
                "/usr/lib/aarch64-linux-gnu",
                "/lib64",
                "/usr/lib64",
                "/lib",
                "/usr/lib",
                "/usr/local/lib",
            ] {
                dirs.push(self.system_path(dir));
            }
        }
        let mut seen = std::collections::HashSet::new();
        dirs.retain(|d| seen.insert(d.clone()));
        dirs
    }

    /// Directories named in an `ld.so.conf`, following `include` lines (one `*` glob level).
    fn ld_so_conf_dirs(&self, file: &str, depth: u8) -> Vec<String> {
        let Some(text) = self.read_system(file) else { return Vec::new() };
        let mut dirs = Vec::new();
        for line in text.lines().map(|l| l.split('#').next().unwrap_or("").trim()) {
            if let Some(pattern) = line.strip_prefix("include").map(str::trim) {
                if depth > 2 {
                    continue;
                }
                for included in self.expand_glob(pattern) {
                    dirs.extend(self.ld_so_conf_dirs(&included, depth + 1));
                }
            } else if line.starts_with('/') {
                dirs.push(line.to_string());
            }
        }
        dirs
    }

    /// `/etc/ld.so.conf.d/*.conf` → the matching system paths, sorted.
    fn expand_glob(&self, pattern: &str) -> Vec<String> {
        let Some((dir, name)) = pattern.rsplit_once('/') else { return Vec::new() };
        let Some((prefix, suffix)) = name.split_once('*') else {
            return vec![pattern.to_string()];
        };
        self.list_system(dir)
            .into_iter()
            .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
            .map(|n| format!("{dir}/{n}"))
            .collect()
    }

    /// The first library file whose name is `name` or starts with `name.` (a versioned
    /// soname) in [`Host::library_dirs`].
    pub fn find_library(&self, name: &str) -> Option<PathBuf> {
        self.find_library_in(&self.library_dirs(), name)
    }

    /// Like [`Host::find_library`], over the given directories.
    pub fn find_library_in(&self, dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
        dirs.iter().find_map(|dir| {
            let exact = dir.join(name);
            if exists(&exact) {
                return Some(exact);
            }
            let versioned = format!("{name}.");
            list_dir(dir).into_iter().find(|n| n.starts_with(&versioned)).map(|n| dir.join(n))
        })
    }

    /// The variable that prepends library directories on this OS.
    fn library_path_var(&self) -> &'static str {
        if self.os == "macos" {
            "DYLD_LIBRARY_PATH"
        } else {
            "LD_LIBRARY_PATH"
        }
    }

    /// A human list of the searched library directories (for "not found in …" reasons).
    pub fn describe_library_search(&self) -> String {
        let env_var = self.library_path_var();
        if self.os == "macos" {
            format!("{env_var}, /usr/local/lib, /opt/homebrew/lib, /usr/lib")
        } else {
            format!("{env_var}, the ld.so.conf directories and the default library directories")
        }
    }
}

/// The last `max` characters of `text`, trimmed, on one line.
fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    let start = text.char_indices().rev().nth(max.saturating_sub(1)).map_or(0, |(i, _)| i);
    text[start..].split_whitespace().collect::<Vec<_>>().join(" ")
}

// The only disk reads of this crate: kernel-provided state (/proc, /sys), linker configuration,
// library directories and PATH. Nothing here is persisted data, so none of it goes through the
// storage crate (invariant 1 is about what the system keeps).

#[allow(clippy::disallowed_methods)]
fn read_text(path: &Path) -> Option<String> {
    // storage-audit: allow(reads kernel-provided system state and linker configuration; persists nothing)
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

#[allow(clippy::disallowed_methods)]
fn list_dir(path: &Path) -> Vec<String> {
    // storage-audit: allow(lists system and library directories; persists nothing)
    let Ok(entries) = std::fs::read_dir(path) else { return Vec::new() };
    let mut names: Vec<String> =
        entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn exists(path: &Path) -> bool {
    // storage-audit: allow(checks for a system file or library; persists nothing)
    path.exists()
}

fn read_link(path: &Path) -> Option<PathBuf> {
    // storage-audit: allow(reads a sysfs symlink such as a device's driver; persists nothing)
    path.read_link().ok()
}

#[allow(clippy::disallowed_methods)]
fn is_executable(path: &Path) -> bool {
    // storage-audit: allow(checks whether a program on PATH is executable; persists nothing)
    let Ok(meta) = std::fs::metadata(path) else { return false };
    // storage-audit: allow(inspects metadata already read; no disk access)
    let file = meta.file_type().is_file();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end_on_one_line() {
        assert_eq!(tail("a\nb  c\n", 10), "a b c");
        assert_eq!(tail("0123456789", 3), "789");
    }
}
