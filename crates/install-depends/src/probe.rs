//! What a probe answers: what it found, or what it tried and why that failed. Never a bare
//! `false`.

use serde::{Deserialize, Serialize};

/// One probe's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Probed<T> {
    /// Found, with what was found.
    Available {
        /// The findings.
        details: T,
    },
    /// Not usable here.
    Unavailable {
        /// What was tried: a library, a sysfs path, a program.
        probe: String,
        /// Why that did not find it, concretely.
        reason: String,
    },
}

impl<T> Probed<T> {
    /// An unavailable answer.
    pub fn unavailable(probe: impl Into<String>, reason: impl Into<String>) -> Probed<T> {
        Probed::Unavailable { probe: probe.into(), reason: reason.into() }
    }

    /// The details when available.
    pub fn details(&self) -> Option<&T> {
        match self {
            Probed::Available { details } => Some(details),
            Probed::Unavailable { .. } => None,
        }
    }

    /// Whether it was found.
    pub fn is_available(&self) -> bool {
        matches!(self, Probed::Available { .. })
    }

    /// `"<probe>: <reason>"` when unavailable.
    pub fn why_not(&self) -> Option<String> {
        match self {
            Probed::Available { .. } => None,
            Probed::Unavailable { probe, reason } => Some(format!("{probe}: {reason}")),
        }
    }
}

/// A one-line summary of a probe's findings, for the `hardware` table.
pub trait Summary {
    /// One line, no trailing period.
    fn summary(&self) -> String;
}

/// `bytes` as GiB with one decimal (`24.0 GiB`).
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// `bytes` in the largest binary unit that keeps it at least 1 (`512 B`, `3.2 MiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(24 << 30), "24.0 GiB");
    }
}
