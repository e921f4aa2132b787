//! Hardware and dependency detection for ipfs-accelerate that explains every answer, with
//! cached probe results.
//!
//! - [`report`]: every hardware probe (CPU and its features, memory and NUMA, NVIDIA through
//!   NVML loaded at run time, AMD ROCm, Intel GPUs, OpenVINO, Metal, Vulkan), each answering
//!   [`Probed::Available`] with what it found or [`Probed::Unavailable`] with what it tried and
//!   why that failed; the report is cached in the store under a machine fingerprint.
//! - [`select`]: the device a skill should run on, with the reason, obeying
//!   `IPFS_ACCELERATE_DEVICE` and `CUDA_VISIBLE_DEVICES`.
//! - [`deps`]: what each optional feature needs, what is present, and an install plan that is
//!   only ever run when asked.
//! - [`doctor`]: checks gathered into one verdict.
//!
//! Probes read the machine through a [`Host`], so tests can fake what this machine lacks.
//! Everything this crate persists goes through [`ipfs_accelerate_common`].

mod amd;
mod build_info;
mod cpu;
pub mod deps;
pub mod doctor;
mod graphics;
mod host;
mod intel;
mod nvidia;
mod probe;
pub mod report;
pub mod select;

pub use amd::{AmdGpu, RocmInfo};
pub use build_info::{Backend, BuildInfo};
pub use cpu::{CpuInfo, MemoryInfo, NumaNode};
pub use graphics::{MetalGpu, MetalInfo, VulkanDriver, VulkanInfo};
pub use host::{CommandOutcome, Host, COMMAND_TIMEOUT};
pub use intel::{IntelGpu, IntelGpuInfo, OpenVinoInfo};
pub use nvidia::{
    FixedNvml, NvidiaGpu, NvidiaInfo, NvmlApi, NvmlFailure, SystemNvml, NVML_LIBRARY,
};
pub use probe::{gib, human_bytes, Probed, Summary};

/// The CPU probe alone (cheap: no drivers, no programs).
pub fn cpu_info() -> CpuInfo {
    cpu::cpu_info()
}

/// The memory probe alone (cheap: one system call).
pub fn memory_info() -> Probed<MemoryInfo> {
    cpu::probe_memory(&Host::current())
}

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage layer failed.
    #[error(transparent)]
    Storage(#[from] ipfs_accelerate_common::Error),
    /// A report could not be encoded.
    #[error("encoding the hardware report: {0}")]
    Encode(String),
    /// An unknown optional feature was named.
    #[error("unknown feature {name:?} (known: {known})")]
    UnknownFeature {
        /// What was asked for.
        name: String,
        /// The features that exist.
        known: String,
    },
    /// An install step failed; the steps after it were not run.
    #[error("install step `{command}` {outcome}")]
    StepFailed {
        /// The command line.
        command: String,
        /// How it ended.
        outcome: String,
    },
}

impl ipfs_accelerate_common::Classify for Error {
    fn class(&self) -> ipfs_accelerate_common::Class {
        use ipfs_accelerate_common::{status::*, Class};
        match self {
            Error::Storage(e) => e.class(),
            Error::Encode(_) => Class::new("encode", INTERNAL),
            Error::UnknownFeature { .. } => Class::new("unknown_feature", BAD_REQUEST),
            Error::StepFailed { .. } => Class::new("install_step", INTERNAL),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
