//! Each protocol client against a local server answering the payloads its project documents
//! (Ollama's API reference, TGI's and TEI's OpenAPI schemas, OVMS's KServe and TF-Serving
//! pages), streams included, through the router and through the clients' own extras. Each
//! server records the bodies it received, so requests are checked too.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use futures_util::StreamExt;
use ipfs_accelerate_backends::config::{BackendsConfig, DeploymentConfig};
use ipfs_accelerate_backends::ollama::Ollama;
use ipfs_accelerate_backends::ovms::{Ovms, Tensor, TensorData};
use ipfs_accelerate_backends::router::CallOptions;
use ipfs_accelerate_backends::tei::Tei;
use ipfs_accelerate_backends::tgi::Tgi;
use ipfs_accelerate_backends::{
    CallContext, ChatRequest, EmbedRequest, Error, Kind, Message, RerankRequest, Router, Transport,
};
use serde_json::{json, Value};

/// Bodies the fake server received, by path.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

async fn serve(app: axum::Router<Seen>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = app.with_state(Arc::clone(&seen));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn record(seen: &Seen, path: &str, body: &Value) {
    seen.lock().unwrap().push((path.to_string(), body.clone()));
}

fn bodies(seen: &Seen, path: &str) -> Vec<Value> {
    seen.lock().unwrap().iter().filter(|(p, _)| p == path).map(|(_, b)| b.clone()).collect()
}

/// A streamed body of `chunks`, each flushed on its own.
fn chunked(content_type: &'static str, chunks: Vec<String>) -> Response {
    let stream = futures_util::stream::iter(
        chunks.into_iter().map(|c| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(c))),
    );
    ([(header::CONTENT_TYPE, content_type)], Body::from_stream(stream)).into_response()
}

fn sse(events: &[Value]) -> Response {
    chunked("text/event-stream", events.iter().map(|e| format!("data:{e}\n\n")).collect())
}

fn ndjson(lines: &[Value]) -> Response {
    chunked("application/x-ndjson", lines.iter().map(|l| format!("{l}\n")).collect())
}

fn router(
    kind: Kind,
    url: &str,
    model: Option<&str>,
    tweak: impl FnOnce(&mut DeploymentConfig),
) -> Router {
    let mut deployment = DeploymentConfig::new("d", kind, url);
    deployment.model = model.map(str::to_string);
    tweak(&mut deployment);
    let config = BackendsConfig {
        deployments: vec![deployment],
        backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(10),
        ..BackendsConfig::default()
    };
    Router::new(config, |_| None).unwrap()
}

fn ask(text: &str) -> ChatRequest {
    ChatRequest { messages: vec![Message::new("user", text)], ..ChatRequest::default() }
}

fn ctx() -> CallContext {
    CallContext::new(Duration::from_secs(10))
}

async fn collect(
    stream: ipfs_accelerate_backends::DeltaStream,
) -> (String, Option<String>, Option<Error>) {
    let mut text = String::new();
    let mut finish = None;
    let mut stream = stream;
    while let Some(item) = stream.next().await {
        match item {
            Ok(delta) => {
                text.push_str(&delta.content);
                finish = delta.finish_reason.or(finish);
            }
            Err(e) => return (text, finish, Some(e)),
        }
    }
    (text, finish, None)
}

// ---------------------------------------------------------------- Ollama

fn ollama_app() -> axum::Router<Seen> {
    axum::Router::new()
        .route(
            "/api/chat",
            post(|State(seen): State<Seen>, Json(body): Json<Value>| async move {
                record(&seen, "chat", &body);
                if body["model"] == "nope" {
                    let error = json!({"error": "model \"nope\" not found, try pulling it first"});
                    return (StatusCode::NOT_FOUND, Json(error)).into_response();
                }
                let cut = body["messages"][0]["content"] == "cut";
                if body["stream"] == true {
                    let mut lines = vec![
                        json!({"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":"The","images":null},"done":false}),
                        json!({"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":" sky","images":null},"done":false}),
                    ];
                    if body["messages"][0]["content"] == "fail" {
                        lines.push(json!({"error":"an error was encountered while running the model: unexpected EOF"}));
                    } else if !cut {
                        lines.push(json!({"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":4883583458u64,"load_duration":1334875,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":282,"eval_duration":4535599000u64}));
                    }
                    return ndjson(&lines);
                }
                Json(json!({"model":"llama3.2","created_at":"2023-12-12T14:13:43.416799Z","message":{"role":"assistant","content":"Hello! How are you today?"},"done":true,"done_reason":"stop","total_duration":5191566416u64,"load_duration":2154458,"prompt_eval_count":26,"prompt_eval_duration":383809000,"eval_count":298,"eval_duration":4799921000u64})).into_response()
            }),
        )
        .route(
            "/api/generate",
            post(|State(seen): State<Seen>, Json(body): Json<Value>| async move {
                record(&seen, "generate", &body);
                Json(json!({"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","response":"The sky is blue because it is the color of the sky.","done":true,"done_reason":"length","context":[1,2,3],"prompt_eval_count":26,"eval_count":290}))
            }),
        )
        .route(
            "/api/embed",
            post(|State(seen): State<Seen>, Json(body): Json<Value>| async move {
                record(&seen, "embed", &body);
                let n = body["input"].as_array().map_or(0, Vec::len);
                let vectors: Vec<Value> =
                    (0..n).map(|i| json!([0.010071029, -0.0017594862, i as f64])).collect();
                Json(json!({"model":"all-minilm","embeddings":vectors,"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}))
            }),
        )
        .route(
            "/api/tags",
            get(|| async {
                Json(json!({"models":[
                    {"name":"deepseek-r1:latest","model":"deepseek-r1:latest","modified_at":"2025-05-10T08:06:48.639712648-07:00","size":4683075271u64,"digest":"0a8c266910232fd3291e71e5ba1e058cc5af9d411192cf88b6d30e92b6e73163","details":{"parent_model":"","format":"gguf","family":"qwen2","families":["qwen2"],"parameter_size":"7.6B","quantization_level":"Q4_K_M"}},
                    {"name":"llama3.2:latest","model":"llama3.2:latest","modified_at":"2025-05-04T17:37:44.706015396-07:00","size":2019393189u64,"digest":"a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72","details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"3.2B","quantization_level":"Q4_K_M"}}
                ]}))
            }),
        )
        .route(
            "/api/show",
            post(|State(seen): State<Seen>, Json(body): Json<Value>| async move {
                record(&seen, "show", &body);
                Json(json!({"modelfile":"# Modelfile generated by \"ollama show\"","parameters":"num_keep 24\nstop \"<|start_header_id|>\"","template":"{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}","details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"8.0B","quantization_level":"Q4_0"},"model_info":{"general.architecture":"llama","general.file_type":2,"llama.context_length":8192},"capabilities":["completion","vision"]}))
            }),
        )
}

#[tokio::test]
async fn ollama_chat_stream_embed_tags_and_show() {
    let (url, seen) = serve(ollama_app()).await;
    let router = router(Kind::Ollama, &url, Some("llama3.2"), |_| {});
    let options = CallOptions::default();

    let request = ChatRequest {
        temperature: Some(0.0),
        max_tokens: Some(64),
        stop: vec!["\n\n".into()],
        seed: Some(7),
        ..ask("Why is the sky blue?")
    };
    let answer = router.chat("d", &request, &options).await.unwrap().value;
    assert_eq!(answer.content, "Hello! How are you today?");
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
    let usage = answer.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.total_tokens), (26, 298, 324));
    let sent = &bodies(&seen, "chat")[0];
    assert_eq!(sent["model"], "llama3.2");
    assert_eq!(sent["stream"], false);
    assert_eq!(sent["messages"][0], json!({"role": "user", "content": "Why is the sky blue?"}));
    assert_eq!(
        sent["options"],
        json!({"temperature": 0.0, "num_predict": 64, "seed": 7, "stop": ["\n\n"]})
    );

    let stream = router.chat_stream("d", &ask("hi"), &options).await.unwrap().value;
    let (text, finish, error) = collect(stream).await;
    assert_eq!((text.as_str(), finish.as_deref()), ("The sky", Some("stop")));
    assert!(error.is_none(), "{error:?}");

    let embedded = router
        .embed(
            "d",
            &EmbedRequest { model: Some("all-minilm".into()), input: vec!["a".into(), "b".into()] },
            &options,
        )
        .await
        .unwrap()
        .value;
    assert_eq!(embedded.vectors.len(), 2);
    assert_eq!(embedded.vectors[1][2], 1.0);
    assert_eq!(bodies(&seen, "embed")[0]["model"], "all-minilm");

    let models = router.models("d", &options).await.unwrap().value;
    let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["deepseek-r1:latest", "llama3.2:latest"]);

    let client = Ollama::new(Transport::new("d", &url, None).unwrap(), Some("llama3.2".into()));
    let details = client.show(None, &ctx()).await.unwrap();
    assert_eq!(details.capabilities, ["completion", "vision"]);
    assert_eq!(details.model_info["llama.context_length"], 8192);
    let generated = client.generate("[INST] sky? [/INST]", &ask("unused"), &ctx()).await.unwrap();
    assert_eq!(generated.finish_reason.as_deref(), Some("length"));
    let sent = &bodies(&seen, "generate")[0];
    assert_eq!(
        (sent["raw"].clone(), sent["prompt"].clone()),
        (json!(true), json!("[INST] sky? [/INST]"))
    );
}

#[tokio::test]
async fn ollama_failures_are_typed_and_streams_must_finish() {
    let (url, _) = serve(ollama_app()).await;
    let router = router(Kind::Ollama, &url, None, |_| {});
    let options = CallOptions::default();

    let missing = router.chat("d", &ask("hi"), &options).await.unwrap_err();
    assert!(matches!(missing, Error::Config(ref m) if m.contains("OLLAMA_MODEL")), "{missing}");

    let not_found = router
        .chat("d", &ChatRequest { model: Some("nope".into()), ..ask("hi") }, &options)
        .await
        .unwrap_err();
    match not_found {
        Error::Http { status: 404, body, .. } => {
            assert!(body.contains("try pulling it first"), "{body}")
        }
        other => panic!("{other}"),
    }

    let with_model = |text: &str| ChatRequest { model: Some("llama3.2".into()), ..ask(text) };
    let stream = router.chat_stream("d", &with_model("cut"), &options).await.unwrap().value;
    let (text, _, error) = collect(stream).await;
    assert_eq!(text, "The sky", "what arrived is delivered");
    assert!(
        matches!(error, Some(Error::Decode { ref reason, .. }) if reason.contains("before the server said")),
        "{error:?}"
    );

    let stream = router.chat_stream("d", &with_model("fail"), &options).await.unwrap().value;
    let (_, _, error) = collect(stream).await;
    assert!(
        matches!(error, Some(Error::Decode { ref reason, .. }) if reason.contains("unexpected EOF")),
        "{error:?}"
    );
}

// ---------------------------------------------------------------- TGI

fn tgi_app() -> axum::Router<Seen> {
    axum::Router::new()
        .route(
            "/generate",
            post(|State(seen): State<Seen>, Json(body): Json<Value>| async move {
                record(&seen, "generate", &body);
                if body["parameters"]["temperature"] == 0.0 {
                    let error = json!({"error":"Input validation error: `temperature` must be strictly positive","error_type":"validation"});
                    return (StatusCode::UNPROCESSABLE_ENTITY, Json(error)).into_response();
                }
                Json(json!({"generated_text":"Deep learning is a subset of machine learning","details":{"finish_reason":"length","generated_tokens":8,"seed":null,"prefill":[],"tokens":[]}})).into_response()
            }),
        )
        .route(
            "/generate_stream",
            post(|State(seen): State<Seen>, Json(body): Json<Value>| async move {
                record(&seen, "generate_stream", &body);
                let token = |i: u32, text: &str, special: bool| json!({"index":i,"token":{"id":i,"text":text,"logprob":-0.1,"special":special},"generated_text":null,"details":null});
                let mut events = vec![token(1, " Deep", false), token(2, " learning", false)];
                if body["inputs"].as_str().unwrap_or_default().contains("oom") {
                    events.push(json!({"error":"Request failed during generation: Server error: CUDA out of memory","error_type":"generation"}));
                } else {
                    events.push(json!({"index":3,"token":{"id":2,"text":"</s>","logprob":-0.01,"special":true},"generated_text":" Deep learning","details":{"finish_reason":"eos_token","generated_tokens":3,"seed":null}}));
                }
                sse(&events)
            }),
        )
        .route(
            "/v1/chat/completions",
            post(|State(seen): State<Seen>, Json(body): Json<Value>| async move {
                record(&seen, "messages", &body);
                Json(json!({"object":"chat.completion","id":"","created":1710000000,"model":"tgi","system_fingerprint":"2.0.0-native","choices":[{"index":0,"message":{"role":"assistant","content":"Hi from the Messages API"},"logprobs":null,"finish_reason":"eos_token"}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}))
            }),
        )
        .route(
            "/info",
            get(|| async {
                Json(json!({"model_id":"HuggingFaceTB/SmolLM2-135M-Instruct","model_sha":"e985a63cdc139290c5f700ff1929f0b5942cced2","model_dtype":"torch.float16","model_device_type":"cuda","model_pipeline_tag":"text-generation","max_concurrent_requests":128,"max_best_of":2,"max_stop_sequences":4,"max_input_tokens":1024,"max_total_tokens":2048,"validation_workers":2,"max_client_batch_size":4,"router":"text-generation-router","version":"2.0.0","sha":"null","docker_label":"null"}))
            }),
        )
}

/// SmolLM2's template (from the fixtures) as a model's `tokenizer_config.json`.
fn smollm2_tokenizer_config(dir: &std::path::Path) -> std::path::PathBuf {
    let fixtures: Value =
        serde_json::from_str(include_str!("fixtures/chat_templates.json")).unwrap();
    let template = fixtures[0]["template"].clone();
    let path = dir.join("tokenizer_config.json");
    let config = json!({"chat_template": template, "bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>", "lstrip": false}});
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

#[tokio::test]
async fn tgi_renders_the_chat_template_and_streams_tokens() {
    let (url, seen) = serve(tgi_app()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = smollm2_tokenizer_config(dir.path());
    let router = router(Kind::Tgi, &url, None, |d| d.chat_template = Some(config));
    let options = CallOptions::default();

    let request =
        ChatRequest { temperature: Some(0.0), max_tokens: Some(8), ..ask("What is IPFS?") };
    let answer = router.chat("d", &request, &options).await.unwrap().value;
    assert_eq!(answer.content, "Deep learning is a subset of machine learning");
    assert_eq!(answer.finish_reason.as_deref(), Some("length"));
    let sent = &bodies(&seen, "generate")[0];
    assert_eq!(
        sent["inputs"],
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is IPFS?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        sent["parameters"]["do_sample"], false,
        "temperature 0 is greedy, not 0 (TGI rejects 0)"
    );
    assert!(sent["parameters"].get("temperature").is_none());
    assert_eq!(sent["parameters"]["max_new_tokens"], 8);

    let stream = router.chat_stream("d", &ask("hi"), &options).await.unwrap().value;
    let (text, finish, error) = collect(stream).await;
    assert_eq!(
        (text.as_str(), finish.as_deref()),
        (" Deep learning", Some("stop")),
        "the EOS token is not text"
    );
    assert!(error.is_none(), "{error:?}");

    let stream = router.chat_stream("d", &ask("oom"), &options).await.unwrap().value;
    let (_, _, error) = collect(stream).await;
    assert!(
        matches!(error, Some(Error::Decode { ref reason, .. }) if reason.contains("CUDA out of memory")),
        "{error:?}"
    );

    let models = router.models("d", &options).await.unwrap().value;
    assert_eq!(models[0].id, "HuggingFaceTB/SmolLM2-135M-Instruct");

    // Without a template, chats use the Messages API the server serves under /v1.
    let plain = self::router(Kind::Tgi, &url, None, |_| {});
    let answer = plain.chat("d", &ask("hi"), &options).await.unwrap().value;
    assert_eq!(answer.content, "Hi from the Messages API");
    assert_eq!(bodies(&seen, "messages").len(), 1);

    // A validation error is the server's words, not retried.
    let client = Tgi::new(Transport::new("d", &url, None).unwrap(), None, None).unwrap();
    let sampled = ChatRequest { temperature: Some(0.5), ..ask("x") };
    client.generate("x", &sampled, &ctx()).await.unwrap();
    assert_eq!(bodies(&seen, "generate").last().unwrap()["parameters"]["temperature"], 0.5);
    let info = client.info(&ctx()).await.unwrap();
    assert_eq!(info.max_total_tokens, Some(2048));
}

#[tokio::test]
async fn a_broken_chat_template_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer_config.json");
    std::fs::write(&path, r#"{"chat_template": "{% for m in messages %}{{ m.content }"}"#).unwrap();
    let mut deployment = DeploymentConfig::new("d", Kind::Tgi, "http://127.0.0.1:9");
    deployment.chat_template = Some(path);
    let config = BackendsConfig { deployments: vec![deployment], ..BackendsConfig::default() };
    let err = Router::new(config, |_| None).unwrap_err();
    assert!(matches!(err, Error::Config(ref m) if m.contains("does not compile")), "{err}");
}

// ---------------------------------------------------------------- TEI

fn tei_app() -> axum::Router<Seen> {
    axum::Router::new()
        .route(
            "/info",
            get(|| async {
                Json(json!({"model_id":"BAAI/bge-small-en-v1.5","model_sha":null,"model_dtype":"float32","model_type":{"embedding":{"pooling":"cls"}},"max_concurrent_requests":512,"max_input_length":512,"max_batch_tokens":16384,"max_batch_requests":null,"max_client_batch_size":2,"auto_truncate":false,"tokenization_workers":8,"version":"1.5.0","sha":null,"docker_label":null}))
            }),
        )
        .route(
            "/embed",
            post(|State(seen): State<Seen>, Json(body): Json<Value>| async move {
                record(&seen, "embed", &body);
                let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
                if inputs.len() > 2 {
                    let error = json!({"error":"batch size 3 > maximum allowed batch size 2","error_type":"Validation"});
                    return (StatusCode::PAYLOAD_TOO_LARGE, Json(error)).into_response();
                }
                let vectors: Vec<Value> = inputs.iter().map(|t| json!([t.as_str().unwrap().len() as f32, 0.5])).collect();
                Json(Value::Array(vectors)).into_response()
            }),
        )
        .route(
            "/embed_sparse",
            post(|Json(body): Json<Value>| async move {
                let n = body["inputs"].as_array().map_or(0, Vec::len);
                Json(Value::Array((0..n).map(|_| json!([{"index": 2029, "value": 0.6}, {"index": 7, "value": 1.25}])).collect()))
            }),
        )
        .route(
            "/rerank",
            post(|State(seen): State<Seen>, Json(body): Json<Value>| async move {
                record(&seen, "rerank", &body);
                let texts = body["texts"].as_array().cloned().unwrap_or_default();
                // Score: 1.0 for texts containing the query, 0.1 otherwise; sorted as TEI sorts.
                let query = body["query"].as_str().unwrap().to_string();
                let mut scores: Vec<Value> = texts.iter().enumerate().map(|(i, t)| {
                    let score = if t.as_str().unwrap().contains(&query) { 1.0 } else { 0.1 };
                    json!({"index": i, "score": score})
                }).collect();
                scores.sort_by(|a, b| b["score"].as_f64().partial_cmp(&a["score"].as_f64()).unwrap());
                Json(Value::Array(scores))
            }),
        )
        .route(
            "/v1/embeddings",
            post(|Json(body): Json<Value>| async move {
                let n = body["input"].as_array().map_or(0, Vec::len);
                let data: Vec<Value> = (0..n).rev().map(|i| json!({"object":"embedding","embedding":[i as f32],"index":i})).collect();
                Json(json!({"object":"list","data":data,"model":"BAAI/bge-small-en-v1.5","usage":{"prompt_tokens":4,"total_tokens":4}}))
            }),
        )
}

#[tokio::test]
async fn tei_batches_to_the_servers_limit_and_reranks() {
    let (url, seen) = serve(tei_app()).await;
    let router = router(Kind::Tei, &url, None, |_| {});
    let options = CallOptions::default();

    let input: Vec<String> = ["a", "bb", "ccc", "dddd", "eeeee"].map(String::from).to_vec();
    let embedded = router
        .embed("d", &EmbedRequest { model: None, input: input.clone() }, &options)
        .await
        .unwrap()
        .value;
    let firsts: Vec<f32> = embedded.vectors.iter().map(|v| v[0]).collect();
    assert_eq!(firsts, [1.0, 2.0, 3.0, 4.0, 5.0], "five inputs, in order, over three requests");
    assert_eq!(bodies(&seen, "embed").len(), 3);
    assert_eq!(embedded.model, "BAAI/bge-small-en-v1.5");

    let request = RerankRequest {
        model: None,
        query: "ipfs".into(),
        texts: ["cats", "dogs", "ipfs is content addressed"].map(String::from).to_vec(),
    };
    let ranked = router.rerank("d", &request, &options).await.unwrap().value;
    let order: Vec<usize> = ranked.iter().map(|r| r.index).collect();
    assert_eq!(order, [2, 0, 1], "indices refer to the request across batches; best first");
    assert_eq!(ranked[0].score, 1.0);

    let chat = router.chat("d", &ask("hi"), &options).await.unwrap_err();
    assert!(matches!(chat, Error::Unsupported { .. }), "{chat}");

    let client = Tei::new(Transport::new("d", &url, None).unwrap(), None).unwrap();
    let sparse = client.embed_sparse(&input[..3], &ctx()).await.unwrap();
    assert_eq!(sparse.len(), 3);
    assert_eq!(
        (sparse[0].indices.clone(), sparse[0].values.clone()),
        (vec![7, 2029], vec![1.25, 0.6])
    );
    let openai = client
        .embed_openai(&EmbedRequest { model: None, input: input[..2].to_vec() }, &ctx())
        .await
        .unwrap();
    assert_eq!(openai.vectors, [vec![0.0], vec![1.0]], "sorted by index");
    assert_eq!(client.info(&ctx()).await.unwrap().max_client_batch_size, 2);
}

// ---------------------------------------------------------------- OVMS

fn ovms_app() -> axum::Router<Seen> {
    axum::Router::new()
        .route(
            "/v2/models/{model}/ready",
            get(|Path(model): Path<String>| async move {
                if model == "resnet" {
                    StatusCode::OK.into_response()
                } else {
                    (StatusCode::NOT_FOUND, Json(json!({"error": "Model with requested name is not found"}))).into_response()
                }
            }),
        )
        .route(
            "/v2/models/{model}",
            get(|| async {
                Json(json!({"name":"resnet","versions":["1"],"platform":"OpenVINO","inputs":[{"name":"0","datatype":"FP32","shape":[1,3,224,224]}],"outputs":[{"name":"1463","datatype":"FP32","shape":[-1,1000]}],"rt_info":{}}))
            }),
        )
        .route(
            "/v2/models/{model}/infer",
            post(|State(seen): State<Seen>, Json(body): Json<Value>| async move {
                record(&seen, "infer", &body);
                let bad = body["inputs"][0]["name"] == "bad";
                let data = if bad { json!([0.1, 0.7]) } else { json!([[0.1, 0.7, 0.2]]) };
                Json(json!({"model_name":"resnet","model_version":"1","id":body["id"],"outputs":[{"name":"1463","shape":[1,3],"datatype":"FP32","data":data},{"name":"labels","shape":[2],"datatype":"BYTES","data":["cat","dog"]}]}))
            }),
        )
        .route(
            "/v1/models/{call}",
            post(|Path(call): Path<String>, State(seen): State<Seen>, Json(body): Json<Value>| async move {
                record(&seen, &call, &body);
                Json(json!({"predictions": [[0.25, 0.75]]}))
            }),
        )
        .route(
            "/v1/config",
            get(|| async {
                Json(json!({
                    "resnet": {"model_version_status":[{"version":"1","state":"AVAILABLE","status":{"error_code":"OK","error_message":"OK"}}]},
                    "retired": {"model_version_status":[{"version":"1","state":"END","status":{"error_code":"OK","error_message":"OK"}}]}
                }))
            }),
        )
        .route(
            "/v3/chat/completions",
            post(|| async {
                Json(json!({"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"OpenVINO says hi","role":"assistant"}}],"created":1716825108,"model":"llama","object":"chat.completion","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}))
            }),
        )
        .route(
            "/v3/rerank",
            post(|State(seen): State<Seen>, Json(body): Json<Value>| async move {
                record(&seen, "rerank", &body);
                Json(json!({"id":"r","results":[{"index":0,"relevance_score":0.2},{"index":1,"relevance_score":0.9}]}))
            }),
        )
}

#[tokio::test]
async fn ovms_kserve_tensors_tf_serving_and_openai() {
    let (url, seen) = serve(ovms_app()).await;
    let client =
        Ovms::new(Transport::new("d", &url, None).unwrap(), Some("resnet".into())).unwrap();
    let ctx = ctx();

    assert!(client.ready(None, &ctx).await.unwrap());
    assert!(!client.ready(Some("missing"), &ctx).await.unwrap());
    let metadata = client.metadata(None, &ctx).await.unwrap();
    assert_eq!(metadata.outputs[0].shape, [-1, 1000]);

    let input = Tensor::new("0", vec![1, 3], TensorData::F32(vec![0.5, 0.25, 1.0])).unwrap();
    let answer = client.infer(None, &[input], &ctx).await.unwrap();
    let sent = &bodies(&seen, "infer")[0];
    assert_eq!(
        sent["inputs"][0],
        json!({"name":"0","shape":[1,3],"datatype":"FP32","data":[0.5,0.25,1.0]})
    );
    assert_eq!(sent["id"], ctx.request_id.to_string());
    assert_eq!(
        answer.output("1463").unwrap().data,
        TensorData::F32(vec![0.1, 0.7, 0.2]),
        "nested data flattened"
    );
    assert_eq!(
        answer.output("labels").unwrap().data,
        TensorData::Bytes(vec!["cat".into(), "dog".into()])
    );

    let bad = Tensor::new("bad", vec![1], TensorData::I64(vec![1])).unwrap();
    let err = client.infer(None, &[bad], &ctx).await.unwrap_err();
    assert!(
        matches!(err, Error::Decode { ref reason, .. } if reason.contains("does not hold 2")),
        "{err}"
    );
    let err = Tensor::new("x", vec![2, 2], TensorData::U8(vec![1, 2, 3])).unwrap_err();
    assert!(err.to_string().contains("shape [2, 2] does not hold 3 UINT8 elements"), "{err}");

    let predictions = client.predict(None, &json!([[1.0, 2.0]]), &ctx).await.unwrap();
    assert_eq!(predictions, json!([[0.25, 0.75]]));
    assert_eq!(bodies(&seen, "resnet:predict")[0], json!({"instances": [[1.0, 2.0]]}));

    let router = router(Kind::Ovms, &url, Some("llama"), |_| {});
    let options = CallOptions::default();
    let models = router.models("d", &options).await.unwrap().value;
    assert_eq!(
        models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["resnet"],
        "only AVAILABLE models"
    );
    let answer = router.chat("d", &ask("hi"), &options).await.unwrap().value;
    assert_eq!(answer.content, "OpenVINO says hi");
    let request =
        RerankRequest { model: None, query: "q".into(), texts: vec!["a".into(), "b".into()] };
    let ranked = router.rerank("d", &request, &options).await.unwrap().value;
    assert_eq!(ranked.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 0]);
    assert_eq!(
        bodies(&seen, "rerank")[0],
        json!({"model":"llama","query":"q","documents":["a","b"]})
    );
}

// ---------------------------------------------------------------- response cache

#[tokio::test]
async fn deterministic_answers_come_from_the_shared_cache() {
    use ipfs_accelerate_common::cache::{Cache, CacheConfig};
    use ipfs_accelerate_common::store::{Store, StoreOptions};

    let (url, seen) = serve(ollama_app()).await;
    let dir = tempfile::tempdir().unwrap();
    let open = || async {
        let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
        router(Kind::Ollama, &url, Some("llama3.2"), |_| {})
            .with_cache(Cache::new(store, CacheConfig::default()))
    };
    let router = open().await;
    let options = CallOptions::default();
    let greedy = ChatRequest { temperature: Some(0.0), ..ask("Why is the sky blue?") };

    let first = router.chat("d", &greedy, &options).await.unwrap();
    let second = router.chat("d", &greedy, &options).await.unwrap();
    assert!(!first.cached && second.cached);
    assert_eq!(first.value, second.value);
    assert_eq!(second.deployment, "d");
    assert_eq!(bodies(&seen, "chat").len(), 1, "the second answer came from the cache");

    // Another process on the same store (a worker sharing it) gets the same entry.
    drop(router);
    let router = open().await;
    assert!(router.chat("d", &greedy, &options).await.unwrap().cached);

    // Sampled chats are not reused unless asked; a caller can refuse the cache.
    let sampled = ChatRequest { temperature: Some(0.7), ..greedy.clone() };
    router.chat("d", &sampled, &options).await.unwrap();
    assert!(!router.chat("d", &sampled, &options).await.unwrap().cached);
    let asked = CallOptions { cache: Some(true), ..CallOptions::default() };
    router.chat("d", &sampled, &asked).await.unwrap();
    assert!(router.chat("d", &sampled, &asked).await.unwrap().cached);
    let refused = CallOptions { cache: Some(false), ..CallOptions::default() };
    assert!(!router.chat("d", &greedy, &refused).await.unwrap().cached);

    // A whole stream is kept and replayed; a cut one is not kept.
    let streamed = ChatRequest { temperature: Some(0.0), ..ask("stream me") };
    let (text, _, _) =
        collect(router.chat_stream("d", &streamed, &options).await.unwrap().value).await;
    let replay = router.chat_stream("d", &streamed, &options).await.unwrap();
    assert!(replay.cached);
    assert_eq!(collect(replay.value).await.0, text);
    assert_eq!(router.chat("d", &streamed, &options).await.unwrap().value.content, "The sky");
    let cut = ChatRequest { temperature: Some(0.0), ..ask("cut") };
    let (_, _, error) = collect(router.chat_stream("d", &cut, &options).await.unwrap().value).await;
    assert!(error.is_some());
    assert!(!router.chat_stream("d", &cut, &options).await.unwrap().cached);

    // Embeddings and model lists are reused.
    let input = EmbedRequest { model: None, input: vec!["x".into()] };
    router.embed("d", &input, &options).await.unwrap();
    assert!(router.embed("d", &input, &options).await.unwrap().cached);
    assert_eq!(bodies(&seen, "embed").len(), 1);
    router.models("d", &options).await.unwrap();
    assert!(router.models("d", &options).await.unwrap().cached);
}
