//! The router: named deployments in model groups behind one call path — a bounded priority
//! queue with a concurrency limit and deadlines, per-deployment rate limits, one retry loop
//! (retryable errors only, `Retry-After` honoured, capped jittered exponential backoff, the
//! call's deadline as the maximum elapsed time), cooldown of failing deployments, fallbacks
//! to other groups by error kind, and the overhead metric (time inside the client minus time
//! waiting on servers, queueing and deliberate backoff).

use std::collections::{BTreeMap, BinaryHeap};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ipfs_accelerate_common::cache::{Cache, CacheKey};
use ipfs_accelerate_common::Classify;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::backend::{Backend, DeltaStream, Kind};
use crate::cache;
use crate::config::{BackendsConfig, DeploymentConfig};
use crate::error::{Error, Result};
use crate::http::{CallContext, Transport};
use crate::ollama::Ollama;
use crate::openai::OpenAi;
use crate::ovms::Ovms;
use crate::stats::{self, Figures};
use crate::tei::Tei;
use crate::tgi::Tgi;
use crate::types::{
    ChatRequest, ChatResponse, Delta, EmbedRequest, Embeddings, ModelInfo, Ranked, RerankRequest,
};

/// Per-call options.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Higher runs first when calls queue.
    pub priority: u8,
    /// This call's budget; the router's `timeout` when `None`.
    pub timeout: Option<Duration>,
    /// Use the response cache: `Some(true)` for any chat, `Some(false)` never; `None` caches
    /// chats at temperature 0, embeddings, rerankings and model lists.
    pub cache: Option<bool>,
}

/// A result with how it was obtained.
#[derive(Debug, Clone, Serialize)]
pub struct Routed<T> {
    /// The result.
    pub value: T,
    /// The deployment that answered.
    pub deployment: String,
    /// Attempts made, over all deployments and groups.
    pub attempts: u32,
    /// The request id sent as `x-request-id`.
    pub request_id: String,
    /// Time spent in the client itself (not waiting on servers, the queue or backoff).
    pub overhead_us: u64,
    /// Whether the answer came from the response cache (no server was asked).
    pub cached: bool,
}

struct Health {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

/// One deployment as the router holds it.
struct Deployment {
    config: DeploymentConfig,
    backend: Option<Arc<dyn Backend>>,
    /// Why there is no backend (a required key is missing).
    unusable: Option<String>,
    rpm: Option<DefaultDirectRateLimiter>,
    tpm: Option<DefaultDirectRateLimiter>,
    health: Mutex<Health>,
    figures: Mutex<Figures>,
}

/// A deployment's figures for `backends stats` and `backends list`.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentStatus {
    /// Name.
    pub name: String,
    /// Model group.
    pub group: String,
    /// Protocol.
    pub kind: Kind,
    /// Base URL.
    pub base_url: String,
    /// Where it was configured.
    pub source: String,
    /// Why it cannot be used, if it cannot.
    pub unusable: Option<String>,
    /// Whether it is cooling down.
    pub cooling_down: bool,
    /// Calls answered by the server.
    pub calls: u64,
    /// Calls failed.
    pub failures: u64,
    /// Calls answered from the response cache.
    pub cache_hits: u64,
    /// Overhead percentiles over the recent calls, in microseconds.
    pub overhead_p50_us: Option<u64>,
    /// 99th percentile.
    pub overhead_p99_us: Option<u64>,
    /// The most recent failure.
    pub last_error: Option<String>,
}

impl DeploymentStatus {
    fn new(d: &Deployment, figures: &Figures) -> DeploymentStatus {
        DeploymentStatus {
            name: d.config.name.clone(),
            group: d.config.group().to_string(),
            kind: d.config.kind,
            base_url: d.config.base_url.clone(),
            source: d.config.source.clone(),
            unusable: d.unusable.clone(),
            cooling_down: d.cooling().is_some(),
            calls: figures.calls,
            failures: figures.failures,
            cache_hits: figures.cache_hits,
            overhead_p50_us: figures.overhead_percentile(0.5),
            overhead_p99_us: figures.overhead_percentile(0.99),
            last_error: figures.last_error.clone(),
        }
    }
}

impl Deployment {
    fn cooling(&self) -> Option<Duration> {
        let health = self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        health.open_until.and_then(|until| until.checked_duration_since(Instant::now()))
    }

    fn settle(&self, error: Option<&Error>, config: &BackendsConfig) {
        let mut health = self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match error {
            None => {
                health.consecutive_failures = 0;
                health.open_until = None;
                self.figures().calls += 1;
            }
            Some(e) => {
                {
                    let mut figures = self.figures();
                    figures.failures += 1;
                    figures.last_error = Some(e.to_string());
                }
                if e.counts_against_deployment() {
                    health.consecutive_failures += 1;
                    if health.consecutive_failures >= config.cooldown_after {
                        tracing::warn!(deployment = %self.config.name, cooldown = ?config.cooldown, error = %e, "deployment cooling down");
                        health.open_until = Some(Instant::now() + config.cooldown);
                        health.consecutive_failures = 0;
                    }
                }
            }
        }
    }

    fn figures(&self) -> std::sync::MutexGuard<'_, Figures> {
        self.figures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes rate-limit capacity for a request of about `tokens` tokens.
    fn admit(&self, tokens: u32) -> Result<()> {
        let limited = |wait: Duration| Error::RateLimited {
            deployment: self.config.name.clone(),
            retry_after: Some(wait),
        };
        let clock = governor::clock::DefaultClock::default();
        if let Some(rpm) = &self.rpm {
            if let Err(not_until) = rpm.check() {
                return Err(limited(not_until.wait_time_from(governor::clock::Clock::now(&clock))));
            }
        }
        if let (Some(tpm), Some(n)) = (&self.tpm, NonZeroU32::new(tokens)) {
            match tpm.check_n(n) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => {
                    return Err(limited(
                        not_until.wait_time_from(governor::clock::Clock::now(&clock)),
                    ))
                }
                Err(_) => {
                    return Err(Error::Config(format!(
                        "{}: one request ({tokens} tokens) exceeds its tpm",
                        self.config.name
                    )))
                }
            }
        }
        Ok(())
    }
}

/// The queue: at most `concurrency` calls run; up to `capacity` wait, highest priority first.
struct Queue {
    state: Mutex<QueueState>,
    concurrency: usize,
    capacity: usize,
}

struct QueueState {
    running: usize,
    waiting: BinaryHeap<Waiter>,
    seq: u64,
}

struct Waiter {
    priority: u8,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.priority, self.seq) == (other.priority, other.seq)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    /// Higher priority first; among equals, earlier first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.priority.cmp(&other.priority).then(other.seq.cmp(&self.seq))
    }
}

/// A running slot; dropping it hands the slot to the next waiter.
struct Slot(Arc<Queue>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Hand the slot over directly; skip waiters that gave up.
        while let Some(waiter) = state.waiting.pop() {
            if waiter.wake.send(()).is_ok() {
                return;
            }
        }
        state.running -= 1;
    }
}

impl Queue {
    async fn acquire(self: &Arc<Queue>, priority: u8, deadline: Instant) -> Result<Slot> {
        let receiver = {
            let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if state.running < self.concurrency {
                state.running += 1;
                return Ok(Slot(Arc::clone(self)));
            }
            if state.waiting.len() >= self.capacity {
                return Err(Error::QueueFull { capacity: self.capacity });
            }
            let (wake, receiver) = oneshot::channel();
            state.seq += 1;
            let seq = state.seq;
            state.waiting.push(Waiter { priority, seq, wake });
            receiver
        };
        match tokio::time::timeout_at(deadline.into(), receiver).await {
            Ok(Ok(())) => Ok(Slot(Arc::clone(self))),
            // Dropping the receiver makes the slot skip this waiter.
            _ => Err(Error::Cancelled("the deadline passed while queued".into())),
        }
    }
}

/// Named deployments in model groups, behind one call path.
pub struct Router {
    config: BackendsConfig,
    cache: Option<Cache>,
    deployments: Vec<Arc<Deployment>>,
    queue: Arc<Queue>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.deployments.iter().map(|d| d.config.name.as_str()).collect();
        f.debug_struct("Router").field("deployments", &names).finish_non_exhaustive()
    }
}

fn quota(per_minute: Option<u32>) -> Option<DefaultDirectRateLimiter> {
    per_minute.and_then(NonZeroU32::new).map(|n| RateLimiter::direct(Quota::per_minute(n)))
}

impl Router {
    /// A router over `config`; keys come from `key(deployment)` (a secret store, the env).
    pub fn new(
        config: BackendsConfig,
        key: impl Fn(&DeploymentConfig) -> Option<String>,
    ) -> Result<Router> {
        let mut deployments = Vec::new();
        for d in &config.deployments {
            let api_key = key(d);
            let (backend, unusable): (Option<Arc<dyn Backend>>, _) =
                if d.requires_key && api_key.is_none() {
                    let mut looked = vec![format!("secret {:?}", d.name)];
                    looked.extend(d.api_key_env.iter().map(|v| format!("${v}")));
                    (None, Some(format!("no API key: looked in {}", looked.join(", "))))
                } else {
                    let transport = Transport::new(&d.name, &d.base_url, api_key.as_deref())?;
                    let model = d.model.clone();
                    let backend: Arc<dyn Backend> = match d.kind {
                        Kind::OpenAi => Arc::new(OpenAi::new(transport, model)),
                        Kind::Ollama => Arc::new(Ollama::new(transport, model)),
                        Kind::Tgi => Arc::new(Tgi::new(transport, model, d.template()?)?),
                        Kind::Tei => Arc::new(Tei::new(transport, model)?),
                        Kind::Ovms => Arc::new(Ovms::new(transport, model)?),
                    };
                    (Some(backend), None)
                };
            deployments.push(Arc::new(Deployment {
                config: d.clone(),
                backend,
                unusable,
                rpm: quota(d.rpm),
                tpm: quota(d.tpm),
                health: Mutex::new(Health { consecutive_failures: 0, open_until: None }),
                figures: Mutex::default(),
            }));
        }
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState { running: 0, waiting: BinaryHeap::new(), seq: 0 }),
            concurrency: config.concurrency,
            capacity: config.queue,
        });
        Ok(Router { config, cache: None, deployments, queue, next: AtomicUsize::new(0) })
    }

    /// Keeps deterministic answers in `cache` (namespace `llm`), shared by every process
    /// using the same store.
    pub fn with_cache(mut self, cache: Cache) -> Router {
        self.cache = Some(cache);
        self
    }

    /// `call`'s answer, from the response cache when `wanted` and present; kept there after.
    async fn cached<T, Fut>(
        &self,
        operation: &str,
        target: &str,
        request: &impl Serialize,
        wanted: bool,
        ttl: Option<Duration>,
        call: impl FnOnce() -> Fut,
    ) -> Result<Routed<T>>
    where
        T: Serialize + serde::de::DeserializeOwned,
        Fut: std::future::Future<Output = Result<Routed<T>>>,
    {
        let started = Instant::now();
        let Some((cache, key)) = self.cache_key(operation, target, request, wanted) else {
            return call().await;
        };
        if let Some(entry) = cache::get::<T>(cache, &key).await {
            tracing::debug!(operation, target, deployment = %entry.deployment, "response cache hit");
            self.count_cache_hit(&entry.deployment);
            return Ok(Routed {
                value: entry.value,
                deployment: entry.deployment,
                attempts: 0,
                request_id: ulid::Ulid::new().to_string(),
                overhead_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                cached: true,
            });
        }
        let routed = call().await?;
        cache::put(cache, &key, &routed.deployment, &routed.value, ttl).await;
        Ok(routed)
    }

    fn count_cache_hit(&self, deployment: &str) {
        if let Some(d) = self.deployments.iter().find(|d| d.config.name == deployment) {
            d.figures().cache_hits += 1;
        }
    }

    fn cache_key(
        &self,
        operation: &str,
        target: &str,
        request: &impl Serialize,
        wanted: bool,
    ) -> Option<(&Cache, CacheKey)> {
        let cache = self.cache.as_ref().filter(|_| wanted)?;
        let members = self.members(target);
        if members.is_empty() {
            return None;
        }
        let configs: Vec<&DeploymentConfig> = members.iter().map(|d| &d.config).collect();
        Some((cache, cache::key(operation, &configs, request)?))
    }

    /// Every deployment's state and this router's figures.
    pub fn status(&self) -> Vec<DeploymentStatus> {
        self.deployments.iter().map(|d| DeploymentStatus::new(d, &d.figures())).collect()
    }

    /// Moves this router's figures into the totals kept in `cache` (so each call is counted
    /// once however often this runs) and returns every deployment's state with the totals.
    pub async fn persist_stats(&self, cache: &Cache) -> Result<Vec<DeploymentStatus>> {
        let taken: BTreeMap<String, Figures> = self
            .deployments
            .iter()
            .map(|d| (d.config.name.clone(), std::mem::take(&mut *d.figures())))
            .collect();
        let totals = stats::accumulate(cache, taken).await?;
        Ok(self
            .deployments
            .iter()
            .map(|d| {
                let figures = totals.get(&d.config.name).cloned().unwrap_or_default();
                DeploymentStatus::new(d, &figures)
            })
            .collect())
    }

    /// The deployments `target` names: a group's members, or one deployment by name.
    fn members(&self, target: &str) -> Vec<Arc<Deployment>> {
        let group: Vec<_> =
            self.deployments.iter().filter(|d| d.config.group() == target).cloned().collect();
        if !group.is_empty() {
            return group;
        }
        self.deployments.iter().filter(|d| d.config.name == target).cloned().collect()
    }

    fn known_targets(&self) -> String {
        let mut names: Vec<&str> = self
            .deployments
            .iter()
            .flat_map(|d| [d.config.name.as_str(), d.config.group()])
            .collect();
        names.sort_unstable();
        names.dedup();
        if names.is_empty() {
            "none are configured: set OPENAI_BASE_URL, OLLAMA_HOST, … or add [backends] to the config file".into()
        } else {
            names.join(", ")
        }
    }

    /// Backoff before attempt `attempt` (1-based retry count): exponential from `backoff`,
    /// capped, with ±25 % jitter; at least what the server asked for.
    fn backoff(&self, attempt: u32, error: Option<&Error>) -> Duration {
        let base = self
            .config
            .backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.config.max_backoff);
        let jitter = (ulid::Ulid::new().random() % 501) as f64 / 1000.0 + 0.75;
        let wait = base.mul_f64(jitter);
        error.and_then(Error::retry_after).map_or(wait, |asked| asked.max(wait))
    }

    /// Runs `op` on `target`'s deployments with retries, cooldown and fallbacks.
    async fn route<T, F>(
        &self,
        target: &str,
        options: &CallOptions,
        tokens: u32,
        op: F,
    ) -> Result<Routed<T>>
    where
        F: for<'a> Fn(&'a dyn Backend, &'a CallContext) -> crate::backend::BoxFuture<'a, Result<T>>,
    {
        use tracing::Instrument;
        let started = Instant::now();
        let ctx = CallContext::new(options.timeout.unwrap_or(self.config.timeout));
        let span = tracing::info_span!("backend call", request_id = %ctx.request_id, target);
        self.route_in(target, options, tokens, op, &ctx, started).instrument(span).await
    }

    /// [`Router::route`] inside the call's span.
    async fn route_in<T, F>(
        &self,
        target: &str,
        options: &CallOptions,
        tokens: u32,
        op: F,
        ctx: &CallContext,
        started: Instant,
    ) -> Result<Routed<T>>
    where
        F: for<'a> Fn(&'a dyn Backend, &'a CallContext) -> crate::backend::BoxFuture<'a, Result<T>>,
    {
        let queued = Instant::now();
        let _slot = self.queue.acquire(options.priority, ctx.deadline).await?;
        let mut excluded = queued.elapsed();
        let mut attempts = 0;
        let mut visited = vec![target.to_string()];
        let mut group = target.to_string();
        loop {
            let members = self.members(&group);
            if members.is_empty() {
                return Err(Error::Config(format!(
                    "no deployment or group named {group:?} (known: {})",
                    self.known_targets()
                )));
            }
            let mut last: Option<Error> = None;
            for attempt in 0..self.config.attempts {
                if attempt > 0 {
                    let wait = self.backoff(attempt, last.as_ref());
                    if wait >= ctx.remaining() {
                        break;
                    }
                    tracing::debug!(request_id = %ctx.request_id, ?wait, attempt, "backing off");
                    tokio::time::sleep(wait).await;
                    excluded += wait;
                }
                let Some(deployment) = self.pick(&members, &mut last) else { break };
                let Some(backend) = deployment.backend.as_deref() else { continue };
                if let Err(e) = deployment.admit(tokens) {
                    last = Some(e);
                    continue;
                }
                attempts += 1;
                let result = op(backend, ctx).await;
                deployment.settle(result.as_ref().err(), &self.config);
                match result {
                    Ok(value) => {
                        let overhead =
                            started.elapsed().saturating_sub(excluded).saturating_sub(ctx.waited());
                        deployment.figures().record_overhead(overhead);
                        tracing::debug!(request_id = %ctx.request_id, deployment = %deployment.config.name, attempts, overhead_us = overhead.as_micros() as u64, "backend call done");
                        return Ok(Routed {
                            value,
                            deployment: deployment.config.name.clone(),
                            attempts,
                            request_id: ctx.request_id.to_string(),
                            overhead_us: u64::try_from(overhead.as_micros()).unwrap_or(u64::MAX),
                            cached: false,
                        });
                    }
                    Err(e) => {
                        tracing::info!(request_id = %ctx.request_id, deployment = %deployment.config.name, error = %e, "backend call failed");
                        let retry = e.is_retryable();
                        last = Some(e);
                        if !retry {
                            break;
                        }
                    }
                }
            }
            let error = last.unwrap_or_else(|| {
                let why: Vec<String> = members
                    .iter()
                    .filter_map(|d| d.unusable.as_ref().map(|u| format!("{}: {u}", d.config.name)))
                    .collect();
                Error::Config(format!("no usable deployment in {group:?}: {}", why.join("; ")))
            });
            let fallback = self.config.fallbacks.iter().find(|f| {
                f.from == group
                    && !visited.contains(&f.to)
                    && (f.on.is_empty() || f.on.iter().any(|k| k == error.kind()))
            });
            match fallback {
                Some(f) if !ctx.remaining().is_zero() => {
                    tracing::info!(request_id = %ctx.request_id, from = %f.from, to = %f.to, error = %error, "falling back");
                    group = f.to.clone();
                    visited.push(group.clone());
                }
                _ => return Err(error),
            }
        }
    }

    /// The next usable member, round-robin, skipping deployments cooling down or without a
    /// backend. `None` (with `last` set to why) when none is usable.
    fn pick(
        &self,
        members: &[Arc<Deployment>],
        last: &mut Option<Error>,
    ) -> Option<Arc<Deployment>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..members.len() {
            let d = &members[(start + i) % members.len()];
            if let Some(remaining) = d.cooling() {
                *last = Some(Error::CircuitOpen { deployment: d.config.name.clone(), remaining });
                continue;
            }
            if d.backend.is_none() {
                if last.is_none() {
                    *last = Some(Error::Auth {
                        deployment: d.config.name.clone(),
                        reason: d.unusable.clone().unwrap_or_default(),
                    });
                }
                continue;
            }
            return Some(Arc::clone(d));
        }
        None
    }

    /// A whole chat answer from `target` (a group or a deployment).
    pub async fn chat(
        &self,
        target: &str,
        request: &ChatRequest,
        options: &CallOptions,
    ) -> Result<Routed<ChatResponse>> {
        let tokens = estimate_tokens(request);
        let shared = Arc::new(request.clone());
        self.cached("chat", target, request, chat_cacheable(request, options), None, || {
            self.route(target, options, tokens, move |backend, ctx| {
                let request = Arc::clone(&shared);
                Box::pin(async move { backend.chat(&request, ctx).await })
            })
        })
        .await
    }

    /// A streamed chat answer. Retries and fallbacks apply until the stream starts; after that
    /// an error ends the stream. The deployment's health settles when the stream ends.
    pub async fn chat_stream(
        &self,
        target: &str,
        request: &ChatRequest,
        options: &CallOptions,
    ) -> Result<Routed<DeltaStream>> {
        let tokens = estimate_tokens(request);
        let cached = self.cache_key("chat", target, request, chat_cacheable(request, options));
        if let Some((cache, key)) = &cached {
            if let Some(entry) = cache::get::<ChatResponse>(cache, key).await {
                self.count_cache_hit(&entry.deployment);
                let answer = entry.value;
                let delta = Delta {
                    content: answer.content,
                    finish_reason: answer.finish_reason,
                    tool_calls: answer.tool_calls,
                    usage: answer.usage,
                };
                return Ok(Routed {
                    value: Box::pin(futures_util::stream::once(async move { Ok(delta) })),
                    deployment: entry.deployment,
                    attempts: 0,
                    request_id: ulid::Ulid::new().to_string(),
                    overhead_us: 0,
                    cached: true,
                });
            }
        }
        let shared = Arc::new(request.clone());
        let routed = self
            .route(target, options, tokens, move |backend, ctx| {
                let request = Arc::clone(&shared);
                Box::pin(async move { backend.chat_stream(&request, ctx).await })
            })
            .await?;
        let deployment =
            self.deployments.iter().find(|d| d.config.name == routed.deployment).cloned();
        let state = StreamState {
            deployment,
            config: self.config.clone(),
            cache: cached.map(|(cache, key)| (cache.clone(), key)),
            name: routed.deployment.clone(),
            answer: ChatResponse {
                model: String::new(),
                content: String::new(),
                finish_reason: None,
                tool_calls: None,
                usage: None,
            },
        };
        let settled = futures_util::stream::unfold(
            (routed.value, state),
            |(mut stream, mut state)| async move {
                let Some(item) = stream.next().await else {
                    state.finish().await;
                    return None;
                };
                match &item {
                    Err(e) => {
                        if let Some(d) = &state.deployment {
                            d.settle(Some(e), &state.config);
                        }
                        // A broken answer is never cached.
                        state.cache = None;
                    }
                    Ok(delta) => state.absorb(delta),
                }
                Some((item, (stream, state)))
            },
        );
        Ok(Routed { value: Box::pin(settled), ..routed })
    }

    /// Embeddings from `target`.
    pub async fn embed(
        &self,
        target: &str,
        request: &EmbedRequest,
        options: &CallOptions,
    ) -> Result<Routed<Embeddings>> {
        let tokens = request.input.iter().map(|t| (t.len() / 4) as u32 + 1).sum();
        let shared = Arc::new(request.clone());
        self.cached("embed", target, request, options.cache != Some(false), None, || {
            self.route(target, options, tokens, move |backend, ctx| {
                let request = Arc::clone(&shared);
                Box::pin(async move { backend.embed(&request, ctx).await })
            })
        })
        .await
    }

    /// `request.texts` ranked by relevance to its query, by `target`.
    pub async fn rerank(
        &self,
        target: &str,
        request: &RerankRequest,
        options: &CallOptions,
    ) -> Result<Routed<Vec<Ranked>>> {
        let chars: usize = request.texts.iter().map(String::len).sum::<usize>()
            + request.query.len() * request.texts.len();
        let shared = Arc::new(request.clone());
        self.cached("rerank", target, request, options.cache != Some(false), None, || {
            self.route(target, options, (chars / 4) as u32 + 1, move |backend, ctx| {
                let request = Arc::clone(&shared);
                Box::pin(async move { backend.rerank(&request, ctx).await })
            })
        })
        .await
    }

    /// The models `target` serves.
    pub async fn models(
        &self,
        target: &str,
        options: &CallOptions,
    ) -> Result<Routed<Vec<ModelInfo>>> {
        let wanted = options.cache != Some(false);
        self.cached("models", target, &(), wanted, Some(cache::MODELS_TTL), || {
            self.route(target, options, 0, |backend, ctx| backend.models(ctx))
        })
        .await
    }
}

/// A streamed answer on its way: the deployment to settle on failure, and the answer being
/// assembled for the response cache.
struct StreamState {
    deployment: Option<Arc<Deployment>>,
    config: BackendsConfig,
    cache: Option<(Cache, CacheKey)>,
    name: String,
    answer: ChatResponse,
}

impl StreamState {
    fn absorb(&mut self, delta: &Delta) {
        self.answer.content.push_str(&delta.content);
        if delta.finish_reason.is_some() {
            self.answer.finish_reason.clone_from(&delta.finish_reason);
        }
        if delta.usage.is_some() {
            self.answer.usage = delta.usage;
        }
        if delta.tool_calls.is_some() {
            // Tool-call fragments are not reassembled here: such answers are not cached.
            self.cache = None;
        }
    }

    /// The stream ended cleanly: keep the whole answer.
    async fn finish(&mut self) {
        if let Some((cache, key)) = self.cache.take() {
            if self.answer.finish_reason.is_some() {
                cache::put(&cache, &key, &self.name, &self.answer, None).await;
            }
        }
    }
}

/// Whether a chat's answer is reused: asked for, or deterministic (temperature 0) and not
/// refused.
fn chat_cacheable(request: &ChatRequest, options: &CallOptions) -> bool {
    options.cache.unwrap_or(request.temperature == Some(0.0))
}

/// About four characters per token, for the tpm limiter.
fn estimate_tokens(request: &ChatRequest) -> u32 {
    let chars: usize =
        request.messages.iter().map(|m| m.content.as_deref().map_or(0, str::len)).sum();
    (chars / 4) as u32 + request.max_tokens.unwrap_or(0) + 1
}
