//! The router's overhead, measured as `cargo xtask bench backends` runs it: a local fast
//! OpenAI-compatible server (axum, its own runtime thread) answers a fixed chat completion;
//! the same open-loop load — `--rate` requests per second for `--seconds` — goes first through
//! a bare `reqwest` call (POST, decode the JSON) and then through [`Router::chat`]. Printed as
//! one JSON line: latency percentiles of each, their difference, and the router's own
//! overhead metric (time in the client minus time waiting on the server).
//!
//! `cargo run --release -p ipfs-accelerate-backends --example router_overhead -- --rate 2000 --seconds 20`
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Json;
use ipfs_accelerate_backends::config::{BackendsConfig, DeploymentConfig};
use ipfs_accelerate_backends::router::CallOptions;
use ipfs_accelerate_backends::{ChatRequest, Kind, Message, Router};
use serde_json::{json, Value};
use tokio::task::JoinSet;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
}

/// Starts the server on its own single-threaded runtime; returns its base URL.
fn server() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let answer = json!({"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}});
            let app = axum::Router::new().route(
                "/v1/chat/completions",
                post(move |Json(_): Json<Value>| {
                    let answer = answer.clone();
                    async move { Json(answer) }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}/v1", listener.local_addr().unwrap())).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// Sends `rate` requests per second for `seconds` (open loop: a slow answer does not delay
/// the next send); returns each call's latency and, for the router, its overhead metric.
async fn load<F, Fut>(rate: u64, seconds: u64, call: F) -> (Vec<u64>, Vec<u64>, u64)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<u64, String>> + Send + 'static,
{
    let mut ticks = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut calls = JoinSet::new();
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        ticks.tick().await;
        let call = call();
        calls.spawn(async move {
            let started = Instant::now();
            let overhead = call.await;
            (started.elapsed().as_micros() as u64, overhead)
        });
    }
    let (mut latencies, mut overheads, mut failures) = (Vec::new(), Vec::new(), 0);
    while let Some(done) = calls.join_next().await {
        match done.unwrap() {
            (latency, Ok(overhead)) => {
                latencies.push(latency);
                overheads.push(overhead);
            }
            (_, Err(e)) => {
                failures += 1;
                if failures == 1 {
                    eprintln!("first failure: {e}");
                }
            }
        }
    }
    latencies.sort_unstable();
    overheads.sort_unstable();
    (latencies, overheads, failures)
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    sorted.get(((sorted.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rate = arg("--rate", 2000);
    let seconds = arg("--seconds", 20);
    let base = server();
    let request = ChatRequest {
        model: Some("bench".into()),
        messages: vec![Message::new("user", "hi")],
        max_tokens: Some(1),
        ..ChatRequest::default()
    };

    let client =
        ipfs_accelerate_common::http::client(std::time::Duration::from_secs(5)).build().unwrap();
    let url = format!("{base}/chat/completions");
    let body = Arc::new(serde_json::to_value(&request).unwrap());
    let bare = || {
        let (client, url, body) = (client.clone(), url.clone(), Arc::clone(&body));
        async move {
            let response = client.post(url).json(&*body).send().await.map_err(|e| e.to_string())?;
            let _: Value = response.json().await.map_err(|e| e.to_string())?;
            Ok(0)
        }
    };
    // Warm both paths (connections, allocator) before measuring.
    load(rate, 1, bare).await;
    eprintln!("bench: bare reqwest, {rate} req/s for {seconds} s");
    let (bare_latency, _, bare_failures) = load(rate, seconds, bare).await;

    let config = BackendsConfig {
        deployments: vec![DeploymentConfig::new("bench", Kind::OpenAi, &base)],
        ..BackendsConfig::default()
    };
    let router = Arc::new(Router::new(config, |_| None).unwrap());
    let request = Arc::new(request);
    let routed = || {
        let (router, request) = (Arc::clone(&router), Arc::clone(&request));
        async move {
            let routed = router
                .chat("bench", &request, &CallOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            Ok(routed.overhead_us)
        }
    };
    load(rate, 1, routed).await;
    eprintln!("bench: router, {rate} req/s for {seconds} s");
    let (router_latency, overhead, router_failures) = load(rate, seconds, routed).await;

    let figures = json!({
        "rate": rate,
        "seconds": seconds,
        "requests": { "bare": bare_latency.len(), "router": router_latency.len() },
        "failures": { "bare": bare_failures, "router": router_failures },
        "bare_us": { "p50": pct(&bare_latency, 0.5), "p99": pct(&bare_latency, 0.99) },
        "router_us": { "p50": pct(&router_latency, 0.5), "p99": pct(&router_latency, 0.99) },
        "difference_us": {
            "p50": pct(&router_latency, 0.5) as i64 - pct(&bare_latency, 0.5) as i64,
            "p99": pct(&router_latency, 0.99) as i64 - pct(&bare_latency, 0.99) as i64,
        },
        "overhead_metric_us": { "p50": pct(&overhead, 0.5), "p99": pct(&overhead, 0.99) },
    });
    println!("{figures}");
}
