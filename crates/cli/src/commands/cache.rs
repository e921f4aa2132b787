//! `ipfs-accelerate cache …`: the response cache kept in the store.

use std::io::Write;

use anyhow::Context;

use ipfs_accelerate_common::cache::{Cache, CacheConfig, CacheKey};
use ipfs_accelerate_common::config::Config;
use ipfs_accelerate_common::store::Store;
use serde_json::json;

use crate::cli::CacheCommand;
use crate::output::{fail, AlreadyReported, Output};

pub async fn run(command: CacheCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    let cache = Cache::new(Store::open_config(config).await?, CacheConfig::default());
    match command {
        CacheCommand::Stats { namespace } => {
            let stats = cache.stats(namespace.as_deref()).await?;
            out.emit(&stats, || {
                println!("hits        {}", stats.hits);
                println!("misses      {}", stats.misses);
                println!("stale hits  {}", stats.stale_hits);
                println!("evictions   {}", stats.evictions);
                println!("entries     {}", stats.entries);
                println!("bytes       {}", stats.bytes);
            })
        }
        CacheCommand::Ls { namespace } => {
            let entries = cache.list(namespace.as_deref()).await?;
            out.emit(&entries, || {
                for e in &entries {
                    let state = if e.expired { "expired" } else { "fresh" };
                    println!(
                        "{}\t{}\t{} bytes\tage {}s\tttl {}s\t{state}\t{}",
                        e.namespace, e.key, e.size, e.age_secs, e.ttl_secs, e.cid
                    );
                }
            })
        }
        CacheCommand::Get { namespace, key, stale_ok } => {
            let key = CacheKey::raw(&namespace, &key)?;
            let found =
                if stale_ok { cache.get_stale_ok(&key).await? } else { cache.get(&key).await? };
            cache.flush_stats().await?;
            let Some(hit) = found else {
                let message = format!("no fresh entry for {namespace} {}", key.key());
                return Err(if out.is_json() {
                    out.emit(&json!({ "hit": false }), || {})?;
                    AlreadyReported(message).into()
                } else {
                    anyhow::anyhow!(message)
                });
            };
            let body = json!({
                "hit": true,
                "cid": hit.cid.to_string(),
                "age_secs": hit.age.as_secs_f64(),
                "stale": hit.stale,
                "validators": hit.validators,
                "size": hit.value.len(),
                "value": std::str::from_utf8(&hit.value).ok(),
            });
            if out.is_json() {
                return out.emit(&body, || {});
            }
            if hit.stale {
                eprintln!("warning: stale entry ({:.0}s old)", hit.age.as_secs_f64());
            }
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&hit.value)
                .and_then(|()| stdout.flush())
                .context("writing the value to stdout")?;
            Ok(())
        }
        CacheCommand::Rm { namespace, key } => {
            let key = CacheKey::raw(&namespace, &key)?;
            if !cache.remove(&key).await? {
                fail!(NotSet, "no entry for {namespace} {}", key.key());
            }
            out.emit(&json!({ "removed": key.key(), "namespace": namespace }), || {
                println!("removed")
            })
        }
        CacheCommand::Clear { namespace } => {
            let removed = cache.clear(namespace.as_deref()).await?;
            out.emit(&json!({ "removed": removed }), || println!("removed {removed} entries"))
        }
    }
}
