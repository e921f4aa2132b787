//! `ipfs-accelerate hardware`, `install` and `doctor`, as a user runs them on this machine.

use serde_json::Value;
use tests::{servers, Env};

#[test]
fn hardware_probes_once_then_reads_the_cache_until_refreshed() {
    let env = Env::new();
    let first = env.json(&["hardware"]);
    assert_eq!(first["source"]["kind"], "probed");
    for probe in ["cpu", "memory", "nvidia", "rocm", "intel_gpu", "openvino", "metal", "vulkan"] {
        let answer = &first[probe];
        match answer["status"].as_str() {
            Some("available") => assert!(answer["details"].is_object(), "{probe}: {answer}"),
            Some("unavailable") => {
                // Never a bare false: what was tried and why it failed.
                assert!(!answer["probe"].as_str().unwrap_or("").is_empty(), "{probe}: {answer}");
                assert!(!answer["reason"].as_str().unwrap_or("").is_empty(), "{probe}: {answer}");
            }
            other => panic!("{probe}: status {other:?}"),
        }
    }
    assert_eq!(first["cpu"]["status"], "available");
    assert!(first["selected"]["device"].is_string(), "{}", first["selected"]);
    assert!(!first["selected"]["reason"].as_str().unwrap().is_empty());

    let second = env.json(&["hardware"]);
    assert_eq!(second["source"]["kind"], "cache", "the second run reads the cached report");
    assert_eq!(second["probed_at"], first["probed_at"]);
    let cached = env.json(&["cache", "ls", "--namespace", "hardware"]);
    assert_eq!(cached.as_array().unwrap().len(), 1, "{cached}");

    let refreshed = env.json(&["hardware", "--refresh"]);
    assert_eq!(refreshed["source"]["kind"], "probed");
}

#[test]
fn the_human_table_names_each_probe_and_the_device() {
    let env = Env::new();
    let output = env.cmd().arg("hardware").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for probe in [
        "cpu ",
        "memory ",
        "nvidia ",
        "rocm ",
        "intel-gpu ",
        "openvino ",
        "metal ",
        "vulkan ",
        "build ",
        "device ",
    ] {
        assert!(text.lines().any(|l| l.starts_with(probe)), "no {probe}row in:\n{text}");
    }
    assert!(text.contains("CPU only"), "this build has no GPU backend and says so:\n{text}");
}

#[test]
fn device_overrides_are_obeyed_or_refused_with_the_reason() {
    let env = Env::new();
    let mut cmd = env.std_cmd();
    cmd.env("IPFS_ACCELERATE_DEVICE", "cpu");
    let body = tests::json_of(cmd, &["hardware"]);
    assert_eq!(body["selected"]["device"], "cpu");
    assert_eq!(body["selected"]["reason"], "IPFS_ACCELERATE_DEVICE=cpu");

    let output = env.cmd().env("IPFS_ACCELERATE_DEVICE", "tpu:0").arg("hardware").output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("IPFS_ACCELERATE_DEVICE=\"tpu:0\" is not a device"), "{stderr}");

    // This build is CPU-only, so CUDA cannot be forced, whatever the machine has.
    let output = env.cmd().env("IPFS_ACCELERATE_DEVICE", "cuda").arg("hardware").output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("asks for cuda, which cannot be used"), "{stderr}");
}

#[test]
fn install_prints_a_plan_and_runs_nothing_without_apply() {
    let env = Env::new();
    let body = env.json(&["install", "--plan"]);
    let features: Vec<&str> =
        body["features"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(features, ["cuda", "whisper", "onnx-runtime", "s3", "ipfs", "llama-server"]);
    for feature in body["features"].as_array().unwrap() {
        for check in feature["checks"].as_array().unwrap() {
            if check["present"] == true {
                assert!(!check["detail"].as_str().unwrap().is_empty(), "{check}");
            }
        }
    }
    for step in body["plan"].as_array().unwrap() {
        let command = step["command"].as_str().unwrap();
        assert!(!command.contains("--break-system-packages"), "{command}");
    }
    // The virtualenv belongs to this data directory, and was not created by --plan.
    assert!(!env.home().join("data/python").exists());

    let one = env.json(&["install", "whisper"]);
    assert_eq!(one["features"].as_array().unwrap().len(), 1);

    let output = env.cmd().args(["install", "cudnn"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown feature \"cudnn\" (known: cuda, whisper"), "{stderr}");
}

fn doctor(cmd: &mut std::process::Command) -> (bool, Value, String) {
    let output = cmd.args(["--json", "doctor"]).output().unwrap();
    let body: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    (output.status.success(), body, String::from_utf8_lossy(&output.stderr).into_owned())
}

fn check<'a>(body: &'a Value, area: &str, name: &str) -> &'a Value {
    body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["area"] == area && c["name"] == name)
        .unwrap_or_else(|| panic!("no {area} {name} check in {body}"))
}

#[test]
fn doctor_passes_on_a_fresh_install_and_covers_every_area() {
    let env = Env::new();
    let (ok, body, stderr) = doctor(&mut env.std_cmd());
    assert!(ok, "{body}\n{stderr}");
    assert_eq!(body["failures"], 0);
    let areas: std::collections::BTreeSet<&str> =
        body["checks"].as_array().unwrap().iter().map(|c| c["area"].as_str().unwrap()).collect();
    for area in ["config", "hardware", "dependencies", "store", "remote", "secrets"] {
        assert!(areas.contains(area), "no {area} checks: {body}");
    }
    assert_eq!(check(&body, "store", "local")["level"], "ok");
    assert_eq!(check(&body, "remote", "kubo")["level"], "info", "not configured is not a failure");
    assert_eq!(check(&body, "secrets", "master key")["level"], "info");
}

#[test]
fn doctor_fails_naming_a_configured_ipfs_node_that_does_not_answer() {
    let env = Env::new();
    let mut cmd = env.std_cmd();
    cmd.env("IPFS_API", "/ip4/127.0.0.1/tcp/9");
    let (ok, body, stderr) = doctor(&mut cmd);
    assert!(!ok, "an unreachable configured node is a failure: {body}");
    let kubo = check(&body, "remote", "kubo");
    assert_eq!(kubo["level"], "fail");
    assert!(
        kubo["detail"]
            .as_str()
            .unwrap()
            .contains("configured (enabled by env IPFS_API) but unreachable"),
        "{kubo}"
    );
    assert_eq!(body["failures"], 1);

    // In human form the last line names the problem.
    let output = env.cmd().env("IPFS_API", "/ip4/127.0.0.1/tcp/9").arg("doctor").output().unwrap();
    assert!(!output.status.success());
    let stderr_human = String::from_utf8_lossy(&output.stderr);
    assert!(stderr_human.contains("error: 1 problem(s): remote kubo:"), "{stderr_human}{stderr}");
}

#[test]
fn doctor_reports_a_reachable_ipfs_node_as_ok() {
    let env = Env::new();
    let mut cmd = env.std_cmd();
    cmd.env("IPFS_API", servers::ipfs_api());
    let (ok, body, stderr) = doctor(&mut cmd);
    assert!(ok, "{body}\n{stderr}");
    assert_eq!(check(&body, "remote", "kubo")["level"], "ok");
}

#[test]
fn doctor_fails_on_an_unreadable_master_key() {
    let env = Env::new();
    let mut cmd = env.std_cmd();
    cmd.env("IPFS_ACCELERATE_MASTER_KEY", "not-a-key");
    let (ok, body, _) = doctor(&mut cmd);
    assert!(!ok);
    assert_eq!(check(&body, "secrets", "master key")["level"], "fail", "{body}");
}

#[test]
fn install_apply_leaves_manual_steps_to_the_user_and_runs_nothing_else() {
    let env = Env::new();
    let body = env.json(&["install", "ipfs"]);
    let checks = body["features"][0]["checks"].as_array().unwrap();
    let present = |name: &str| checks.iter().any(|c| c["name"] == name && c["present"] == true);
    if !(present("node") && present("npm")) || present("ipfs") {
        // Applying here would install system packages or do nothing worth checking.
        eprintln!("skipped: needs node and npm without Kubo on PATH (as in CI)");
        return;
    }
    let plan = body["plan"].as_array().unwrap();
    assert!(plan.iter().all(|s| s["kind"] == "manual"), "only Kubo is missing: {plan:?}");
    let applied = env.json(&["install", "ipfs", "--apply"]);
    assert_eq!(applied["ran"].as_array().unwrap().len(), 0);
    let manual = applied["manual"].as_array().unwrap();
    assert!(manual[0].as_str().unwrap().contains("install Kubo"), "{manual:?}");
    assert_eq!(applied["features"][0]["ready"], true, "Kubo is optional");
}
