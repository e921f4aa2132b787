//! `ipfs-accelerate backends …` against a real OpenAI-compatible server: llama.cpp's server
//! (llama-cpp-python) on SmolLM2-135M, started on loopback by `cargo xtask test`, configured
//! from the environment alone as users do.

use serde_json::json;
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
    assert_eq!(chat["cached"], false);
    // A greedy answer is kept in the store and reused by the next run.
    let again = tests::json_of(with_openai(&env, &base), &args);
    assert_eq!(
        (again["cached"].clone(), again["value"].clone()),
        (json!(true), chat["value"].clone())
    );

    // Greedy decoding is deterministic: the server's stream carries the same text.
    let fresh_stream = [&args[..], &["--stream", "--no-cache"]].concat();
    let streamed = tests::json_of(with_openai(&env, &base), &fresh_stream);
    assert_eq!(streamed["content"], chat["value"]["content"]);
    assert_eq!(streamed["finish_reason"], "length");

    // In human form the tokens go to stdout as they arrive.
    let output = with_openai(&env, &base).args(fresh_stream).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(text.trim_end(), chat["value"]["content"].as_str().unwrap().trim_end());

    let test = tests::json_of(with_openai(&env, &base), &["backends", "test", "openai"]);
    assert_eq!(test["ok"], true);

    // Figures accumulate over the runs: models ×2, chat, two streams; one cache hit.
    let stats = tests::json_of(with_openai(&env, &base), &["backends", "stats"]);
    assert_eq!(stats[0]["name"], "openai");
    assert_eq!((stats[0]["calls"].clone(), stats[0]["cache_hits"].clone()), (json!(5), json!(1)));
    assert!(stats[0]["overhead_p99_us"].as_u64().is_some(), "{stats}");
    let output = with_openai(&env, &base).args(["backends", "stats"]).output().unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("cache hits") && table.contains("openai"), "{table}");
}

#[test]
fn doctor_round_trips_every_configured_deployment() {
    let env = Env::new();
    let output =
        with_openai(&env, &servers::llama_url()).args(["--json", "doctor"]).output().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let openai =
        body["checks"].as_array().unwrap().iter().find(|c| c["area"] == "backends").unwrap();
    assert_eq!(
        (openai["name"].clone(), openai["level"].clone()),
        (json!("openai"), json!("ok")),
        "{body}"
    );
    assert!(openai["detail"].as_str().unwrap().contains("models: smollm2"), "{openai}");
    assert!(output.status.success(), "{body}");

    let output =
        with_openai(&env, "http://127.0.0.1:9/v1").args(["--json", "doctor"]).output().unwrap();
    assert!(!output.status.success(), "a configured deployment that does not answer is a failure");
    let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let openai =
        body["checks"].as_array().unwrap().iter().find(|c| c["area"] == "backends").unwrap();
    assert_eq!(openai["level"], "fail");
    assert!(openai["detail"].as_str().unwrap().contains("connection failed"), "{openai}");
}

/// A Text Embeddings Inference server's documented `/info` and `/rerank` answers.
async fn fake_tei() -> String {
    use axum::routing::{get, post};
    use axum::Json;
    let app = axum::Router::new()
        .route("/info", get(|| async { Json(json!({"model_id": "BAAI/bge-reranker-base", "model_type": {"reranker": {"id2label": {"0": "LABEL_0"}}}, "max_client_batch_size": 32, "max_input_length": 512, "version": "1.5.0"})) }))
        .route(
            "/rerank",
            post(|Json(body): Json<serde_json::Value>| async move {
                let query = body["query"].as_str().unwrap_or_default().to_string();
                let mut scores: Vec<serde_json::Value> = body["texts"].as_array().unwrap().iter().enumerate()
                    .map(|(i, t)| json!({"index": i, "score": if t.as_str().unwrap().contains(&query) { 0.98 } else { 0.02 }}))
                    .collect();
                scores.sort_by(|a, b| b["score"].as_f64().partial_cmp(&a["score"].as_f64()).unwrap());
                Json(serde_json::Value::Array(scores))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn rerank_through_tei_from_the_environment() {
    let env = Env::new();
    let url = fake_tei().await;
    let run = |args: &[&str]| {
        let mut cmd = env.std_cmd();
        cmd.env("TEI_ENDPOINT", &url).args(args);
        cmd
    };
    let args = ["backends", "rerank", "tei", "--query", "ipfs", "cats", "ipfs pins blocks", "dogs"];
    let output = tokio::task::block_in_place(|| run(&args).output().unwrap());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<String> =
        String::from_utf8_lossy(&output.stdout).lines().map(String::from).collect();
    assert_eq!(lines[0], "1\t0.9800\tipfs pins blocks");
    assert_eq!(lines.len(), 3);

    let chat =
        tokio::task::block_in_place(|| run(&["backends", "chat", "tei", "hi"]).output().unwrap());
    assert!(!chat.status.success());
    let stderr = String::from_utf8_lossy(&chat.stderr);
    assert!(stderr.contains("chat is not supported by tei"), "{stderr}");
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
