//! `ipfs-accelerate backends …` against a real OpenAI-compatible server: llama.cpp's server
//! (llama-cpp-python) on SmolLM2-135M, started on loopback by `cargo xtask test`, configured
//! from the environment alone as users do.

use tests::{servers, Env};

fn with_openai(env: &Env, base: &str) -> std::process::Command {
    let mut cmd = env.std_cmd();
    cmd.env("OPENAI_BASE_URL", base).env("OPENAI_API_KEY", "x");
    cmd
}

#[test]
fn zero_config_chat_streaming_and_models_against_llama_cpp() {
    let env = Env::new();
    let base = servers::llama_url();
    let list = tests::json_of(with_openai(&env, &base), &["backends", "list"]);
    assert_eq!(list[0]["name"], "openai");
    assert_eq!(list[0]["source"], "env OPENAI_BASE_URL");

    let models = tests::json_of(with_openai(&env, &base), &["backends", "models", "openai"]);
    assert_eq!(models[0]["id"], "smollm2");

    let args = ["backends", "chat", "openai", "Say hi", "--max-tokens", "8", "--temperature", "0"];
    let chat = tests::json_of(with_openai(&env, &base), &args);
    assert_eq!(chat["deployment"], "openai");
    assert!(!chat["value"]["content"].as_str().unwrap().is_empty(), "{chat}");
    assert_eq!(chat["value"]["usage"]["completion_tokens"], 8);
    assert_eq!(chat["value"]["finish_reason"], "length");
    assert_eq!(chat["request_id"].as_str().unwrap().len(), 26, "a ULID");
    // Greedy decoding is deterministic: the stream carries the same text.
    let streamed = tests::json_of(with_openai(&env, &base), &[&args[..], &["--stream"]].concat());
    assert_eq!(streamed["content"], chat["value"]["content"]);
    assert_eq!(streamed["finish_reason"], "length");

    // In human form the tokens go to stdout as they arrive.
    let output = with_openai(&env, &base).args(args).arg("--stream").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(text.trim_end(), chat["value"]["content"].as_str().unwrap().trim_end());

    let test = tests::json_of(with_openai(&env, &base), &["backends", "test", "openai"]);
    assert_eq!(test["ok"], true);
}

#[test]
fn failures_are_typed_and_named() {
    let env = Env::new();
    let output = with_openai(&env, "http://127.0.0.1:9/v1")
        .args(["--json", "backends", "chat", "openai", "hi"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("connection failed") && stdout.contains("127.0.0.1:9"), "{stdout}");

    let output = with_openai(&env, &servers::llama_url())
        .args(["backends", "chat", "nosuch", "hi"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no deployment or group named \"nosuch\" (known: openai)"), "{stderr}");

    // OpenAI proper without a key: refused before any request, naming where a key was looked for.
    let output = env
        .cmd()
        .env("OPENAI_BASE_URL", "https://api.openai.com/v1")
        .args(["backends", "chat", "openai", "hi"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no API key: looked in secret \"openai\", $OPENAI_API_KEY"),
        "{stderr}"
    );

    // Nothing configured: says how to configure.
    let output = env.cmd().args(["backends", "list"]).output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("set OPENAI_BASE_URL"));
}
