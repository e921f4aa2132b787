//! `ipfs-accelerate storage …`: the content-addressed store from the command line.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ipfs_accelerate_common::cid::{parse, Cid};
use ipfs_accelerate_common::config::Config;
use ipfs_accelerate_common::store::{
    AddOptions, Expect, Name, PinMode, Range, Store, StoreOptions,
};
use ipfs_accelerate_common::unixfs::{self, Profile};
use serde_json::json;

use crate::cli::{NamesCommand, PinCommand, StorageCommand};
use crate::output::{AlreadyReported, Output};

/// Inputs at least this large get a progress bar (on a terminal, without -Q/--json).
const PROGRESS_MIN_BYTES: u64 = 8 << 20;

pub async fn run(
    command: StorageCommand,
    config: &Config,
    quiet: bool,
    out: &Output,
) -> anyhow::Result<()> {
    // Opened per arm: `storage cid` must work without a store.
    let open = || Store::open_config(config);
    match command {
        StorageCommand::Add { path, profile, pin, name, quieter } => {
            let profile = profile_or_default(profile.as_deref(), config)?;
            add(&open().await?, &path, profile, pin, name, quiet || quieter, out).await
        }
        StorageCommand::Cid { path, profile } => {
            cid(&path, profile_or_default(profile.as_deref(), config)?, out).await
        }
        StorageCommand::Cat { cid, offset, length } => {
            let cid = parse(&cid)?;
            let mut stdout = tokio::io::stdout();
            open().await?.cat_to(&cid, Range { offset, length }, &mut stdout).await?;
            Ok(())
        }
        StorageCommand::Get { cid, output } => {
            let cid = parse(&cid)?;
            let bytes = open().await?.get_to_path(&cid, Range::default(), &output).await?;
            out.emit(&json!({ "cid": cid.to_string(), "path": output, "bytes": bytes }), || {
                println!("wrote {bytes} bytes of {cid} to {}", output.display());
            })
        }
        StorageCommand::Pin(command) => pin(&open().await?, command, out).await,
        StorageCommand::Names(command) => names(&open().await?, command, out).await,
        StorageCommand::Gc => {
            let report = open().await?.gc().await?;
            out.emit(&report, || {
                println!(
                    "removed {} blocks, freed {} bytes ({} stray files, {} dead sessions)",
                    report.blocks_removed,
                    report.bytes_freed,
                    report.stray_files_removed,
                    report.dead_sessions_reaped
                );
            })
        }
        StorageCommand::Stat { cid } => {
            let cid = parse(&cid)?;
            let stat = open().await?.stat(&cid).await?;
            if stat.dag.blocks_present == 0 {
                return Err(ipfs_accelerate_common::Error::NotFound { cid: cid.to_string() }.into());
            }
            out.emit(&stat, || {
                println!("cid      {}", stat.cid);
                match stat.size {
                    Some(size) => println!("size     {size}"),
                    None => println!("size     (not a UnixFS file)"),
                }
                println!(
                    "blocks   {} present, {} missing ({} bytes)",
                    stat.dag.blocks_present, stat.dag.blocks_missing, stat.dag.bytes_present
                );
                println!(
                    "pinned   {}",
                    stat.dag.pinned.map_or("no".to_string(), |m| format!("{m:?}").to_lowercase())
                );
                println!(
                    "names    {}",
                    if stat.dag.names.is_empty() {
                        "-".to_string()
                    } else {
                        stat.dag.names.join(", ")
                    }
                );
            })
        }
        StorageCommand::Ls => ls(&open().await?, out).await,
        StorageCommand::Verify { repair_from: None } => {
            let report = open().await?.verify().await?;
            out.emit(&report, || {
                for cid in &report.corrupt {
                    println!("corrupt  {cid}");
                }
                for cid in &report.missing {
                    println!("missing  {cid}");
                }
                println!(
                    "checked {} blocks: {} corrupt, {} missing",
                    report.checked,
                    report.corrupt.len(),
                    report.missing.len()
                );
            })?;
            if !report.is_ok() {
                let (corrupt, missing) = (report.corrupt.len(), report.missing.len());
                return Err(AlreadyReported(format!(
                    "verify found {corrupt} corrupt and {missing} missing blocks"
                ))
                .into());
            }
            Ok(())
        }
        StorageCommand::Verify { repair_from: Some(dir) } => {
            let store = open().await?;
            let source_root = dir.join("store");
            if source_root == store.root() {
                anyhow::bail!("--repair-from names this store itself");
            }
            let source = Store::open(&source_root, StoreOptions::default()).await?;
            let report = store.repair(&source).await?;
            out.emit(&report, || {
                for cid in &report.repaired {
                    println!("repaired    {cid}");
                }
                for (cid, why) in &report.unrepaired {
                    println!("unrepaired  {cid}: {why}");
                }
                println!(
                    "checked {} blocks: {} repaired, {} unrepaired",
                    report.found.checked,
                    report.repaired.len(),
                    report.unrepaired.len()
                );
            })?;
            if !report.unrepaired.is_empty() {
                return Err(AlreadyReported(format!(
                    "{} blocks could not be repaired",
                    report.unrepaired.len()
                ))
                .into());
            }
            Ok(())
        }
        StorageCommand::Export { cid, output } => {
            let cid = parse(&cid)?;
            let blocks = open().await?.export_car_to_path(&cid, &output).await?;
            out.emit(&json!({ "root": cid.to_string(), "path": output, "blocks": blocks }), || {
                println!("exported {blocks} blocks of {cid} to {}", output.display());
            })
        }
        StorageCommand::Import { path, no_pin } => {
            let store = open().await?;
            let imported = if path == Path::new("-") {
                store.import_car(tokio::io::BufReader::new(tokio::io::stdin()), !no_pin).await?
            } else {
                store.import_car_path(&path, !no_pin).await?
            };
            out.emit(&imported, || {
                for root in &imported.roots {
                    println!("{root}");
                }
                eprintln!(
                    "imported {} blocks ({} bytes new){}",
                    imported.blocks,
                    imported.bytes_new,
                    if imported.pinned { ", roots pinned" } else { "" }
                );
            })
        }
        StorageCommand::Status => {
            let status = open().await?.status().await?;
            out.emit(&status, || {
                println!("store        {}", status.root.display());
                println!("mode         embedded (local only)");
                println!("blocks       {}", status.usage.blocks);
                println!("bytes        {}", status.usage.bytes);
                println!("reclaimable  {}", status.usage.reclaimable_bytes);
                println!(
                    "budget       {}",
                    status.budget.map_or("unbounded".to_string(), |b| b.to_string())
                );
                println!("pins         {}", status.usage.pins);
                println!("names        {}", status.usage.names);
            })
        }
    }
}

fn profile_or_default(name: Option<&str>, config: &Config) -> anyhow::Result<Profile> {
    match name {
        Some(name) => Ok(name.parse()?),
        None => Ok(config.storage().profile.value),
    }
}

async fn add(
    store: &Store,
    path: &Path,
    profile: Profile,
    pin: bool,
    name: Option<Name>,
    cid_only: bool,
    out: &Output,
) -> anyhow::Result<()> {
    let bar = (!cid_only && !out.is_json()).then(progress_bar);
    let progress = bar.clone().map(|bar| {
        Arc::new(move |done: u64, total: Option<u64>| bar.update(done, total))
            as ipfs_accelerate_common::store::Progress
    });
    let options = AddOptions { profile, pin, name: name.clone(), progress };
    let added = if path == Path::new("-") {
        store.add_reader(tokio::io::stdin(), options).await
    } else {
        store.add_path(path, options).await
    };
    if let Some(bar) = &bar {
        bar.finish();
    }
    let added = added.with_context(|| format!("adding {}", path.display()))?;
    let body = json!({
        "cid": added.root.to_string(),
        "size": added.size,
        "blocks": added.blocks,
        "bytes_new": added.bytes_new,
        "profile": profile.name(),
        "pinned": pin,
        "name": name.as_ref().map(Name::to_string),
    });
    out.emit(&body, || {
        if cid_only {
            println!("{}", added.root);
        } else {
            println!("added {} {}", added.root, path.display());
        }
    })
}

async fn cid(path: &Path, profile: Profile, out: &Output) -> anyhow::Result<()> {
    let path = path.to_path_buf();
    let imported = tokio::task::spawn_blocking(move || {
        if path == Path::new("-") {
            unixfs::import(std::io::stdin().lock(), profile, &mut |_| Ok(()))
        } else {
            unixfs::import_path(&path, profile)
        }
    })
    .await??;
    let body = json!({ "cid": imported.root.to_string(), "size": imported.size, "profile": profile.name() });
    out.emit(&body, || println!("{}", imported.root))
}

async fn pin(store: &Store, command: PinCommand, out: &Output) -> anyhow::Result<()> {
    match command {
        PinCommand::Add { cid, direct } => {
            let cid = parse(&cid)?;
            let mode = if direct { PinMode::Direct } else { PinMode::Recursive };
            store.pin(&cid, mode).await?;
            out.emit(&json!({ "pinned": cid.to_string(), "mode": mode }), || {
                println!("pinned {cid}")
            })
        }
        PinCommand::Rm { cid } => {
            let cid = parse(&cid)?;
            store.unpin(&cid).await?;
            out.emit(&json!({ "unpinned": cid.to_string() }), || println!("unpinned {cid}"))
        }
        PinCommand::Ls => {
            let pins = store.pins().await?;
            out.emit(&pins, || {
                for pin in &pins {
                    println!("{} {}", pin.cid, format!("{:?}", pin.mode).to_lowercase());
                }
            })
        }
    }
}

async fn names(store: &Store, command: NamesCommand, out: &Output) -> anyhow::Result<()> {
    match command {
        NamesCommand::Set { name, cid, if_cid, if_absent } => {
            let cid = parse(&cid)?;
            let expect = expectation(if_cid.as_deref(), if_absent)?;
            let version = store.name_set(&name, &cid, expect).await?;
            out.emit(
                &json!({ "name": name.to_string(), "cid": cid.to_string(), "version": version }),
                || {
                    println!("{} -> {cid} (version {version})", name);
                },
            )
        }
        NamesCommand::Get { name } => {
            let entry = store.name_get(&name).await?;
            out.emit(&entry, || println!("{}", entry.cid))
        }
        NamesCommand::Rm { name, if_cid } => {
            let expect = expectation(if_cid.as_deref(), false)?;
            store.name_remove(&name, expect).await?;
            out.emit(&json!({ "removed": name.to_string() }), || println!("removed {}", name))
        }
        NamesCommand::Ls { namespace } => {
            let entries = store.name_list(namespace.as_deref()).await?;
            out.emit(&entries, || {
                for e in &entries {
                    println!("{}/{} {} (version {})", e.namespace, e.name, e.cid, e.version);
                }
            })
        }
        NamesCommand::History { name } => {
            let history = store.name_history(&name).await?;
            out.emit(&history, || {
                for h in &history {
                    println!("{} {} {}", h.version, h.at, h.cid.as_deref().unwrap_or("(removed)"));
                }
            })
        }
    }
}

fn expectation(if_cid: Option<&str>, if_absent: bool) -> anyhow::Result<Expect> {
    Ok(match (if_cid, if_absent) {
        (Some(cid), _) => Expect::Cid(parse(cid)?),
        (None, true) => Expect::Absent,
        (None, false) => Expect::Any,
    })
}

async fn ls(store: &Store, out: &Output) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for pin in store.pins().await? {
        rows.push((pin.cid.clone(), format!("pin:{}", format!("{:?}", pin.mode).to_lowercase())));
    }
    for entry in store.name_list(None).await? {
        rows.push((entry.cid.clone(), format!("name:{}/{}", entry.namespace, entry.name)));
    }
    let mut listed = Vec::new();
    for (cid, why) in rows {
        let parsed: Cid = parse(&cid)?;
        let stat = store.stat(&parsed).await?;
        listed.push(json!({ "cid": cid, "why": why, "size": stat.size, "bytes_present": stat.dag.bytes_present, "complete": stat.dag.blocks_missing == 0 }));
    }
    out.emit(&listed, || {
        for row in &listed {
            println!(
                "{} {} {}",
                row["cid"].as_str().unwrap_or_default(),
                row["size"],
                row["why"].as_str().unwrap_or_default()
            );
        }
    })
}

/// A progress bar that appears only once the input is known to be large, and only on a
/// terminal (indicatif hides itself otherwise).
#[derive(Clone)]
struct Bar(Arc<std::sync::OnceLock<indicatif::ProgressBar>>);

fn progress_bar() -> Bar {
    Bar(Arc::new(std::sync::OnceLock::new()))
}

impl Bar {
    fn update(&self, done: u64, total: Option<u64>) {
        if self.0.get().is_none()
            && total.is_none_or(|t| t < PROGRESS_MIN_BYTES)
            && done < PROGRESS_MIN_BYTES
        {
            return;
        }
        let bar = self.0.get_or_init(|| {
            let bar = match total {
                Some(total) => indicatif::ProgressBar::new(total),
                None => indicatif::ProgressBar::new_spinner(),
            };
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            let template = if total.is_some() {
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
            } else {
                "{spinner} {bytes} {bytes_per_sec}"
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar
        });
        bar.set_position(done);
    }

    fn finish(&self) {
        if let Some(bar) = self.0.get() {
            bar.finish_and_clear();
        }
    }
}
