//! `ipfs-accelerate hardware`, `install` and `doctor`.

use std::time::Duration;

use anyhow::anyhow;
use ipfs_accelerate_common::cache::{Cache, CacheConfig};
use ipfs_accelerate_common::config::Config;
use ipfs_accelerate_common::secrets::{MasterKey, SecretStore};
use ipfs_accelerate_common::store::{Store, TieredStore};
use ipfs_accelerate_common::Error;
use ipfs_accelerate_install_depends::deps::{self, Context, FeatureStatus, Step};
use ipfs_accelerate_install_depends::doctor::{Doctor, Level};
use ipfs_accelerate_install_depends::report::{self, HardwareReport, LoadOptions, Source};
use ipfs_accelerate_install_depends::select::{self, Needs, Overrides, SelectError, Selection};
use ipfs_accelerate_install_depends::{human_bytes, BuildInfo, Host};
use ipfs_accelerate_worker::{kernels, Worker, WorkerConfig};
use serde::Serialize;
use serde_json::json;

use crate::output::{AlreadyReported, Output};

/// How long one install step may run (llama-cpp-python compiles llama.cpp: minutes).
const STEP_TIMEOUT: Duration = Duration::from_secs(3600);

/// This binary: the GPU backends compiled in through the worker's cargo features.
fn build_info() -> BuildInfo {
    ipfs_accelerate_worker::build_info()
}

async fn load(config: &Config, host: &Host, refresh: bool) -> anyhow::Result<HardwareReport> {
    let cache = Cache::new(Store::open_config(config).await?, CacheConfig::default());
    let options = LoadOptions { refresh, ttl: None };
    Ok(report::load(&cache, host, &build_info(), &options).await?)
}

fn selection(host: &Host, hardware: &HardwareReport) -> Result<Selection, SelectError> {
    select::select(&hardware.report, &build_info(), &Needs::default(), &Overrides::from_host(host))
}

pub async fn hardware(config: &Config, refresh: bool, out: &Output) -> anyhow::Result<()> {
    let host = Host::current();
    let hardware = load(config, &host, refresh).await?;
    let selection = selection(&host, &hardware);
    let device = match &selection {
        Ok(s) => json!({ "device": s.device, "reason": s.reason, "passed_over": s.passed_over }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    // Decided by this binary on this CPU each run, never cached with the probes.
    let kernels = kernels::cpu_kernels();
    let mut body = serde_json::to_value(&hardware)?;
    body["selected"] = device;
    body["kernels"] = serde_json::to_value(&kernels)?;
    out.emit(&body, || {
        match hardware.source {
            Source::Probed => println!("probed just now"),
            Source::Cache { age_secs } => println!(
                "cached report from {} ago (--refresh probes again)",
                humanize(Duration::from_secs(age_secs))
            ),
        }
        let rows = hardware.report.rows();
        let width = rows.iter().map(|r| r.probe.len()).max().unwrap_or(0).max(6);
        for row in &rows {
            let status = if row.available { "yes" } else { "no" };
            println!("{:<width$}  {status:<3}  {}", row.probe, row.detail);
        }
        println!("{:<width$}  {:<3}  {}", "build", "-", hardware.report.build.describe());
        match &selection {
            Ok(s) => {
                println!("{:<width$}  {:<3}  {s}", "device", "->");
                for other in s.passed_over.iter().skip(1) {
                    println!("{:<width$}       also: {other}", "");
                }
            }
            Err(e) => println!("{:<width$}  !!   {e}", "device"),
        }
        for k in &kernels {
            let status = if k.runs { "->" } else { "!!" };
            println!(
                "{:<width$}  {status:<3}  {}: {} ({})",
                "kernels", k.engine, k.kernels, k.detail
            );
        }
    })?;
    match selection {
        Ok(_) => Ok(()),
        Err(e) if out.is_json() => Err(AlreadyReported(e.to_string()).into()),
        Err(e) => Err(e.into()),
    }
}

fn humanize(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ => format!("{:.1} h", s as f64 / 3600.0),
    }
}

fn context(config: &Config) -> Context {
    Context {
        host: Host::current(),
        venv: config.data_dir().value.join("python"),
        cpu: Some(ipfs_accelerate_install_depends::cpu_info()),
    }
}

/// A plan step with the command line a person would type.
#[derive(Serialize)]
struct PlannedStep<'a> {
    #[serde(flatten)]
    step: &'a Step,
    command: String,
}

fn print_statuses(statuses: &[FeatureStatus]) {
    for status in statuses {
        let verdict = if status.ready { "ready" } else { "NOT READY" };
        println!("{}  {verdict}  ({})", status.name, status.purpose);
        for check in &status.checks {
            let mark = match (check.present, check.requirement.optional) {
                (true, _) => "ok",
                (false, true) => "--",
                (false, false) => "MISSING",
            };
            let version = check.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
            let optional = if check.requirement.optional { ", optional" } else { "" };
            println!(
                "  {mark:<7}  {}{version}: {} ({}{optional})",
                check.requirement.name, check.detail, check.requirement.why
            );
        }
    }
}

fn print_plan(steps: &[Step]) {
    for step in steps {
        let (Step::Run { purpose, .. } | Step::Manual { purpose, .. }) = step;
        println!("  # {purpose}\n  {step}");
    }
}

pub async fn install(
    config: &Config,
    names: &[String],
    apply: bool,
    out: &Output,
) -> anyhow::Result<()> {
    let features = deps::select_features(names)?;
    let context = context(config);
    let statuses = deps::check(&context, &features).await;
    let steps = deps::plan(&context, &statuses, !names.is_empty());
    let planned: Vec<PlannedStep> =
        steps.iter().map(|step| PlannedStep { step, command: step.to_string() }).collect();
    if !apply {
        return out.emit(&json!({ "features": statuses, "plan": planned }), || {
            print_statuses(&statuses);
            if steps.is_empty() {
                println!("\nnothing to install");
            } else {
                println!("\nplan (nothing has been run; `--apply` runs it):");
                print_plan(&steps);
            }
        });
    }
    if steps.is_empty() {
        return out.emit(&json!({ "features": statuses, "plan": planned, "ran": [] }), || {
            print_statuses(&statuses);
            println!("\nnothing to install");
        });
    }
    let applied = deps::apply(&steps, STEP_TIMEOUT).await?;
    let after = deps::check(&context, &features).await;
    out.emit(&json!({ "features": after, "plan": planned, "ran": applied.ran, "manual": applied.manual }), || {
        println!();
        print_statuses(&after);
        for manual in &applied.manual {
            println!("left for you: {manual}");
        }
    })?;
    let not_ready: Vec<&str> = after.iter().filter(|s| !s.ready).map(|s| s.name).collect();
    if not_ready.is_empty() {
        Ok(())
    } else {
        let message = format!("still not ready: {}", not_ready.join(", "));
        Err(if out.is_json() { AlreadyReported(message).into() } else { anyhow!(message) })
    }
}

pub async fn doctor(config: &Config, refresh: bool, out: &Output) -> anyhow::Result<()> {
    let mut doctor = Doctor::default();
    match config.config_file() {
        Some(path) => {
            doctor.push("config", "file", Level::Ok, format!("loaded {}", path.display()))
        }
        None => doctor.push("config", "file", Level::Info, "none; defaults and environment only"),
    }

    let host = Host::current();
    match load(config, &host, refresh).await {
        Ok(hardware) => doctor.hardware(&hardware, &selection(&host, &hardware)),
        Err(e) => doctor.push("hardware", "report", Level::Fail, format!("{e:#}")),
    }
    kernel_checks(&mut doctor);
    let context = context(config);
    // Whisper and ONNX Runtime are judged by what `infer` would run (kernel_checks and
    // engine_checks), not by what building or pip-installing them would need.
    let (engines, install_only): (Vec<FeatureStatus>, Vec<FeatureStatus>) =
        deps::check(&context, &deps::features())
            .await
            .into_iter()
            .partition(|s| ENGINE_FEATURES.contains(&s.name));
    doctor.dependencies(&install_only);
    engine_checks(config, &engines, &mut doctor).await;
    store_checks(config, &mut doctor).await;
    secrets_checks(config, &mut doctor);
    super::backends::doctor_checks(config, &mut doctor).await;

    let failures: Vec<String> =
        doctor.failures().iter().map(|c| format!("{} {}: {}", c.area, c.name, c.detail)).collect();
    let body =
        json!({ "checks": doctor.checks, "worst": doctor.worst(), "failures": failures.len() });
    out.emit(&body, || print!("{}", doctor.render()))?;
    match failures.len() {
        0 => Ok(()),
        n => {
            let message = format!("{n} problem(s): {}", failures.join("; "));
            Err(if out.is_json() { AlreadyReported(message).into() } else { anyhow!(message) })
        }
    }
}

/// The `install` features whose readiness `doctor` judges by the engine `infer` would use.
const ENGINE_FEATURES: [&str; 2] = ["whisper", "onnx-runtime"];

/// The CPU kernels each engine runs here; an engine that cannot run on this CPU fails.
fn kernel_checks(doctor: &mut Doctor) {
    let missing = kernels::missing_v3();
    if !missing.is_empty() {
        doctor.push(
            "kernels",
            "cpu level",
            Level::Warn,
            format!(
                "below x86-64-v3 (missing {}): every engine runs its slow baseline kernels",
                missing.join(", ")
            ),
        );
    }
    for k in kernels::cpu_kernels() {
        let level = if k.runs { Level::Ok } else { Level::Fail };
        doctor.push("kernels", k.engine, level, format!("{} ({})", k.kernels, k.detail));
    }
}

/// What `infer` would load for the engines that come from outside the binary.
async fn engine_checks(config: &Config, statuses: &[FeatureStatus], doctor: &mut Doctor) {
    // espeak-ng is opened at run time, as `infer audio synthesize` would.
    let espeak =
        statuses.iter().flat_map(|s| &s.checks).find(|c| c.requirement.name == "libespeak-ng");
    if let Some(check) = espeak {
        let level = if check.present { Level::Ok } else { Level::Info };
        let detail = if check.present {
            check.detail.clone()
        } else {
            format!("{} (Piper voices need it: apt install libespeak-ng1)", check.detail)
        };
        doctor.push("engines", "espeak-ng", level, detail);
    }
    let settings = match config.section::<WorkerConfig>(|v| std::env::var(v).ok()) {
        Ok(settings) => settings,
        Err(e) => return doctor.push("engines", "worker config", Level::Fail, e.to_string()),
    };
    let store = match Store::open_config(config).await {
        Ok(store) => store,
        // store_checks names the failure.
        Err(_) => return,
    };
    let worker = Worker::new(store, settings);
    match worker.onnxruntime_source().await {
        Ok(Some(source)) => doctor.push("engines", "onnx runtime", Level::Ok, source),
        Ok(None) => doctor.push(
            "engines",
            "onnx runtime",
            Level::Info,
            "not configured (Piper voices need it): import the onnxruntime wheel as a model named onnxruntime, or set [worker] onnxruntime or ORT_DYLIB_PATH",
        ),
        Err(e) => doctor.push("engines", "onnx runtime", Level::Fail, e.to_string()),
    }
    // whisper.cpp is linked in: whether it runs here is its `kernels` row.
}

async fn store_checks(config: &Config, doctor: &mut Doctor) {
    let tiered = match TieredStore::open_config(config).await {
        Ok(tiered) => tiered,
        Err(e) => {
            doctor.push(
                "store",
                "open",
                Level::Fail,
                format!("{}: {e}", config.data_dir().value.display()),
            );
            return;
        }
    };
    match tiered.local().check_database().await {
        Ok(findings) if findings.is_empty() => {}
        Ok(findings) => doctor.push("store", "database", Level::Fail, findings.join("; ")),
        Err(e) => doctor.push("store", "database", Level::Fail, e.to_string()),
    }
    let status = match tiered.status().await {
        Ok(status) => status,
        Err(e) => {
            doctor.push("store", "status", Level::Fail, e.to_string());
            return;
        }
    };
    let local = &status.local;
    doctor.push(
        "store",
        "local",
        Level::Ok,
        format!(
            "{}: {} blocks, {}, {} pins",
            local.root.display(),
            local.usage.blocks,
            human_bytes(local.usage.bytes),
            local.usage.pins
        ),
    );
    if let Some(free) = local.free_bytes {
        let level = if free < 1 << 30 { Level::Warn } else { Level::Ok };
        doctor.push(
            "store",
            "disk",
            level,
            format!("{} free on the store's filesystem", human_bytes(free)),
        );
    }
    for tier in &status.tiers {
        let state = &tier.state;
        let location = state.location.as_deref().unwrap_or("-");
        let (level, detail) = match (state.active, tier.reachable) {
            (true, Some(true)) => {
                (Level::Ok, format!("{location}: {}", tier.probe.as_deref().unwrap_or("reachable")))
            }
            (true, _) => (
                Level::Fail,
                format!(
                    "{location} is configured ({}) but unreachable: {}",
                    state.reason,
                    tier.probe.as_deref().unwrap_or("no answer")
                ),
            ),
            (false, _) if state.location.is_none() => (Level::Info, state.reason.clone()),
            (false, _) => (Level::Info, format!("{location}: {}", state.reason)),
        };
        doctor.push("remote", state.kind, level, detail);
    }
    let pending = status
        .remote_pins
        .iter()
        .filter(|p| p.state == ipfs_accelerate_common::store::RemotePinState::Pending)
        .count();
    if pending > 0 {
        doctor.push(
            "remote",
            "pins",
            Level::Warn,
            format!("{pending} remote pin(s) pending; their content stays local until confirmed (`storage push`)"),
        );
    }
}

fn secrets_checks(config: &Config, doctor: &mut Doctor) {
    let dir = config.data_dir().value.join("secrets");
    match MasterKey::resolve(config, false) {
        Err(Error::NoMasterKey { .. }) => doctor.push(
            "secrets",
            "master key",
            Level::Info,
            "none yet; created by the first `secrets set`",
        ),
        Err(e) => doctor.push("secrets", "master key", Level::Fail, e.to_string()),
        Ok(key) => {
            let source = key.source().clone();
            match key.source().warning() {
                Some(warning) => doctor.push("secrets", "master key", Level::Warn, warning),
                None => doctor.push("secrets", "master key", Level::Ok, describe_source(&source)),
            }
            match SecretStore::open(&dir, key).and_then(|store| store.list()) {
                Ok(list) => doctor.push(
                    "secrets",
                    "store",
                    Level::Ok,
                    format!("{} secret(s) in {}", list.len(), dir.display()),
                ),
                Err(e) => doctor.push("secrets", "store", Level::Fail, e.to_string()),
            }
        }
    }
}

fn describe_source(source: &ipfs_accelerate_common::secrets::KeySource) -> String {
    serde_json::to_value(source)
        .ok()
        .map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        })
        .unwrap_or_else(|| format!("{source:?}"))
}
