//! Crash points: named places between a durable step and the next (a file removed, a rename
//! done, a transaction not yet committed) where a test can have the process killed.
//!
//! `IPFS_ACCELERATE_CRASH_AT=<point>[:<n>]` makes the process send itself `SIGKILL` the
//! `n`th time (default: first) it reaches `<point>`. `SIGKILL`, not a panic or `abort`: no
//! destructor, no unwinding, no flush runs, exactly as under `kill -9` or a power cut of the
//! process, and the kernel drops its locks. The store and secrets code call
//! [`crash_point`] between every delete or rename and the commit that makes it consistent;
//! `tests/tests/crash_points.rs` kills at each and checks that nothing is lost.
//!
//! Why not the `fail` crate: its actions are panics, sleeps and returns, none of which is a
//! kill, and its points compile in only under a feature, which would make the tested binary a
//! different build from the shipped one. This is one environment lookup per process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable naming the point to die at.
pub const ENV: &str = "IPFS_ACCELERATE_CRASH_AT";

/// The crash points, for tests and docs to enumerate.
pub const POINTS: &[&str] = &[
    "put-renamed",
    "gc-rows-deleted",
    "gc-committed",
    "gc-file-removed",
    "repair-renamed",
    "rotate-pending-written",
    "rotate-reencrypted",
    "rotate-promoted",
    "secrets-renamed",
];

struct Target {
    point: String,
    nth: u64,
    seen: AtomicU64,
}

fn target() -> Option<&'static Target> {
    static TARGET: OnceLock<Option<Target>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let value = std::env::var(ENV).ok()?;
            let (point, nth) = match value.rsplit_once(':') {
                Some((point, n)) => (point.to_string(), n.parse().ok()?),
                None => (value, 1),
            };
            Some(Target { point, nth, seen: AtomicU64::new(0) })
        })
        .as_ref()
}

/// Dies by `SIGKILL` here if `IPFS_ACCELERATE_CRASH_AT` names this point (and hit count).
pub fn crash_point(point: &str) {
    let Some(target) = target() else { return };
    if target.point != point {
        return;
    }
    if target.seen.fetch_add(1, Ordering::Relaxed) + 1 == target.nth {
        tracing::warn!(point, "crash point reached: killing this process");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; this is never reached.
        std::process::abort();
    }
}
