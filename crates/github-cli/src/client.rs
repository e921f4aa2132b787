//! The GitHub REST client: every GET through the revalidating cache, one shared rate-limit
//! cooldown, writes through the pacer and never retried blindly.
//!
//! **Reads.** The key is the token's scope id (a hash, never the token) + the URL with its
//! query (so each page is its own entry) in the `Cache` namespace `github_api`; bodies live in
//! the CAS, so workers sharing a store share the cache. A fresh entry is served as is (*hit*).
//! Past its TTL it is revalidated with `If-None-Match`/`If-Modified-Since`; a `304` renews it
//! (*revalidated* — GitHub does not count an authorised 304 against the rate limit). A `200`
//! replaces it (*miss*). While a rate limit is in force, an expired entry is served marked
//! *stale* rather than failing.
//!
//! **Rate limits.** `x-ratelimit-remaining: 0` with `x-ratelimit-reset`, or a 403/429 with
//! `retry-after` (a secondary limit), set one cooldown shared by every call of this client.
//!
//! **Writes.** Content-creating calls wait for the [`Pacer`]; a write refused by a rate limit
//! was not performed, so it waits the limit out and goes again. A write that timed out or lost
//! its connection may have landed: each carries a hidden marker, and it is looked for before
//! the write is sent again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipfs_accelerate_common::cache::{Cache, CacheKey, CachedValue, PutOptions, Validators};
use ipfs_accelerate_common::http::{self, read_body};
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, LINK, RETRY_AFTER,
};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Token;
use crate::error::{Error, Result};
use crate::pacer::{Pacer, PacerConfig};

/// The namespace GitHub answers are cached in.
pub const NAMESPACE: &str = "github_api";
const STATS_NAMESPACE: &str = "github_stats";
const API_VERSION: &str = "2022-11-28";
/// The largest API answer read into memory (a page of 100 workflow runs is about 1 MB).
const MAX_BODY: usize = 32 << 20;

/// The `[github]` section of the config file:
///
/// ```toml
/// [github]
/// api_url = "https://ghe.example.com/api/v3"   # or GITHUB_API_URL; default api.github.com
/// repository = "owner/name"                    # or GITHUB_REPOSITORY
/// credential = "default"                       # which stored credential to use
/// timeout = "30s"
/// pacer = { per_minute = 80, per_hour = 500, queue = 256 }
/// peers = ["/dns4/seed.example/tcp/4001/p2p/12D3KooW…"]
///
/// [github.registry]
/// title = "ipfs-accelerate peer registry"       # or issue = 12
/// ttl = "30m"
/// allow_authors = []                           # empty: collaborators with push access
/// publish_public_addresses = false
///
/// [github.errors]
/// threshold = 3                                # occurrences before an issue is filed
/// closed_within = "14d"                        # a closed issue this recent is reused
/// label = "ipfs-accelerate-error"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// A missing key takes its value from `Default`: the one place defaults are written.
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// The REST API root (`https://api.github.com`, or GHE's `https://host/api/v3`).
    pub api_url: String,
    /// A token (prefer a stored credential: the config file is not encrypted).
    pub token: Option<String>,
    /// The stored credential to use.
    pub credential: String,
    /// The repository workers coordinate through.
    pub repository: Option<String>,
    /// Each request's deadline.
    #[serde(with = "ipfs_accelerate_common::config::duration_text")]
    pub timeout: Duration,
    /// Write pacing.
    pub pacer: PacerConfig,
    /// Attempts for a write (first try included).
    pub write_attempts: u32,
    /// The longest a call waits out a rate limit before failing with it.
    #[serde(with = "ipfs_accelerate_common::config::duration_text")]
    pub max_rate_limit_wait: Duration,
    /// The peer registry.
    pub registry: crate::registry::RegistryConfig,
    /// Static bootstrap peers (multiaddrs), besides the registry and `IPFS_ACCELERATE_PEERS`.
    pub peers: Vec<String>,
    /// The error aggregator.
    pub errors: crate::errors::ErrorsConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            api_url: "https://api.github.com".into(),
            token: None,
            credential: "default".into(),
            repository: None,
            timeout: Duration::from_secs(30),
            pacer: PacerConfig::default(),
            write_attempts: 3,
            max_rate_limit_wait: Duration::from_secs(120),
            registry: crate::registry::RegistryConfig::default(),
            peers: Vec::new(),
            errors: crate::errors::ErrorsConfig::default(),
        }
    }
}

/// `GITHUB_API_URL` and `GITHUB_REPOSITORY` (what GitHub's own runners set) override the file.
impl ipfs_accelerate_common::config::Section for ClientConfig {
    const NAME: &'static str = "github";
    const ENV: &'static [(&'static str, &'static str)] =
        &[("api_url", "GITHUB_API_URL"), ("repository", "GITHUB_REPOSITORY")];

    fn validate(&self) -> std::result::Result<(), String> {
        if let Some(repo) = &self.repository {
            crate::issues::check_repo(repo).map_err(|e| e.to_string())?;
        }
        url::Url::parse(&self.api_url).map_err(|e| format!("api_url {:?}: {e}", self.api_url))?;
        Ok(())
    }
}

/// How an answer was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A fresh cache entry; no request.
    Hit,
    /// A cache entry GitHub confirmed unchanged (304).
    Revalidated,
    /// A new answer from GitHub.
    Network,
    /// An expired entry served because a rate limit is in force.
    Stale,
}

/// One GET's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// The JSON body.
    pub body: Value,
    /// The `Link: rel="next"` URL, when there are more pages.
    pub next: Option<String>,
    /// How it was obtained.
    pub source: Source,
}

/// Whether a cached entry may be served without asking GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Serve a fresh entry as is.
    Cached,
    /// Ask GitHub (conditionally, so an unchanged answer costs no quota).
    Revalidate,
}

/// What the cache keeps of an answer.
#[derive(Serialize, Deserialize)]
struct Entry {
    body: Value,
    next: Option<String>,
}

/// Counters of this client, accumulated in the store by [`GitHub::persist_stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Served from a fresh entry.
    pub hits: u64,
    /// Confirmed unchanged by a 304.
    pub revalidated: u64,
    /// Fetched anew.
    pub misses: u64,
    /// Served stale under a rate limit.
    pub stale: u64,
    /// Requests that counted against the rate limit (everything but 304s).
    pub quota_spent: u64,
    /// Writes sent.
    pub writes: u64,
    /// The last `x-ratelimit-remaining` seen.
    pub remaining: Option<u64>,
    /// The last `x-ratelimit-limit` seen.
    pub limit: Option<u64>,
    /// When the window resets (Unix seconds), as last seen.
    pub reset: Option<u64>,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    revalidated: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    quota_spent: AtomicU64,
    writes: AtomicU64,
    window: Mutex<(Option<u64>, Option<u64>, Option<u64>)>,
}

/// The rate-limit cooldown shared by every call.
#[derive(Default)]
struct Cooldown {
    until: Option<Instant>,
    reason: String,
}

/// A GitHub REST client.
pub struct GitHub {
    http: reqwest::Client,
    base: url::Url,
    scope: String,
    cache: Cache,
    config: ClientConfig,
    pacer: Pacer,
    cooldown: Mutex<Cooldown>,
    counters: Counters,
    login: tokio::sync::OnceCell<String>,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

/// A write's way to find out whether an earlier attempt landed (by looking for its marker):
/// the object GitHub made, or `None`.
pub type Landed<'a> =
    Box<dyn Fn() -> crate::BoxFuture<'a, Result<Option<Value>>> + Send + Sync + 'a>;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

/// How long answers from `path` stay fresh.
fn ttl_for(path: &str) -> Duration {
    let secs = if path.starts_with("/search/") {
        60
    } else if path.contains("/collaborators") {
        3600
    } else if path.contains("/issues") || path.contains("/comments") {
        60
    } else {
        300
    };
    Duration::from_secs(secs)
}

impl GitHub {
    /// A client of `config.api_url` with `token` (anonymous when `None`), caching in `cache`.
    pub fn new(config: ClientConfig, token: Option<&Token>, cache: Cache) -> Result<GitHub> {
        let mut base = url::Url::parse(&config.api_url)
            .map_err(|e| Error::Config(format!("api_url {:?}: {e}", config.api_url)))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/vnd.github+json"));
        headers.insert("x-github-api-version", HeaderValue::from_static(API_VERSION));
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| Error::Auth("the token is not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http =
            ipfs_accelerate_common::http::client(config.timeout.min(Duration::from_secs(10)))
                .default_headers(headers)
                .build()
                .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(GitHub {
            http,
            base,
            scope: token.map_or_else(|| "anonymous".to_string(), Token::scope_id),
            cache,
            pacer: Pacer::new(config.pacer)?,
            config,
            cooldown: Mutex::default(),
            counters: Counters::default(),
            login: tokio::sync::OnceCell::new(),
        })
    }

    /// `path` (`/repos/o/r/issues`, or a full URL GitHub gave, e.g. a `Link` target) as a URL
    /// on this API — a URL elsewhere is refused, so a forged `Link` cannot send the token
    /// to another host.
    fn url(&self, path: &str) -> Result<url::Url> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            url::Url::parse(path).map_err(|e| Error::Config(format!("{path}: {e}")))?
        } else {
            self.base
                .join(path.trim_start_matches('/'))
                .map_err(|e| Error::Config(format!("{path}: {e}")))?
        };
        if url.origin() != self.base.origin() || !url.path().starts_with(self.base.path()) {
            return Err(Error::Config(format!(
                "{url} is not under the API root {}; refusing to send the token there",
                self.base
            )));
        }
        Ok(url)
    }

    /// The path of `url` relative to the API root, for messages and TTL classes.
    fn relative(&self, url: &url::Url) -> String {
        let path = url.path().strip_prefix(self.base.path()).unwrap_or(url.path());
        format!("/{path}")
    }

    fn cooling(&self) -> Option<(Duration, String)> {
        let cooldown = self.cooldown.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let left = cooldown.until?.checked_duration_since(Instant::now())?;
        Some((left, cooldown.reason.clone()))
    }

    fn cool_down(&self, wait: Duration, reason: String) {
        tracing::warn!(wait = ?wait, %reason, "GitHub rate limit; pausing");
        let mut cooldown = self.cooldown.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // `wait` is clamped where it is read; checked all the same, as it comes from a header.
        let Some(until) = Instant::now().checked_add(wait) else { return };
        if cooldown.until.is_none_or(|u| u < until) {
            *cooldown = Cooldown { until: Some(until), reason };
        }
    }

    /// Reads the rate-limit headers; a 403/429 that is a rate limit returns how long to wait.
    fn observe(&self, status: StatusCode, headers: &HeaderMap, body: &str) -> Option<Duration> {
        let remaining = header_u64(headers, "x-ratelimit-remaining");
        let reset = header_u64(headers, "x-ratelimit-reset");
        {
            let mut window =
                self.counters.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if remaining.is_some() {
                *window = (remaining, header_u64(headers, "x-ratelimit-limit"), reset);
            }
        }
        let retry_after =
            headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(http::retry_after);
        let until_reset = || reset.map(|r| http::until_unix(r, unix_now()));
        let limited = matches!(status.as_u16(), 403 | 429)
            && (retry_after.is_some()
                || remaining == Some(0)
                || body.to_ascii_lowercase().contains("rate limit"));
        if limited {
            // GitHub: with no retry-after and remaining > 0, wait at least a minute.
            let wait = retry_after
                .or_else(|| (remaining == Some(0)).then(until_reset).flatten())
                .unwrap_or(Duration::from_secs(60));
            self.cool_down(wait, format!("HTTP {}: {}", status.as_u16(), message_of(body)));
            return Some(wait);
        }
        if remaining == Some(0) {
            if let Some(wait) = until_reset() {
                self.cool_down(wait, "x-ratelimit-remaining is 0".into());
            }
        }
        None
    }

    /// Waits out a cooldown that ends within the rate-limit budget; else the limit's error.
    async fn wait_cooldown(&self) -> Result<()> {
        if let Some((left, reason)) = self.cooling() {
            if left > self.config.max_rate_limit_wait {
                return Err(Error::RateLimited { reason, retry_in: left });
            }
            tracing::info!(wait = ?left, "waiting out the GitHub rate limit");
            tokio::time::sleep(left).await;
        }
        Ok(())
    }

    fn cache_key(&self, url: &url::Url) -> Result<CacheKey> {
        Ok(CacheKey::raw(NAMESPACE, &format!("{}|{url}", self.scope))?)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        method: &Method,
        path: &str,
    ) -> Result<reqwest::Response> {
        let timeout = self.config.timeout;
        tracing::debug!(%method, path, "GitHub request");
        match tokio::time::timeout(timeout, request.timeout(timeout).send()).await {
            Err(_) => Err(Error::Timeout {
                method: method.to_string(),
                path: path.into(),
                after: timeout,
            }),
            Ok(Err(e)) if e.is_timeout() => Err(Error::Timeout {
                method: method.to_string(),
                path: path.into(),
                after: timeout,
            }),
            Ok(Err(e)) => Err(Error::Connect {
                path: path.into(),
                reason: ipfs_accelerate_common::chain_text(&e),
            }),
            Ok(Ok(response)) => Ok(response),
        }
    }

    async fn body_text(&self, response: reqwest::Response, path: &str) -> Result<String> {
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, read_body(response, MAX_BODY)).await {
            Err(_) => {
                Err(Error::Timeout { method: "read".into(), path: path.into(), after: timeout })
            }
            Ok(Err(e)) => Err(Error::Connect { path: path.into(), reason: e.to_string() }),
            Ok(Ok(bytes)) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }

    fn http_error(&self, method: &Method, path: &str, status: StatusCode, body: &str) -> Error {
        let message = message_of(body);
        match status.as_u16() {
            401 => Error::Auth(format!("HTTP 401 on {path}: {message}")),
            code => {
                Error::Http { method: method.to_string(), path: path.into(), status: code, message }
            }
        }
    }

    /// GETs `path` (or a `Link` URL) through the cache.
    pub async fn get(&self, path: &str, freshness: Freshness) -> Result<Page> {
        let url = self.url(path)?;
        let relative = self.relative(&url);
        let key = self.cache_key(&url)?;
        let cached: Option<CachedValue> = self.cache.get_stale_ok(&key).await?;
        let entry =
            |value: &CachedValue| -> Option<Entry> { serde_json::from_slice(&value.value).ok() };
        if let Some(value) = &cached {
            if !value.stale && freshness == Freshness::Cached {
                if let Some(e) = entry(value) {
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Page { body: e.body, next: e.next, source: Source::Hit });
                }
            }
        }
        let stale = |this: &GitHub| -> Option<Page> {
            let e = entry(cached.as_ref()?)?;
            this.counters.stale.fetch_add(1, Ordering::Relaxed);
            Some(Page { body: e.body, next: e.next, source: Source::Stale })
        };
        if let Some((left, reason)) = self.cooling() {
            if let Some(page) = stale(self) {
                return Ok(page);
            }
            if left > self.config.max_rate_limit_wait {
                return Err(Error::RateLimited { reason, retry_in: left });
            }
            tokio::time::sleep(left).await;
        }
        let mut request = self.http.get(url.clone());
        if let Some(value) = &cached {
            if let Some(etag) = &value.validators.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(modified) = &value.validators.last_modified {
                request = request.header(IF_MODIFIED_SINCE, modified);
            }
        }
        let response = self.send(request, &Method::GET, &relative).await?;
        let status = response.status();
        let headers = response.headers().clone();
        if status == StatusCode::NOT_MODIFIED {
            self.observe(status, &headers, "");
            if let Some(e) = cached.as_ref().and_then(entry) {
                self.cache.refresh(&key, Some(ttl_for(&relative))).await?;
                self.counters.revalidated.fetch_add(1, Ordering::Relaxed);
                return Ok(Page { body: e.body, next: e.next, source: Source::Revalidated });
            }
            return Err(Error::Decode {
                path: relative,
                reason: "304 for a request that had no validators".into(),
            });
        }
        self.counters.quota_spent.fetch_add(1, Ordering::Relaxed);
        let text = self.body_text(response, &relative).await?;
        if let Some(wait) = self.observe(status, &headers, &text) {
            if let Some(page) = stale(self) {
                return Ok(page);
            }
            return Err(Error::RateLimited { reason: message_of(&text), retry_in: wait });
        }
        if !status.is_success() {
            return Err(self.http_error(&Method::GET, &relative, status, &text));
        }
        let body: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Decode { path: relative.clone(), reason: e.to_string() })?;
        let next = next_link(&headers);
        let validators = Validators {
            etag: headers.get(ETAG).and_then(|v| v.to_str().ok()).map(str::to_string),
            last_modified: headers
                .get(LAST_MODIFIED)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };
        let stored = serde_json::to_vec(&Entry { body: body.clone(), next: next.clone() })
            .map_err(|e| Error::Decode { path: relative.clone(), reason: e.to_string() })?;
        self.cache
            .put(&key, stored, PutOptions { ttl: Some(ttl_for(&relative)), validators })
            .await?;
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        Ok(Page { body, next, source: Source::Network })
    }

    /// Every item of a paginated list, following `Link: rel="next"` to the end.
    pub async fn get_all(&self, path: &str, freshness: Freshness) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut next = Some(path.to_string());
        let mut pages = 0;
        while let Some(path) = next.take() {
            pages += 1;
            if pages > 1000 {
                return Err(Error::Decode { path, reason: "more than 1,000 pages".into() });
            }
            let page = self.get(&path, freshness).await?;
            match page.body {
                Value::Array(list) => items.extend(list),
                Value::Object(mut object) => match object.remove("items") {
                    // Search answers wrap the list.
                    Some(Value::Array(list)) => items.extend(list),
                    _ => return Err(Error::Decode { path, reason: "not a list".into() }),
                },
                _ => return Err(Error::Decode { path, reason: "not a list".into() }),
            }
            next = page.next;
        }
        Ok(items)
    }

    /// Sends a write to `repo` through the pacer. A rate-limited attempt waits and goes again;
    /// after an attempt that may have landed (timeout, broken connection, 5xx), `landed` is
    /// asked first and its answer returned if the write is found.
    pub async fn write<'a>(
        &'a self,
        method: Method,
        path: &'a str,
        repo: &str,
        body: &Value,
        landed: Option<Landed<'a>>,
    ) -> Result<Value> {
        let url = self.url(path)?;
        let relative = self.relative(&url);
        let _permit = self.pacer.acquire(repo).await?;
        let mut last: Option<Error> = None;
        for attempt in 0..self.config.write_attempts.max(1) {
            self.wait_cooldown().await?;
            if attempt > 0 && last.as_ref().is_some_and(maybe_landed) {
                if let Some(check) = &landed {
                    if let Some(found) = check().await? {
                        tracing::info!(path = %relative, "an earlier attempt of this write landed; not resending");
                        return Ok(found);
                    }
                }
            }
            self.counters.writes.fetch_add(1, Ordering::Relaxed);
            let request = self.http.request(method.clone(), url.clone()).json(body);
            let response = match self.send(request, &method, &relative).await {
                Ok(response) => response,
                Err(e) => {
                    tracing::warn!(path = %relative, error = %e, "GitHub write failed");
                    last = Some(e);
                    continue;
                }
            };
            self.counters.quota_spent.fetch_add(1, Ordering::Relaxed);
            let status = response.status();
            let headers = response.headers().clone();
            let text = match self.body_text(response, &relative).await {
                Ok(text) => text,
                Err(e) => {
                    // The status arrived, the body did not: the write may well have landed.
                    last = Some(e);
                    continue;
                }
            };
            if let Some(wait) = self.observe(status, &headers, &text) {
                last = Some(Error::RateLimited { reason: message_of(&text), retry_in: wait });
                continue;
            }
            if status.is_server_error() {
                last = Some(self.http_error(&method, &relative, status, &text));
                continue;
            }
            if !status.is_success() {
                return Err(self.http_error(&method, &relative, status, &text));
            }
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text)
                .map_err(|e| Error::Decode { path: relative, reason: e.to_string() });
        }
        Err(last.unwrap_or_else(|| Error::Config("no write attempts configured".into())))
    }

    /// Who the token belongs to and its OAuth scopes (`x-oauth-scopes`; fine-grained tokens
    /// report none). Always asks GitHub.
    pub async fn whoami(&self) -> Result<(String, Vec<String>)> {
        let url = self.url("/user")?;
        let response = self.send(self.http.get(url), &Method::GET, "/user").await?;
        self.counters.quota_spent.fetch_add(1, Ordering::Relaxed);
        let status = response.status();
        let headers = response.headers().clone();
        let text = self.body_text(response, "/user").await?;
        if let Some(wait) = self.observe(status, &headers, &text) {
            return Err(Error::RateLimited { reason: message_of(&text), retry_in: wait });
        }
        if !status.is_success() {
            return Err(self.http_error(&Method::GET, "/user", status, &text));
        }
        let user: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Decode { path: "/user".into(), reason: e.to_string() })?;
        let login = user["login"].as_str().unwrap_or_default().to_string();
        let scopes = headers
            .get("x-oauth-scopes")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        Ok((login, scopes))
    }

    /// The token's login, asked once per client (heartbeats need it every beat).
    pub async fn login(&self) -> Result<&str> {
        let login =
            self.login.get_or_try_init(|| async { Ok::<_, Error>(self.whoami().await?.0) }).await?;
        Ok(login.as_str())
    }

    /// This client's counters so far.
    pub fn stats(&self) -> Stats {
        let window =
            *self.counters.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            hits: get(&self.counters.hits),
            revalidated: get(&self.counters.revalidated),
            misses: get(&self.counters.misses),
            stale: get(&self.counters.stale),
            quota_spent: get(&self.counters.quota_spent),
            writes: get(&self.counters.writes),
            remaining: window.0,
            limit: window.1,
            reset: window.2,
        }
    }

    /// Adds this client's counters (taken, so each counts once) to the totals in the store;
    /// returns the totals.
    pub async fn persist_stats(&self) -> Result<Stats> {
        let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
        let key = CacheKey::raw(STATS_NAMESPACE, "totals")?;
        let mut totals: Stats = match self.cache.get_json(&key).await {
            Ok(totals) => totals.unwrap_or_default(),
            // Figures from another schema version: counting starts again, saying so.
            Err(e @ ipfs_accelerate_common::Error::CacheValue { .. }) => {
                tracing::warn!(error = %e, "GitHub figures unreadable; counting afresh");
                Stats::default()
            }
            Err(e) => return Err(e.into()),
        };
        totals.hits += take(&self.counters.hits);
        totals.revalidated += take(&self.counters.revalidated);
        totals.misses += take(&self.counters.misses);
        totals.stale += take(&self.counters.stale);
        totals.quota_spent += take(&self.counters.quota_spent);
        totals.writes += take(&self.counters.writes);
        let window =
            *self.counters.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if window.0.is_some() {
            (totals.remaining, totals.limit, totals.reset) = window;
        }
        self.cache.put_json(&key, &totals, Some(Duration::from_secs(365 * 24 * 3600))).await?;
        Ok(totals)
    }

    /// Removes every cached answer and the totals; how many entries went.
    pub async fn clear_cache(&self) -> Result<u64> {
        let answers = self.cache.clear(Some(NAMESPACE)).await?;
        self.cache.clear(Some(STATS_NAMESPACE)).await?;
        Ok(answers)
    }
}

/// Whether a failed attempt may nevertheless have been performed by GitHub.
fn maybe_landed(error: &Error) -> bool {
    match error {
        Error::Timeout { .. } | Error::Connect { .. } => true,
        Error::Http { status, .. } => *status >= 500,
        _ => false,
    }
}

/// GitHub's `message` field, else the start of the body.
fn message_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_yield_the_next_page() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static(
                r#"<https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=3>; rel="next", <https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=4>; rel="last""#,
            ),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=3")
        );
        headers.insert(LINK, HeaderValue::from_static(r#"<https://x/?page=1>; rel="prev""#));
        assert_eq!(next_link(&headers), None);
    }

    #[test]
    fn endpoint_classes_have_their_ttls() {
        assert_eq!(ttl_for("/search/issues"), Duration::from_secs(60));
        assert_eq!(ttl_for("/repos/o/r/collaborators/u/permission"), Duration::from_secs(3600));
        assert_eq!(ttl_for("/repos/o/r/issues/1/comments"), Duration::from_secs(60));
        assert_eq!(ttl_for("/user"), Duration::from_secs(300));
    }
}
