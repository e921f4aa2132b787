//! The hardware report: every probe run together, kept in the store's [`Cache`] (namespace
//! `hardware`) under a machine fingerprint, so later runs read it instead of probing and
//! machines sharing a store keep their own entries.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipfs_accelerate_common::cache::{Cache, CacheKey, PutOptions};
use serde::{Deserialize, Serialize};

use crate::amd::RocmInfo;
use crate::build_info::BuildInfo;
use crate::cpu::{CpuInfo, MemoryInfo};
use crate::graphics::{MetalInfo, VulkanInfo};
use crate::host::Host;
use crate::intel::{IntelGpuInfo, OpenVinoInfo};
use crate::nvidia::NvidiaInfo;
use crate::probe::{Probed, Summary};
use crate::Result;

/// The cache namespace of hardware reports.
pub const NAMESPACE: &str = "hardware";

/// Bumped when [`Report`]'s meaning changes, so older cached reports are not read as new ones.
pub const SCHEMA: u32 = 1;

/// Environment variables that change what the probes find (not `CUDA_VISIBLE_DEVICES`: it
/// changes device selection, which is computed from the report on every run).
const PROBE_ENV: &[&str] = &[
    "LD_LIBRARY_PATH",
    "DYLD_LIBRARY_PATH",
    "INTEL_OPENVINO_DIR",
    "VK_DRIVER_FILES",
    "VK_ICD_FILENAMES",
    "IPFS_ACCELERATE_NVML_LIBRARY",
];

/// Everything the probes found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`] of the code that probed.
    pub schema: u32,
    /// When it was probed (seconds since the Unix epoch).
    pub probed_at: u64,
    /// The CPU.
    pub cpu: Probed<CpuInfo>,
    /// Memory and NUMA.
    pub memory: Probed<MemoryInfo>,
    /// NVIDIA GPUs through NVML.
    pub nvidia: Probed<NvidiaInfo>,
    /// AMD GPUs through ROCm's KFD.
    pub rocm: Probed<RocmInfo>,
    /// Intel GPUs.
    pub intel_gpu: Probed<IntelGpuInfo>,
    /// The OpenVINO runtime.
    pub openvino: Probed<OpenVinoInfo>,
    /// Apple Metal.
    pub metal: Probed<MetalInfo>,
    /// The Vulkan loader and drivers.
    pub vulkan: Probed<VulkanInfo>,
    /// What this build can use.
    pub build: BuildInfo,
}

/// One row of the human table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Probe name.
    pub probe: &'static str,
    /// Whether it found something.
    pub available: bool,
    /// What it found, or what it tried and why that failed.
    pub detail: String,
}

fn row<T: Summary>(probe: &'static str, probed: &Probed<T>) -> Row {
    match probed {
        Probed::Available { details } => Row { probe, available: true, detail: details.summary() },
        Probed::Unavailable { probe: tried, reason } => {
            Row { probe, available: false, detail: format!("{tried}: {reason}") }
        }
    }
}

impl Report {
    /// One row per probe, in a fixed order.
    pub fn rows(&self) -> Vec<Row> {
        vec![
            row("cpu", &self.cpu),
            row("memory", &self.memory),
            row("nvidia", &self.nvidia),
            row("rocm", &self.rocm),
            row("intel-gpu", &self.intel_gpu),
            row("openvino", &self.openvino),
            row("metal", &self.metal),
            row("vulkan", &self.vulkan),
        ]
    }
}

/// Runs every probe (concurrently where they wait on programs or drivers).
pub async fn detect(host: &Host, build: &BuildInfo) -> Report {
    use tracing::Instrument;
    host.count_probe_run();
    let span = tracing::info_span!("hardware probe", root = %host.root().display());
    let (nvidia, rocm, metal) = async {
        tokio::join!(
            crate::nvidia::probe(host),
            crate::amd::probe(host),
            crate::graphics::probe_metal(host)
        )
    }
    .instrument(span)
    .await;
    Report {
        schema: SCHEMA,
        probed_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        cpu: crate::cpu::probe_cpu(),
        memory: crate::cpu::probe_memory(host),
        nvidia,
        rocm,
        intel_gpu: crate::intel::probe_gpu(host),
        openvino: crate::intel::probe_openvino(host),
        metal,
        vulkan: crate::graphics::probe_vulkan(host),
        build: build.clone(),
    }
}

/// What identifies a machine and a binary for caching: read cheaply, without probing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Host name.
    pub hostname: String,
    /// Operating system and kernel release.
    pub os: String,
    /// Kernel release.
    pub kernel: String,
    /// CPU brand string.
    pub cpu_model: String,
    /// Kernel GPU driver versions (`nvidia`, `amdgpu`) and GPU device nodes present.
    pub drivers: BTreeMap<String, String>,
    /// Environment variables that steer the probes.
    pub probe_env: BTreeMap<String, String>,
    /// The binary.
    pub build: BuildInfo,
    /// [`SCHEMA`].
    pub schema: u32,
}

impl Fingerprint {
    /// Reads the fingerprint of `host` running `build`.
    pub fn of(host: &Host, build: &BuildInfo) -> Fingerprint {
        let mut drivers = BTreeMap::new();
        for module in ["nvidia", "amdgpu"] {
            if let Some(version) = host.read_system(&format!("/sys/module/{module}/version")) {
                drivers.insert(module.to_string(), version);
            }
        }
        if let Some(version) = host.read_system("/proc/driver/nvidia/version") {
            drivers.insert("nvidia-proc".into(), version.lines().next().unwrap_or("").to_string());
        }
        let gpu_nodes: Vec<String> = host
            .list_system("/dev")
            .into_iter()
            .filter(|n| n.starts_with("nvidia") || n == "kfd")
            .chain(host.list_system("/sys/class/drm").into_iter().filter(|n| {
                n.strip_prefix("card").is_some_and(|i| i.chars().all(|c| c.is_ascii_digit()))
            }))
            .collect();
        if !gpu_nodes.is_empty() {
            drivers.insert("devices".into(), gpu_nodes.join(","));
        }
        let probe_env = PROBE_ENV
            .iter()
            .filter_map(|name| Some((name.to_string(), host.var(name)?.to_string())))
            .collect();
        Fingerprint {
            hostname: host
                .read_system("/proc/sys/kernel/hostname")
                .or_else(sysinfo::System::host_name)
                .unwrap_or_default(),
            os: host.os().to_string(),
            kernel: host
                .read_system("/proc/sys/kernel/osrelease")
                .or_else(sysinfo::System::kernel_version)
                .unwrap_or_default(),
            cpu_model: crate::cpu::model_name(),
            drivers,
            probe_env,
            build: build.clone(),
            schema: SCHEMA,
        }
    }

    /// The cache key: the canonical JSON of the whole fingerprint.
    pub fn cache_key(&self) -> Result<CacheKey> {
        let value = serde_json::to_value(self).map_err(|e| crate::Error::Encode(e.to_string()))?;
        Ok(CacheKey::canonical(NAMESPACE, &value)?)
    }
}

/// Where a report came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// Probed just now (nothing cached for this fingerprint, expired, or `--refresh`).
    Probed,
    /// Read from the cache.
    Cache {
        /// Age of the cached report.
        age_secs: u64,
    },
}

/// A report with its fingerprint and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HardwareReport {
    /// Where it came from.
    pub source: Source,
    /// The machine it describes.
    pub fingerprint: Fingerprint,
    /// The findings.
    #[serde(flatten)]
    pub report: Report,
}

/// Options for [`load`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Probe even when a fresh report is cached.
    pub refresh: bool,
    /// How long a report stays fresh; the cache's `hardware` TTL when `None`.
    pub ttl: Option<Duration>,
}

/// The report for `host`: the cached one for its fingerprint while fresh, else a new probe,
/// which is then cached.
pub async fn load(
    cache: &Cache,
    host: &Host,
    build: &BuildInfo,
    options: &LoadOptions,
) -> Result<HardwareReport> {
    let fingerprint = Fingerprint::of(host, build);
    let key = fingerprint.cache_key()?;
    if !options.refresh {
        if let Some(hit) = cache.get(&key).await? {
            match serde_json::from_slice::<Report>(&hit.value) {
                Ok(report) if report.schema == SCHEMA => {
                    cache.flush_stats().await?;
                    return Ok(HardwareReport {
                        source: Source::Cache { age_secs: hit.age.as_secs() },
                        fingerprint,
                        report,
                    });
                }
                Ok(_) => tracing::info!("cached hardware report has an older schema; probing"),
                Err(e) => tracing::warn!(error = %e, "cached hardware report unreadable; probing"),
            }
        }
    }
    let report = detect(host, build).await;
    let value = serde_json::to_vec(&report).map_err(|e| crate::Error::Encode(e.to_string()))?;
    cache.put(&key, value, PutOptions { ttl: options.ttl, ..PutOptions::default() }).await?;
    cache.flush_stats().await?;
    Ok(HardwareReport { source: Source::Probed, fingerprint, report })
}
