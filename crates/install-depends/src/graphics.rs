//! Apple Metal (macOS only, through `system_profiler`) and the Vulkan loader with its drivers.

use serde::{Deserialize, Serialize};

use crate::host::{CommandOutcome, Host, COMMAND_TIMEOUT};
use crate::probe::{Probed, Summary};

/// Metal-capable GPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetalInfo {
    /// `(GPU name, Metal family)` for each GPU that supports Metal.
    pub devices: Vec<MetalGpu>,
}

/// One Metal GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetalGpu {
    /// `Apple M2 Pro`.
    pub name: String,
    /// `Metal 3`, as `system_profiler` says it.
    pub metal: String,
}

impl Summary for MetalInfo {
    fn summary(&self) -> String {
        let gpus: Vec<String> =
            self.devices.iter().map(|d| format!("{} ({})", d.name, d.metal)).collect();
        gpus.join("; ")
    }
}

pub(crate) async fn probe_metal(host: &Host) -> Probed<MetalInfo> {
    if host.os() != "macos" {
        return Probed::unavailable(
            "metal",
            format!("Metal exists only on macOS; this is {}", host.os()),
        );
    }
    let program = "system_profiler";
    let stdout = match host.run(program, &["SPDisplaysDataType", "-json"], COMMAND_TIMEOUT).await {
        CommandOutcome::Ok { stdout } => stdout,
        other => return Probed::unavailable(program, other.describe_failure(program)),
    };
    let devices = metal_devices(&stdout);
    if devices.is_empty() {
        return Probed::unavailable(program, "lists no GPU with Metal support");
    }
    Probed::Available { details: MetalInfo { devices } }
}

/// GPUs with a Metal family from `system_profiler SPDisplaysDataType -json`.
fn metal_devices(json: &str) -> Vec<MetalGpu> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else { return Vec::new() };
    let Some(gpus) = value.get("SPDisplaysDataType").and_then(|v| v.as_array()) else {
        return Vec::new();
    };
    gpus.iter()
        .filter_map(|gpu| {
            let name = gpu.get("sppci_model").or_else(|| gpu.get("_name"))?.as_str()?;
            let metal = ["spdisplays_mtlgpufamilysupport", "spdisplays_metal"]
                .iter()
                .find_map(|k| gpu.get(*k)?.as_str())?;
            Some(MetalGpu {
                name: name.to_string(),
                metal: metal.trim_start_matches("spdisplays_").replace('-', " "),
            })
        })
        .collect()
}

/// The Vulkan loader and the drivers (ICDs) it would load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VulkanInfo {
    /// The loader library.
    pub loader: String,
    /// `(manifest file, driver library)` for each installed ICD.
    pub drivers: Vec<VulkanDriver>,
}

/// One installed Vulkan driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VulkanDriver {
    /// The ICD manifest.
    pub manifest: String,
    /// The driver library it names.
    pub library: Option<String>,
}

impl Summary for VulkanInfo {
    fn summary(&self) -> String {
        let drivers: Vec<String> = self
            .drivers
            .iter()
            .map(|d| {
                std::path::Path::new(&d.manifest)
                    .file_stem()
                    .map_or_else(|| d.manifest.clone(), |s| s.to_string_lossy().into_owned())
            })
            .collect();
        format!("loader {}; drivers: {}", self.loader, drivers.join(", "))
    }
}

const ICD_DIRS: &[&str] =
    &["/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d", "/usr/share/vulkan/icd.d"];

pub(crate) fn probe_vulkan(host: &Host) -> Probed<VulkanInfo> {
    let loader_name = match host.os() {
        "macos" => "libvulkan.1.dylib",
        _ => "libvulkan.so.1",
    };
    let Some(loader) = host.find_library(loader_name) else {
        return Probed::unavailable(
            loader_name,
            format!("the Vulkan loader is not in {}", host.describe_library_search()),
        );
    };
    let mut drivers = Vec::new();
    // The loader honours these instead of the standard directories when set.
    let env_files = host.var("VK_DRIVER_FILES").or_else(|| host.var("VK_ICD_FILENAMES"));
    let manifests: Vec<std::path::PathBuf> = match env_files {
        Some(files) => std::env::split_paths(files).collect(),
        None => ICD_DIRS
            .iter()
            .flat_map(|dir| {
                host.list_system(dir)
                    .into_iter()
                    .filter(|n| n.ends_with(".json"))
                    .map(move |n| host.system_path(&format!("{dir}/{n}")))
            })
            .collect(),
    };
    for manifest in manifests {
        let library = host
            .read_path(&manifest)
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|v| v.pointer("/ICD/library_path")?.as_str().map(str::to_string));
        drivers.push(VulkanDriver { manifest: manifest.display().to_string(), library });
    }
    if drivers.is_empty() {
        return Probed::unavailable(
            "vulkan icd.d",
            format!(
                "the loader is installed ({}) but no driver manifest is in {}",
                loader.display(),
                ICD_DIRS.join(", ")
            ),
        );
    }
    Probed::Available { details: VulkanInfo { loader: loader.display().to_string(), drivers } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_profiler_output_names_metal_gpus() {
        let json = r#"{"SPDisplaysDataType": [
            {"_name": "kHW_AppleM2ProItem", "sppci_model": "Apple M2 Pro", "spdisplays_mtlgpufamilysupport": "spdisplays_metal3"},
            {"_name": "Old GPU"}]}"#;
        let devices = metal_devices(json);
        assert_eq!(devices, [MetalGpu { name: "Apple M2 Pro".into(), metal: "metal3".into() }]);
    }
}
