//! A model-based test of the store across processes: proptest draws sequences of add, pin,
//! unpin, name, unname, gc, eviction under a budget, and processes killed at crash points;
//! each step runs the release binary as its own process, and after each the store is checked
//! against a reference model: everything pinned or named reads back byte for byte, nothing
//! is missing or corrupt (`storage verify`), and after a completed GC nothing else is left.
//!
//! Cases: `PROPTEST_CASES` (default 8 sequences of up to 14 steps; `cargo xtask torture`
//! runs hundreds).

// A test's unwrap is its assertion.
#![allow(clippy::unwrap_used)]
// The test writes the files it adds.
#![allow(clippy::disallowed_methods)]

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Output;

use proptest::prelude::*;
use tests::Env;

const FILES: usize = 4;
/// Sizes spanning inline blocks (≤ 16 KiB), one file block, and several.
const SIZES: [usize; FILES] = [9_000, 200_000, 1_300_000, 2_600_000];

#[derive(Debug, Clone)]
enum Op {
    Add {
        file: usize,
        pin: bool,
    },
    Pin(usize),
    Unpin(usize),
    Name(usize),
    Unname(usize),
    Gc,
    /// An unpinned add under a budget that forces eviction.
    AddEvicting(usize),
    /// `storage gc` killed at a crash point.
    KillGc(&'static str),
    /// `storage add --pin` killed between its renames and its commit.
    KillAdd(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let file = 0..FILES;
    prop_oneof![
        3 => (file.clone(), any::<bool>()).prop_map(|(file, pin)| Op::Add { file, pin }),
        2 => file.clone().prop_map(Op::Pin),
        2 => file.clone().prop_map(Op::Unpin),
        1 => file.clone().prop_map(Op::Name),
        1 => file.clone().prop_map(Op::Unname),
        2 => Just(Op::Gc),
        1 => file.clone().prop_map(Op::AddEvicting),
        2 => prop_oneof![Just("gc-rows-deleted"), Just("gc-committed"), Just("gc-file-removed")]
            .prop_map(Op::KillGc),
        1 => file.prop_map(Op::KillAdd),
    ]
}

/// What the model knows of one file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Known {
    /// Whether all its blocks are surely present (`None`: unknown, after a kill or eviction).
    present: Option<bool>,
    pinned: bool,
    named: bool,
}

struct World {
    env: Env,
    paths: Vec<PathBuf>,
    data: Vec<Vec<u8>>,
    cids: Vec<String>,
    model: [Known; FILES],
}

impl World {
    fn new() -> World {
        let env = Env::new();
        let data: Vec<Vec<u8>> =
            SIZES.iter().enumerate().map(|(i, &n)| tests::pseudo_random(i as u64 + 1, n)).collect();
        let paths: Vec<PathBuf> = data
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let path = env.home().join(format!("f{i}"));
                std::fs::write(&path, d).unwrap();
                path
            })
            .collect();
        let cids = paths
            .iter()
            .map(|p| {
                let out = env.std_cmd().args(["storage", "cid"]).arg(p).output().unwrap();
                String::from_utf8(out.stdout).unwrap().trim().to_string()
            })
            .collect();
        World { env, paths, data, cids, model: [Known::default(); FILES] }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.env.std_cmd().args(args).output().unwrap()
    }

    fn path(&self, file: usize) -> &str {
        self.paths[file].to_str().unwrap()
    }

    fn name(file: usize) -> String {
        format!("model/f{file}")
    }

    fn apply(&mut self, op: &Op) {
        let no_panic = |out: &Output| {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!stderr.contains("panicked"), "{op:?}: {stderr}");
            assert!(out.status.code() != Some(101), "{op:?}: {stderr}");
        };
        match *op {
            Op::Add { file, pin } => {
                let mut args = vec!["storage", "add", "-Q"];
                if pin {
                    args.push("--pin");
                }
                args.push(self.path(file));
                let out = self.run(&args);
                assert!(out.status.success(), "{op:?}: {}", String::from_utf8_lossy(&out.stderr));
                assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), self.cids[file]);
                let known = &mut self.model[file];
                known.present = Some(true);
                known.pinned |= pin;
            }
            Op::Pin(file) => {
                let out = self.run(&["storage", "pin", "add", &self.cids[file]]);
                no_panic(&out);
                let known = &mut self.model[file];
                match known.present {
                    Some(true) => assert!(out.status.success(), "{op:?} of a present file"),
                    Some(false) => assert!(!out.status.success(), "{op:?} of an absent file"),
                    None => known.present = Some(out.status.success()).filter(|ok| *ok),
                }
                known.pinned |= out.status.success();
            }
            Op::Unpin(file) => {
                let out = self.run(&["storage", "pin", "rm", &self.cids[file]]);
                no_panic(&out);
                assert_eq!(out.status.success(), self.model[file].pinned, "{op:?}");
                self.model[file].pinned = false;
            }
            Op::Name(file) => {
                let out =
                    self.run(&["storage", "names", "set", &World::name(file), &self.cids[file]]);
                no_panic(&out);
                let known = &mut self.model[file];
                if known.present == Some(true) {
                    assert!(
                        out.status.success(),
                        "{op:?}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                known.named |= out.status.success();
            }
            Op::Unname(file) => {
                let out = self.run(&["storage", "names", "rm", &World::name(file)]);
                no_panic(&out);
                assert_eq!(out.status.success(), self.model[file].named, "{op:?}");
                self.model[file].named = false;
            }
            Op::Gc => {
                let out = self.run(&["storage", "gc"]);
                assert!(out.status.success(), "{op:?}: {}", String::from_utf8_lossy(&out.stderr));
                for known in &mut self.model {
                    if !(known.pinned || known.named) {
                        known.present = Some(false);
                    }
                }
            }
            Op::AddEvicting(file) => {
                let out = self
                    .env
                    .std_cmd()
                    .env("IPFS_ACCELERATE_STORAGE_BUDGET", "1000000")
                    .args(["storage", "add", "-Q", self.path(file)])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{op:?}: {}", String::from_utf8_lossy(&out.stderr));
                // Eviction may take any unprotected content, this file's included.
                for known in &mut self.model {
                    if !(known.pinned || known.named) {
                        known.present = None;
                    }
                }
            }
            Op::KillGc(point) => {
                let out = self
                    .env
                    .std_cmd()
                    .env("IPFS_ACCELERATE_CRASH_AT", point)
                    .args(["storage", "gc"])
                    .output()
                    .unwrap();
                no_panic(&out);
                for known in &mut self.model {
                    if !(known.pinned || known.named) {
                        known.present = None;
                    }
                }
            }
            Op::KillAdd(file) => {
                let out = self
                    .env
                    .std_cmd()
                    .env("IPFS_ACCELERATE_CRASH_AT", "put-renamed")
                    .args(["storage", "add", "--pin", self.path(file)])
                    .output()
                    .unwrap();
                no_panic(&out);
                // Killed, or finished without a rename (everything was present already).
                if out.status.signal() != Some(9) {
                    assert!(out.status.success());
                    self.model[file].pinned = true;
                    self.model[file].present = Some(true);
                } else if self.model[file].present != Some(true) {
                    self.model[file].present = None;
                }
            }
        }
    }

    /// The store agrees with the model.
    fn check(&self, after: &Op) {
        let verify = self.run(&["storage", "verify"]);
        assert!(
            verify.status.success(),
            "after {after:?}: verify: {}",
            String::from_utf8_lossy(&verify.stdout)
        );
        for (file, known) in self.model.iter().enumerate() {
            let cid = &self.cids[file];
            if known.pinned || known.named || known.present == Some(true) {
                let cat = self.run(&["storage", "cat", cid]);
                assert!(
                    cat.status.success(),
                    "after {after:?}: f{file} {known:?}: cat failed: {}",
                    String::from_utf8_lossy(&cat.stderr)
                );
                assert!(
                    cat.stdout == self.data[file],
                    "after {after:?}: f{file} read back different bytes"
                );
            }
            if known.present == Some(false) {
                let stat = self.run(&["--json", "storage", "stat", cid]);
                assert!(
                    !stat.status.success(),
                    "after {after:?}: f{file} should be gone: {}",
                    String::from_utf8_lossy(&stat.stdout)
                );
            }
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_store_agrees_with_its_model_across_processes_and_kills(ops in proptest::collection::vec(op(), 1..14)) {
        let mut world = World::new();
        for op in &ops {
            world.apply(op);
            world.check(op);
        }
        // However the sequence ended, a last GC leaves exactly what is protected.
        world.apply(&Op::Gc);
        world.check(&Op::Gc);
    }
}
