//! `doctor`: checks from every part of the system gathered into one verdict.
//!
//! A check that fails is something the configuration relies on and that is broken (a
//! configured IPFS node that does not answer, a store that will not open, a forced device that
//! does not exist); the verdict names each one. Warnings are worth a look (a GPU present but
//! unused); information is what is simply not there (no ROCm on a machine without AMD GPUs).

use std::fmt::Write as _;

use serde::Serialize;

use crate::deps::FeatureStatus;
use crate::probe::Probed;
use crate::report::HardwareReport;
use crate::select::{Device, SelectError, Selection};

/// How a check came out, in increasing severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Works.
    Ok,
    /// Not present or not configured; nothing relies on it.
    Info,
    /// Works, but something is worth a look.
    Warn,
    /// Something the configuration relies on is broken.
    Fail,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Info => "--",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `hardware`, `dependencies`, `store`, `remote`, `secrets`, `config`.
    pub area: &'static str,
    /// What was checked.
    pub name: String,
    /// How it came out.
    pub level: Level,
    /// What was found, or what is wrong and what to do.
    pub detail: String,
}

/// All checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Doctor {
    /// In the order they ran.
    pub checks: Vec<Check>,
}

impl Doctor {
    /// Adds a check.
    pub fn push(
        &mut self,
        area: &'static str,
        name: impl Into<String>,
        level: Level,
        detail: impl Into<String>,
    ) {
        self.checks.push(Check { area, name: name.into(), level, detail: detail.into() });
    }

    /// The hardware report's probes, and the device inference would use.
    pub fn hardware(
        &mut self,
        hardware: &HardwareReport,
        selection: &Result<Selection, SelectError>,
    ) {
        for row in hardware.report.rows() {
            let level = if row.available { Level::Ok } else { Level::Info };
            self.push("hardware", row.probe, level, row.detail);
        }
        let report = &hardware.report;
        match selection {
            Ok(selection) => {
                let gpu_present = report.nvidia.is_available()
                    || report.rocm.is_available()
                    || report.intel_gpu.is_available()
                    || report.metal.is_available();
                if selection.device == Device::Cpu && gpu_present {
                    self.push(
                        "hardware",
                        "device",
                        Level::Warn,
                        format!(
                            "cpu, although a GPU is present: {}",
                            selection.passed_over.join("; ")
                        ),
                    );
                } else {
                    self.push("hardware", "device", Level::Ok, selection.to_string());
                }
            }
            Err(e) => self.push("hardware", "device", Level::Fail, e.to_string()),
        }
        if let Probed::Available { details } = &report.cpu {
            if details.usable_threads < details.logical_cpus {
                self.push(
                    "hardware",
                    "threads",
                    Level::Info,
                    format!(
                        "this process may use {} of {} CPUs (affinity or cgroup limit)",
                        details.usable_threads, details.logical_cpus
                    ),
                );
            }
        }
    }

    /// Each optional feature's readiness.
    pub fn dependencies(&mut self, statuses: &[FeatureStatus]) {
        for status in statuses {
            if status.ready {
                self.push("dependencies", status.name, Level::Ok, "ready");
                continue;
            }
            let missing: Vec<&str> = status
                .checks
                .iter()
                .filter(|c| !c.present && !c.requirement.optional)
                .map(|c| c.requirement.name)
                .collect();
            self.push(
                "dependencies",
                status.name,
                Level::Info,
                format!(
                    "not ready, missing {} (see `ipfs-accelerate install {} --plan`)",
                    missing.join(", "),
                    status.name
                ),
            );
        }
    }

    /// The failed checks.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.level == Level::Fail).collect()
    }

    /// The worst level seen.
    pub fn worst(&self) -> Level {
        self.checks.iter().map(|c| c.level).max().unwrap_or(Level::Ok)
    }

    /// The checks as a table grouped by area, then a verdict line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut area = "";
        for check in &self.checks {
            if check.area != area {
                area = check.area;
                let _ = writeln!(out, "{area}");
            }
            let _ = writeln!(
                out,
                "  {:<4}  {:<width$}  {}",
                check.level.label(),
                check.name,
                check.detail
            );
        }
        let failures = self.failures();
        let warnings = self.checks.iter().filter(|c| c.level == Level::Warn).count();
        match failures.len() {
            0 if warnings == 0 => out.push_str("\nno problems found\n"),
            0 => {
                let _ = writeln!(out, "\nno problems found; {warnings} warning(s)");
            }
            n => {
                let names: Vec<String> =
                    failures.iter().map(|c| format!("{} {}", c.area, c.name)).collect();
                let _ = writeln!(out, "\n{n} problem(s): {}", names.join(", "));
            }
        }
        out
    }
}
