//! Hostile input from outside — a backend's headers and streams, an archive's declared sizes,
//! an image's dimensions — gets a typed, named error from the release binary: never a panic
//! (exit 101), an abort, or memory without bound. Each case here once crashed the process.

// The tests write the hostile files they feed the binary.
#![allow(clippy::disallowed_methods)]

use std::process::Output;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use tests::{assert_reported, Env};

/// A one-route OpenAI-compatible server whose `/v1/chat/completions` answers with `respond`.
async fn serve_chat<R: IntoResponse + 'static>(respond: fn() -> R) -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let response = respond().into_response();
            async move { response }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn chat(env: &Env, base: &str, extra: &[&str]) -> Output {
    let mut cmd = env.std_cmd();
    cmd.env("OPENAI_BASE_URL", base).env("OPENAI_API_KEY", "x");
    cmd.args(["backends", "chat", "openai", "hi"]).args(extra);
    tokio::task::block_in_place(|| cmd.output().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_of_1e20_is_a_rate_limit_error() {
    // `Duration::from_secs_f64(1e20)` panicked (exit 101).
    let base = serve_chat(|| {
        (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1e20")], "slow down")
    })
    .await;
    let env = Env::new();
    let output = chat(&env, &base, &[]);
    assert_reported(&output, "rate limited");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sse_line_that_never_ends_is_refused_not_buffered() {
    // 3 MiB of one `data:` line with no newline: a line buffer without a cap grows with it.
    let base = serve_chat(|| {
        let mut body = b"data: ".to_vec();
        body.resize(3 << 20, b'a');
        ([(header::CONTENT_TYPE, "text/event-stream")], body)
    })
    .await;
    let env = Env::new();
    let output = chat(&env, &base, &["--stream"]);
    assert_reported(&output, "limit");
}

/// A zip holding one stored member whose zip64 sizes claim `declared` bytes though it holds
/// `data`: the hand-made shape of a hostile wheel.
fn lying_zip(name: &str, data: &[u8], declared: u64) -> Vec<u8> {
    let crc = crc32fast::hash(data);
    let zip64 = |out: &mut Vec<u8>| {
        out.extend_from_slice(&1u16.to_le_bytes()); // zip64 extended information
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(&declared.to_le_bytes()); // uncompressed
        out.extend_from_slice(&(data.len() as u64).to_le_bytes()); // compressed
    };
    let mut out = Vec::new();
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    for v in [45u16, 0, 0, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes()); // version, flags, stored, time, date
    }
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&u32::MAX.to_le_bytes());
    out.extend_from_slice(&u32::MAX.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    zip64(&mut out);
    out.extend_from_slice(data);
    let central = out.len() as u32;
    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    for v in [45u16, 45, 0, 0, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes()); // made by, needed, flags, stored, time, date
    }
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&u32::MAX.to_le_bytes());
    out.extend_from_slice(&u32::MAX.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes());
    for v in [0u16, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes()); // comment, disk, internal attributes
    }
    out.extend_from_slice(&0u32.to_le_bytes()); // external attributes
    out.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    out.extend_from_slice(name.as_bytes());
    zip64(&mut out);
    let central_size = out.len() as u32 - central;
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, 1, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&central_size.to_le_bytes());
    out.extend_from_slice(&central.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

#[test]
fn a_wheel_member_claiming_2_pow_62_bytes_is_an_invalid_file() {
    // `Vec::with_capacity(2^62)` aborted the process (capacity overflow / allocation failure).
    let env = Env::new();
    let wheel = env.home().join("evil-1.0-py3-none-any.whl");
    let bytes = lying_zip("evil-1.0.dist-info/METADATA", b"Name: evil\n", 1 << 62);
    assert!(bytes.len() < 300, "a small file: {} bytes", bytes.len());
    std::fs::write(&wheel, bytes).unwrap();
    let output = env.std_cmd().args(["models", "import"]).arg(&wheel).output().unwrap();
    assert_reported(&output, "METADATA");
}

#[test]
fn a_grey_image_too_large_as_rgb_is_refused_before_decoding() {
    // 16384² grey decodes to 268 MB under the 512 MiB decoder limit, but its RGB copy is
    // 805 MB: the limit must apply to what the decode produces.
    let env = Env::new();
    let png = env.home().join("huge-grey.png");
    let mut encoded = Vec::new();
    let pixels = vec![0u8; 16_384 * 16_384];
    let encoder = image::codecs::png::PngEncoder::new_with_quality(
        &mut encoded,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::NoFilter,
    );
    image::ImageEncoder::write_image(
        encoder,
        &pixels,
        16_384,
        16_384,
        image::ExtendedColorType::L8,
    )
    .unwrap();
    drop(pixels);
    std::fs::write(&png, encoded).unwrap();
    let output = env
        .std_cmd()
        .args(["infer", "vision", "classify", "--image-file"])
        .arg(&png)
        .output()
        .unwrap();
    assert_reported(&output, "too large to decode");
}
