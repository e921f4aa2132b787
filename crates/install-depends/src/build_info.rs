//! What this build can use: the compute backends compiled into the binary. A GPU the machine
//! has but the build cannot drive is reported as such, never silently ignored.

use serde::{Deserialize, Serialize};

/// A compute backend inference can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The CPU, always compiled in.
    Cpu,
    /// NVIDIA CUDA (candle's `cuda` feature).
    Cuda,
    /// Apple Metal (candle's `metal` feature).
    Metal,
}

impl Backend {
    /// The cargo feature that compiles it in (`None` for the CPU).
    pub fn cargo_feature(self) -> Option<&'static str> {
        match self {
            Backend::Cpu => None,
            Backend::Cuda => Some("cuda"),
            Backend::Metal => Some("metal"),
        }
    }

    /// `cpu`, `cuda`, `metal`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Metal => "metal",
        }
    }
}

/// The binary being run, as far as hardware use goes. Part of the cache fingerprint: a
/// rebuilt binary with other features re-probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// The binary's version.
    pub version: String,
    /// Backends compiled in; always includes the CPU.
    pub backends: Vec<Backend>,
}

impl BuildInfo {
    /// A build of `version` with `compiled` backends (the CPU is added).
    pub fn new(version: impl Into<String>, compiled: &[Backend]) -> BuildInfo {
        let mut backends = vec![Backend::Cpu];
        backends.extend(compiled.iter().copied().filter(|b| *b != Backend::Cpu));
        backends.sort();
        backends.dedup();
        BuildInfo { version: version.into(), backends }
    }

    /// Whether `backend` is compiled in.
    pub fn has(&self, backend: Backend) -> bool {
        self.backends.contains(&backend)
    }

    /// Why `backend` cannot be used by this build, if it cannot.
    pub fn lacks(&self, backend: Backend) -> Option<String> {
        if self.has(backend) {
            return None;
        }
        Some(match backend.cargo_feature() {
            Some(feature) => format!(
                "this build has no {} backend (built without the `{feature}` cargo feature)",
                backend.name().to_uppercase()
            ),
            None => "this build has no CPU backend".to_string(),
        })
    }

    /// `cpu only` or `cpu, cuda`.
    pub fn describe(&self) -> String {
        if self.backends == [Backend::Cpu] {
            "CPU only".to_string()
        } else {
            self.backends.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
        }
    }
}
