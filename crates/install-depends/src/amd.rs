//! The AMD ROCm probe: GPU agents from the KFD topology in sysfs (what the ROCm runtime itself
//! enumerates), `rocm-smi` for product names when installed, and the HIP runtime library.

use serde::{Deserialize, Serialize};

use crate::host::{CommandOutcome, Host, COMMAND_TIMEOUT};
use crate::probe::{gib, Probed, Summary};

const TOPOLOGY: &str = "/sys/class/kfd/kfd/topology/nodes";

/// What ROCm can see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RocmInfo {
    /// GPU agents, in KFD node order.
    pub gpus: Vec<AmdGpu>,
    /// The `amdgpu` module version, where the kernel reports one.
    pub driver_version: Option<String>,
    /// The HIP runtime library, if installed.
    pub hip_runtime: Option<String>,
    /// What `rocm-smi` said, or why it said nothing.
    pub rocm_smi: String,
}

/// One AMD GPU agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmdGpu {
    /// KFD topology node.
    pub node: u32,
    /// LLVM target (`gfx1100`, `gfx90a`).
    pub gfx_target: Option<String>,
    /// Product name from `rocm-smi`, when it ran.
    pub name: Option<String>,
    /// PCI device id.
    pub device_id: Option<String>,
    /// Local memory (VRAM).
    pub vram_bytes: Option<u64>,
}

impl Summary for RocmInfo {
    fn summary(&self) -> String {
        let gpus: Vec<String> = self
            .gpus
            .iter()
            .map(|g| {
                let name = g.name.as_deref().or(g.gfx_target.as_deref()).unwrap_or("AMD GPU");
                let target = match (&g.name, &g.gfx_target) {
                    (Some(_), Some(t)) => format!(" ({t})"),
                    _ => String::new(),
                };
                let vram = g.vram_bytes.map_or(String::new(), |b| format!(", {}", gib(b)));
                format!("node {}: {name}{target}{vram}", g.node)
            })
            .collect();
        let hip = if self.hip_runtime.is_some() { "HIP runtime found" } else { "no HIP runtime" };
        format!("{}; {hip}", gpus.join("; "))
    }
}

/// `gfx_target_version` (`90010`) → `gfx90a`: major, minor, stepping (hex).
fn gfx_target(version: u64) -> Option<String> {
    if version == 0 {
        return None;
    }
    let (major, minor, step) = (version / 10000, (version / 100) % 100, version % 100);
    Some(format!("gfx{major}{minor}{step:x}"))
}

/// `key value` lines of a KFD `properties` file.
fn property(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

pub(crate) async fn probe(host: &Host) -> Probed<RocmInfo> {
    if !host.system_exists("/sys/class/kfd") {
        let smi = if host.find_program("rocm-smi").is_some() {
            " (rocm-smi is installed, so ROCm is, but the driver is not running)"
        } else {
            ""
        };
        return Probed::unavailable(
            "/sys/class/kfd",
            format!(
                "absent: the amdgpu kernel driver with KFD (compute) support is not loaded{smi}"
            ),
        );
    }
    let mut gpus = Vec::new();
    for name in host.list_system(TOPOLOGY) {
        let Ok(node) = name.parse::<u32>() else { continue };
        let Some(props) = host.read_system(&format!("{TOPOLOGY}/{name}/properties")) else {
            continue;
        };
        // CPU agents have no SIMD units.
        if property(&props, "simd_count").unwrap_or(0) == 0 {
            continue;
        }
        let vram: u64 = host
            .list_system(&format!("{TOPOLOGY}/{name}/mem_banks"))
            .iter()
            .filter_map(|bank| {
                let text =
                    host.read_system(&format!("{TOPOLOGY}/{name}/mem_banks/{bank}/properties"))?;
                property(&text, "size_in_bytes")
            })
            .sum();
        gpus.push(AmdGpu {
            node,
            gfx_target: property(&props, "gfx_target_version").and_then(gfx_target),
            name: None,
            device_id: property(&props, "device_id").map(|d| format!("{d:#06x}")),
            vram_bytes: (vram > 0).then_some(vram),
        });
    }
    if gpus.is_empty() {
        return Probed::unavailable(
            TOPOLOGY,
            "KFD is loaded but lists no GPU agents (only CPU nodes)",
        );
    }
    let rocm_smi =
        match host.run("rocm-smi", &["--showproductname", "--json"], COMMAND_TIMEOUT).await {
            CommandOutcome::Ok { stdout } => {
                let names = product_names(&stdout);
                for (gpu, name) in gpus.iter_mut().zip(names.iter()) {
                    gpu.name = Some(name.clone());
                }
                format!("named {} GPU(s)", names.len())
            }
            other => other.describe_failure("rocm-smi"),
        };
    let hip_runtime = host
        .find_library("libamdhip64.so")
        .or_else(|| host.find_library_in(&[host.system_path("/opt/rocm/lib")], "libamdhip64.so"))
        .map(|p| p.display().to_string());
    Probed::Available {
        details: RocmInfo {
            gpus,
            driver_version: host.read_system("/sys/module/amdgpu/version"),
            hip_runtime,
            rocm_smi,
        },
    }
}

/// Product names from `rocm-smi --showproductname --json`, in card order.
fn product_names(json: &str) -> Vec<String> {
    let Ok(serde_json::Value::Object(cards)) = serde_json::from_str::<serde_json::Value>(json)
    else {
        return Vec::new();
    };
    let mut cards: Vec<(u32, String)> = cards
        .iter()
        .filter_map(|(card, fields)| {
            let index = card.strip_prefix("card")?.parse().ok()?;
            let name = ["Card Series", "Card series", "Card model", "Card Model"]
                .iter()
                .find_map(|k| fields.get(*k)?.as_str())?;
            Some((index, name.trim().to_string()))
        })
        .collect();
    cards.sort();
    cards.into_iter().map(|c| c.1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gfx_targets_decode_like_the_rocm_runtime() {
        assert_eq!(gfx_target(90010).as_deref(), Some("gfx90a"));
        assert_eq!(gfx_target(110000).as_deref(), Some("gfx1100"));
        assert_eq!(gfx_target(100300).as_deref(), Some("gfx1030"));
        assert_eq!(gfx_target(90400).as_deref(), Some("gfx940"));
        assert_eq!(gfx_target(0), None);
    }

    #[test]
    fn rocm_smi_names_come_in_card_order() {
        let json = r#"{"card1": {"Card series": "Radeon RX 7900 XTX"}, "card0": {"Card Series": "Instinct MI210"}}"#;
        assert_eq!(product_names(json), ["Instinct MI210", "Radeon RX 7900 XTX"]);
        assert!(product_names("not json").is_empty());
    }
}
