//! The project's HTTP client recipe, and bounded reading of what remote servers send: waits,
//! dates and bodies.
//!
//! Every number and body from the network is hostile until bounded. A `Retry-After: 1e20` once
//! made `Duration::from_secs_f64` panic, and `retry-after: 18446744073709551615` overflowed an
//! `Instant`; a body read whole has no ceiling but the peer's patience. The helpers here are
//! the one place those bounds live, shared by the backends, the GitHub client and the remote
//! tiers.

use std::time::{Duration, SystemTime};

/// What every client of ours tells servers it is.
pub const USER_AGENT: &str = concat!("ipfs-accelerate/", env!("CARGO_PKG_VERSION"));

/// Connections idle longer than this are closed (servers drop theirs after 60-120 s; ours go
/// first, so a request never lands on a socket the server is closing).
const POOL_IDLE: Duration = Duration::from_secs(30);

/// The one way a `reqwest` client is built here: our user agent, a connect deadline, idle
/// connections closed after 30 s, TCP keepalive. Callers add what is theirs (default headers,
/// a whole-request or read deadline, pinned addresses, no redirects) and `build()`.
///
/// A connect deadline is required, not defaulted: every network call has one, and what it
/// should be (a loopback node, a model hub across the world) only the caller knows.
pub fn client(connect_timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(POOL_IDLE)
        .tcp_keepalive(Duration::from_secs(60))
}

/// The longest wait a server can ask of us. A larger `Retry-After` is read as this: still "not
/// now", but a number the clock arithmetic can hold and an operator can see.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// `Retry-After`: delay-seconds (integer or decimal) or an HTTP date, clamped to
/// [`MAX_WAIT`]. `None` for anything else (negative, NaN, garbage).
pub fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        if !(seconds.is_finite() && seconds >= 0.0) {
            return None;
        }
        return Some(Duration::try_from_secs_f64(seconds).map_or(MAX_WAIT, |d| d.min(MAX_WAIT)));
    }
    let when = http_date(value)?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO).min(MAX_WAIT))
}

/// Seconds from now until the Unix time `reset` (GitHub's `x-ratelimit-reset`), at least one
/// second and at most [`MAX_WAIT`].
pub fn until_unix(reset: u64, now: u64) -> Duration {
    Duration::from_secs(reset.saturating_sub(now).clamp(1, MAX_WAIT.as_secs()))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP servers send. Fields out
/// of range (year 0 or past 9999, hour 25, …) are not a date.
pub fn http_date(value: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else { return None };
    let in_range = (1..=31).contains(&day)
        && (1970..=9999).contains(&year)
        && (0..24).contains(h)
        && (0..60).contains(m)
        && (0..=60).contains(s);
    if !in_range {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm); the ranges above keep every
    // intermediate far inside i64.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(secs).ok()?))
}

/// A body or line that passed its byte cap.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// More than `limit` bytes arrived (or were announced by `Content-Length`).
    #[error("the response is larger than the {limit}-byte limit")]
    TooLarge {
        /// The cap that was passed.
        limit: usize,
    },
    /// The transport failed mid-body.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// Reads a response body into memory, failing once it passes `limit` bytes; a
/// `Content-Length` over the limit fails before any byte is read.
pub async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<bytes::Bytes, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Splits a byte stream into lines (`\n`, an optional `\r` dropped) for SSE and NDJSON
/// framing, refusing any line longer than its cap instead of buffering it without end.
#[derive(Debug)]
pub struct LineBuffer {
    pending: Vec<u8>,
    limit: usize,
}

impl LineBuffer {
    /// A buffer whose lines may be at most `limit` bytes.
    pub fn new(limit: usize) -> LineBuffer {
        LineBuffer { pending: Vec::new(), limit }
    }

    /// Appends `chunk` and returns the complete lines it finished, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, BodyError> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.extend(&rest[..end])?;
            let mut line = std::mem::take(&mut self.pending);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            lines.push(line);
            rest = &rest[end + 1..];
        }
        self.extend(rest)?;
        Ok(lines)
    }

    /// The unterminated tail once the stream has ended (`None` when empty).
    pub fn finish(self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then_some(self.pending)
    }

    fn extend(&mut self, bytes: &[u8]) -> Result<(), BodyError> {
        if self.pending.len().saturating_add(bytes.len()) > self.limit {
            return Err(BodyError::TooLarge { limit: self.limit });
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784111777))
        );
        assert_eq!(retry_after("soon"), None);
        assert_eq!(retry_after("-1"), None);
        assert_eq!(retry_after("NaN"), None);
    }

    #[test]
    fn hostile_waits_are_clamped_not_panics() {
        // Each of these once panicked or overflowed.
        assert_eq!(retry_after("1e20"), Some(MAX_WAIT));
        assert_eq!(retry_after("18446744073709551615"), Some(MAX_WAIT));
        assert_eq!(retry_after("1e308"), Some(MAX_WAIT));
        assert_eq!(retry_after("inf"), None);
        assert_eq!(http_date("Sun, 06 Nov 99999999999999999 08:49:37 GMT"), None);
        assert_eq!(http_date("Sun, 99999999999 Nov 1994 08:49:37 GMT"), None);
        assert_eq!(http_date("Sun, 06 Nov 1994 99999999999:49:37 GMT"), None);
        assert_eq!(until_unix(u64::MAX, 0), MAX_WAIT);
        assert_eq!(until_unix(5, 10), Duration::from_secs(1));
    }

    #[test]
    fn lines_are_split_and_capped() {
        let mut lines = LineBuffer::new(8);
        assert_eq!(lines.push(b"data: 1\r\nda").unwrap(), vec![b"data: 1".to_vec()]);
        assert_eq!(lines.push(b"ta: 2\n\n").unwrap(), vec![b"data: 2".to_vec(), Vec::new()]);
        assert!(matches!(lines.push(b"123456789"), Err(BodyError::TooLarge { limit: 8 })));
        let mut tail = LineBuffer::new(8);
        tail.push(b"x\ny").unwrap();
        assert_eq!(tail.finish(), Some(b"y".to_vec()));
    }
}
