//! `ipfs-accelerate secrets …` as a user runs it.

// The tests inspect the store's and the key's files on purpose.
#![allow(clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;

use predicates::prelude::*;
use serde_json::Value;
use tests::Env;

const VALUE: &str = "sk-e2e-0ddba11-plaintext-marker";

fn set(env: &Env, name: &str, value: &str) {
    env.cmd()
        .args(["secrets", "set", name, "--from-stdin"])
        .write_stdin(format!("{value}\n"))
        .assert()
        .success();
}

fn key_file(env: &Env) -> std::path::PathBuf {
    env.home().join("config/ipfs-accelerate/master.key")
}

fn no_plaintext_anywhere(env: &Env) {
    for dir in ["data", "config"] {
        for (path, bytes) in tests::files_under(&env.home().join(dir)) {
            assert!(
                !String::from_utf8_lossy(&bytes).contains(VALUE),
                "plaintext in {}",
                path.display()
            );
        }
    }
}

#[test]
fn set_get_ls_rm_with_a_generated_key_file() {
    let env = Env::new();
    set(&env, "openai", VALUE);
    assert_eq!(std::fs::metadata(key_file(&env)).unwrap().permissions().mode() & 0o777, 0o600);
    env.cmd()
        .args(["secrets", "get", "openai"])
        .assert()
        .success()
        .stdout(predicate::str::contains("is set").and(predicate::str::contains(VALUE).not()));
    env.cmd()
        .args(["secrets", "get", "openai", "--reveal"])
        .assert()
        .success()
        .stdout(format!("{VALUE}\n"));
    assert_eq!(env.json(&["secrets", "ls"])[0]["name"], "openai");
    let status = env.json(&["secrets", "status"]);
    assert_eq!(status["key_source"]["kind"], "file");
    assert!(status["warning"].as_str().unwrap().contains("file"));
    no_plaintext_anywhere(&env);
    env.json(&["secrets", "rm", "openai"]);
    env.cmd()
        .args(["secrets", "get", "openai"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not set"));
}

#[test]
fn values_never_come_from_argv_and_a_missing_terminal_is_explained() {
    let env = Env::new();
    env.cmd()
        .args(["secrets", "set", "x"])
        .write_stdin("v\n")
        .assert()
        .failure()
        .stderr(predicate::str::contains("--from-stdin"));
    env.cmd().args(["secrets", "set", "x", "value-on-argv"]).assert().failure().code(2);
}

#[test]
fn a_wrong_key_is_a_clear_error_and_changes_nothing() {
    let env = Env::new();
    set(&env, "a", VALUE);
    let file = env.home().join("data/secrets/secrets.enc");
    let before = std::fs::read(&file).unwrap();
    let other_key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let output = env
        .cmd()
        .args(["--json", "secrets", "set", "b", "--from-stdin"])
        .env("IPFS_ACCELERATE_MASTER_KEY", other_key)
        .write_stdin("x")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(body["error"]["kind"], "secrets_undecryptable");
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn backup_wipe_restore_and_rotate_key() {
    let env = Env::new();
    set(&env, "openai", VALUE);
    set(&env, "hf", "hf_second");
    let cid = env.json(&["secrets", "backup"])["cid"].as_str().unwrap().to_string();
    // The backup in the CAS is the ciphertext, never the plaintext.
    let stored = env.cmd().args(["storage", "cat", &cid]).output().unwrap();
    assert!(!String::from_utf8_lossy(&stored.stdout).contains(VALUE));
    assert_eq!(env.json(&["storage", "stat", &cid])["pinned"], "recursive");

    std::fs::remove_dir_all(env.home().join("data/secrets")).unwrap();
    env.cmd().args(["secrets", "get", "openai"]).assert().failure();
    assert_eq!(env.json(&["secrets", "restore", &cid])["restored"], 2);
    env.cmd()
        .args(["secrets", "get", "openai", "--reveal"])
        .assert()
        .success()
        .stdout(format!("{VALUE}\n"));

    let old_key = std::fs::read(key_file(&env)).unwrap();
    assert_eq!(env.json(&["secrets", "rotate-key"])["rotated"], 2);
    assert_ne!(std::fs::read(key_file(&env)).unwrap(), old_key);
    env.cmd().args(["secrets", "get", "hf", "--reveal"]).assert().success().stdout("hf_second\n");
    // The old backup no longer opens under the new key, and restoring it changes nothing.
    env.cmd()
        .args(["secrets", "restore", &cid])
        .assert()
        .failure()
        .stderr(predicate::str::contains("does not open this backup"));
    env.cmd().args(["secrets", "get", "hf", "--reveal"]).assert().success().stdout("hf_second\n");
    no_plaintext_anywhere(&env);
}

#[test]
fn concurrent_processes_setting_secrets_lose_none() {
    let env = Env::new();
    set(&env, "seed", "creates-the-key-first");
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let home = env.home().to_path_buf();
            std::thread::spawn(move || {
                for i in 0..8 {
                    let mut cmd = tests::cli(&home);
                    cmd.env("IPFS_ACCELERATE_DATA_DIR", home.join("data"));
                    cmd.args(["secrets", "set", &format!("p{w}-{i}"), "--from-stdin"])
                        .write_stdin(format!("v{w}-{i}"))
                        .assert()
                        .success();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let listed = env.json(&["secrets", "ls"]);
    assert_eq!(listed.as_array().unwrap().len(), 33);
    env.cmd().args(["secrets", "get", "p2-7", "--reveal"]).assert().success().stdout("v2-7\n");
}
