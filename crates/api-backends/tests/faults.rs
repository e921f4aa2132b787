//! The router under faults, against a raw HTTP server on loopback that answers what each test
//! scripts: 429 with Retry-After, 400, 503, a stream cut mid-way, a server that never answers.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ipfs_accelerate_backends::config::{BackendsConfig, DeploymentConfig, Fallback};
use ipfs_accelerate_backends::router::CallOptions;
use ipfs_accelerate_backends::{ChatRequest, Error, Kind, Message, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server whose n-th connection gets `script(n)` written back (`None`: never answer).
async fn serve(
    script: impl Fn(usize) -> Option<String> + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    let script = Arc::new(script);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let script = Arc::clone(&script);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = socket.read(&mut buf).await;
                match script(n) {
                    Some(reply) if reply == RESET => {
                        // SO_LINGER 0: closing sends a TCP RST instead of a FIN.
                        let _ = socket.set_zero_linger();
                        drop(socket);
                    }
                    Some(reply) => {
                        let _ = socket.write_all(reply.as_bytes()).await;
                        let _ = socket.shutdown().await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    (url, count)
}

/// A script reply meaning: reset the connection after reading the request.
const RESET: &str = "RESET";

fn response(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
        body.len()
    )
}

const OK: &str = r#"{"model":"m","choices":[{"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}]}"#;

fn router(urls: &[(&str, &str, &str)], tweak: impl FnOnce(&mut BackendsConfig)) -> Router {
    let mut config =
        BackendsConfig { backoff: Duration::from_millis(10), ..BackendsConfig::default() };
    for (name, group, url) in urls {
        config.deployments.push(DeploymentConfig {
            group: Some(group.to_string()),
            ..DeploymentConfig::new(name, Kind::OpenAi, url)
        });
    }
    tweak(&mut config);
    Router::new(config, |_| None).unwrap()
}

fn hi() -> ChatRequest {
    ChatRequest { messages: vec![Message::new("user", "hi")], ..ChatRequest::default() }
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_retried() {
    let (url, count) = serve(|n| {
        Some(if n == 0 {
            response("429 Too Many Requests", "retry-after: 0.3\r\n", "{}")
        } else {
            response("200 OK", "", OK)
        })
    })
    .await;
    let router = router(&[("a", "chat", &url)], |_| {});
    let started = Instant::now();
    let routed = router.chat("chat", &hi(), &CallOptions::default()).await.unwrap();
    assert_eq!(routed.value.content, "hello");
    assert_eq!(routed.attempts, 2);
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() >= Duration::from_millis(300), "Retry-After was honoured");
}

#[tokio::test]
async fn client_errors_are_not_retried_and_say_what_the_server_said() {
    let (url, count) =
        serve(|_| Some(response("400 Bad Request", "", r#"{"error":{"message":"bad model"}}"#)))
            .await;
    let router = router(&[("a", "chat", &url)], |_| {});
    let err = router.chat("chat", &hi(), &CallOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::Http { status: 400, .. }), "{err}");
    assert!(err.to_string().contains("bad model"));
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failing_deployments_cool_down_and_the_group_falls_back() {
    let (bad, bad_count) = serve(|_| Some(response("503 Service Unavailable", "", "{}"))).await;
    let (good, _) = serve(|_| Some(response("200 OK", "", OK))).await;
    let router = router(&[("bad", "primary", &bad), ("good", "backup", &good)], |c| {
        c.cooldown_after = 2;
        c.fallbacks.push(Fallback {
            from: "primary".into(),
            to: "backup".into(),
            on: vec!["http".into(), "circuit_open".into()],
        });
    });
    let routed = router.chat("primary", &hi(), &CallOptions::default()).await.unwrap();
    assert_eq!(routed.deployment, "good");
    // Repeated 503s put `bad` in cooldown; the next call skips it without a request.
    let before = bad_count.load(Ordering::SeqCst);
    let routed = router.chat("primary", &hi(), &CallOptions::default()).await.unwrap();
    assert_eq!(routed.deployment, "good");
    assert_eq!(bad_count.load(Ordering::SeqCst), before, "a cooling deployment gets no requests");
    assert!(router.status().iter().any(|s| s.name == "bad" && s.cooling_down));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_within_the_deadline() {
    let (url, _) = serve(|_| None).await;
    let router = router(&[("a", "chat", &url)], |_| {});
    let started = Instant::now();
    let options =
        CallOptions { timeout: Some(Duration::from_millis(400)), ..CallOptions::default() };
    let err = router.chat("chat", &hi(), &options).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_stream_cut_mid_way_is_an_error_not_a_short_answer() {
    let chunk = r#"data: {"choices":[{"delta":{"content":"hel"},"finish_reason":null}]}"#;
    let (url, _) = serve(move |_| {
        Some(format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{chunk}\n\n"
        ))
    })
    .await;
    let router = router(&[("a", "chat", &url)], |_| {});
    let routed = router.chat_stream("chat", &hi(), &CallOptions::default()).await.unwrap();
    let items: Vec<_> = routed.value.collect().await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].as_ref().unwrap().content, "hel");
    let err = items[1].as_ref().unwrap_err();
    assert!(
        err.to_string().contains("ended before the server said the answer was complete"),
        "{err}"
    );
}

#[tokio::test]
async fn a_reset_connection_is_retried_and_then_reported_as_connect() {
    let (url, count) =
        serve(|n| Some(if n == 0 { RESET.to_string() } else { response("200 OK", "", OK) })).await;
    let reset_once = router(&[("a", "chat", &url)], |_| {});
    let routed = reset_once.chat("chat", &hi(), &CallOptions::default()).await.unwrap();
    assert_eq!((routed.attempts, routed.value.content.as_str()), (2, "hello"));
    assert_eq!(count.load(Ordering::SeqCst), 2);

    let (url, count) = serve(|_| Some(RESET.to_string())).await;
    let always_reset = router(&[("a", "chat", &url)], |_| {});
    let err = always_reset.chat("chat", &hi(), &CallOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!(count.load(Ordering::SeqCst), 3, "three attempts, then the typed error");
}
