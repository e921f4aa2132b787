//! The transport every protocol client shares: one `reqwest` client per deployment, the auth
//! header, the request id header, deadlines, status → [`Error`] mapping (`Retry-After` read as
//! seconds or an HTTP date), and the time spent waiting on the server (for the overhead
//! metric).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde::Serialize;
use ulid::Ulid;

use crate::error::{Error, Result};

/// The header carrying the request id to the server.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Connects give up sooner than whole calls.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(30))
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
            .and_then(parse_retry_after);
        let started = Instant::now();
        let body =
            tokio::time::timeout(ctx.remaining().max(Duration::from_millis(10)), response.text())
                .await
                .ok()
                .and_then(Result::ok)
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
        let bytes = response.bytes().await;
        ctx.add_wait(started.elapsed());
        let bytes = bytes.map_err(|e| self.transport_error(e, timeout))?;
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

/// A response body's Server-Sent Events, as their `data` fields.
pub(crate) fn sse_data(
    response: reqwest::Response,
) -> impl futures_util::Stream<Item = std::result::Result<String, String>> + Send {
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;
    response
        .bytes_stream()
        .eventsource()
        .map(|event| event.map(|e| e.data).map_err(|e| e.to_string()))
}

/// A response body as lines (NDJSON), without their line ends; a last line without a newline
/// is still a line.
pub(crate) fn lines(
    response: reqwest::Response,
) -> impl futures_util::Stream<Item = std::result::Result<String, reqwest::Error>> + Send {
    use futures_util::StreamExt;
    let state = (Box::pin(response.bytes_stream()), Vec::<u8>::new(), false);
    futures_util::stream::unfold(state, |(mut body, mut buffer, mut ended)| async move {
        loop {
            if let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                return Some((Ok(line), (body, buffer, ended)));
            }
            if ended {
                if buffer.is_empty() {
                    return None;
                }
                let line = String::from_utf8_lossy(&buffer).trim_end().to_string();
                buffer.clear();
                return Some((Ok(line), (body, buffer, ended)));
            }
            match body.next().await {
                Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                Some(Err(e)) => return Some((Err(e), (body, Vec::new(), true))),
                None => ended = true,
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

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let when = httpdate(value)?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP servers send.
fn httpdate(value: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else { return None };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
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
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        assert_eq!(
            httpdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784111777))
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
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
