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

#[test]
fn config_show_lists_every_section_key_by_key_with_its_source() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("config.toml");
    #[allow(clippy::disallowed_methods)] // test fixture: the user's config file
    std::fs::write(
        &file,
        "[worker]\nqueue_depth = 4\nmax_image_bytes = \"1MiB\"\nresult_ttl = \"2h\"\n\
         [github.pacer]\n[backends]\ncooldown = 7\n",
    )
    .unwrap();
    let output = cli(&home)
        .args(["--json", "--config", file.to_str().unwrap(), "config", "show"])
        .env("IPFS_ACCELERATE_THREADS", "3")
        .env("IPFS_ACCELERATE_MEMORY_BUDGET", "2GiB")
        .env("GITHUB_REPOSITORY", "owner/name")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    let entries = body["entries"].as_array().unwrap();
    let entry = |key: &str| {
        entries.iter().find(|e| e["key"] == key).cloned().unwrap_or_else(|| panic!("no {key}"))
    };
    let from_file = format!("file {}", file.display());
    // The file, with one size and one duration parser for every section.
    assert_eq!(entry("worker.queue_depth")["value"], 4);
    assert_eq!(entry("worker.queue_depth")["source"], from_file.as_str());
    assert_eq!(entry("worker.max_image_bytes")["value"], 1 << 20);
    assert_eq!(entry("worker.result_ttl")["value"], "2h");
    assert_eq!(entry("backends.cooldown")["value"], "7s");
    assert_eq!(entry("backends.cooldown")["source"], from_file.as_str());
    // The environment.
    assert_eq!(entry("worker.threads")["value"], 3);
    assert_eq!(entry("worker.threads")["source"], "env IPFS_ACCELERATE_THREADS");
    assert_eq!(entry("worker.memory_budget")["value"], 2u64 << 30);
    assert_eq!(entry("github.repository")["value"], "owner/name");
    assert_eq!(entry("github.repository")["source"], "env GITHUB_REPOSITORY");
    // The defaults, nested tables included.
    assert_eq!(entry("worker.embed_model")["source"], "default");
    assert_eq!(entry("github.api_url")["value"], "https://api.github.com");
    assert_eq!(entry("backends.attempts")["source"], "default");
    assert!(entries.iter().any(|e| e["key"].as_str().unwrap().starts_with("github.pacer.")));
    assert!(entries.iter().any(|e| e["key"].as_str().unwrap().starts_with("github.errors.")));
    for section in
        ["data_dir", "storage.", "remote.", "secrets.", "worker.", "backends.", "github."]
    {
        assert!(
            entries.iter().any(|e| e["key"].as_str().unwrap().starts_with(section)),
            "no {section} keys"
        );
    }
}

#[test]
fn a_bad_section_value_is_one_config_error_naming_the_key() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("config.toml");
    for (text, vars, needle) in [
        ("[worker]\nthreads = 0\n", vec![], "threads must be at least 1"),
        ("[worker]\nmax_image_bytes = \"lots\"\n", vec![], "lots"),
        ("[backends]\ncooldown = \"soon\"\n", vec![], "soon"),
        ("[github]\nrepository = \"no-slash\"\n", vec![], "no-slash"),
        ("", vec![("IPFS_ACCELERATE_THREADS", "many")], "many"),
    ] {
        #[allow(clippy::disallowed_methods)] // test fixture: the user's config file
        std::fs::write(&file, text).unwrap();
        let mut cmd = cli(&home);
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        let output = cmd
            .args(["--json", "--config", file.to_str().unwrap(), "config", "show"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{text}");
        let body: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(body["error"]["kind"], "config_section", "{text}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(needle), "{body}");
    }
}
