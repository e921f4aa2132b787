//! Dependency checks for the optional features, and install plans.
//!
//! For each feature: what it needs (programs, libraries, Python packages in a virtualenv this
//! project owns, cargo-installed tools), whether each is present and at which version, and a
//! plan of exact commands that would install what is missing. A plan is only printed unless
//! [`apply`] is called, which runs each step with its output shown and stops at the first
//! failure. Python packages go into the project's own virtualenv, never into the system
//! Python (no `--break-system-packages`, no `sudo pip`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::cpu::CpuInfo;
use crate::host::{CommandOutcome, Host, COMMAND_TIMEOUT};
use crate::{Error, Result};

/// llama-cpp-python, the OpenAI-compatible server the backend tests run.
pub const LLAMA_CPP_PYTHON: &str = "llama-cpp-python[server]==0.3.36";
/// The ONNX Runtime whose shared library Piper TTS loads (`ort` with `load-dynamic`).
const ONNXRUNTIME: &str = "onnxruntime==1.32.0";

/// What a requirement is and how it is installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Need {
    /// A program on `PATH` (any of `names`).
    Program {
        /// Accepted names, first preferred.
        names: Vec<&'static str>,
        /// Arguments that print its version.
        version_args: Vec<&'static str>,
    },
    /// A shared library in the linker's search path (or the file an environment variable names).
    Library {
        /// File name or soname prefix.
        name: &'static str,
        /// A variable that may name the file directly.
        env: Option<&'static str>,
    },
    /// Python with `venv` and `ensurepip` (Debian splits them out).
    PythonVenv,
    /// A package installed in the project's virtualenv.
    PythonPackage {
        /// The pip requirement.
        spec: &'static str,
        /// Its distribution name, for `importlib.metadata`.
        dist: &'static str,
    },
}

/// How a missing requirement gets installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Source {
    /// A Debian/Ubuntu package.
    Apt {
        /// The package.
        package: &'static str,
    },
    /// `pip install` into the project's virtualenv.
    Pip,
    /// `cargo install --locked`.
    Cargo {
        /// The crate.
        krate: &'static str,
        /// Its exact version.
        version: &'static str,
    },
    /// Only a person can do it (a GPU driver); the text says how.
    Manual {
        /// What to do.
        instructions: &'static str,
    },
}

/// One thing a feature needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    /// Short name (`cmake`, `libcuda`).
    pub name: &'static str,
    /// Why the feature needs it.
    pub why: &'static str,
    /// What to look for.
    pub need: Need,
    /// How to get it.
    pub source: Source,
    /// Nice to have: the feature works without it.
    pub optional: bool,
}

/// An optional feature and what it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feature {
    /// `cuda`, `whisper`, `onnx-runtime`, `s3`, `ipfs`, `llama-server`.
    pub name: &'static str,
    /// What it is for.
    pub purpose: &'static str,
    /// Its requirements.
    pub requirements: Vec<Requirement>,
}

fn program(name: &'static str, why: &'static str, source: Source) -> Requirement {
    Requirement {
        name,
        why,
        need: Need::Program { names: vec![name], version_args: vec!["--version"] },
        source,
        optional: false,
    }
}

fn apt(package: &'static str) -> Source {
    Source::Apt { package }
}

/// Every optional feature this project knows.
pub fn features() -> Vec<Feature> {
    let cxx = Requirement {
        name: "c++",
        why: "compiles the native code",
        need: Need::Program {
            names: vec!["c++", "g++", "clang++"],
            version_args: vec!["--version"],
        },
        source: apt("g++"),
        optional: false,
    };
    let cmake = program("cmake", "configures the native build", apt("cmake"));
    vec![
        Feature {
            name: "cuda",
            purpose: "a CUDA build of the inference kernels (candle's `cuda` feature)",
            requirements: vec![
                program("nvcc", "compiles the CUDA kernels", apt("nvidia-cuda-toolkit")),
                cxx.clone(),
                Requirement {
                    name: "libcuda",
                    why: "the CUDA driver API the kernels run on",
                    need: Need::Library { name: "libcuda.so.1", env: None },
                    source: Source::Manual {
                        instructions:
                            "install the NVIDIA driver for your GPU (your distribution's \
                                       nvidia-driver package or NVIDIA's installer), then reboot",
                    },
                    optional: false,
                },
            ],
        },
        Feature {
            name: "whisper",
            purpose: "the whisper.cpp build behind speech recognition (whisper-rs)",
            requirements: vec![cmake.clone(), cxx.clone()],
        },
        Feature {
            name: "onnx-runtime",
            purpose: "Piper text-to-speech: ONNX Runtime loaded at run time, espeak-ng phonemes",
            requirements: vec![
                Requirement {
                    name: "python3-venv",
                    why: "the virtualenv the ONNX Runtime wheel is installed into",
                    need: Need::PythonVenv,
                    source: apt("python3-venv"),
                    optional: false,
                },
                Requirement {
                    name: "onnxruntime",
                    why: "libonnxruntime.so, loaded by `ort` (or point ORT_DYLIB_PATH at one)",
                    need: Need::PythonPackage { spec: ONNXRUNTIME, dist: "onnxruntime" },
                    source: Source::Pip,
                    optional: false,
                },
                Requirement {
                    name: "libespeak-ng",
                    why: "turns text into phonemes for the voice",
                    need: Need::Library { name: "libespeak-ng.so.1", env: None },
                    source: apt("libespeak-ng1"),
                    optional: false,
                },
            ],
        },
        Feature {
            name: "s3",
            purpose: "the S3 tier; the client is built in, the test suite runs a local S3 server",
            requirements: vec![
                program(
                    "cargo",
                    "builds the local S3 server",
                    Source::Manual { instructions: "install Rust with rustup: https://rustup.rs" },
                ),
                Requirement {
                    optional: true,
                    ..program(
                        "s3s-fs",
                        "the local S3 server the tests run (a real endpoint needs nothing)",
                        Source::Cargo { krate: "s3s-fs", version: "0.14.1" },
                    )
                },
            ],
        },
        Feature {
            name: "ipfs",
            purpose: "an IPFS node for the Kubo tier: Kubo, or js-ipfs as the test suite runs it",
            requirements: vec![
                Requirement {
                    optional: true,
                    ..program(
                        "ipfs",
                        "a Kubo daemon (set IPFS_BIN for the tests to use it)",
                        Source::Manual {
                            instructions:
                                "install Kubo from https://docs.ipfs.tech/install/command-line/",
                        },
                    )
                },
                program("node", "runs js-ipfs, the node the test suite starts", apt("nodejs")),
                program("npm", "installs the pinned js-ipfs", apt("npm")),
            ],
        },
        Feature {
            name: "llama-server",
            purpose: "llama.cpp's OpenAI-compatible server, which the backend tests talk to",
            requirements: vec![
                Requirement {
                    name: "python3-venv",
                    why: "the virtualenv llama-cpp-python is built into",
                    need: Need::PythonVenv,
                    source: apt("python3-venv"),
                    optional: false,
                },
                cmake,
                cxx,
                Requirement {
                    name: "llama-cpp-python",
                    why: "the server itself (built from source by pip)",
                    need: Need::PythonPackage { spec: LLAMA_CPP_PYTHON, dist: "llama_cpp_python" },
                    source: Source::Pip,
                    optional: false,
                },
            ],
        },
    ]
}

/// The features named, or all of them when `names` is empty.
pub fn select_features(names: &[String]) -> Result<Vec<Feature>> {
    let all = features();
    if names.is_empty() {
        return Ok(all);
    }
    names
        .iter()
        .map(|name| {
            all.iter().find(|f| f.name == name).cloned().ok_or_else(|| Error::UnknownFeature {
                name: name.clone(),
                known: all.iter().map(|f| f.name).collect::<Vec<_>>().join(", "),
            })
        })
        .collect()
}

/// Where checks look and plans install.
#[derive(Debug, Clone)]
pub struct Context {
    /// The machine.
    pub host: Host,
    /// The project's Python virtualenv.
    pub venv: PathBuf,
    /// The CPU (the llama.cpp build flags follow its features).
    pub cpu: Option<CpuInfo>,
}

/// One requirement checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// The requirement.
    #[serde(flatten)]
    pub requirement: Requirement,
    /// Whether it is there.
    pub present: bool,
    /// Its version, where it says.
    pub version: Option<String>,
    /// Where it was found, or why it was not.
    pub detail: String,
}

/// A feature with every requirement checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeatureStatus {
    /// Feature name.
    pub name: &'static str,
    /// What it is for.
    pub purpose: &'static str,
    /// Every required (non-optional) requirement is present.
    pub ready: bool,
    /// Each requirement.
    pub checks: Vec<Checked>,
}

/// Checks every requirement of `features`.
pub async fn check(context: &Context, features: &[Feature]) -> Vec<FeatureStatus> {
    let mut out = Vec::new();
    for feature in features {
        let mut checks = Vec::new();
        for requirement in &feature.requirements {
            checks.push(check_one(context, requirement).await);
        }
        let ready = checks.iter().all(|c| c.present || c.requirement.optional);
        out.push(FeatureStatus { name: feature.name, purpose: feature.purpose, ready, checks });
    }
    out
}

async fn check_one(context: &Context, requirement: &Requirement) -> Checked {
    let host = &context.host;
    let found = |version: Option<String>, detail: String| Checked {
        requirement: requirement.clone(),
        present: true,
        version,
        detail,
    };
    let missing = |detail: String| Checked {
        requirement: requirement.clone(),
        present: false,
        version: None,
        detail,
    };
    match &requirement.need {
        Need::Program { names, version_args } => {
            let Some((name, path)) = names.iter().find_map(|n| Some((*n, host.find_program(n)?)))
            else {
                return missing(format!("{} not found on PATH", names.join(" / ")));
            };
            let version = match host.run(name, version_args, COMMAND_TIMEOUT).await {
                CommandOutcome::Ok { stdout } => version_in(&stdout),
                _ => None,
            };
            found(version, path.display().to_string())
        }
        Need::Library { name, env } => {
            if let Some(path) = env.and_then(|var| host.var(var)) {
                return if host.path_exists(Path::new(path)) {
                    found(None, format!("{path} (from {})", env.unwrap_or_default()))
                } else {
                    missing(format!(
                        "{} names {path}, which does not exist",
                        env.unwrap_or_default()
                    ))
                };
            }
            match host.find_library(name) {
                Some(path) => found(version_in_soname(&path, name), path.display().to_string()),
                None => missing(format!("{name} not in {}", host.describe_library_search())),
            }
        }
        Need::PythonVenv => {
            let args = ["-c", "import venv, ensurepip, sys; print(sys.version.split()[0])"];
            match host.run("python3", &args, COMMAND_TIMEOUT).await {
                CommandOutcome::Ok { stdout } => {
                    found(version_in(&stdout), "python3 with venv and ensurepip".to_string())
                }
                CommandOutcome::NotFound => missing("python3 not found on PATH".to_string()),
                other => missing(format!(
                    "python3 cannot create virtualenvs: {}",
                    other.describe_failure("python3 -c 'import venv, ensurepip'")
                )),
            }
        }
        Need::PythonPackage { dist, .. } => {
            let python = venv_python(&context.venv);
            if !host.path_exists(&python) {
                return missing(format!("no virtualenv at {}", context.venv.display()));
            }
            let code = format!("import importlib.metadata as m; print(m.version({dist:?}))");
            let python_str = python.display().to_string();
            match host.run_path(&python, &["-c", &code], COMMAND_TIMEOUT).await {
                CommandOutcome::Ok { stdout } => {
                    found(Some(stdout.trim().to_string()), format!("in {}", context.venv.display()))
                }
                other => missing(format!(
                    "not installed in {} ({})",
                    context.venv.display(),
                    other.describe_failure(&python_str)
                )),
            }
        }
    }
}

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// The first `1.2.3`-like token of the first line that has one.
fn version_in(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        line.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
            .map(|t| t.trim_start_matches('v'))
            .find(|t| {
                t.contains('.')
                    && t.chars().next().is_some_and(|c| c.is_ascii_digit())
                    && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
            })
            .map(str::to_string)
    })
}

/// `libcuda.so.550.54.15` → `550.54.15`.
fn version_in_soname(path: &Path, name: &str) -> Option<String> {
    let file = path.file_name()?.to_string_lossy().into_owned();
    let base = name.split(".so").next().unwrap_or(name);
    let rest = file.strip_prefix(base)?.strip_prefix(".so.")?;
    (!rest.is_empty()).then(|| rest.to_string())
}

/// One command of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// A command to run.
    Run {
        /// What it achieves.
        purpose: String,
        /// Environment it needs, beyond the caller's.
        env: Vec<(String, String)>,
        /// The program.
        program: String,
        /// Its arguments.
        args: Vec<String>,
    },
    /// Something only a person can do.
    Manual {
        /// What it achieves.
        purpose: String,
        /// What to do.
        instructions: String,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Run { env, program, args, .. } => {
                for (k, v) in env {
                    write!(f, "{k}={} ", shell_quote(v))?;
                }
                f.write_str(&shell_quote(program))?;
                for arg in args {
                    write!(f, " {}", shell_quote(arg))?;
                }
                Ok(())
            }
            Step::Manual { instructions, .. } => write!(f, "# by hand: {instructions}"),
        }
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@+,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The commands that would install what `statuses` lack, in order: system packages, manual
/// steps, the virtualenv, pip packages, cargo tools. Optional requirements are included only
/// with `include_optional` (when the user named the feature).
pub fn plan(context: &Context, statuses: &[FeatureStatus], include_optional: bool) -> Vec<Step> {
    let missing: Vec<&Checked> = statuses
        .iter()
        .flat_map(|s| &s.checks)
        .filter(|c| !c.present && (include_optional || !c.requirement.optional))
        .collect();
    let mut apt_packages: Vec<&str> = Vec::new();
    let mut steps = Vec::new();
    let mut manual = Vec::new();
    let mut pip: Vec<&'static str> = Vec::new();
    let mut cargo = Vec::new();
    for checked in &missing {
        let requirement = &checked.requirement;
        match (&requirement.source, &requirement.need) {
            (Source::Apt { package }, _) => {
                if !apt_packages.contains(package) {
                    apt_packages.push(package);
                }
            }
            (Source::Manual { instructions }, _) => {
                let step = Step::Manual {
                    purpose: format!("{} ({})", requirement.name, requirement.why),
                    instructions: instructions.to_string(),
                };
                if !manual.contains(&step) {
                    manual.push(step);
                }
            }
            (Source::Pip, Need::PythonPackage { spec, .. }) => {
                if !pip.contains(spec) {
                    pip.push(spec);
                }
            }
            (Source::Pip, _) => {}
            (Source::Cargo { krate, version }, _) => {
                let step = Step::Run {
                    purpose: format!("install {krate} {version}"),
                    env: Vec::new(),
                    program: "cargo".into(),
                    args: ["install", "--locked", krate, "--version", version]
                        .map(String::from)
                        .into(),
                };
                if !cargo.contains(&step) {
                    cargo.push(step);
                }
            }
        }
    }
    if !apt_packages.is_empty() {
        let sudo = !is_root();
        let command = |args: Vec<String>| {
            let (program, args) = if sudo {
                ("sudo".to_string(), [vec!["apt-get".to_string()], args].concat())
            } else {
                ("apt-get".to_string(), args)
            };
            (program, args)
        };
        let (program, args) = command(vec!["update".into()]);
        steps.push(Step::Run {
            purpose: "refresh the package lists".into(),
            env: Vec::new(),
            program,
            args,
        });
        let mut install: Vec<String> =
            ["install", "-y", "--no-install-recommends"].map(String::from).into();
        install.extend(apt_packages.iter().map(|p| p.to_string()));
        let (program, args) = command(install);
        steps.push(Step::Run {
            purpose: format!("system packages: {}", apt_packages.join(", ")),
            env: vec![("DEBIAN_FRONTEND".into(), "noninteractive".into())],
            program,
            args,
        });
    }
    steps.extend(manual);
    if !pip.is_empty() {
        let python = venv_python(&context.venv);
        if !context.host.path_exists(&python) {
            steps.push(Step::Run {
                purpose: "the project's Python virtualenv (the system Python is never modified)"
                    .into(),
                env: Vec::new(),
                program: "python3".into(),
                args: vec!["-m".into(), "venv".into(), context.venv.display().to_string()],
            });
        }
        for spec in pip {
            let mut env = Vec::new();
            if spec.starts_with("llama-cpp-python") {
                env.push(("CMAKE_ARGS".to_string(), llama_cmake_args(context.cpu.as_ref())));
            }
            steps.push(Step::Run {
                purpose: format!("{spec} into {}", context.venv.display()),
                env,
                program: python.display().to_string(),
                args: ["-m", "pip", "install", "--disable-pip-version-check", spec]
                    .map(String::from)
                    .into(),
            });
        }
    }
    steps.extend(cargo);
    steps
}

/// llama.cpp's CMake flags: never `GGML_NATIVE` (its AMX path crashes on some CPUs that
/// report AMX; see the feasibility notes), and each SIMD level only if this CPU has it.
pub fn llama_cmake_args(cpu: Option<&CpuInfo>) -> String {
    let has = |f: &str| cpu.is_some_and(|c| c.features.iter().any(|x| x == f));
    let mut args = vec!["-DGGML_NATIVE=OFF".to_string()];
    for (flag, feature) in
        [("AVX", "avx"), ("AVX2", "avx2"), ("FMA", "fma"), ("F16C", "f16c"), ("AVX512", "avx512f")]
    {
        args.push(format!("-DGGML_{flag}={}", if has(feature) { "ON" } else { "OFF" }));
    }
    args.join(" ")
}

fn is_root() -> bool {
    #[cfg(unix)]
    {
        rustix::process::geteuid().is_root()
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Commands that ran and succeeded.
    pub ran: Vec<String>,
    /// Manual steps left for a person.
    pub manual: Vec<String>,
}

/// Runs `steps` in order, each with its output going to this process's stdout/stderr and
/// `timeout` as its deadline; stops at the first failure. Manual steps are collected, not run.
pub async fn apply(steps: &[Step], timeout: Duration) -> Result<Applied> {
    let mut applied = Applied::default();
    for step in steps {
        let Step::Run { env, program, args, purpose } = step else {
            applied.manual.push(step.to_string());
            continue;
        };
        let line = step.to_string();
        eprintln!("==> {purpose}\n$ {line}");
        tracing::info!(command = %line, "install step");
        let mut command = tokio::process::Command::new(program);
        command.args(args).envs(env.iter().cloned()).kill_on_drop(true);
        let status = match tokio::time::timeout(timeout, command.status()).await {
            Err(_) => {
                return Err(Error::StepFailed {
                    command: line,
                    outcome: format!(
                        "did not finish within {} s and was killed",
                        timeout.as_secs()
                    ),
                })
            }
            Ok(Err(e)) => {
                return Err(Error::StepFailed {
                    command: line,
                    outcome: format!("could not start: {e}"),
                })
            }
            Ok(Ok(status)) => status,
        };
        if !status.success() {
            return Err(Error::StepFailed { command: line, outcome: format!("failed ({status})") });
        }
        applied.ran.push(line);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_found_in_tool_banners() {
        assert_eq!(version_in("cmake version 3.25.1\n\nCMake suite").as_deref(), Some("3.25.1"));
        assert_eq!(version_in("g++ (Debian 12.2.0-14) 12.2.0").as_deref(), Some("12.2.0-14"));
        assert_eq!(version_in("v20.19.2").as_deref(), Some("20.19.2"));
        assert_eq!(version_in("nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 12.4, V12.4.131").as_deref(), Some("12.4"));
        assert_eq!(version_in("no version here"), None);
    }

    #[test]
    fn sonames_carry_versions() {
        let path = Path::new("/usr/lib/libcuda.so.550.54.15");
        assert_eq!(version_in_soname(path, "libcuda.so.1").as_deref(), Some("550.54.15"));
        assert_eq!(version_in_soname(Path::new("/x/libcuda.so"), "libcuda.so.1"), None);
    }

    #[test]
    fn shell_quoting_round_trips_through_sh() {
        assert_eq!(shell_quote("cmake"), "cmake");
        assert_eq!(
            shell_quote("-DGGML_NATIVE=OFF -DGGML_AVX=ON"),
            "'-DGGML_NATIVE=OFF -DGGML_AVX=ON'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(
            shell_quote("llama-cpp-python[server]==0.3.36"),
            "'llama-cpp-python[server]==0.3.36'"
        );
    }

    #[test]
    fn llama_flags_follow_the_cpu_and_never_go_native() {
        let cpu = CpuInfo {
            arch: "x86_64".into(),
            vendor: None,
            model: None,
            physical_cores: None,
            logical_cpus: 1,
            usable_threads: 1,
            features: vec!["avx".into(), "avx2".into(), "fma".into()],
            missing: vec![],
        };
        let args = llama_cmake_args(Some(&cpu));
        assert!(args.starts_with("-DGGML_NATIVE=OFF"));
        assert!(args.contains("-DGGML_AVX2=ON") && args.contains("-DGGML_AVX512=OFF"));
    }
}
