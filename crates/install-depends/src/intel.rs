//! Intel GPUs (DRM devices with Intel's PCI vendor id) and the OpenVINO / oneAPI Level Zero
//! runtime libraries.

use serde::{Deserialize, Serialize};

use crate::host::Host;
use crate::probe::{Probed, Summary};

const INTEL_VENDOR: &str = "0x8086";

/// Intel GPUs the kernel drives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntelGpuInfo {
    /// One entry per DRM card.
    pub devices: Vec<IntelGpu>,
    /// The oneAPI Level Zero loader, if installed (what compute runtimes use).
    pub level_zero: Option<String>,
}

/// One Intel GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntelGpu {
    /// `card0`.
    pub card: String,
    /// PCI device id (`0x56a0`).
    pub device_id: Option<String>,
    /// Kernel driver (`i915`, `xe`).
    pub driver: Option<String>,
}

impl Summary for IntelGpuInfo {
    fn summary(&self) -> String {
        let cards: Vec<String> = self
            .devices
            .iter()
            .map(|d| {
                format!(
                    "{} (device {}, driver {})",
                    d.card,
                    d.device_id.as_deref().unwrap_or("?"),
                    d.driver.as_deref().unwrap_or("none")
                )
            })
            .collect();
        let l0 =
            if self.level_zero.is_some() { "Level Zero found" } else { "no Level Zero loader" };
        format!("{}; {l0}", cards.join("; "))
    }
}

/// The OpenVINO runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenVinoInfo {
    /// The core library found.
    pub library: String,
    /// Device plugins found beside it (`CPU`, `GPU`, `NPU`).
    pub plugins: Vec<String>,
}

impl Summary for OpenVinoInfo {
    fn summary(&self) -> String {
        let plugins = if self.plugins.is_empty() {
            "no device plugins".to_string()
        } else {
            self.plugins.join(", ")
        };
        format!("{} (plugins: {plugins})", self.library)
    }
}

pub(crate) fn probe_gpu(host: &Host) -> Probed<IntelGpuInfo> {
    let drm = "/sys/class/drm";
    if !host.system_exists(drm) {
        return Probed::unavailable(drm, "absent: no DRM (GPU) devices are exposed to this system");
    }
    let devices: Vec<IntelGpu> = host
        .list_system(drm)
        .into_iter()
        // card0, card1 — not the connectors (card0-HDMI-A-1) or render nodes.
        .filter(|n| n.strip_prefix("card").is_some_and(|i| i.chars().all(|c| c.is_ascii_digit())))
        .filter(|card| {
            host.read_system(&format!("{drm}/{card}/device/vendor")).as_deref()
                == Some(INTEL_VENDOR)
        })
        .map(|card| IntelGpu {
            device_id: host.read_system(&format!("{drm}/{card}/device/device")),
            driver: host.system_link_name(&format!("{drm}/{card}/device/driver")),
            card,
        })
        .collect();
    if devices.is_empty() {
        return Probed::unavailable(drm, format!("no card with Intel's vendor id {INTEL_VENDOR}"));
    }
    let level_zero = host.find_library("libze_loader.so").map(|p| p.display().to_string());
    Probed::Available { details: IntelGpuInfo { devices, level_zero } }
}

pub(crate) fn probe_openvino(host: &Host) -> Probed<OpenVinoInfo> {
    let mut dirs = Vec::new();
    if let Some(root) = host.var("INTEL_OPENVINO_DIR") {
        dirs.push(std::path::Path::new(root).join("runtime/lib/intel64"));
    }
    dirs.extend(host.library_dirs());
    let core = if host.os() == "macos" { "libopenvino.dylib" } else { "libopenvino.so" };
    let Some(library) = host.find_library_in(&dirs, core) else {
        let hint = if host.var("INTEL_OPENVINO_DIR").is_some() {
            "INTEL_OPENVINO_DIR/runtime/lib/intel64, "
        } else {
            "INTEL_OPENVINO_DIR (unset), "
        };
        return Probed::unavailable(
            core,
            format!("not found in {hint}{}", host.describe_library_search()),
        );
    };
    let dir = library.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let plugins = [
        ("CPU", "libopenvino_intel_cpu_plugin"),
        ("GPU", "libopenvino_intel_gpu_plugin"),
        ("NPU", "libopenvino_intel_npu_plugin"),
    ]
    .into_iter()
    .filter(|(_, lib)| {
        host.find_library_in(std::slice::from_ref(&dir), &format!("{lib}.so")).is_some()
    })
    .map(|(device, _)| device.to_string())
    .collect();
    Probed::Available { details: OpenVinoInfo { library: library.display().to_string(), plugins } }
}
