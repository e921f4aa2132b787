//! The error aggregator: workers capture errors, count them by fingerprint in the store, and
//! report each fingerprint once it crosses its threshold — as one issue per fingerprint, found
//! again by a hidden marker (open, or closed within a window) and commented on with new counts.
//!
//! Nothing leaves the machine unredacted: known secret values (everything in the secret
//! store, the GitHub token), token shapes (GitHub, OpenAI, Hugging Face, AWS, Slack),
//! `Authorization` headers and `key=value` credentials, home directories and IP addresses are
//! replaced before anything is stored or sent. The fingerprint (`v1-…`) hashes the kind and
//! the normalised frames (line numbers, addresses and hex ids stripped), or the normalised
//! message when there are no frames, so the same bug in another build or on another machine
//! maps to the same issue.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ipfs_accelerate_common::cache::{Cache, CacheKey};
use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::client::{Freshness, GitHub};
use crate::error::{Error, Result};
use crate::issues::check_repo;

/// Where counts live (the store, shared by workers on it).
pub const NAMESPACE: &str = "github_errors";
const FINGERPRINT_VERSION: &str = "v1";
const KEEP: Duration = Duration::from_secs(90 * 24 * 3600);

/// Aggregator settings (`[github.errors]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// A table that names some keys keeps the defaults of the rest.
#[serde(default, deny_unknown_fields)]
pub struct ErrorsConfig {
    /// Occurrences before a fingerprint is reported.
    pub threshold: u64,
    /// A closed issue this recent is commented on rather than duplicated.
    #[serde(with = "ipfs_accelerate_common::config::duration_text")]
    pub closed_within: Duration,
    /// The label auto-filed issues carry.
    pub label: String,
    /// Errors a collector holds before refusing more.
    pub queue: usize,
}

impl Default for ErrorsConfig {
    fn default() -> Self {
        ErrorsConfig {
            threshold: 3,
            closed_within: Duration::from_secs(14 * 24 * 3600),
            label: "ipfs-accelerate-error".into(),
            queue: 1024,
        }
    }
}

/// One captured error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// Its type (`StorageError`, `KeyError`, `panic`).
    pub kind: String,
    /// Its message.
    pub message: String,
    /// Stack frames, innermost last.
    #[serde(default)]
    pub frames: Vec<String>,
    /// Where it happened (component, operation, model…).
    #[serde(default)]
    pub context: BTreeMap<String, String>,
}

impl ErrorReport {
    /// A report from JSON (`{"kind", "message", "frames", "context"}`), or from a traceback as
    /// text: the last line `Kind: message`, the lines before it the frames.
    pub fn parse(text: &str) -> Result<ErrorReport> {
        if text.trim_start().starts_with('{') {
            return serde_json::from_str(text)
                .map_err(|e| Error::Config(format!("error report JSON: {e}")));
        }
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let Some((last, frames)) = lines.split_last() else {
            return Err(Error::Config("empty error report".into()));
        };
        let (kind, message) = match last.split_once(": ") {
            Some((kind, message)) if !kind.contains(' ') => (kind.trim(), message.trim()),
            _ => ("error", last.trim()),
        };
        Ok(ErrorReport {
            kind: kind.to_string(),
            message: message.to_string(),
            frames: frames.iter().map(|f| f.trim_end().to_string()).collect(),
            context: BTreeMap::new(),
        })
    }
}

/// Replaces secrets, home paths and IP addresses.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
    homes: Vec<String>,
}

fn patterns() -> &'static [(Regex, &'static str)] {
    static PATTERNS: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        [
            (r"(?i)(authorization|proxy-authorization)(\s*[:=]\s*)[^\n]*", "${1}${2}[REDACTED]"),
            (r"(?i)\b(bearer|token|basic)\s+[A-Za-z0-9._~+/=-]{8,}", "${1} [REDACTED]"),
            (r"\b(gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{20,})", "[REDACTED]"),
            (r"\bsk-[A-Za-z0-9_-]{16,}", "[REDACTED]"),
            (r"\bhf_[A-Za-z0-9]{16,}", "[REDACTED]"),
            (r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", "[REDACTED]"),
            (r"\bxox[abposr]-[A-Za-z0-9-]{10,}", "[REDACTED]"),
            (
                r"(?i)\b(api[_-]?key|secret|password|passwd|token|access[_-]?key)(\s*[=:]\s*)[^\s&,;]+",
                "${1}${2}[REDACTED]",
            ),
            (r"/home/[^/\s]+", "~"),
            (r"/Users/[^/\s]+", "~"),
            (r"(?i)C:\\Users\\[^\\\s]+", "~"),
            (r"\b(?:\d{1,3}\.){3}\d{1,3}\b", "[IP]"),
        ]
        .into_iter()
        .filter_map(|(pattern, with)| Regex::new(pattern).ok().map(|r| (r, with)))
        .collect()
    })
}

impl Redactor {
    /// A redactor that also replaces `secrets` (values from the secret store, the token) and
    /// `home` (this user's home directory).
    pub fn new(secrets: impl IntoIterator<Item = String>, home: Option<String>) -> Redactor {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 6).collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets, homes: home.into_iter().filter(|h| h.len() > 1).collect() }
    }

    /// `text` with everything sensitive replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            out = out.replace(secret, "[REDACTED]");
        }
        for home in &self.homes {
            out = out.replace(home.as_str(), "~");
        }
        for (pattern, with) in patterns() {
            out = pattern.replace_all(&out, *with).into_owned();
        }
        // IPv6: candidates checked by the parser, so `10:00:00` in a timestamp survives.
        static IPV6: OnceLock<Option<Regex>> = OnceLock::new();
        if let Some(candidates) =
            IPV6.get_or_init(|| Regex::new(r"[0-9A-Fa-f:]*:[0-9A-Fa-f:]*").ok())
        {
            out = candidates
                .replace_all(&out, |m: &regex::Captures<'_>| {
                    let text = &m[0];
                    if text.parse::<std::net::Ipv6Addr>().is_ok() {
                        "[IP]".to_string()
                    } else {
                        text.to_string()
                    }
                })
                .into_owned();
        }
        out
    }

    /// The report with every field redacted.
    pub fn report(&self, report: &ErrorReport) -> ErrorReport {
        ErrorReport {
            kind: self.redact(&report.kind),
            message: self.redact(&report.message),
            frames: report.frames.iter().map(|f| self.redact(f)).collect(),
            context: report.context.iter().map(|(k, v)| (k.clone(), self.redact(v))).collect(),
        }
    }
}

/// A frame or message without what varies between occurrences of one bug: line and column
/// numbers, addresses, hex ids, numbers in messages.
fn normalise(text: &str) -> String {
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    let rules = RULES.get_or_init(|| {
        [
            (r"0x[0-9a-fA-F]+", "0x_"),
            (r"(?i)\bline \d+", "line _"),
            (r":\d+(:\d+)?\b", ":_"),
            (r"\b[0-9a-fA-F]{8,}\b", "_"),
            (r"\d+", "_"),
            (r"\s+", " "),
        ]
        .into_iter()
        .filter_map(|(pattern, with)| Regex::new(pattern).ok().map(|r| (r, with)))
        .collect()
    });
    let mut out = text.trim().to_string();
    for (pattern, with) in rules {
        out = pattern.replace_all(&out, *with).into_owned();
    }
    out
}

/// The report's fingerprint: `v1-` and 16 hex digits.
pub fn fingerprint(report: &ErrorReport) -> String {
    let mut hasher = Sha256::new();
    hasher.update(report.kind.trim().as_bytes());
    if report.frames.is_empty() {
        hasher.update(b"\nmessage\n");
        hasher.update(normalise(&report.message).as_bytes());
    } else {
        for frame in &report.frames {
            hasher.update(b"\n");
            hasher.update(normalise(frame).as_bytes());
        }
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{FINGERPRINT_VERSION}-{hex}")
}

/// What the store keeps per fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEntry {
    /// The fingerprint.
    pub fingerprint: String,
    /// The first occurrence, redacted.
    pub report: ErrorReport,
    /// Occurrences seen.
    pub count: u64,
    /// Occurrences already reported to GitHub.
    pub reported: u64,
    /// First seen (RFC 3339).
    pub first_seen: String,
    /// Last seen (RFC 3339).
    pub last_seen: String,
    /// The issue tracking it, once filed.
    pub issue: Option<u64>,
}

/// What a flush did for one fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filed {
    /// The fingerprint.
    pub fingerprint: String,
    /// The issue.
    pub issue: u64,
    /// `created` or `commented`.
    pub action: String,
    /// The total count reported.
    pub count: u64,
}

/// Counts errors in the store and files them on GitHub.
#[derive(Debug, Clone)]
pub struct Aggregator {
    cache: Cache,
    redactor: Redactor,
    config: ErrorsConfig,
}

fn marker(fingerprint: &str) -> String {
    format!("<!-- ipfs-accelerate:error:{fingerprint} -->")
}

impl Aggregator {
    /// An aggregator counting in `cache`, redacting with `redactor`.
    pub fn new(cache: Cache, redactor: Redactor, config: ErrorsConfig) -> Aggregator {
        Aggregator { cache, redactor, config }
    }

    fn key(fingerprint: &str) -> Result<CacheKey> {
        Ok(CacheKey::raw(NAMESPACE, fingerprint)?)
    }

    async fn load(&self, fingerprint: &str) -> Result<Option<ErrorEntry>> {
        Ok(self.cache.get_json(&Aggregator::key(fingerprint)?).await?)
    }

    async fn save(&self, entry: &ErrorEntry) -> Result<()> {
        self.cache.put_json(&Aggregator::key(&entry.fingerprint)?, entry, Some(KEEP)).await?;
        Ok(())
    }

    /// Counts one occurrence (redacted before it is stored); returns the entry.
    pub async fn capture(&self, report: &ErrorReport) -> Result<ErrorEntry> {
        let report = self.redactor.report(report);
        let fingerprint = fingerprint(&report);
        let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let entry = match self.load(&fingerprint).await? {
            Some(mut entry) => {
                entry.count += 1;
                entry.last_seen = now;
                entry
            }
            None => ErrorEntry {
                fingerprint,
                report,
                count: 1,
                reported: 0,
                first_seen: now.clone(),
                last_seen: now,
                issue: None,
            },
        };
        self.save(&entry).await?;
        Ok(entry)
    }

    /// Every counted fingerprint, most frequent first.
    pub async fn entries(&self) -> Result<Vec<ErrorEntry>> {
        let mut entries = Vec::new();
        for info in self.cache.list(Some(NAMESPACE)).await? {
            if let Some(entry) = self.load(&info.key).await? {
                entries.push(entry);
            }
        }
        entries.sort_by(|a, b| b.count.cmp(&a.count).then(a.fingerprint.cmp(&b.fingerprint)));
        Ok(entries)
    }

    /// Files every fingerprint at or over the threshold with occurrences not yet reported:
    /// comments on its issue (open, or closed within the window) or opens one. Writes go
    /// through the pacer, one fingerprint after another.
    pub async fn flush(&self, github: &GitHub, repo: &str) -> Result<Vec<Filed>> {
        check_repo(repo)?;
        let mut filed = Vec::new();
        for mut entry in self.entries().await? {
            if entry.count < self.config.threshold || entry.count == entry.reported {
                continue;
            }
            let issue = match entry.issue {
                Some(number) => Some(number),
                None => self.find_issue(github, repo, &entry.fingerprint).await?,
            };
            let (number, action) = match issue {
                Some(number) => {
                    let body = format!(
                        "Seen {} more time(s), {} in all. First seen {}, last seen {}.\n\n{}",
                        entry.count - entry.reported,
                        entry.count,
                        entry.first_seen,
                        entry.last_seen,
                        marker(&entry.fingerprint)
                    );
                    github.create_comment(repo, number, &body).await?;
                    (number, "commented")
                }
                None => {
                    let created = github
                        .create_issue(
                            repo,
                            &self.title(&entry),
                            &self.body(&entry),
                            std::slice::from_ref(&self.config.label),
                        )
                        .await?;
                    (created.number, "created")
                }
            };
            entry.issue = Some(number);
            entry.reported = entry.count;
            self.save(&entry).await?;
            filed.push(Filed {
                fingerprint: entry.fingerprint,
                issue: number,
                action: action.into(),
                count: entry.count,
            });
        }
        Ok(filed)
    }

    /// The issue carrying `fingerprint`'s marker: open, or closed within the window. Search
    /// first (cheap, but its index lags), then the label's issues listed in full.
    async fn find_issue(
        &self,
        github: &GitHub,
        repo: &str,
        fingerprint: &str,
    ) -> Result<Option<u64>> {
        let wanted = marker(fingerprint);
        let cutoff =
            Utc::now() - chrono::Duration::from_std(self.config.closed_within).unwrap_or_default();
        let acceptable = |issue: &serde_json::Value| {
            let has_marker = issue["body"].as_str().is_some_and(|b| b.contains(&wanted));
            let recent = match issue["state"].as_str() {
                Some("open") => true,
                _ => issue["closed_at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t.with_timezone(&Utc) >= cutoff),
            };
            (has_marker && recent).then(|| issue["number"].as_u64()).flatten()
        };
        let search =
            format!("/search/issues?q=repo:{repo}+%22{fingerprint}%22+in:body&per_page=100");
        match github.get_all(&search, Freshness::Revalidate).await {
            Ok(found) => {
                if let Some(number) = found.iter().find_map(acceptable) {
                    return Ok(Some(number));
                }
            }
            Err(e) => tracing::warn!(error = %e, "issue search failed; listing instead"),
        }
        let label =
            url::form_urlencoded::byte_serialize(self.config.label.as_bytes()).collect::<String>();
        let list = format!("/repos/{repo}/issues?state=all&labels={label}&per_page=100");
        let issues = github.get_all(&list, Freshness::Revalidate).await?;
        Ok(issues.iter().find_map(acceptable))
    }

    fn title(&self, entry: &ErrorEntry) -> String {
        let message: String = entry.report.message.chars().take(80).collect();
        let ellipsis = if entry.report.message.chars().count() > 80 { "…" } else { "" };
        format!("[auto] {}: {message}{ellipsis}", entry.report.kind)
    }

    fn body(&self, entry: &ErrorEntry) -> String {
        let report = &entry.report;
        let mut body = format!(
            "**{}**: {}\n\nSeen {} time(s); first {}, last {}. Fingerprint `{}`.\n",
            report.kind,
            report.message,
            entry.count,
            entry.first_seen,
            entry.last_seen,
            entry.fingerprint
        );
        if !report.frames.is_empty() {
            body.push_str("\n```\n");
            body.push_str(&report.frames.join("\n"));
            body.push_str("\n```\n");
        }
        if !report.context.is_empty() {
            body.push_str("\n| context | |\n|---|---|\n");
            for (k, v) in &report.context {
                body.push_str(&format!("| {k} | {v} |\n"));
            }
        }
        body.push_str("\nFiled by ipfs-accelerate's error aggregator (secrets, home paths and IPs redacted).\n\n");
        body.push_str(&marker(&entry.fingerprint));
        body
    }
}

/// A bounded in-process queue in front of an [`Aggregator`] for long-running workers:
/// `capture` never blocks (a full queue is [`Error::QueueFull`]), and `shutdown` counts
/// everything queued, then flushes.
pub struct Collector {
    sender: tokio::sync::mpsc::Sender<ErrorReport>,
    task: tokio::task::JoinHandle<Result<()>>,
    capacity: usize,
    aggregator: Arc<Aggregator>,
}

impl Collector {
    /// Starts counting reports into `aggregator`.
    pub fn start(aggregator: Arc<Aggregator>) -> Collector {
        let capacity = aggregator.config.queue.max(1);
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<ErrorReport>(capacity);
        let counting = Arc::clone(&aggregator);
        let task = tokio::spawn(async move {
            while let Some(report) = receiver.recv().await {
                counting.capture(&report).await?;
            }
            Ok(())
        });
        Collector { sender, task, capacity, aggregator }
    }

    /// Queues `report`.
    pub fn capture(&self, report: ErrorReport) -> Result<()> {
        self.sender.try_send(report).map_err(|_| Error::QueueFull { capacity: self.capacity })
    }

    /// Counts what is queued, then files what crossed its threshold.
    pub async fn shutdown(self, github: &GitHub, repo: &str) -> Result<Vec<Filed>> {
        drop(self.sender);
        self.task.await.map_err(|e| Error::Config(format!("error collector task: {e}")))??;
        self.aggregator.flush(github, repo).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_homes_and_addresses_are_redacted() {
        let redactor = Redactor::new(["s3cr3t-value".to_string()], Some("/srv/me".into()));
        let text = "GET failed: Authorization: Bearer ghp_abcdefghijklmnopqrstuvwxyz0123\n\
            at /home/alice/src/app.rs:10 and /srv/me/data, key sk-proj-ABCDEFGHIJKLMNOPQRST, \
            api_key=hunter2hunter2 from 192.168.1.20 or 2001:db8::1, s3cr3t-value, hf_abcdefghijklmnopqrstu";
        let out = redactor.redact(text);
        for leaked in [
            "ghp_", "alice", "/srv/me", "sk-proj", "hunter2", "192.168", "2001:db8", "s3cr3t",
            "hf_",
        ] {
            assert!(!out.contains(leaked), "{leaked} leaked: {out}");
        }
        assert!(out.contains("~/src/app.rs:10"), "{out}");
        assert_eq!(redactor.redact("at 2026-11-25T10:00:00Z"), "at 2026-11-25T10:00:00Z");
    }

    #[test]
    fn fingerprints_ignore_line_numbers_and_addresses() {
        let a = ErrorReport {
            kind: "StorageError".into(),
            message: "block 0xdeadbeef missing".into(),
            frames: vec!["at store.rs:120:5".into(), "at 0x7ffd1234 in read()".into()],
            context: BTreeMap::new(),
        };
        let b = ErrorReport {
            frames: vec!["at store.rs:131:9".into(), "at 0x7ffe9999 in read()".into()],
            message: "block 0xfeedface missing".into(),
            ..a.clone()
        };
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert!(fingerprint(&a).starts_with("v1-"));
        let other = ErrorReport { frames: vec!["at loader.rs:1".into()], ..a.clone() };
        assert_ne!(fingerprint(&a), fingerprint(&other));
    }

    #[test]
    fn tracebacks_parse_as_text() {
        let text = "Traceback (most recent call last):\n  File \"/home/bob/x.py\", line 3, in <module>\nKeyError: 'model'\n";
        let report = ErrorReport::parse(text).unwrap();
        assert_eq!((report.kind.as_str(), report.message.as_str()), ("KeyError", "'model'"));
        assert_eq!(report.frames.len(), 2);
        assert!(ErrorReport::parse("  \n").is_err());
    }
}
