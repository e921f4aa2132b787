//! `ipfs-accelerate` as a user runs it: global flags, config show, errors, completions.

use predicates::prelude::*;
use serde_json::Value;

fn cli(home: &tempfile::TempDir) -> assert_cmd::Command {
    tests::cli(home.path())
}

#[test]
fn json_config_show_names_each_source() {
    let home = tempfile::tempdir().unwrap();
    let output = cli(&home)
        .args(["config", "show", "--json", "--data-dir", "/srv/store"])
        .env("STORAGE_FORCE_LOCAL", "yes")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    let entry = |key: &str| {
        body["entries"].as_array().unwrap().iter().find(|e| e["key"] == key).cloned().unwrap()
    };
    assert_eq!(entry("data_dir")["value"], "/srv/store");
    assert_eq!(entry("data_dir")["source"], "flag --data-dir");
    assert_eq!(entry("storage.force_local")["value"], true);
    assert_eq!(entry("storage.force_local")["source"], "env STORAGE_FORCE_LOCAL");
    assert_eq!(entry("storage.profile")["value"], "unixfs-v1-2025");
    assert_eq!(entry("storage.profile")["source"], "default");
}

#[test]
fn default_data_dir_follows_xdg() {
    let home = tempfile::tempdir().unwrap();
    let output = cli(&home).args(["--json", "config", "show"]).output().unwrap();
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    let data_dir = &body["entries"][0];
    assert_eq!(data_dir["key"], "data_dir");
    let expected = home.path().join("data").join("ipfs-accelerate");
    assert_eq!(data_dir["value"], expected.to_str().unwrap());
}

#[test]
fn config_file_in_xdg_config_home_is_read() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("config").join("ipfs-accelerate");
    #[allow(clippy::disallowed_methods)] // test fixture: the user's config file
    {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.toml"), "[storage]\nprofile = \"legacy-cid-v0\"\n")
            .unwrap();
    }
    cli(&home)
        .args(["config", "show"])
        .assert()
        .success()
        .stdout(predicate::str::contains("unixfs-v0-2015"))
        .stdout(predicate::str::contains("config.toml"));
}

#[test]
fn malformed_env_value_is_a_one_line_error_naming_the_variable() {
    let home = tempfile::tempdir().unwrap();
    cli(&home)
        .args(["config", "show"])
        .env("STORAGE_FORCE_LOCAL", "maybe")
        .assert()
        .failure()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("STORAGE_FORCE_LOCAL"))
        .stderr(predicate::function(|s: &str| s.lines().count() == 1));
}

#[test]
fn json_errors_are_an_object_on_stdout() {
    let home = tempfile::tempdir().unwrap();
    let output = cli(&home)
        .args(["--json", "config", "show"])
        .env("STORAGE_FORCE_LOCAL", "maybe")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(body["error"]["kind"], "invalid_env");
    assert!(body["error"]["message"].as_str().unwrap().contains("STORAGE_FORCE_LOCAL=\"maybe\""));
}

#[test]
fn completions_are_generated_for_each_shell() {
    let home = tempfile::tempdir().unwrap();
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef"), ("fish", "complete -c")] {
        cli(&home)
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(predicate::str::contains(marker))
            .stdout(predicate::str::contains("ipfs-accelerate"));
    }
}

#[test]
fn version_is_printed() {
    let home = tempfile::tempdir().unwrap();
    cli(&home)
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("ipfs-accelerate 0."));
}
