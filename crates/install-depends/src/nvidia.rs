//! The NVIDIA probe: NVML, loaded at run time (`nvml-wrapper` dlopens `libnvidia-ml.so.1`), so
//! no build needs CUDA and a machine without the driver gets the loader's exact error.
//!
//! [`NvmlApi`] is the seam tests fill with a fake machine; [`SystemNvml`] is the real one.

use std::ffi::OsString;

use serde::{Deserialize, Serialize};

use crate::probe::{gib, Probed, Summary};

/// The library NVML lives in, as the driver package installs it.
#[cfg(not(windows))]
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";
/// The library NVML lives in, as the driver package installs it.
#[cfg(windows)]
pub const NVML_LIBRARY: &str = "nvml.dll";

/// What NVML says about the machine's NVIDIA GPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvidiaInfo {
    /// The library that answered.
    pub library: String,
    /// Kernel driver version (`550.54.15`).
    pub driver_version: String,
    /// Newest CUDA version the driver supports (`12.4`).
    pub cuda_driver_version: Option<String>,
    /// Every GPU, in NVML (PCI bus) order.
    pub devices: Vec<NvidiaGpu>,
}

/// One NVIDIA GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvidiaGpu {
    /// NVML index.
    pub index: u32,
    /// Product name.
    pub name: String,
    /// `GPU-…` UUID (what `CUDA_VISIBLE_DEVICES` may name).
    pub uuid: String,
    /// PCI bus id.
    pub pci_bus_id: Option<String>,
    /// Memory installed.
    pub memory_total_bytes: Option<u64>,
    /// Memory free now.
    pub memory_free_bytes: Option<u64>,
    /// CUDA compute capability (`8.9`).
    pub compute_capability: Option<String>,
}

impl Summary for NvidiaInfo {
    fn summary(&self) -> String {
        let gpus: Vec<String> = self
            .devices
            .iter()
            .map(|d| {
                let mut s = format!("{}: {}", d.index, d.name);
                if let (Some(free), Some(total)) = (d.memory_free_bytes, d.memory_total_bytes) {
                    s.push_str(&format!(", {} free of {}", gib(free), gib(total)));
                }
                if let Some(cc) = &d.compute_capability {
                    s.push_str(&format!(", compute {cc}"));
                }
                s
            })
            .collect();
        let cuda =
            self.cuda_driver_version.as_deref().map_or(String::new(), |v| format!(", CUDA {v}"));
        format!("driver {}{cuda}; {}", self.driver_version, gpus.join("; "))
    }
}

/// Why NVML gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlFailure {
    /// What was tried (`dlopen libnvidia-ml.so.1`, `nvmlInit`).
    pub probe: String,
    /// What went wrong.
    pub reason: String,
}

/// The NVIDIA management library, or a stand-in for it.
pub trait NvmlApi: Send + Sync {
    /// Loads the library and lists the GPUs; blocking.
    fn query(&self) -> Result<NvidiaInfo, NvmlFailure>;
}

/// The real NVML, loaded from `library`.
#[derive(Debug, Clone)]
pub struct SystemNvml {
    library: OsString,
}

impl SystemNvml {
    /// NVML from `IPFS_ACCELERATE_NVML_LIBRARY` when set, else [`NVML_LIBRARY`] from the
    /// linker's search path.
    pub fn from_env() -> SystemNvml {
        let library = std::env::var_os("IPFS_ACCELERATE_NVML_LIBRARY")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| OsString::from(NVML_LIBRARY));
        SystemNvml { library }
    }
}

impl NvmlApi for SystemNvml {
    fn query(&self) -> Result<NvidiaInfo, NvmlFailure> {
        use nvml_wrapper::error::NvmlError;
        let library = self.library.to_string_lossy().into_owned();
        let nvml = nvml_wrapper::Nvml::builder().lib_path(&self.library).init().map_err(|e| {
            match e {
                NvmlError::LibloadingError(e) => {
                    let message = e.to_string();
                    let message = message.strip_prefix(&format!("{library}: ")).unwrap_or(&message);
                    NvmlFailure {
                        probe: library.clone(),
                        reason: format!(
                            "{message} (no NVIDIA driver installed, or its library is not on the linker path)"
                        ),
                    }
                }
                NvmlError::DriverNotLoaded => NvmlFailure {
                    probe: "nvmlInit".into(),
                    reason: "the NVIDIA kernel driver is not loaded (is the nvidia module loaded? \
                             check `lsmod | grep nvidia`)"
                        .into(),
                },
                NvmlError::NoPermission => NvmlFailure {
                    probe: "nvmlInit".into(),
                    reason: "no permission to open the NVIDIA device files (/dev/nvidia*)".into(),
                },
                other => NvmlFailure { probe: "nvmlInit".into(), reason: other.to_string() },
            }
        })?;
        let failure =
            |what: &str, e: NvmlError| NvmlFailure { probe: what.into(), reason: e.to_string() };
        let driver_version =
            nvml.sys_driver_version().map_err(|e| failure("nvmlSystemGetDriverVersion", e))?;
        let cuda_driver_version = nvml.sys_cuda_driver_version().ok().map(|v| {
            format!(
                "{}.{}",
                nvml_wrapper::cuda_driver_version_major(v),
                nvml_wrapper::cuda_driver_version_minor(v)
            )
        });
        let count = nvml.device_count().map_err(|e| failure("nvmlDeviceGetCount", e))?;
        let mut devices = Vec::new();
        for index in 0..count {
            let device = nvml
                .device_by_index(index)
                .map_err(|e| failure(&format!("nvmlDeviceGetHandleByIndex({index})"), e))?;
            let memory = device.memory_info().ok();
            devices.push(NvidiaGpu {
                index,
                name: device.name().unwrap_or_else(|e| format!("unknown ({e})")),
                uuid: device.uuid().unwrap_or_default(),
                pci_bus_id: device.pci_info().ok().map(|p| p.bus_id),
                memory_total_bytes: memory.as_ref().map(|m| m.total),
                memory_free_bytes: memory.as_ref().map(|m| m.free),
                compute_capability: device
                    .cuda_compute_capability()
                    .ok()
                    .map(|c| format!("{}.{}", c.major, c.minor)),
            });
        }
        Ok(NvidiaInfo { library, driver_version, cuda_driver_version, devices })
    }
}

/// The NVIDIA probe; runs NVML off the async threads, with a deadline (a wedged driver can
/// block `nvmlInit` for a long time).
pub(crate) async fn probe(host: &crate::host::Host) -> Probed<NvidiaInfo> {
    let nvml = std::sync::Arc::clone(host.nvml());
    let timeout = crate::host::COMMAND_TIMEOUT;
    let task = tokio::task::spawn_blocking(move || nvml.query());
    match tokio::time::timeout(timeout, task).await {
        Err(_) => Probed::unavailable(
            "nvmlInit",
            format!("NVML did not answer within {} s", timeout.as_secs()),
        ),
        Ok(Err(join)) => Probed::unavailable("nvml", format!("the NVML query panicked: {join}")),
        Ok(Ok(Err(failure))) => Probed::unavailable(failure.probe, failure.reason),
        Ok(Ok(Ok(info))) if info.devices.is_empty() => Probed::unavailable(
            "nvmlDeviceGetCount",
            format!("NVML loaded (driver {}) but reports no GPUs", info.driver_version),
        ),
        Ok(Ok(Ok(info))) => Probed::Available { details: info },
    }
}

/// A stand-in NVML that answers what it was given: for tests, and for machines where NVML
/// must not be touched.
#[derive(Debug, Clone)]
pub struct FixedNvml(pub Result<NvidiaInfo, NvmlFailure>);

impl NvmlApi for FixedNvml {
    fn query(&self) -> Result<NvidiaInfo, NvmlFailure> {
        self.0.clone()
    }
}
