//! The CPU and memory probes.
//!
//! Feature flags come from `std::arch` runtime detection, which also checks that the OS saves
//! the wider registers (an AVX-512 CPU under a kernel that does not enable it reports no
//! AVX-512), and from `cpuid` (via `raw-cpuid`) for what `std` cannot detect on stable (AMX).
//! Flags are named as Linux's `/proc/cpuinfo` names them, so users can compare.

use serde::{Deserialize, Serialize};

use crate::host::Host;
use crate::probe::{gib, Probed, Summary};

/// What the CPU is and which inference-relevant instructions it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// `x86_64`, `aarch64`, …
    pub arch: String,
    /// `GenuineIntel`, `AuthenticAMD`, … (`None` where the CPU does not say).
    pub vendor: Option<String>,
    /// The brand string (`AMD EPYC 9654 96-Core Processor`).
    pub model: Option<String>,
    /// Physical cores, where the OS tells.
    pub physical_cores: Option<usize>,
    /// Logical CPUs (hardware threads) in the machine.
    pub logical_cpus: usize,
    /// Threads this process may run on (affinity and cgroup limits applied).
    pub usable_threads: usize,
    /// The checked features this CPU has, by their `/proc/cpuinfo` names.
    pub features: Vec<String>,
    /// The checked features it lacks.
    pub missing: Vec<String>,
}

impl Summary for CpuInfo {
    fn summary(&self) -> String {
        let model = self.model.as_deref().or(self.vendor.as_deref()).unwrap_or("unknown CPU");
        let cores = match self.physical_cores {
            Some(p) => format!("{p} cores / {} threads", self.logical_cpus),
            None => format!("{} threads", self.logical_cpus),
        };
        let usable = if self.usable_threads < self.logical_cpus {
            format!(" ({} usable)", self.usable_threads)
        } else {
            String::new()
        };
        let features = if self.features.is_empty() {
            "no checked SIMD features".to_string()
        } else {
            self.features.join(" ")
        };
        format!("{model}, {cores}{usable}; {features}")
    }
}

/// Memory and its NUMA layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryInfo {
    /// Installed memory visible to the OS.
    pub total_bytes: u64,
    /// Memory available for new allocations without swapping.
    pub available_bytes: u64,
    /// NUMA nodes, where sysfs shows them.
    pub numa_nodes: Vec<NumaNode>,
}

/// One NUMA node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumaNode {
    /// Node number.
    pub id: u32,
    /// Its CPUs, as the kernel lists them (`0-15,32-47`).
    pub cpus: String,
    /// Its memory, where reported.
    pub memory_bytes: Option<u64>,
}

impl Summary for MemoryInfo {
    fn summary(&self) -> String {
        let numa = match self.numa_nodes.len() {
            0 => String::new(),
            1 => ", 1 NUMA node".to_string(),
            n => format!(", {n} NUMA nodes"),
        };
        format!("{} total, {} available{numa}", gib(self.total_bytes), gib(self.available_bytes))
    }
}

/// `(cpuinfo name, present)` for every feature this architecture checks.
fn feature_flags() -> Vec<(&'static str, bool)> {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        let amx = raw_cpuid::CpuId::new().get_extended_feature_info();
        let amx = |f: fn(&raw_cpuid::ExtendedFeatures) -> bool| amx.as_ref().is_some_and(f);
        vec![
            ("sse4_2", std::arch::is_x86_feature_detected!("sse4.2")),
            ("avx", std::arch::is_x86_feature_detected!("avx")),
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("f16c", std::arch::is_x86_feature_detected!("f16c")),
            ("avx_vnni", std::arch::is_x86_feature_detected!("avxvnni")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
            ("avx512bw", std::arch::is_x86_feature_detected!("avx512bw")),
            ("avx512vl", std::arch::is_x86_feature_detected!("avx512vl")),
            ("avx512_vnni", std::arch::is_x86_feature_detected!("avx512vnni")),
            ("avx512_bf16", std::arch::is_x86_feature_detected!("avx512bf16")),
            ("avx512_fp16", std::arch::is_x86_feature_detected!("avx512fp16")),
            ("amx_tile", amx(raw_cpuid::ExtendedFeatures::has_amx_tile)),
            ("amx_bf16", amx(raw_cpuid::ExtendedFeatures::has_amx_bf16)),
            ("amx_int8", amx(raw_cpuid::ExtendedFeatures::has_amx_int8)),
            ("sha_ni", std::arch::is_x86_feature_detected!("sha")),
        ]
    }
    #[cfg(target_arch = "aarch64")]
    {
        vec![
            ("asimd", std::arch::is_aarch64_feature_detected!("neon")),
            ("asimddp", std::arch::is_aarch64_feature_detected!("dotprod")),
            ("i8mm", std::arch::is_aarch64_feature_detected!("i8mm")),
            ("asimdhp", std::arch::is_aarch64_feature_detected!("fp16")),
            ("sve", std::arch::is_aarch64_feature_detected!("sve")),
            ("sve2", std::arch::is_aarch64_feature_detected!("sve2")),
        ]
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        Vec::new()
    }
}

/// `(vendor, brand)` from cpuid on x86.
fn vendor_and_model() -> (Option<String>, Option<String>) {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        let cpuid = raw_cpuid::CpuId::new();
        let vendor = cpuid.get_vendor_info().map(|v| v.as_str().to_string());
        let brand = cpuid
            .get_processor_brand_string()
            .map(|b| b.as_str().trim().to_string())
            .filter(|b| !b.is_empty());
        (vendor, brand)
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        (None, None)
    }
}

/// The CPU list and `(vendor, model)`: cpuid on x86, else what the OS reports.
fn identify() -> (sysinfo::System, Option<String>, Option<String>) {
    let mut system = sysinfo::System::new();
    system.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
    let (vendor, model) = vendor_and_model();
    let model = model
        .or_else(|| system.cpus().first().map(|c| c.brand().trim().to_string()))
        .filter(|m| !m.is_empty());
    (system, vendor, model)
}

/// The CPU model without probing features: part of the machine fingerprint.
pub(crate) fn model_name() -> String {
    let (_, vendor, model) = identify();
    model.or(vendor).unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The CPU probe: always available (the process runs on one).
pub(crate) fn probe_cpu() -> Probed<CpuInfo> {
    Probed::Available { details: cpu_info() }
}

pub(crate) fn cpu_info() -> CpuInfo {
    let (system, vendor, model) = identify();
    let vendor = vendor.or_else(|| {
        system.cpus().first().map(|c| c.vendor_id().to_string()).filter(|v| !v.is_empty())
    });
    let logical_cpus = system.cpus().len().max(1);
    let usable_threads = std::thread::available_parallelism().map_or(1, usize::from);
    let (features, missing): (Vec<_>, Vec<_>) = feature_flags().into_iter().partition(|f| f.1);
    CpuInfo {
        arch: std::env::consts::ARCH.to_string(),
        vendor,
        model,
        physical_cores: sysinfo::System::physical_core_count(),
        logical_cpus,
        usable_threads,
        features: features.into_iter().map(|f| f.0.to_string()).collect(),
        missing: missing.into_iter().map(|f| f.0.to_string()).collect(),
    }
}

/// The memory probe.
pub(crate) fn probe_memory(host: &Host) -> Probed<MemoryInfo> {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    let total_bytes = system.total_memory();
    if total_bytes == 0 {
        return Probed::unavailable("memory", "the OS reported no memory size");
    }
    Probed::Available {
        details: MemoryInfo {
            total_bytes,
            available_bytes: system.available_memory(),
            numa_nodes: numa_nodes(host),
        },
    }
}

/// NUMA nodes from `/sys/devices/system/node/node*`.
pub(crate) fn numa_nodes(host: &Host) -> Vec<NumaNode> {
    let dir = "/sys/devices/system/node";
    let mut nodes: Vec<NumaNode> = host
        .list_system(dir)
        .into_iter()
        .filter_map(|name| {
            let id: u32 = name.strip_prefix("node")?.parse().ok()?;
            let cpus = host.read_system(&format!("{dir}/{name}/cpulist")).unwrap_or_default();
            let memory_bytes = host
                .read_system(&format!("{dir}/{name}/meminfo"))
                .and_then(|text| meminfo_kib(&text, "MemTotal:"))
                .map(|kib| kib * 1024);
            Some(NumaNode { id, cpus, memory_bytes })
        })
        .collect();
    nodes.sort_by_key(|n| n.id);
    nodes
}

/// The kB value on the line containing `key` (`Node 0 MemTotal:  32768 kB`).
fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.contains(key))?;
    let after = line.split(key).nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_lines_parse() {
        let text = "Node 0 MemTotal:       32768 kB\nNode 0 MemFree:        1024 kB\n";
        assert_eq!(meminfo_kib(text, "MemTotal:"), Some(32768));
        assert_eq!(meminfo_kib(text, "MemUsed:"), None);
    }
}
