//! `ipfs-accelerate github …`: credentials, raw API reads through the cache, cache figures.

use anyhow::Context;
use ipfs_accelerate_common::cache::{Cache, CacheConfig};
use ipfs_accelerate_common::config::Config;
use ipfs_accelerate_common::secrets::{MasterKey, SecretStore};
use ipfs_accelerate_common::store::Store;
use ipfs_accelerate_common::Error as StoreError;
use ipfs_accelerate_github::client::{ClientConfig, Freshness, GitHub};
use ipfs_accelerate_github::errors::{Aggregator, ErrorReport, Redactor};
use ipfs_accelerate_github::identity::Identity;
use ipfs_accelerate_github::registry::{self, Registry};
use ipfs_accelerate_github::{Credentials, Lookup};
use serde_json::json;

use crate::cli::{
    GithubArgs, GithubAuthCommand, GithubCacheCommand, GithubCommand, GithubErrorsCommand,
    GithubPeersCommand,
};
use crate::output::{fail, Output};

/// The secret store if a master key exists; a key or store that does not open is an error.
fn secrets(config: &Config, create: bool) -> anyhow::Result<Option<SecretStore>> {
    match MasterKey::resolve(config, create) {
        Err(StoreError::NoMasterKey { .. }) => Ok(None),
        Err(e) => Err(e).context("opening the secret store for GitHub credentials"),
        Ok(key) => Ok(Some(
            SecretStore::open(config.data_dir().value.join("secrets"), key)
                .context("opening the secret store for GitHub credentials")?,
        )),
    }
}

pub async fn run(args: GithubArgs, config: &Config, out: &Output) -> anyhow::Result<()> {
    let settings = config.section::<ClientConfig>(|v| std::env::var(v).ok())?;
    let store = secrets(config, false)?;
    let env = |v: &str| std::env::var(v).ok();
    let lookup = Lookup {
        flag: args.token.clone(),
        config: settings.token.clone(),
        secrets: store.as_ref(),
        credential: settings.credential.clone(),
        env: &env,
        gh: true,
    };
    let cache = Cache::new(Store::open_config(config).await?, CacheConfig::default());
    match args.command {
        GithubCommand::Auth(command) => auth(command, &settings, &lookup, config, cache, out).await,
        GithubCommand::Cache(command) => {
            let (token, _) = lookup.resolve().await?;
            let github = GitHub::new(settings, token.as_ref(), cache.clone())?;
            match command {
                GithubCacheCommand::Stats => {
                    let totals = github.persist_stats().await?;
                    let entries =
                        cache.stats(Some(ipfs_accelerate_github::client::NAMESPACE)).await?;
                    let body = json!({ "totals": totals, "entries": entries });
                    out.emit(&body, || {
                        println!(
                            "hits {}  revalidated (304) {}  misses {}  stale {}",
                            totals.hits, totals.revalidated, totals.misses, totals.stale
                        );
                        println!("quota spent {}  writes {}", totals.quota_spent, totals.writes);
                        if let (Some(remaining), Some(limit)) = (totals.remaining, totals.limit) {
                            println!("rate limit: {remaining}/{limit} left (as last seen)");
                        }
                        println!("entries {}  ({} bytes)", entries.entries, entries.bytes);
                    })
                }
                GithubCacheCommand::Clear => {
                    let removed = github.clear_cache().await?;
                    out.emit(&json!({ "removed": removed }), || {
                        println!("removed {removed} cached answers")
                    })
                }
            }
        }
        GithubCommand::Peers { repo, command } => {
            let repo = repo.or_else(|| settings.repository.clone()).context(
                "no repository: pass --repo, set GITHUB_REPOSITORY or [github] repository",
            )?;
            let (token, _) = lookup.resolve().await?;
            let github = GitHub::new(settings.clone(), token.as_ref(), cache)?;
            let registry = Registry::new(&github, &repo, settings.registry.clone())?;
            let result = peers(command, &registry, &settings, config, store.as_ref(), out).await;
            if let Err(e) = github.persist_stats().await {
                tracing::warn!(error = %e, "GitHub cache figures not saved");
            }
            result
        }
        GithubCommand::Errors { repo, command } => {
            let repo = repo.or_else(|| settings.repository.clone());
            let (token, _) = lookup.resolve().await?;
            let redactor = redactor(store.as_ref(), token.as_ref())?;
            let aggregator = Aggregator::new(cache.clone(), redactor, settings.errors.clone());
            let github = GitHub::new(settings.clone(), token.as_ref(), cache)?;
            let result = errors(command, &aggregator, &github, repo.as_deref(), out).await;
            if let Err(e) = github.persist_stats().await {
                tracing::warn!(error = %e, "GitHub cache figures not saved");
            }
            result
        }
        GithubCommand::Api { path, paginate, refresh } => {
            let (token, _) = lookup.resolve().await?;
            let github = GitHub::new(settings, token.as_ref(), cache)?;
            let freshness = if refresh { Freshness::Revalidate } else { Freshness::Cached };
            let result = if paginate {
                github
                    .get_all(&path, freshness)
                    .await
                    .map(|items| (serde_json::Value::Array(items), None))
            } else {
                github.get(&path, freshness).await.map(|page| (page.body, Some(page.source)))
            };
            if let Err(e) = github.persist_stats().await {
                tracing::warn!(error = %e, "GitHub cache figures not saved");
            }
            let (body, source) = result?;
            if let Some(source) = source {
                eprintln!("{}", serde_json::to_string(&source)?.trim_matches('"'));
            }
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(())
        }
    }
}

async fn auth(
    command: GithubAuthCommand,
    settings: &ClientConfig,
    lookup: &Lookup<'_>,
    config: &Config,
    cache: Cache,
    out: &Output,
) -> anyhow::Result<()> {
    match command {
        GithubAuthCommand::Status => {
            let (token, looked) = lookup.resolve().await?;
            let stored = match lookup.secrets {
                Some(store) => Credentials::new(store).list()?,
                None => Vec::new(),
            };
            let user = match &token {
                Some(token) => {
                    let github = GitHub::new(settings.clone(), Some(token), cache)?;
                    Some(github.whoami().await.map_err(|e| e.to_string()))
                }
                None => None,
            };
            let body = json!({
                "api_url": settings.api_url,
                "looked": looked,
                "in_use": token.as_ref().map(|t| t.source.to_string()),
                "user": user.as_ref().map(|u| match u {
                    Ok((login, scopes)) => json!({ "login": login, "scopes": scopes }),
                    Err(e) => json!({ "error": e }),
                }),
                "credentials": stored,
            });
            out.emit(&body, || {
                println!("API: {}", settings.api_url);
                for place in &looked {
                    println!("  {:<40} {}", place.source.to_string(), place.found);
                }
                match (&token, &user) {
                    (None, _) => println!("no token: requests are anonymous (60 an hour)"),
                    (Some(t), Some(Ok((login, scopes)))) => println!(
                        "logged in as {login} via {} (scopes: {})",
                        t.source,
                        if scopes.is_empty() {
                            "none reported".to_string()
                        } else {
                            scopes.join(", ")
                        }
                    ),
                    (Some(t), Some(Err(e))) => {
                        println!("the token from {} does not work: {e}", t.source)
                    }
                    (Some(_), None) => {}
                }
                for c in &stored {
                    let expiry = match (c.expires_at, c.expired) {
                        (_, true) => "expired".to_string(),
                        (Some(t), false) => format!("expires at {t} (unix)"),
                        (None, false) => "no expiry".to_string(),
                    };
                    println!(
                        "stored credential {:?}: scopes {}, {expiry}",
                        c.name,
                        if c.scopes.is_empty() { "-".to_string() } else { c.scopes.join(",") }
                    );
                }
            })
        }
        GithubAuthCommand::Login { with_token: _, name, expires_in } => {
            let token = super::secrets::read_value(&name, true)?;
            let probe = ipfs_accelerate_github::Token::new(
                token,
                ipfs_accelerate_github::TokenSource::Flag,
            );
            let github = GitHub::new(settings.clone(), Some(&probe), cache)?;
            let (login, scopes) =
                github.whoami().await.context("GitHub did not accept the token")?;
            let store = match secrets(config, true)? {
                Some(store) => store,
                None => fail!(
                    NotSet,
                    "no secret store could be opened (set a master key: `secrets status`)"
                ),
            };
            let expires_at = expires_in.map(|d| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |n| n.as_secs());
                (now + d.as_secs()) as i64
            });
            let token = probe.secret();
            Credentials::new(&store).save(&name, token, scopes.clone(), expires_at)?;
            out.emit(&json!({ "name": name, "login": login, "scopes": scopes, "expires_at": expires_at }), || {
                println!("stored credential {name:?} for {login}")
            })
        }
        GithubAuthCommand::Logout { name } => {
            let removed = match lookup.secrets {
                Some(store) => Credentials::new(store).remove(&name)?,
                None => false,
            };
            if !removed {
                fail!(NotSet, "no stored credential named {name:?}");
            }
            out.emit(&json!({ "removed": name }), || println!("removed credential {name:?}"))
        }
    }
}

async fn peers(
    command: GithubPeersCommand,
    registry: &Registry<'_>,
    settings: &ClientConfig,
    config: &Config,
    store: Option<&SecretStore>,
    out: &Output,
) -> anyhow::Result<()> {
    match command {
        GithubPeersCommand::Announce { addresses, capabilities, every } => {
            // The worker's key lives in the secret store; the first announcement creates both.
            let created;
            let store = match store {
                Some(store) => store,
                None => {
                    created = secrets(config, true)?.context("no secret store could be opened")?;
                    &created
                }
            };
            let identity = Identity::load_or_create(store)?;
            if let Some(every) = every {
                eprintln!(
                    "announcing {} every {}; Ctrl-C stops",
                    identity.peer_id(),
                    humantime::format_duration(every)
                );
                return Ok(registry.heartbeat(&identity, &addresses, &capabilities, every).await?);
            }
            let announced = registry.announce(&identity, &addresses, &capabilities).await?;
            for address in &announced.withheld {
                eprintln!("warning: withheld public address {address} (set [github.registry] publish_public_addresses = true to publish it)");
            }
            out.emit(&announced, || {
                let verb = if announced.created { "announced" } else { "refreshed" };
                println!(
                    "{verb} {} in issue #{} (comment {})",
                    announced.record.peer_id, announced.issue, announced.comment_id
                )
            })
        }
        GithubPeersCommand::List { bootstrap } => {
            let discovery = registry.discover().await?;
            for skip in &discovery.skipped {
                eprintln!(
                    "warning: skipped comment {} by {}: {}",
                    skip.comment_id, skip.author, skip.reason
                );
            }
            if bootstrap {
                let env_peers = std::env::var("IPFS_ACCELERATE_PEERS").ok();
                let merged =
                    registry::bootstrap(&discovery.peers, env_peers.as_deref(), &settings.peers);
                return out.emit(&merged, || {
                    for b in &merged {
                        println!("{}\t{}", b.address, b.source);
                    }
                });
            }
            out.emit(&discovery, || {
                for p in &discovery.peers {
                    println!(
                        "{}\t{} s ago\t{}\t{}\t(by {})",
                        p.record.peer_id,
                        p.age_secs,
                        p.record.addresses.join(","),
                        p.record.capabilities.join(","),
                        p.author
                    );
                }
            })
        }
        GithubPeersCommand::Prune => {
            let removed = registry.prune().await?;
            out.emit(&json!({ "removed": removed }), || {
                println!("removed {} comment(s)", removed.len())
            })
        }
    }
}

/// Everything an error report must not carry: every value in the secret store, the token in
/// use, this user's home directory (plus the built-in token, path and address patterns).
fn redactor(
    store: Option<&SecretStore>,
    token: Option<&ipfs_accelerate_github::Token>,
) -> anyhow::Result<Redactor> {
    let mut secrets = Vec::new();
    if let Some(store) = store {
        for info in store.list()? {
            if let Some(secret) = store.get(&info.name)? {
                secrets.push(secret.expose().to_string());
            }
        }
    }
    if let Some(token) = token {
        secrets.push(token.secret().expose().to_string());
    }
    Ok(Redactor::new(secrets, std::env::var("HOME").ok()))
}

/// Files what crossed its threshold, or says why nothing can be filed.
async fn file(
    aggregator: &Aggregator,
    github: &GitHub,
    repo: Option<&str>,
) -> anyhow::Result<Vec<ipfs_accelerate_github::errors::Filed>> {
    match repo {
        Some(repo) => Ok(aggregator.flush(github, repo).await?),
        None => {
            eprintln!("warning: no repository (--repo, GITHUB_REPOSITORY, [github] repository): counted locally only");
            Ok(Vec::new())
        }
    }
}

async fn errors(
    command: GithubErrorsCommand,
    aggregator: &Aggregator,
    github: &GitHub,
    repo: Option<&str>,
    out: &Output,
) -> anyhow::Result<()> {
    match command {
        GithubErrorsCommand::Report { path } => {
            let text = if path.as_os_str() == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .context("reading the report from stdin")?;
                text
            } else {
                // The user's report file: read once, never kept as is (only redacted).
                #[allow(clippy::disallowed_methods)]
                // storage-audit: allow(reads the user's error report; only its redacted form is stored)
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                text
            };
            let report = ErrorReport::parse(&text)?;
            let entry = aggregator.capture(&report).await?;
            let filed = file(aggregator, github, repo).await?;
            out.emit(&json!({ "entry": entry, "filed": filed }), || {
                println!("{}: seen {} time(s)", entry.fingerprint, entry.count);
                for f in &filed {
                    println!(
                        "{} issue #{} for {} ({} in all)",
                        f.action, f.issue, f.fingerprint, f.count
                    );
                }
            })
        }
        GithubErrorsCommand::Flush => {
            let filed = file(aggregator, github, repo).await?;
            out.emit(&filed, || {
                for f in &filed {
                    println!(
                        "{} issue #{} for {} ({} in all)",
                        f.action, f.issue, f.fingerprint, f.count
                    );
                }
            })
        }
        GithubErrorsCommand::Ls => {
            let entries = aggregator.entries().await?;
            out.emit(&entries, || {
                for e in &entries {
                    let issue = e.issue.map_or("-".to_string(), |n| format!("#{n}"));
                    println!(
                        "{}\t{}\t{}\t{}: {}",
                        e.fingerprint, e.count, issue, e.report.kind, e.report.message
                    );
                }
            })
        }
    }
}
