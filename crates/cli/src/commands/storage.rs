//! `ipfs-accelerate storage …`: the content-addressed store from the command line.

use std::path::Path;

use anyhow::Context;
use ipfs_accelerate_common::cid::{parse, Cid};
use ipfs_accelerate_common::config::Config;
use ipfs_accelerate_common::store::{
    AddInput, AddOptions, Expect, Name, Outcome, PinMode, Range, Receipt, Store, StoreOptions,
    TieredStore,
};
use ipfs_accelerate_common::unixfs::{self, Profile};
use serde_json::json;

use crate::cli::{NamesCommand, PinCommand, StorageCommand};
use crate::output::{fail, AlreadyReported, Bar, Output};

pub async fn run(
    command: StorageCommand,
    config: &Config,
    quiet: bool,
    out: &Output,
) -> anyhow::Result<()> {
    // Opened per arm: `storage cid` must work without a store.
    let open = || Store::open_config(config);
    let tiered = || TieredStore::open_config(config);
    match command {
        StorageCommand::Add { path, profile, pin, name, quieter, remote_pin } => {
            let profile = profile_or_default(profile.as_deref(), config)?;
            let request = AddRequest { profile, pin, name, remote_pin, cid_only: quiet || quieter };
            add(&tiered().await?, &path, request, out).await
        }
        StorageCommand::Cid { path, profile } => {
            cid(&path, profile_or_default(profile.as_deref(), config)?, out).await
        }
        StorageCommand::Cat { cid, offset, length } => {
            let cid = parse(&cid)?;
            let mut stdout = tokio::io::stdout();
            let read = tiered().await?.cat_to(&cid, Range { offset, length }, &mut stdout).await?;
            // stdout carries the content: receipts go to stderr, whatever the output mode.
            report_receipts(&read.tiers, quiet);
            Ok(())
        }
        StorageCommand::Get { cid, output } => {
            let cid = parse(&cid)?;
            let got = tiered().await?.get_to_path(&cid, &output).await?;
            let bytes = got.value;
            let body = json!({ "cid": cid.to_string(), "path": output, "bytes": bytes, "tiers": got.tiers });
            out.emit(&body, || {
                report_receipts(&got.tiers, quiet);
                println!("wrote {bytes} bytes of {cid} to {}", output.display());
            })
        }
        StorageCommand::Fetch { cid } => {
            let cid = parse(&cid)?;
            let fetched = tiered().await?.fetch(&cid).await?;
            out.emit(&fetched, || {
                report_receipts(&fetched.tiers, quiet);
                let report = &fetched.value;
                println!(
                    "{cid}: fetched {} blocks ({} bytes), {} already local",
                    report.blocks_fetched, report.bytes_fetched, report.blocks_local
                );
            })
        }
        StorageCommand::Push { cid } => {
            let cid = parse(&cid)?;
            let pushed = tiered().await?.push(&cid).await?;
            emit_push(&pushed, quiet, out)
        }
        StorageCommand::Pin(PinCommand::Add { cid, remote: true, .. }) => {
            let cid = parse(&cid)?;
            let pushed = tiered().await?.pin_remote(&cid).await?;
            emit_push(&pushed, quiet, out)
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
        StorageCommand::Verify { rebuild_index: true, .. } => {
            let root = config.data_dir().value.join("store");
            let options = StoreOptions { budget: config.storage().budget.value };
            let (_, report) = Store::rebuild_index(&root, options).await?;
            out.emit(&report, || {
                if let Some(old) = &report.old_index {
                    println!("old index moved to {}", old.display());
                }
                for file in &report.quarantined {
                    println!("quarantined {} (its bytes do not match its name)", file.display());
                }
                for what in &report.unrestorable {
                    println!("lost        {what}");
                }
                for name in &report.recovered {
                    println!("recovered   {name} (a root nothing else protected)");
                }
                println!(
                    "indexed {} blocks ({} block files, {} small blocks from the journal, {} dag-pb); restored {} pins and {} names; {} files quarantined, {} journal bytes skipped",
                    report.blocks,
                    report.files,
                    report.journal_blocks,
                    report.dag_pb,
                    report.pins,
                    report.names,
                    report.quarantined.len(),
                    report.journal_skipped_bytes
                );
                if !report.recovered.is_empty() {
                    println!(
                        "`storage names ls recovered` lists the recovered roots; `storage names rm` one to let gc collect it"
                    );
                }
            })
        }
        StorageCommand::Verify { repair: false, repair_from: None, .. } => {
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
        StorageCommand::Verify { repair, repair_from, .. } => {
            let (report, tiers) = match repair_from {
                Some(dir) => {
                    let store = open().await?;
                    let source_root = dir.join("store");
                    if source_root == store.root() {
                        fail!(Usage, "--repair-from names this store itself");
                    }
                    let source = Store::open(&source_root, StoreOptions::default()).await?;
                    (store.repair(&source).await?, Vec::new())
                }
                None => {
                    debug_assert!(repair);
                    let repaired = tiered().await?.repair().await?;
                    (repaired.value, repaired.tiers)
                }
            };
            let mut body = serde_json::to_value(&report)?;
            body["tiers"] = serde_json::to_value(&tiers)?;
            out.emit(&body, || {
                report_receipts(&tiers, quiet);
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
            let status = tiered().await?.status().await?;
            out.emit(&status, || {
                let local = &status.local;
                let active = status.tiers.iter().filter(|t| t.state.active).count();
                println!("store        {}", local.root.display());
                println!(
                    "mode         {}",
                    if active == 0 {
                        "embedded (local only)".to_string()
                    } else {
                        format!("embedded in front of {active} remote tier(s)")
                    }
                );
                println!("blocks       {}", local.usage.blocks);
                println!("bytes        {}", local.usage.bytes);
                println!("reclaimable  {}", local.usage.reclaimable_bytes);
                println!(
                    "budget       {}",
                    local.budget.map_or("unbounded".to_string(), |b| b.to_string())
                );
                println!("pins         {}", local.usage.pins);
                println!("names        {}", local.usage.names);
                for tier in &status.tiers {
                    let state = &tier.state;
                    let location = state.location.as_deref().unwrap_or("-");
                    let verdict = match (state.active, tier.reachable) {
                        (false, _) => "off",
                        (true, Some(true)) => "active",
                        (true, _) => "active, UNREACHABLE",
                    };
                    println!("tier {:<7} {verdict}: {location} ({})", state.kind, state.reason);
                    if let Some(probe) = &tier.probe {
                        println!("             {probe}");
                    }
                }
                let pending = status
                    .remote_pins
                    .iter()
                    .filter(|p| p.state == ipfs_accelerate_common::store::RemotePinState::Pending);
                for pin in pending {
                    println!(
                        "pending remote pin {} on {}{}",
                        pin.cid,
                        pin.tier,
                        pin.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                    );
                }
            })
        }
    }
}

/// Human mode: what the remote tiers did, on stderr. Failures always; the rest unless quiet.
/// Tiers that are simply not configured say nothing.
fn report_receipts(receipts: &[Receipt], quiet: bool) {
    for receipt in receipts {
        match receipt.outcome {
            Outcome::Failed => eprintln!("warning: {}: {}", receipt.tier, receipt.detail),
            _ if quiet => {}
            Outcome::Used => eprintln!("{}: {}", receipt.tier, receipt.detail),
            Outcome::Skipped if receipt.tier.contains(" at ") => {
                eprintln!("{}: skipped: {}", receipt.tier, receipt.detail)
            }
            Outcome::Skipped | Outcome::NotNeeded => {}
        }
    }
}

fn emit_push(
    pushed: &ipfs_accelerate_common::store::Receipted<ipfs_accelerate_common::store::PushReport>,
    quiet: bool,
    out: &Output,
) -> anyhow::Result<()> {
    out.emit(pushed, || {
        report_receipts(&pushed.tiers, quiet);
        let active = pushed.tiers.iter().filter(|t| t.outcome != Outcome::Skipped).count();
        println!("{}: on {} of {active} remote tier(s)", pushed.value.root, pushed.value.tiers_ok);
    })?;
    let failed = pushed.tiers.iter().filter(|t| t.outcome == Outcome::Failed).count();
    if failed > 0 {
        return Err(AlreadyReported(format!("{failed} remote tier(s) failed")).into());
    }
    Ok(())
}

pub(crate) fn profile_or_default(name: Option<&str>, config: &Config) -> anyhow::Result<Profile> {
    match name {
        Some(name) => Ok(name.parse()?),
        None => Ok(config.storage().profile.value),
    }
}

struct AddRequest {
    profile: Profile,
    pin: bool,
    name: Option<Name>,
    remote_pin: bool,
    cid_only: bool,
}

async fn add(
    store: &TieredStore,
    path: &Path,
    request: AddRequest,
    out: &Output,
) -> anyhow::Result<()> {
    let AddRequest { profile, pin, name, remote_pin, cid_only } = request;
    let bar = (!cid_only && !out.is_json()).then(Bar::new);
    let progress = bar.as_ref().map(Bar::callback);
    let options = AddOptions { profile, pin, name: name.clone(), progress, cache_only: false };
    let input = if path == Path::new("-") {
        AddInput::Reader(Box::new(tokio::io::stdin()))
    } else {
        AddInput::Path(path.to_path_buf())
    };
    let added = store.add(input, options, remote_pin).await;
    if let Some(bar) = &bar {
        bar.finish();
    }
    let added = added.with_context(|| format!("adding {}", path.display()))?;
    let tiers = added.tiers;
    let added = added.value;
    let body = json!({
        "cid": added.root.to_string(),
        "size": added.size,
        "blocks": added.blocks,
        "bytes_new": added.bytes_new,
        "profile": profile.name(),
        "pinned": pin,
        "remote_pin": remote_pin,
        "name": name.as_ref().map(Name::to_string),
        "tiers": tiers,
    });
    out.emit(&body, || {
        report_receipts(&tiers, cid_only);
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
        PinCommand::Add { cid, direct, remote: _ } => {
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
