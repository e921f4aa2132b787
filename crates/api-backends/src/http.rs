//! The transport every protocol client shares: one `reqwest` client per deployment, the auth
//! header, the request id header, deadlines, status → [`Error`] mapping (`Retry-After` read as
//! seconds or an HTTP date), and the time spent waiting on the server (for the overhead
//! metric).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde::Serialize;
use ulid::Ulid;

use ipfs_accelerate_common::http::{read_body, BodyError, LineBuffer};

use crate::error::{Error, Result};

/// The header carrying the request id to the server.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Connects give up sooner than whole calls.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read into memory: a batch of 2,048 embeddings of 4,096 floats as JSON
/// is about 40 MB.
const MAX_BODY: usize = 64 << 20;
/// Error bodies are read for their message only.
const MAX_ERROR_BODY: usize = 64 << 10;

/// One call's identity and budget, created by the router (or by a direct caller).
#[derive(Debug)]
pub struct CallContext {
    /// Sent as `x-request-id` and recorded in tracing.
    pub request_id: Ulid,
    /// When the call must be over.
    pub deadline: Instant,
    /// Nanoseconds spent waiting on servers (sending, then until the last byte).
    waited_ns: AtomicU64,
}

impl CallContext {
    /// A new call that must end within `timeout`.
    pub fn new(timeout: Duration) -> CallContext {
        CallContext {
            request_id: Ulid::new(),
            deadline: Instant::now() + timeout,
            waited_ns: AtomicU64::new(0),
        }
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Time spent waiting on servers so far.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited_ns.load(Ordering::Relaxed))
    }

    pub(crate) fn add_wait(&self, waited: Duration) {
        let ns = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.waited_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

/// A deployment's HTTP side.
#[derive(Debug, Clone)]
pub struct Transport {
    client: reqwest::Client,
    deployment: String,
    base: url::Url,
}

impl Transport {
    /// A transport to `base_url` (its path kept: `http://h/v1` + `models` = `http://h/v1/models`)
    /// sending `api_key` as a bearer token when given.
    pub fn new(deployment: &str, base_url: &str, api_key: Option<&str>) -> Result<Transport> {
        let mut base = url::Url::parse(base_url)
            .map_err(|e| Error::Config(format!("{deployment}: base URL {base_url:?}: {e}")))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut headers = HeaderMap::new();
        if let Some(key) = api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                Error::Config(format!("{deployment}: the API key is not a valid header value"))
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let client = ipfs_accelerate_common::http::client(CONNECT_TIMEOUT)
            .default_headers(headers)
            .build()
            .map_err(|e| Error::Config(format!("{deployment}: HTTP client: {e}")))?;
        Ok(Transport { client, deployment: deployment.to_string(), base })
    }

    /// The same deployment and connection pool at `path` under this base (`v1` for the
    /// OpenAI-compatible API a native server also serves).
    pub fn at(&self, path: &str) -> Result<Transport> {
        let mut base = self.url(path)?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Transport { client: self.client.clone(), deployment: self.deployment.clone(), base })
    }

    /// The deployment's name.
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    /// `path` under the base URL.
    pub fn url(&self, path: &str) -> Result<url::Url> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|e| Error::Config(format!("{}: path {path:?}: {e}", self.deployment)))
    }

    fn timeout(&self, ctx: &CallContext) -> Result<Duration> {
        let left = ctx.remaining();
        if left.is_zero() {
            return Err(Error::Timeout {
                deployment: self.deployment.clone(),
                after: Duration::ZERO,
            });
        }
        Ok(left)
    }

    /// Sends `request` and returns the response once its status says success.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        ctx: &CallContext,
        whole_body: bool,
    ) -> Result<reqwest::Response> {
        let timeout = self.timeout(ctx)?;
        let request = request.header(REQUEST_ID_HEADER, uuid_form(ctx.request_id));
        // A whole-body call bounds everything with reqwest's timeout; a stream bounds only the
        // wait for headers here, and each chunk later.
        let request = if whole_body { request.timeout(timeout) } else { request };
        let started = Instant::now();
        let sent = tokio::time::timeout(timeout, request.send()).await;
        ctx.add_wait(started.elapsed());
        let response = match sent {
            Err(_) => {
                return Err(Error::Timeout { deployment: self.deployment.clone(), after: timeout })
            }
            Ok(Err(e)) => return Err(self.transport_error(e, timeout)),
            Ok(Ok(response)) => response,
        };
        self.check_status(response, ctx).await
    }

    /// Maps a reqwest failure to a typed error.
    pub(crate) fn transport_error(&self, e: reqwest::Error, timeout: Duration) -> Error {
        let deployment = self.deployment.clone();
        if e.is_timeout() {
            Error::Timeout { deployment, after: timeout }
        } else if e.is_decode() {
            Error::Decode { deployment, reason: e.to_string() }
        } else {
            Error::Connect { deployment, reason: ipfs_accelerate_common::chain_text(&e) }
        }
    }

    async fn check_status(
        &self,
        response: reqwest::Response,
        ctx: &CallContext,
    ) -> Result<reqwest::Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(ipfs_accelerate_common::http::retry_after);
        let started = Instant::now();
        let body = tokio::time::timeout(
            ctx.remaining().max(Duration::from_millis(10)),
            read_body(response, MAX_ERROR_BODY),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
        ctx.add_wait(started.elapsed());
        let body = error_message(&body);
        let deployment = self.deployment.clone();
        tracing::debug!(%deployment, status = status.as_u16(), %body, "backend error status");
        Err(match status.as_u16() {
            401 | 403 => {
                Error::Auth { deployment, reason: format!("HTTP {}: {body}", status.as_u16()) }
            }
            429 => Error::RateLimited { deployment, retry_after },
            code => Error::Http { deployment, status: code, body },
        })
    }

    /// POSTs `body` as JSON and decodes the JSON answer.
    pub async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        ctx: &CallContext,
    ) -> Result<T> {
        let request = self.client.post(self.url(path)?).json(body);
        let response = self.send(request, ctx, true).await?;
        self.read_json(response, ctx).await
    }

    /// GETs `path` and decodes the JSON answer.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str, ctx: &CallContext) -> Result<T> {
        let request = self.client.get(self.url(path)?);
        let response = self.send(request, ctx, true).await?;
        self.read_json(response, ctx).await
    }

    /// GETs `path` and reports whether it answered a success status (KServe's readiness
    /// probes answer 200 or an error status with no JSON to decode). Transport failures are
    /// errors; a non-success status is `Ok(false)` with the status logged.
    pub async fn probe(&self, path: &str, ctx: &CallContext) -> Result<bool> {
        let request = self.client.get(self.url(path)?);
        match self.send(request, ctx, true).await {
            Ok(_) => Ok(true),
            Err(Error::Http { status, body, .. }) => {
                tracing::debug!(deployment = %self.deployment, status, %body, "probe answered not ready");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// POSTs `body` and returns the response for streaming once the status is a success.
    pub async fn post_stream(
        &self,
        path: &str,
        body: &impl Serialize,
        ctx: &CallContext,
    ) -> Result<reqwest::Response> {
        let request = self.client.post(self.url(path)?).json(body);
        self.send(request, ctx, false).await
    }

    async fn read_json<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
        ctx: &CallContext,
    ) -> Result<T> {
        let timeout = self.timeout(ctx)?;
        let started = Instant::now();
        let bytes = read_body(response, MAX_BODY).await;
        ctx.add_wait(started.elapsed());
        let bytes = bytes.map_err(|e| match e {
            BodyError::Transport(e) => self.transport_error(e, timeout),
            too_large => self.decode(too_large.to_string()),
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| self.decode(format!("{e} in {}", preview(&bytes))))
    }

    /// A decode error unless the server answered `got` `what` for `expected` inputs.
    pub(crate) fn expect_count(&self, what: &str, expected: usize, got: usize) -> Result<()> {
        if expected == got {
            return Ok(());
        }
        Err(self.decode(format!("{expected} inputs but {got} {what}")))
    }

    /// A decode error of this deployment.
    pub fn decode(&self, reason: impl Into<String>) -> Error {
        Error::Decode { deployment: self.deployment.clone(), reason: reason.into() }
    }
}

/// The longest SSE or NDJSON line (or SSE event) a stream may send: a streamed delta is a few
/// hundred bytes; a line that never ends is refused rather than buffered without end.
const MAX_LINE: usize = 1 << 20;

/// A response body's Server-Sent Events, as their `data` fields (several `data:` lines of one
/// event joined by `\n`; comments, `event:`, `id:` and `retry:` fields skipped).
pub(crate) fn sse_data(
    response: reqwest::Response,
) -> impl futures_util::Stream<Item = std::result::Result<String, String>> + Send {
    use futures_util::StreamExt;
    let events = lines(response).scan(String::new(), |data, line| {
        let out = match line {
            Err(e) => Some(Some(Err(e))),
            Ok(line) if line.is_empty() => {
                Some((!data.is_empty()).then(|| Ok(std::mem::take(data))))
            }
            Ok(line) => match line.strip_prefix("data") {
                Some(value) if value.is_empty() || value.starts_with(':') => {
                    let value = value.strip_prefix(':').unwrap_or_default();
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    if data.len().saturating_add(value.len()) > MAX_LINE {
                        return futures_util::future::ready(Some(Some(Err(format!(
                            "an SSE event is larger than the {MAX_LINE}-byte limit"
                        )))));
                    }
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value);
                    Some(None)
                }
                _ => Some(None),
            },
        };
        futures_util::future::ready(out)
    });
    events.filter_map(futures_util::future::ready)
}

/// A response body as lines (NDJSON, or SSE's lines), without their line ends; a last line
/// without a newline is still a line. A line over [`MAX_LINE`] ends the stream with an error.
pub(crate) fn lines(
    response: reqwest::Response,
) -> impl futures_util::Stream<Item = std::result::Result<String, String>> + Send {
    use futures_util::StreamExt;
    // `framer` is `None` once the body has ended (or failed): only `ready` is left to yield.
    let state =
        (Box::pin(response.bytes_stream()), Some(LineBuffer::new(MAX_LINE)), VecDeque::new());
    futures_util::stream::unfold(state, |(mut body, mut framer, mut ready)| async move {
        loop {
            if let Some(line) = ready.pop_front() {
                let line: std::result::Result<Vec<u8>, String> = line;
                let line = line.map(|l| String::from_utf8_lossy(&l).trim_end().to_string());
                return Some((line, (body, framer, ready)));
            }
            let lines = framer.as_mut()?;
            match body.next().await {
                Some(Ok(chunk)) => match lines.push(&chunk) {
                    Ok(lines) => ready.extend(lines.into_iter().map(Ok)),
                    Err(e) => {
                        ready.push_back(Err(e.to_string()));
                        framer = None;
                    }
                },
                Some(Err(e)) => {
                    ready.push_back(Err(e.to_string()));
                    framer = None;
                }
                None => {
                    ready.extend(framer.take().and_then(LineBuffer::finish).map(Ok));
                }
            }
        }
    })
}

/// The ULID's 128 bits in UUID form (`01890a5d-…`): servers that validate `x-request-id` as a
/// UUID (llama-cpp-python's starlette-context does, answering 400) accept it, and it maps back
/// to the ULID losslessly.
pub fn uuid_form(id: Ulid) -> String {
    let n = id.0;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        n >> 96,
        (n >> 80) & 0xffff,
        (n >> 64) & 0xffff,
        (n >> 48) & 0xffff,
        n & 0xffff_ffff_ffff
    )
}

/// The message in an error body (`{"error": {"message": …}}`, `{"error": "…"}`), else its start.
fn error_message(body: &str) -> String {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(body) {
        let message = value
            .pointer("/error/message")
            .or_else(|| value.get("error"))
            .or_else(|| value.get("message"))
            .or_else(|| value.get("detail"));
        if let Some(message) = message {
            return match message {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
        }
    }
    preview(body.as_bytes())
}

/// At most 300 characters of `bytes`, for error messages.
pub fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_travel_in_uuid_form() {
        let id = Ulid(0x0189_0a5d_1234_5678_9abc_def0_1234_5678);
        assert_eq!(uuid_form(id), "01890a5d-1234-5678-9abc-def012345678");
    }

    #[test]
    fn error_bodies_yield_their_message() {
        assert_eq!(
            error_message(r#"{"error": {"message": "bad key", "type": "auth"}}"#),
            "bad key"
        );
        assert_eq!(error_message(r#"{"error": "model not found"}"#), "model not found");
        assert_eq!(error_message("plain text"), "plain text");
    }
}
