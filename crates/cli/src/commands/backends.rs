//! `ipfs-accelerate backends …`: the router over configured inference servers.

use std::io::Write;

use anyhow::Context;
use futures_util::StreamExt;
use ipfs_accelerate_backends::config::{self, DeploymentConfig};
use ipfs_accelerate_backends::router::{CallOptions, DeploymentStatus};
use ipfs_accelerate_backends::{ChatRequest, EmbedRequest, Message, RerankRequest, Router};
use ipfs_accelerate_common::cache::{Cache, CacheConfig};
use ipfs_accelerate_common::config::Config;
use ipfs_accelerate_common::secrets::{MasterKey, SecretStore};
use ipfs_accelerate_common::store::Store;
use ipfs_accelerate_common::Error;
use ipfs_accelerate_install_depends::doctor::{Doctor, Level};
use serde_json::json;

use crate::cli::BackendsCommand;
use crate::output::Output;

/// Keys: a secret named like the deployment, then its environment variables. No master key
/// yet means no secrets; a master key or secrets file that does not open is an error, never a
/// silent fall-through to other keys.
fn key_source(config: &Config) -> anyhow::Result<impl Fn(&DeploymentConfig) -> Option<String>> {
    let secrets = match MasterKey::resolve(config, false) {
        Err(Error::NoMasterKey { .. }) => None,
        Err(e) => return Err(e).context("opening the secrets for backend keys"),
        Ok(key) => Some(
            SecretStore::open(config.data_dir().value.join("secrets"), key)
                .context("opening the secrets for backend keys")?,
        ),
    };
    Ok(move |deployment: &DeploymentConfig| {
        match secrets.as_ref().map(|s| s.get(&deployment.name)) {
            Some(Ok(Some(secret))) => return Some(secret.expose().to_string()),
            Some(Err(e)) => {
                tracing::warn!(deployment = %deployment.name, error = %e, "reading the secret failed")
            }
            _ => {}
        }
        deployment
            .api_key_env
            .iter()
            .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
    })
}

async fn router(config: &Config) -> anyhow::Result<(Router, Cache)> {
    let backends = config::load(config, |name| std::env::var(name).ok())?;
    let cache = Cache::new(Store::open_config(config).await?, CacheConfig::default());
    let router = Router::new(backends, key_source(config)?)?.with_cache(cache.clone());
    Ok((router, cache))
}

/// `doctor`'s backends section: each configured deployment gets a real round trip (its model
/// list, 5 s budget, never cached); one that cannot be used or does not answer is a failure.
pub async fn doctor_checks(config: &Config, doctor: &mut Doctor) {
    match config::load(config, |name| std::env::var(name).ok()) {
        Err(e) => return doctor.push("backends", "config", Level::Fail, e.to_string()),
        Ok(backends) if backends.deployments.is_empty() => {
            let hint = "none configured (OPENAI_BASE_URL, OLLAMA_HOST, … or [backends])";
            return doctor.push("backends", "deployments", Level::Info, hint);
        }
        Ok(_) => {}
    }
    let router = match router(config).await {
        Ok((router, _)) => router,
        Err(e) => return doctor.push("backends", "config", Level::Fail, format!("{e:#}")),
    };
    let status = router.status();
    let options = CallOptions {
        timeout: Some(std::time::Duration::from_secs(5)),
        cache: Some(false),
        ..CallOptions::default()
    };
    let (router, options) = (&router, &options);
    let probes = status.iter().map(|d| async move {
        if let Some(why) = &d.unusable {
            return (d, Level::Fail, why.clone());
        }
        let started = std::time::Instant::now();
        match router.models(&d.name, options).await {
            Ok(routed) => {
                let models: Vec<&str> = routed.value.iter().map(|m| m.id.as_str()).collect();
                let ms = started.elapsed().as_millis();
                let detail = format!(
                    "{} {} answered in {ms} ms; models: {}",
                    d.kind.name(),
                    d.base_url,
                    models.join(", ")
                );
                (d, Level::Ok, detail)
            }
            Err(e) => (d, Level::Fail, e.to_string()),
        }
    });
    for (d, level, detail) in futures_util::future::join_all(probes).await {
        doctor.push("backends", d.name.clone(), level, detail);
    }
}

/// `--cache` / `--no-cache` as the router's per-call choice.
fn cache_choice(cache: bool, no_cache: bool) -> Option<bool> {
    match (cache, no_cache) {
        (_, true) => Some(false),
        (true, _) => Some(true),
        _ => None,
    }
}

pub async fn run(command: BackendsCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    let (router, cache) = router(config).await?;
    // `list` and `stats` read the totals themselves and make no calls to count.
    let calls = !matches!(command, BackendsCommand::List | BackendsCommand::Stats);
    let result = execute(command, &router, &cache, out).await;
    // Figures are kept even when the call failed: failures are what `stats` is for.
    if calls {
        if let Err(e) = router.persist_stats(&cache).await {
            tracing::warn!(error = %e, "backend figures not saved");
        }
    }
    result
}

fn print_status(status: &[DeploymentStatus]) {
    if status.is_empty() {
        println!("no deployments: set OPENAI_BASE_URL, OLLAMA_HOST, VLLM_BASE_URL, TGI_ENDPOINT, TEI_ENDPOINT or OVMS_ENDPOINT, or add [backends] to the config file");
    }
    for d in status {
        let state = match (&d.unusable, d.cooling_down) {
            (Some(why), _) => format!("unusable: {why}"),
            (None, true) => "cooling down".to_string(),
            (None, false) => "ready".to_string(),
        };
        println!(
            "{}\tgroup {}\t{}\t{}\t({})\t{state}",
            d.name,
            d.group,
            d.kind.name(),
            d.base_url,
            d.source
        );
    }
}

fn print_stats(status: &[DeploymentStatus]) {
    println!(
        "{:<16} {:>7} {:>8} {:>10} {:>9} {:>9}  last error",
        "deployment", "calls", "failed", "cache hits", "p50 µs", "p99 µs"
    );
    let micros = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for d in status {
        println!(
            "{:<16} {:>7} {:>8} {:>10} {:>9} {:>9}  {}",
            d.name,
            d.calls,
            d.failures,
            d.cache_hits,
            micros(d.overhead_p50_us),
            micros(d.overhead_p99_us),
            d.last_error.as_deref().unwrap_or("-")
        );
    }
}

async fn execute(
    command: BackendsCommand,
    router: &Router,
    cache: &Cache,
    out: &Output,
) -> anyhow::Result<()> {
    let options = CallOptions::default();
    match command {
        BackendsCommand::List => {
            let status = router.persist_stats(cache).await?;
            out.emit(&status, || print_status(&status))
        }
        BackendsCommand::Stats => {
            let status = router.persist_stats(cache).await?;
            out.emit(&status, || print_stats(&status))
        }
        BackendsCommand::Test { name } => {
            let started = std::time::Instant::now();
            let fresh = CallOptions { cache: Some(false), ..CallOptions::default() };
            let routed = router.models(&name, &fresh).await?;
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            let models: Vec<&str> = routed.value.iter().map(|m| m.id.as_str()).collect();
            out.emit(&json!({ "deployment": routed.deployment, "ok": true, "models": models, "elapsed_ms": elapsed_ms, "request_id": routed.request_id }), || {
                println!("{}: ok in {elapsed_ms:.0} ms; models: {}", routed.deployment, models.join(", "))
            })
        }
        BackendsCommand::Chat {
            target,
            prompt,
            system,
            stream,
            max_tokens,
            temperature,
            model,
            cache,
            no_cache,
        } => {
            let options = CallOptions { cache: cache_choice(cache, no_cache), ..options };
            let mut messages = Vec::new();
            if let Some(system) = system {
                messages.push(Message::new("system", system));
            }
            messages.push(Message::new("user", prompt));
            let request =
                ChatRequest { model, messages, max_tokens, temperature, ..ChatRequest::default() };
            if !stream {
                let routed = router.chat(&target, &request, &options).await?;
                return out.emit(&routed, || println!("{}", routed.value.content));
            }
            let routed = router.chat_stream(&target, &request, &options).await?;
            let mut deltas = routed.value;
            let mut text = String::new();
            let mut finish = None;
            let mut stdout = std::io::stdout().lock();
            while let Some(delta) = deltas.next().await {
                let delta = delta?;
                if !out.is_json() {
                    stdout
                        .write_all(delta.content.as_bytes())
                        .and_then(|()| stdout.flush())
                        .context("writing to stdout")?;
                }
                text.push_str(&delta.content);
                finish = delta.finish_reason.or(finish);
            }
            drop(stdout);
            out.emit(
                &json!({ "deployment": routed.deployment, "content": text, "finish_reason": finish, "request_id": routed.request_id }),
                || println!(),
            )
        }
        BackendsCommand::Embed { target, texts, no_cache } => {
            let options = CallOptions { cache: cache_choice(false, no_cache), ..options };
            let request = EmbedRequest { model: None, input: texts };
            let routed = router.embed(&target, &request, &options).await?;
            out.emit(&routed, || {
                for vector in &routed.value.vectors {
                    println!("{}", serde_json::to_string(vector).unwrap_or_default());
                }
            })
        }
        BackendsCommand::Rerank { target, query, texts, no_cache } => {
            let options = CallOptions { cache: cache_choice(false, no_cache), ..options };
            let request = RerankRequest { model: None, query, texts };
            let routed = router.rerank(&target, &request, &options).await?;
            out.emit(&routed, || {
                for ranked in &routed.value {
                    let text = request.texts.get(ranked.index).map_or("", String::as_str);
                    println!("{}\t{:.4}\t{text}", ranked.index, ranked.score);
                }
            })
        }
        BackendsCommand::Models { target, no_cache } => {
            let options = CallOptions { cache: cache_choice(false, no_cache), ..options };
            let routed = router.models(&target, &options).await?;
            out.emit(&routed.value, || {
                for model in &routed.value {
                    println!("{}", model.id);
                }
            })
        }
    }
}
