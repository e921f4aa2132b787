//! The probes, device selection and the cached report, on this machine and on fake ones: a
//! sysfs tree in a temp dir, fake programs on a fake PATH, and a stand-in NVML for the GPUs
//! this machine cannot have.
#![allow(clippy::disallowed_methods, clippy::disallowed_types, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipfs_accelerate_common::cache::{Cache, CacheConfig};
use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_install_depends::report::{self, LoadOptions, Source};
use ipfs_accelerate_install_depends::select::{self, Device, Needs, Overrides, SelectError};
use ipfs_accelerate_install_depends::{
    Backend, BuildInfo, FixedNvml, Host, NvidiaGpu, NvidiaInfo, NvmlFailure, Probed,
};

/// A fake machine: a root for system paths, a bin dir for programs, a lib dir.
struct Fake {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    nvml: Arc<FixedNvml>,
}

impl Fake {
    fn new() -> Fake {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        let env = vec![("PATH".to_string(), dir.path().join("bin").display().to_string())];
        Fake { dir, env, nvml: Arc::new(FixedNvml(Err(no_nvml()))) }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Writes a system file under the fake root.
    fn file(&self, system_path: &str, text: &str) -> &Fake {
        let path = self.root().join(system_path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    /// A program on the fake PATH that prints `stdout`.
    fn program(&self, name: &str, stdout: &str) -> &Fake {
        let path = self.dir.path().join("bin").join(name);
        // Only shell builtins: the fake PATH holds nothing else.
        let script = format!("#!/bin/sh\nprintf '%s\\n' '{stdout}'\n");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }

    fn var(mut self, name: &str, value: &str) -> Fake {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    fn nvml(mut self, result: Result<NvidiaInfo, NvmlFailure>) -> Fake {
        self.nvml = Arc::new(FixedNvml(result));
        self
    }

    fn host(&self) -> Host {
        Host::new(self.root(), self.env.clone(), self.nvml.clone())
    }
}

fn no_nvml() -> NvmlFailure {
    NvmlFailure {
        probe: "libnvidia-ml.so.1".into(),
        reason: "cannot open shared object file: No such file or directory".into(),
    }
}

fn gpu(index: u32, name: &str, uuid: &str, free_gib: u64, cc: &str) -> NvidiaGpu {
    NvidiaGpu {
        index,
        name: name.into(),
        uuid: uuid.into(),
        pci_bus_id: Some(format!("00000000:{:02X}:00.0", index + 1)),
        memory_total_bytes: Some(80 << 30),
        memory_free_bytes: Some(free_gib << 30),
        compute_capability: Some(cc.into()),
    }
}

fn two_gpus() -> NvidiaInfo {
    NvidiaInfo {
        library: "libnvidia-ml.so.1".into(),
        driver_version: "550.54.15".into(),
        cuda_driver_version: Some("12.4".into()),
        devices: vec![
            gpu(0, "NVIDIA L4", "GPU-aaaa1111", 20, "8.9"),
            gpu(1, "NVIDIA H100 80GB HBM3", "GPU-bbbb2222", 79, "9.0"),
        ],
    }
}

fn cuda_build() -> BuildInfo {
    BuildInfo::new("test", &[Backend::Cuda])
}

fn cpu_build() -> BuildInfo {
    BuildInfo::new("test", &[])
}

async fn detect(host: &Host, build: &BuildInfo) -> report::Report {
    report::detect(host, build).await
}

/// The `flags` of the first processor in `/proc/cpuinfo`.
fn cpuinfo_flags() -> Option<BTreeSet<String>> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("flags") || l.starts_with("Features"))?;
    Some(line.split(':').nth(1)?.split_whitespace().map(str::to_string).collect())
}

#[tokio::test]
async fn the_cpu_probe_reports_the_flags_proc_cpuinfo_lists() {
    let report = detect(&Host::current(), &cpu_build()).await;
    let cpu = report.cpu.details().expect("the CPU probe always answers");
    assert!(cpu.logical_cpus >= 1 && cpu.usable_threads >= 1);
    assert!(cpu.usable_threads <= cpu.logical_cpus);
    let Some(flags) = cpuinfo_flags() else {
        eprintln!("no /proc/cpuinfo here; nothing to compare with");
        return;
    };
    assert!(!cpu.features.is_empty() || !cpu.missing.is_empty(), "no features were checked");
    for feature in &cpu.features {
        assert!(flags.contains(feature), "{feature} detected but /proc/cpuinfo lacks it");
    }
    for feature in &cpu.missing {
        assert!(!flags.contains(feature), "/proc/cpuinfo lists {feature} but it was not detected");
    }
    let memory = report.memory.details().expect("memory is always visible");
    assert!(memory.total_bytes > 0 && memory.available_bytes <= memory.total_bytes);
}

#[tokio::test]
async fn gpu_probes_on_this_machine_say_concretely_why_not() {
    let host = Host::current();
    let report = detect(&host, &cpu_build()).await;
    // Whatever this machine has, nothing is a bare "false": every probe is either found or
    // names what it tried and why that failed.
    for row in report.rows() {
        assert!(!row.detail.is_empty(), "{} has no detail", row.probe);
    }
    if host.find_library("libnvidia-ml.so.1").is_none() {
        let Probed::Unavailable { probe, reason } = &report.nvidia else { panic!("NVML found") };
        assert_eq!(probe, "libnvidia-ml.so.1");
        assert!(reason.contains("cannot open shared object file"), "{reason}");
    }
    if !Path::new("/sys/class/kfd").exists() {
        let why = report.rocm.why_not().unwrap();
        assert!(why.starts_with("/sys/class/kfd: absent"), "{why}");
    }
    if !Path::new("/sys/class/drm").exists() {
        assert!(report.intel_gpu.why_not().unwrap().contains("/sys/class/drm"));
    }
    if cfg!(not(target_os = "macos")) {
        assert!(report.metal.why_not().unwrap().contains("only on macOS"));
    }
}

#[tokio::test]
async fn a_rocm_machine_is_read_from_the_kfd_topology_and_rocm_smi() {
    let fake = Fake::new();
    let nodes = "/sys/class/kfd/kfd/topology/nodes";
    fake.file(&format!("{nodes}/0/properties"), "cpu_cores_count 16\nsimd_count 0\n")
        .file(
            &format!("{nodes}/1/properties"),
            "simd_count 192\ngfx_target_version 110000\ndevice_id 29772\n",
        )
        .file(
            &format!("{nodes}/1/mem_banks/0/properties"),
            "heap_type 1\nsize_in_bytes 25753026560\n",
        )
        .file("/sys/module/amdgpu/version", "6.7.0")
        .file("/opt/rocm/lib/libamdhip64.so.6", "")
        .program(
            "rocm-smi",
            r#"{"card0": {"Card Series": "Radeon RX 7900 XTX", "GFX Version": "gfx1100"}}"#,
        );
    let report = detect(&fake.host(), &cpu_build()).await;
    let rocm = report.rocm.details().expect("the fake ROCm GPU is found");
    assert_eq!(rocm.gpus.len(), 1, "the CPU node is not a GPU");
    let gpu = &rocm.gpus[0];
    assert_eq!(gpu.node, 1);
    assert_eq!(gpu.gfx_target.as_deref(), Some("gfx1100"));
    assert_eq!(gpu.name.as_deref(), Some("Radeon RX 7900 XTX"));
    assert_eq!(gpu.device_id.as_deref(), Some("0x744c"));
    assert_eq!(gpu.vram_bytes, Some(25753026560));
    assert_eq!(rocm.driver_version.as_deref(), Some("6.7.0"));
    assert!(rocm.hip_runtime.as_deref().unwrap().ends_with("libamdhip64.so.6"));

    // The GPU is present but no backend of ours drives it: selection says so, plainly.
    let selection =
        select::select(&report, &cuda_build(), &Needs::default(), &Overrides::default()).unwrap();
    assert_eq!(selection.device, Device::Cpu);
    assert!(
        selection.passed_over.iter().any(|p| p.contains("AMD GPU(s) present")),
        "{selection:?}"
    );
}

#[tokio::test]
async fn kfd_without_gpu_agents_and_rocm_without_its_driver_are_explained() {
    let fake = Fake::new();
    fake.file("/sys/class/kfd/kfd/topology/nodes/0/properties", "simd_count 0\n");
    let report = detect(&fake.host(), &cpu_build()).await;
    let why = report.rocm.why_not().unwrap();
    assert!(why.contains("no GPU agents"), "{why}");

    let fake = Fake::new();
    fake.program("rocm-smi", "");
    let report = detect(&fake.host(), &cpu_build()).await;
    let why = report.rocm.why_not().unwrap();
    assert!(
        why.contains("rocm-smi is installed") && why.contains("driver is not running"),
        "{why}"
    );
}

#[tokio::test]
async fn intel_gpus_openvino_and_vulkan_are_found_where_they_are_installed() {
    let fake = Fake::new();
    let drm = "/sys/class/drm";
    fake.file(&format!("{drm}/card0/device/vendor"), "0x8086")
        .file(&format!("{drm}/card0/device/device"), "0x56a0")
        .file(&format!("{drm}/card0-HDMI-A-1/status"), "connected")
        .file(&format!("{drm}/card1/device/vendor"), "0x10de")
        .file("/sys/bus/pci/drivers/i915/bind", "")
        .file("/usr/lib/x86_64-linux-gnu/libze_loader.so.1", "")
        .file(
            "/usr/share/vulkan/icd.d/intel_icd.x86_64.json",
            r#"{"ICD": {"library_path": "libvulkan_intel.so"}}"#,
        );
    std::os::unix::fs::symlink(
        fake.root().join("sys/bus/pci/drivers/i915"),
        fake.root().join("sys/class/drm/card0/device/driver"),
    )
    .unwrap();
    let openvino = fake.dir.path().join("openvino");
    let libs = openvino.join("runtime/lib/intel64");
    std::fs::create_dir_all(&libs).unwrap();
    std::fs::write(libs.join("libopenvino.so.2024.4.0"), "").unwrap();
    std::fs::write(libs.join("libopenvino_intel_gpu_plugin.so"), "").unwrap();
    let vulkan_libs = fake.dir.path().join("vulkan");
    std::fs::create_dir_all(&vulkan_libs).unwrap();
    std::fs::write(vulkan_libs.join("libvulkan.so.1"), "").unwrap();
    let fake = fake
        .var("INTEL_OPENVINO_DIR", &openvino.display().to_string())
        .var("LD_LIBRARY_PATH", &vulkan_libs.display().to_string());

    let report = detect(&fake.host(), &cpu_build()).await;
    let intel = report.intel_gpu.details().expect("the Intel card is found");
    assert_eq!(intel.devices.len(), 1, "connectors and other vendors' cards are skipped");
    assert_eq!(intel.devices[0].card, "card0");
    assert_eq!(intel.devices[0].device_id.as_deref(), Some("0x56a0"));
    assert_eq!(intel.devices[0].driver.as_deref(), Some("i915"));
    assert!(intel.level_zero.is_some());

    let ov = report.openvino.details().expect("OpenVINO is found under INTEL_OPENVINO_DIR");
    assert!(ov.library.ends_with("libopenvino.so.2024.4.0"));
    assert_eq!(ov.plugins, ["GPU"]);

    let vk = report.vulkan.details().expect("the Vulkan loader is found on LD_LIBRARY_PATH");
    assert!(vk.loader.ends_with("libvulkan.so.1"));
    assert_eq!(vk.drivers.len(), 1);
    assert_eq!(vk.drivers[0].library.as_deref(), Some("libvulkan_intel.so"));
}

#[tokio::test]
async fn a_vulkan_loader_without_drivers_is_not_available() {
    let fake = Fake::new();
    fake.file("/usr/lib/libvulkan.so.1", "");
    let report = detect(&fake.host(), &cpu_build()).await;
    let why = report.vulkan.why_not().unwrap();
    assert!(why.contains("loader is installed") && why.contains("no driver manifest"), "{why}");
}

#[tokio::test]
async fn metal_is_read_from_system_profiler_on_macos() {
    let fake = Fake::new();
    fake.program(
        "system_profiler",
        r#"{"SPDisplaysDataType": [{"sppci_model": "Apple M2 Pro", "spdisplays_mtlgpufamilysupport": "spdisplays_metal3"}]}"#,
    );
    let host = fake.host().with_os("macos");
    let report = detect(&host, &cpu_build()).await;
    let metal = report.metal.details().expect("the fake Mac has Metal");
    assert_eq!(metal.devices[0].name, "Apple M2 Pro");

    let selection =
        select::select(&report, &cpu_build(), &Needs::default(), &Overrides::default()).unwrap();
    assert_eq!(selection.device, Device::Cpu);
    assert!(
        selection
            .passed_over
            .iter()
            .any(|p| p.contains("Apple M2 Pro present but this build has no METAL backend")),
        "{selection:?}"
    );
    let metal_build = BuildInfo::new("test", &[Backend::Metal]);
    let selection =
        select::select(&report, &metal_build, &Needs::default(), &Overrides::default()).unwrap();
    assert_eq!(selection.device, Device::Metal);
}

#[tokio::test]
async fn nvidia_gpus_are_chosen_by_free_memory_with_the_reason() {
    let fake = Fake::new().nvml(Ok(two_gpus()));
    let report = detect(&fake.host(), &cuda_build()).await;
    assert!(report.nvidia.is_available());
    let selection =
        select::select(&report, &cuda_build(), &Needs::default(), &Overrides::default()).unwrap();
    assert_eq!(selection.device, Device::Cuda(1));
    assert_eq!(selection.to_string(), "cuda:1 — NVIDIA H100 80GB HBM3, 79.0 GiB free, compute 9.0");

    // A skill that needs compute 9.0 passes over the L4 and says why.
    let needs = Needs { min_compute_capability: Some((9, 0)), ..Needs::default() };
    let selection = select::select(&report, &cuda_build(), &needs, &Overrides::default()).unwrap();
    assert_eq!(selection.device, Device::Cuda(1));
    assert!(selection.passed_over[0].contains("compute 8.9, the skill needs 9.0"));

    // Too little memory anywhere: CPU, with each GPU's shortfall.
    let needs = Needs { min_gpu_memory: Some(100 << 30), ..Needs::default() };
    let selection = select::select(&report, &cuda_build(), &needs, &Overrides::default()).unwrap();
    assert_eq!(selection.device, Device::Cpu);
    assert_eq!(selection.passed_over.len(), 2);
    assert!(selection.reason.contains("the skill needs 100.0 GiB"), "{}", selection.reason);
}

#[tokio::test]
async fn a_gpu_present_with_a_cpu_only_build_is_said_plainly() {
    let fake = Fake::new().nvml(Ok(two_gpus()));
    let report = detect(&fake.host(), &cpu_build()).await;
    let selection =
        select::select(&report, &cpu_build(), &Needs::default(), &Overrides::default()).unwrap();
    assert_eq!(selection.device, Device::Cpu);
    assert!(
        selection.reason.contains("NVIDIA L4")
            && selection.reason.contains(
                "this build has no CUDA backend (built without the `cuda` cargo feature)"
            ),
        "{}",
        selection.reason
    );
}

#[tokio::test]
async fn no_nvml_means_cpu_with_the_loader_error() {
    let fake = Fake::new();
    let report = detect(&fake.host(), &cuda_build()).await;
    let selection =
        select::select(&report, &cuda_build(), &Needs::default(), &Overrides::default()).unwrap();
    assert_eq!(
        selection.to_string(),
        "cpu — no NVIDIA GPU: libnvidia-ml.so.1: cannot open shared object file: No such file or directory"
    );
}

#[tokio::test]
async fn cuda_visible_devices_hides_and_renumbers_gpus_as_cuda_does() {
    let fake = Fake::new().nvml(Ok(two_gpus()));
    let report = detect(&fake.host(), &cuda_build()).await;
    let pick = |visible: &str, device: Option<&str>| {
        let overrides = Overrides {
            device: device.map(str::to_string),
            cuda_visible_devices: Some(visible.to_string()),
        };
        select::select(&report, &cuda_build(), &Needs::default(), &overrides)
    };
    // Only the L4 visible: it becomes cuda:0.
    let selection = pick("0", None).unwrap();
    assert_eq!(selection.device, Device::Cuda(0));
    assert!(selection.reason.starts_with("NVIDIA L4"));
    // Reordered: the H100 is cuda:0, the L4 cuda:1.
    assert_eq!(pick("1,0", None).unwrap().device, Device::Cuda(0));
    assert!(pick("1,0", Some("cuda:1")).unwrap().reason.starts_with("NVIDIA L4"));
    // By UUID prefix.
    assert!(pick("GPU-bbbb", None).unwrap().reason.starts_with("NVIDIA H100"));
    // Empty hides all; an invalid first entry hides all (CUDA stops at the first bad entry).
    for hidden in ["", "7", "-1", "GPU-zzzz"] {
        let selection = pick(hidden, None).unwrap();
        assert_eq!(selection.device, Device::Cpu, "{hidden:?}");
        assert!(selection.reason.contains("hides all 2 NVIDIA GPU(s)"), "{}", selection.reason);
    }
    // An invalid entry after a valid one keeps the ones before it.
    assert!(pick("1,7,0", Some("cuda:0")).is_ok());
    assert!(matches!(pick("1,7,0", Some("cuda:1")), Err(SelectError::Forced { .. })));
}

#[tokio::test]
async fn a_forced_device_that_cannot_be_used_is_an_error_not_a_fallback() {
    let fake = Fake::new();
    let report = detect(&fake.host(), &cuda_build()).await;
    let force = |value: &str| {
        let overrides = Overrides { device: Some(value.into()), cuda_visible_devices: None };
        select::select(&report, &cuda_build(), &Needs::default(), &overrides)
    };
    let err = force("cuda").unwrap_err();
    assert_eq!(
        err.to_string(),
        "IPFS_ACCELERATE_DEVICE=cuda asks for cuda, which cannot be used: no NVIDIA GPU: \
         libnvidia-ml.so.1: cannot open shared object file: No such file or directory"
    );
    assert!(matches!(force("tpu"), Err(SelectError::BadOverride { .. })));
    assert!(force("metal").unwrap_err().to_string().contains("Metal exists only on macOS"));
    let cpu = force("CPU").unwrap();
    assert_eq!(cpu.to_string(), "cpu — IPFS_ACCELERATE_DEVICE=cpu");

    let fake = Fake::new().nvml(Ok(two_gpus()));
    let report = detect(&fake.host(), &cuda_build()).await;
    let overrides = Overrides { device: Some("cuda:5".into()), cuda_visible_devices: None };
    let err = select::select(&report, &cuda_build(), &Needs::default(), &overrides).unwrap_err();
    assert!(err.to_string().contains("there is no visible cuda:5"), "{err}");
    // A skill without a CPU implementation and no usable GPU: an error naming why.
    let gpu_only = Needs { backends: vec![Backend::Cuda], ..Needs::default() };
    let err = select::select(&report, &cpu_build(), &gpu_only, &Overrides::default()).unwrap_err();
    assert!(err.to_string().starts_with("no usable device:"), "{err}");
}

#[tokio::test]
async fn nvml_failures_name_the_step_that_failed() {
    let fake = Fake::new().nvml(Err(NvmlFailure {
        probe: "nvmlInit".into(),
        reason: "the NVIDIA kernel driver is not loaded".into(),
    }));
    let report = detect(&fake.host(), &cuda_build()).await;
    assert_eq!(
        report.nvidia.why_not().unwrap(),
        "nvmlInit: the NVIDIA kernel driver is not loaded"
    );
    let fake = Fake::new().nvml(Ok(NvidiaInfo { devices: vec![], ..two_gpus() }));
    let report = detect(&fake.host(), &cuda_build()).await;
    assert!(report
        .nvidia
        .why_not()
        .unwrap()
        .contains("NVML loaded (driver 550.54.15) but reports no GPUs"));
}

#[tokio::test]
async fn the_report_is_cached_per_machine_and_reprobed_on_refresh_or_change() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path(), StoreOptions::default()).await.unwrap();
    let cache = Cache::new(store, CacheConfig::default());
    let fake = Fake::new().nvml(Ok(two_gpus()));
    fake.file("/proc/sys/kernel/hostname", "worker-a")
        .file("/sys/module/nvidia/version", "550.54.15");
    let host = fake.host();
    let build = cuda_build();
    let options = LoadOptions::default();

    let first = report::load(&cache, &host, &build, &options).await.unwrap();
    assert_eq!(first.source, Source::Probed);
    assert_eq!(first.fingerprint.hostname, "worker-a");
    let second = report::load(&cache, &host, &build, &options).await.unwrap();
    assert!(matches!(second.source, Source::Cache { .. }));
    assert_eq!(second.report, first.report);
    assert_eq!(host.probe_runs(), 1, "the second load did no probing");

    let refreshed =
        report::load(&cache, &host, &build, &LoadOptions { refresh: true, ..options.clone() })
            .await
            .unwrap();
    assert_eq!(refreshed.source, Source::Probed);
    assert_eq!(host.probe_runs(), 2);

    // A driver update changes the fingerprint: probed again.
    fake.file("/sys/module/nvidia/version", "560.28.03");
    let updated = report::load(&cache, &host, &build, &options).await.unwrap();
    assert_eq!(updated.source, Source::Probed);
    assert_eq!(host.probe_runs(), 3);

    // A rebuilt binary with other backends is another fingerprint too.
    report::load(&cache, &host, &cpu_build(), &options).await.unwrap();
    assert_eq!(host.probe_runs(), 4);

    // Another machine sharing the store keeps its own entry and does not read this one's.
    let other = Fake::new();
    other.file("/proc/sys/kernel/hostname", "worker-b");
    let other_host = other.host();
    let theirs = report::load(&cache, &other_host, &build, &options).await.unwrap();
    assert_eq!(theirs.source, Source::Probed);
    assert!(!theirs.report.nvidia.is_available());
    let ours = report::load(&cache, &host, &build, &options).await.unwrap();
    assert!(matches!(ours.source, Source::Cache { .. }));
    assert!(ours.report.nvidia.is_available());
    let entries = cache.list(Some("hardware")).await.unwrap();
    assert_eq!(entries.len(), 4, "one entry per fingerprint: {entries:?}");

    // An expired entry is probed again.
    let short = LoadOptions { refresh: true, ttl: Some(std::time::Duration::from_millis(1)) };
    report::load(&cache, &other_host, &build, &short).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let runs = other_host.probe_runs();
    let again = report::load(&cache, &other_host, &build, &options).await.unwrap();
    assert_eq!(again.source, Source::Probed);
    assert_eq!(other_host.probe_runs(), runs + 1);
}
