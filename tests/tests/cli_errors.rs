//! One error vocabulary: a failing command per crate, and the `kind` its `--json` error
//! names. Each kind is the library's own (`Classify`), never the layer it passed through.

// Tests damage the store's files directly.
#![allow(clippy::disallowed_methods)]

use tests::Env;

/// A crate, the environment, the arguments, the kind and whether it is retryable.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str], &'a str, bool);

/// Runs `--json ARGS` with `env` set, expecting failure; returns the `error` object.
fn failure(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> serde_json::Value {
    let mut cmd = env.std_cmd();
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let output = cmd.arg("--json").args(args).output().unwrap();
    assert!(!output.status.success(), "{args:?} succeeded");
    let body: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {output:?}"));
    body["error"].clone()
}

#[test]
fn every_crate_names_its_own_kind() {
    let env = Env::new();
    let no_github = [("GITHUB_API_URL", "http://127.0.0.1:9"), ("GH_TOKEN", "t")];
    let dead_openai = [("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"), ("OPENAI_API_KEY", "x")];
    let cases: &[Case] = &[
        // common (storage)
        ("common", &[], &["storage", "cat", "bafy-not-a-cid"], "invalid_cid", false),
        // worker
        ("worker", &[], &["models", "show", "nosuch"], "unknown_model", false),
        // api-backends: a connection refused is worth retrying
        ("api-backends", &dead_openai, &["backends", "chat", "openai", "hi"], "connect", true),
        // github-cli
        ("github-cli", &no_github, &["github", "api", "/user"], "connect", true),
        // install-depends
        ("install-depends", &[], &["install", "no-such-feature"], "unknown_feature", false),
        // the binary's own
        ("cli", &[], &["cache", "rm", "ns", "nosuch"], "not_set", false),
    ];
    for (krate, vars, args, kind, retryable) in cases {
        let error = failure(&env, vars, args);
        assert_eq!(error["kind"], *kind, "{krate}: {args:?}: {error}");
        assert_eq!(error["retryable"], *retryable, "{krate}: {args:?}: {error}");
        assert!(!error["message"].as_str().unwrap().is_empty(), "{krate}: {error}");
    }
}

#[test]
fn bad_arguments_under_json_are_the_same_error_shape() {
    let env = Env::new();
    let output = env.std_cmd().args(["--json", "storage", "cat", "--nosuch"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(body["error"]["kind"], "usage", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("--nosuch"), "{body}");
    // Without --json, clap's own report, with its usage line.
    let output = env.std_cmd().args(["storage", "cat", "--nosuch"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Usage:"));
}

#[test]
fn a_storage_failure_inside_another_crate_is_named_precisely() {
    let env = Env::new();
    // The backends' response cache sits on the store: an unreadable store index is the
    // store's `store_index`, not the backends' "storage".
    let file = env.write_file("x", b"hello");
    env.add(&file, true);
    let db = env.home().join("data/store/meta.sqlite");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::write(&db, b"not a database").unwrap();
    let error = failure(
        &env,
        &[("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"), ("OPENAI_API_KEY", "x")],
        &["backends", "chat", "openai", "hi"],
    );
    assert_eq!(error["kind"], "store_index", "{error}");
    let error = failure(&env, &[], &["models", "ls"]);
    assert_eq!(error["kind"], "store_index", "{error}");
}

#[test]
fn a_reader_that_went_away_ends_the_command_quietly() {
    // `ipfs-accelerate config show | head -0`: the pipe's reader is gone before the first line.
    let env = Env::new();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = env.std_cmd().args(["config", "show"]).stdout(writer).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "{stderr}");
}
