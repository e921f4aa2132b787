//! Device selection: given what a skill can run on, the hardware report and the build, pick a
//! device and say why, including why every GPU present was not picked.
//!
//! Overrides: `IPFS_ACCELERATE_DEVICE` (`auto`, `cpu`, `cuda`, `cuda:N`, `metal`) forces a
//! choice, and a forced device that cannot be used is an error, never a silent fallback.
//! `CUDA_VISIBLE_DEVICES` hides GPUs exactly as the CUDA runtime does: a list of indices or
//! `GPU-…` UUID prefixes, ending at the first entry that names no GPU; `cuda:N` then numbers
//! the visible ones. Indices are read in NVML's PCI-bus order, which is CUDA's order when
//! `CUDA_DEVICE_ORDER=PCI_BUS_ID` (and for identical GPUs under CUDA's default order); name
//! GPUs by UUID to be exact on mixed machines.

use std::fmt;

use serde::Serialize;

use crate::build_info::{Backend, BuildInfo};
use crate::host::Host;
use crate::nvidia::NvidiaGpu;
use crate::probe::{gib, Probed};
use crate::report::Report;

/// A device inference can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU.
    Cpu,
    /// The CUDA device with this ordinal (after `CUDA_VISIBLE_DEVICES`).
    Cuda(u32),
    /// The Metal GPU.
    Metal,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
            Device::Metal => f.write_str("metal"),
        }
    }
}

impl Serialize for Device {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Device {
    /// The backend that drives it.
    pub fn backend(self) -> Backend {
        match self {
            Device::Cpu => Backend::Cpu,
            Device::Cuda(_) => Backend::Cuda,
            Device::Metal => Backend::Metal,
        }
    }
}

/// What a skill can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    /// Backends the skill has kernels for.
    pub backends: Vec<Backend>,
    /// GPU memory it needs free (weights plus working memory).
    pub min_gpu_memory: Option<u64>,
    /// Lowest CUDA compute capability its kernels support (`(7, 0)`).
    pub min_compute_capability: Option<(u32, u32)>,
}

impl Default for Needs {
    /// Runs anywhere: CPU, CUDA or Metal, with no minimums.
    fn default() -> Self {
        Needs {
            backends: vec![Backend::Cpu, Backend::Cuda, Backend::Metal],
            min_gpu_memory: None,
            min_compute_capability: None,
        }
    }
}

/// The choice and its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// The device.
    pub device: Device,
    /// Why: `cuda:0 — NVIDIA L4, 21.9 GiB free, compute 8.9` or `cpu — no NVIDIA GPU: …`.
    pub reason: String,
    /// Why each other candidate was not taken.
    pub passed_over: Vec<String>,
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} — {}", self.device, self.reason)
    }
}

/// Why no device could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// An override names something that is not a device.
    #[error("{setting}={value:?} is not a device (expected auto, cpu, cuda, cuda:N or metal)")]
    BadOverride {
        /// The variable.
        setting: &'static str,
        /// Its value.
        value: String,
    },
    /// The forced device cannot be used.
    #[error("{setting}={value} asks for {device}, which cannot be used: {reason}")]
    Forced {
        /// The variable.
        setting: &'static str,
        /// Its value.
        value: String,
        /// The device asked for.
        device: String,
        /// Why not.
        reason: String,
    },
    /// Nothing the skill supports is usable.
    #[error("no usable device: {0}")]
    Nothing(String),
}

impl ipfs_accelerate_common::Classify for SelectError {
    fn class(&self) -> ipfs_accelerate_common::Class {
        use ipfs_accelerate_common::{status::*, Class};
        match self {
            SelectError::BadOverride { .. } => Class::new("invalid_env", INTERNAL),
            SelectError::Forced { .. } | SelectError::Nothing(_) => {
                Class::new("device", UNAVAILABLE)
            }
        }
    }
}

/// The environment settings selection obeys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `IPFS_ACCELERATE_DEVICE`.
    pub device: Option<String>,
    /// `CUDA_VISIBLE_DEVICES`, as set (empty hides every GPU).
    pub cuda_visible_devices: Option<String>,
}

/// The variable forcing a device.
pub const DEVICE_VAR: &str = "IPFS_ACCELERATE_DEVICE";

impl Overrides {
    /// The overrides set in `host`'s environment.
    pub fn from_host(host: &Host) -> Overrides {
        Overrides {
            device: host.var(DEVICE_VAR).map(str::to_string),
            cuda_visible_devices: host.var_raw("CUDA_VISIBLE_DEVICES").map(str::to_string),
        }
    }
}

/// A visible CUDA GPU: its ordinal under `CUDA_VISIBLE_DEVICES` and NVML's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibleGpu<'a> {
    /// `cuda:N`.
    pub ordinal: u32,
    /// NVML's view.
    pub gpu: &'a NvidiaGpu,
}

/// The GPUs CUDA would show under `cuda_visible_devices`, in CUDA ordinal order.
pub fn visible_gpus<'a>(
    gpus: &'a [NvidiaGpu],
    cuda_visible_devices: Option<&str>,
) -> Vec<VisibleGpu<'a>> {
    let Some(list) = cuda_visible_devices else {
        return gpus.iter().zip(0..).map(|(gpu, ordinal)| VisibleGpu { ordinal, gpu }).collect();
    };
    let mut visible: Vec<&NvidiaGpu> = Vec::new();
    for entry in list.split(',').map(str::trim) {
        let found = if let Ok(index) = entry.parse::<u32>() {
            gpus.iter().find(|g| g.index == index)
        } else if entry.starts_with("GPU-") {
            let matches: Vec<_> = gpus.iter().filter(|g| g.uuid.starts_with(entry)).collect();
            // An ambiguous prefix is invalid to CUDA too.
            if matches.len() == 1 {
                Some(matches[0])
            } else {
                None
            }
        } else {
            None
        };
        // CUDA stops at the first invalid entry; duplicates are invalid as well.
        match found {
            Some(gpu) if !visible.iter().any(|v| v.index == gpu.index) => visible.push(gpu),
            _ => break,
        }
    }
    visible.into_iter().zip(0..).map(|(gpu, ordinal)| VisibleGpu { ordinal, gpu }).collect()
}

enum Wanted {
    Auto,
    Cpu,
    Cuda(Option<u32>),
    Metal,
}

fn parse_override(value: &str) -> Option<Wanted> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "auto" => Some(Wanted::Auto),
        "cpu" => Some(Wanted::Cpu),
        "cuda" | "gpu" => Some(Wanted::Cuda(None)),
        "metal" | "mps" => Some(Wanted::Metal),
        other => {
            other.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(|n| Wanted::Cuda(Some(n)))
        }
    }
}

/// Chooses the device for a skill with `needs`.
pub fn select(
    report: &Report,
    build: &BuildInfo,
    needs: &Needs,
    overrides: &Overrides,
) -> Result<Selection, SelectError> {
    let wanted = match &overrides.device {
        None => Wanted::Auto,
        Some(value) => parse_override(value).ok_or_else(|| SelectError::BadOverride {
            setting: DEVICE_VAR,
            value: value.clone(),
        })?,
    };
    let forced = |device: &str, reason: String| SelectError::Forced {
        setting: DEVICE_VAR,
        value: overrides.device.clone().unwrap_or_default(),
        device: device.to_string(),
        reason,
    };
    let cuda = cuda_candidates(report, build, needs, overrides);
    let metal = metal_candidate(report, build, needs);
    let cpu_ok = needs.backends.contains(&Backend::Cpu);
    match wanted {
        Wanted::Cpu if !cpu_ok => Err(forced("cpu", "the skill has no CPU implementation".into())),
        Wanted::Cpu => Ok(Selection {
            device: Device::Cpu,
            reason: format!("{DEVICE_VAR}=cpu"),
            passed_over: Vec::new(),
        }),
        Wanted::Cuda(ordinal) => {
            let name = ordinal.map_or("cuda".to_string(), |n| format!("cuda:{n}"));
            let picked = match ordinal {
                None => cuda.best().ok_or_else(|| forced(&name, cuda.why_none()))?,
                Some(n) => cuda
                    .usable
                    .iter()
                    .find(|c| c.ordinal == n)
                    .ok_or_else(|| forced(&name, cuda.why_not(n)))?,
            };
            Ok(Selection {
                device: Device::Cuda(picked.ordinal),
                reason: picked.reason.clone(),
                passed_over: cuda.rejected.clone(),
            })
        }
        Wanted::Metal => match metal {
            Ok(reason) => Ok(Selection { device: Device::Metal, reason, passed_over: Vec::new() }),
            Err(reason) => Err(forced("metal", reason)),
        },
        Wanted::Auto => {
            if let Some(best) = cuda.best() {
                return Ok(Selection {
                    device: Device::Cuda(best.ordinal),
                    reason: best.reason.clone(),
                    passed_over: cuda.rejected.clone(),
                });
            }
            let mut passed_over = cuda.rejected.clone();
            if cuda.rejected.is_empty() {
                passed_over.push(cuda.why_none());
            }
            match metal {
                Ok(reason) => return Ok(Selection { device: Device::Metal, reason, passed_over }),
                Err(reason) if report.metal.is_available() => passed_over.push(reason),
                Err(_) => {}
            }
            passed_over.extend(unused_gpus(report));
            if !cpu_ok {
                return Err(SelectError::Nothing(passed_over.join("; ")));
            }
            let reason = passed_over.first().cloned().unwrap_or_else(|| "no GPU".to_string());
            Ok(Selection { device: Device::Cpu, reason, passed_over })
        }
    }
}

/// GPUs present that no backend of ours can drive: said, so they are never silently unused.
fn unused_gpus(report: &Report) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(rocm) = report.rocm.details() {
        notes.push(format!(
            "{} AMD GPU(s) present, but ipfs-accelerate has no ROCm backend",
            rocm.gpus.len()
        ));
    }
    if let Some(intel) = report.intel_gpu.details() {
        notes.push(format!(
            "{} Intel GPU(s) present, but ipfs-accelerate has no Intel GPU backend",
            intel.devices.len()
        ));
    }
    notes
}

struct Usable {
    ordinal: u32,
    free: u64,
    reason: String,
}

struct CudaCandidates {
    /// Every usable GPU, in ordinal order.
    usable: Vec<Usable>,
    /// Why each GPU was not usable.
    rejected: Vec<String>,
    /// Why there are no GPUs to consider at all.
    absent: Option<String>,
}

impl CudaCandidates {
    /// The usable GPU with the most free memory (the lowest ordinal among equals).
    fn best(&self) -> Option<&Usable> {
        self.usable.iter().rev().max_by_key(|u| u.free)
    }

    fn why_none(&self) -> String {
        if let Some(absent) = &self.absent {
            return absent.clone();
        }
        if self.rejected.is_empty() {
            "no CUDA GPU".to_string()
        } else {
            self.rejected.join("; ")
        }
    }

    fn why_not(&self, ordinal: u32) -> String {
        let prefix = format!("cuda:{ordinal} ");
        self.rejected
            .iter()
            .find(|r| r.starts_with(&prefix))
            .cloned()
            .unwrap_or_else(|| format!("there is no visible cuda:{ordinal} ({})", self.why_none()))
    }
}

fn cuda_candidates(
    report: &Report,
    build: &BuildInfo,
    needs: &Needs,
    overrides: &Overrides,
) -> CudaCandidates {
    let mut out = CudaCandidates { usable: Vec::new(), rejected: Vec::new(), absent: None };
    let info = match &report.nvidia {
        Probed::Available { details } => details,
        Probed::Unavailable { probe, reason } => {
            out.absent = Some(format!("no NVIDIA GPU: {probe}: {reason}"));
            return out;
        }
    };
    let visible = visible_gpus(&info.devices, overrides.cuda_visible_devices.as_deref());
    if visible.is_empty() {
        out.absent = Some(format!(
            "CUDA_VISIBLE_DEVICES={:?} hides all {} NVIDIA GPU(s)",
            overrides.cuda_visible_devices.as_deref().unwrap_or(""),
            info.devices.len()
        ));
        return out;
    }
    for VisibleGpu { ordinal, gpu } in visible {
        let described = describe_gpu(gpu);
        let reject = if let Some(lacks) = build.lacks(Backend::Cuda) {
            Some(lacks)
        } else if !needs.backends.contains(&Backend::Cuda) {
            Some("the skill has no CUDA implementation".to_string())
        } else if let Some((need, have)) =
            needs.min_gpu_memory.zip(gpu.memory_free_bytes).filter(|(n, h)| h < n)
        {
            Some(format!("{} free, the skill needs {}", gib(have), gib(need)))
        } else if let Some(((nmaj, nmin), cc)) =
            needs.min_compute_capability.zip(gpu.compute_capability.as_deref())
        {
            parse_cc(cc)
                .filter(|have| *have < (nmaj, nmin))
                .map(|_| format!("compute {cc}, the skill needs {nmaj}.{nmin}"))
        } else {
            None
        };
        match reject {
            Some(why) => out.rejected.push(format!("cuda:{ordinal} ({described}): {why}")),
            None => out.usable.push(Usable {
                ordinal,
                free: gpu.memory_free_bytes.unwrap_or(0),
                reason: described,
            }),
        }
    }
    out
}

fn describe_gpu(gpu: &NvidiaGpu) -> String {
    let mut s = gpu.name.clone();
    if let Some(free) = gpu.memory_free_bytes {
        s.push_str(&format!(", {} free", gib(free)));
    }
    if let Some(cc) = &gpu.compute_capability {
        s.push_str(&format!(", compute {cc}"));
    }
    s
}

fn parse_cc(cc: &str) -> Option<(u32, u32)> {
    let (major, minor) = cc.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn metal_candidate(report: &Report, build: &BuildInfo, needs: &Needs) -> Result<String, String> {
    let info = match &report.metal {
        Probed::Available { details } => details,
        Probed::Unavailable { probe, reason } => {
            return Err(format!("no Metal GPU: {probe}: {reason}"))
        }
    };
    let name = info.devices.first().map_or("Metal GPU", |d| d.name.as_str());
    if let Some(lacks) = build.lacks(Backend::Metal) {
        return Err(format!("{name} present but {lacks}"));
    }
    if !needs.backends.contains(&Backend::Metal) {
        return Err(format!("{name} present but the skill has no Metal implementation"));
    }
    Ok(format!("{name} ({})", info.devices.first().map_or("", |d| d.metal.as_str())))
}
