//! `ipfs-accelerate storage …` with remote tiers, configured from the environment alone, as a
//! user of a fleet runs it: real IPFS node and S3 server on loopback (`cargo xtask test`).

// End-to-end tests write their input files on purpose.
#![allow(clippy::disallowed_methods)]

use std::process::Command;

use serde_json::Value;
use tests::servers::{self, unique};
use tests::Env;

/// One worker: its own data directory, the given tiers.
struct Worker {
    env: Env,
    prefix: String,
    kubo: bool,
    s3: bool,
    extra: Vec<(String, String)>,
}

impl Worker {
    fn new(prefix: &str, kubo: bool, s3: bool) -> Worker {
        Worker { env: Env::new(), prefix: prefix.to_string(), kubo, s3, extra: Vec::new() }
    }

    fn with(mut self, var: &str, value: &str) -> Worker {
        self.extra.push((var.to_string(), value.to_string()));
        self
    }

    fn command(&self) -> Command {
        let mut cmd = self.env.std_cmd();
        if self.kubo {
            cmd.env("IPFS_API", servers::ipfs_api());
        }
        if self.s3 {
            servers::s3().cli_env(&mut cmd, &self.prefix);
        }
        cmd.envs(self.extra.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.command().args(args).output().expect("run the binary")
    }

    fn json(&self, args: &[&str]) -> Value {
        self.json_with(&[], args)
    }

    /// `--json ARGS` with extra variables for this run only.
    fn json_with(&self, vars: &[(&str, &str)], args: &[&str]) -> Value {
        let mut cmd = self.command();
        cmd.envs(vars.iter().copied());
        tests::json_of(cmd, args)
    }

    fn file(&self, bytes: &[u8]) -> String {
        let path = self.env.home().join(unique("input"));
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    }
}

fn outcomes(body: &Value) -> Vec<(String, String)> {
    body["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (t["tier"].as_str().unwrap().to_string(), t["outcome"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn status_shows_both_tiers_reachable_with_the_variable_that_enabled_them() {
    let worker = Worker::new(&unique("status"), true, true);
    let status = worker.json(&["storage", "status"]);
    let tiers = status["tiers"].as_array().unwrap();
    assert_eq!(tiers.len(), 2);
    for tier in tiers {
        assert_eq!(tier["active"], true, "{tier}");
        assert_eq!(tier["reachable"], true, "{tier}");
    }
    assert_eq!(tiers[0]["reason"], "enabled by env IPFS_API");
    assert_eq!(tiers[1]["reason"], "enabled by env IPFS_ACCELERATE_S3_URL");

    let text = worker.run(&["storage", "status"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("embedded in front of 2 remote tier(s)"), "{text}");
    assert!(text.contains("tier kubo    active"), "{text}");
}

#[test]
fn ci_and_local_only_switches_are_reported_by_status_and_in_every_receipt() {
    let prefix = unique("gated");
    let cases = [
        (vec![("CI", "true")], "IPFS_ACCELERATE_REMOTE_IN_CI=1"),
        (vec![("STORAGE_FORCE_LOCAL", "1")], "STORAGE_FORCE_LOCAL"),
        (
            vec![("IPFS_KIT_DISABLE", "true"), ("IPFS_ACCELERATE_REMOTE_IN_CI", "1")],
            "IPFS_KIT_DISABLE",
        ),
    ];
    for (vars, named) in cases {
        let worker = vars.iter().fold(Worker::new(&prefix, true, true), |w, (k, v)| w.with(k, v));
        let status = worker.json(&["storage", "status"]);
        for tier in status["tiers"].as_array().unwrap() {
            assert_eq!(tier["active"], false, "{vars:?}: {tier}");
            assert!(tier["reason"].as_str().unwrap().contains(named), "{vars:?}: {tier}");
        }
        let added = worker.json(&["storage", "add", &worker.file(b"gated content")]);
        for (tier, outcome) in outcomes(&added) {
            assert_eq!(outcome, "skipped", "{vars:?}: {tier}");
        }
        // Still added, locally.
        let cat = worker.run(&["storage", "cat", added["cid"].as_str().unwrap()]);
        assert_eq!(cat.stdout, b"gated content");
    }
    // Under CI with the opt-in, the tiers are used.
    let worker = Worker::new(&prefix, true, true)
        .with("CI", "true")
        .with("IPFS_ACCELERATE_REMOTE_IN_CI", "1");
    let added = worker.json(&["storage", "add", &worker.file(unique("ci opt-in").as_bytes())]);
    assert!(outcomes(&added).iter().all(|(_, o)| o == "used"), "{added}");
}

#[test]
fn content_added_by_one_worker_is_read_by_another_through_each_tier() {
    for (kubo, s3) in [(true, false), (false, true)] {
        let prefix = unique("shared");
        let a = Worker::new(&prefix, kubo, s3);
        let b = Worker::new(&prefix, kubo, s3);
        let bytes = unique("shared content").repeat(50_000).into_bytes();
        let added = a.json(&["storage", "add", &a.file(&bytes)]);
        assert_eq!(outcomes(&added).iter().filter(|(_, o)| o == "used").count(), 1, "{added}");
        let cid = added["cid"].as_str().unwrap();

        let cat = b.run(&["storage", "cat", cid]);
        assert!(cat.status.success(), "{}", String::from_utf8_lossy(&cat.stderr));
        assert_eq!(cat.stdout, bytes);
        let stderr = String::from_utf8_lossy(&cat.stderr);
        assert!(stderr.contains("fetched"), "cat says which tier served it: {stderr}");
        // Kept locally: B's own store now has it.
        let stat = b.json(&["storage", "stat", cid]);
        assert_eq!(stat["blocks_missing"], 0, "{stat}");
    }
}

#[test]
fn a_dead_ipfs_node_degrades_add_to_local_with_a_receipt_naming_the_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let worker = Worker::new("unused", false, false)
        .with("IPFS_API", &format!("/ip4/127.0.0.1/tcp/{port}"))
        .with("IPFS_ACCELERATE_REMOTE_TIMEOUT", "2s");
    let added = worker.json(&["storage", "add", &worker.file(b"local after all")]);
    let tier = &added["tiers"][0];
    assert_eq!(tier["outcome"], "failed", "{added}");
    let detail = tier["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("127.0.0.1:{port}")) && detail.contains("cannot connect"),
        "{detail}"
    );

    // Human mode: the add succeeds and warns on stderr.
    let output = worker.run(&["storage", "add", &worker.file(b"again")]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("warning: kubo at http://127.0.0.1:"), "{stderr}");

    let status = worker.json(&["storage", "status"]);
    assert_eq!(status["tiers"][0]["reachable"], false, "{status}");
}

#[test]
fn pin_remote_fetch_and_push_from_the_command_line() {
    let prefix = unique("verbs");
    let a = Worker::new(&prefix, true, true);
    // Added with the tiers off, so only `push` and `pin --remote` put it there.
    let bytes = unique("verbs content").repeat(40_000).into_bytes();
    let added = a.json_with(&[("STORAGE_FORCE_LOCAL", "1")], &["storage", "add", &a.file(&bytes)]);
    let cid = added["cid"].as_str().unwrap();

    let pushed = a.json(&["storage", "push", cid]);
    assert_eq!(pushed["tiers_ok"], 2, "{pushed}");
    let pinned = a.json(&["storage", "pin", "add", "--remote", cid]);
    assert_eq!(pinned["remote_pin"], true, "{pinned}");
    let status = a.json(&["storage", "status"]);
    let pins = status["remote_pins"].as_array().unwrap();
    assert_eq!(pins.len(), 2, "{status}");
    assert!(pins.iter().all(|p| p["state"] == "pinned"), "{status}");

    let b = Worker::new(&prefix, false, true);
    let fetched = b.json(&["storage", "fetch", cid]);
    assert!(fetched["blocks_fetched"].as_u64().unwrap() > 1, "{fetched}");
    let out = b.env.home().join("out.bin");
    let got = b.json(&["storage", "get", cid, "-o", out.to_str().unwrap()]);
    assert_eq!(got["bytes"], bytes.len());
    assert_eq!(std::fs::read(out).unwrap(), bytes);

    // Without any tier, the verbs that need one say so.
    let lonely = Worker::new(&prefix, false, false);
    let output = lonely.command().args(["--json", "storage", "push", cid]).output().unwrap();
    assert!(!output.status.success());
    let error: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"]["kind"], "no_remote", "{error}");
}
