//! `ipfs-accelerate models …`: the model registry from the command line.

use ipfs_accelerate_common::config::Config;
use ipfs_accelerate_common::store::Store;
use ipfs_accelerate_common::Classify;
use ipfs_accelerate_install_depends::human_bytes;
use ipfs_accelerate_worker::registry::{ImportOptions, Registry};
use ipfs_accelerate_worker::skill;
use ipfs_accelerate_worker::{hub, Model, SourceOptions};
use serde_json::json;

use crate::cli::ModelsCommand;
use crate::commands::storage::profile_or_default;
use crate::output::{AlreadyReported, Bar, Output};

pub async fn run(
    command: ModelsCommand,
    config: &Config,
    quiet: bool,
    out: &Output,
) -> anyhow::Result<()> {
    let registry = Registry::new(Store::open_config(config).await?);
    match command {
        ModelsCommand::Import { paths, name, repo, revision, profile } => {
            let bar = (!quiet && !out.is_json()).then(Bar::new);
            let options = ImportOptions {
                name,
                source: SourceOptions { repo, revision },
                profile: profile_or_default(profile.as_deref(), config)?,
                progress: bar.as_ref().map(Bar::callback),
            };
            let imported = registry.import_parts(&paths, options).await;
            if let Some(bar) = &bar {
                bar.finish();
            }
            report_imported(&imported?, quiet, out)
        }
        ModelsCommand::Pull { repo, revision, name, all_files } => {
            let bar = (!quiet && !out.is_json()).then(Bar::new);
            let options = hub::PullOptions {
                revision,
                name,
                all_files,
                profile: config.storage().profile.value,
                progress: bar.as_ref().map(Bar::callback),
                ..hub::PullOptions::from_env(|v| std::env::var(v).ok())
            };
            let pulled = hub::pull(&registry, &repo, options).await;
            if let Some(bar) = &bar {
                bar.finish();
            }
            report_imported(&pulled?, quiet, out)
        }
        ModelsCommand::Ls => {
            let models = registry.list().await?;
            let rows: Vec<serde_json::Value> = models
                .iter()
                .map(|(name, model)| match model {
                    Ok(m) => json!({
                        "name": name,
                        "cid": m.cid.to_string(),
                        "family": m.manifest.info.family,
                        "format": m.manifest.info.format,
                        "dtype": m.manifest.info.dtype,
                        "bytes": size(m),
                    }),
                    Err(e) => json!({ "name": name, "error": e.to_string(), "kind": e.kind() }),
                })
                .collect();
            out.emit(&json!({ "models": rows }), || {
                if models.is_empty() {
                    println!("no models (`ipfs-accelerate models import PATH` adds one)");
                }
                for (name, model) in &models {
                    match model {
                        Ok(m) => println!(
                            "{name:<20} {} {:<8} {:<12} {:>10}",
                            m.cid,
                            m.manifest.info.family,
                            m.manifest.info.format.name(),
                            human_bytes(size(m))
                        ),
                        Err(e) => println!("{name:<20} unusable: {e}"),
                    }
                }
            })
        }
        ModelsCommand::Show { model } => {
            let model = registry.resolve(&model).await?;
            let skills: Vec<&str> = skill::skills()
                .iter()
                .filter(|s| s.accepts(&model.manifest).is_ok())
                .map(|s| s.info().name)
                .collect();
            let body = json!({ "cid": model.cid.to_string(), "names": model.names, "manifest": model.manifest, "skills": skills });
            out.emit(&body, || {
                let m = &model.manifest;
                println!("model     {}", model.cid);
                println!(
                    "names     {}",
                    if model.names.is_empty() { "-".into() } else { model.names.join(", ") }
                );
                println!("family    {} ({})", m.info.family, m.info.architecture);
                println!(
                    "format    {}{}",
                    m.info.format.name(),
                    m.info.dtype.as_ref().map(|d| format!(", {d}")).unwrap_or_default()
                );
                if let Some(n) = m.info.parameters {
                    println!("params    {n}");
                }
                println!("license   {}", m.info.license.as_deref().unwrap_or("unknown"));
                println!("source    {}", serde_json::to_string(&m.source).unwrap_or_default());
                println!(
                    "skills    {}",
                    if skills.is_empty() { "none".to_string() } else { skills.join(", ") }
                );
                println!("files");
                for (path, file) in &m.files {
                    let marker = if *path == m.info.weights { " (weights)" } else { "" };
                    println!("  {} {:>10}  {path}{marker}", file.cid, human_bytes(file.size));
                }
            })
        }
        ModelsCommand::Rm { model } => {
            let removed = registry.remove(&model).await?;
            out.emit(&removed, || {
                println!(
                    "removed {}{}{}",
                    removed.cid,
                    if removed.names.is_empty() {
                        String::new()
                    } else {
                        format!(" (names: {})", removed.names.join(", "))
                    },
                    if removed.unpinned {
                        "; unpinned: `storage gc` frees what nothing else keeps"
                    } else {
                        ""
                    }
                )
            })
        }
        ModelsCommand::Verify { model } => {
            let (model, checks) = registry.verify(&model).await?;
            let failed = checks.iter().filter(|c| c.error.is_some()).count();
            out.emit(
                &json!({ "cid": model.cid.to_string(), "ok": failed == 0, "files": checks }),
                || {
                    for check in &checks {
                        match &check.error {
                            None => println!("ok      {} {}", check.cid, check.path),
                            Some(e) => println!("FAILED  {} {}: {e}", check.cid, check.path),
                        }
                    }
                },
            )?;
            if failed > 0 {
                return Err(AlreadyReported(format!(
                    "{failed} file(s) of {} failed verification",
                    model.cid
                ))
                .into());
            }
            Ok(())
        }
        ModelsCommand::Export { model, output } => {
            let written = registry.export(&model, &output).await?;
            out.emit(&json!({ "model": model, "files": written }), || {
                println!("wrote {} files to {}", written.len(), output.display());
            })
        }
        ModelsCommand::Skills => {
            let infos: Vec<_> = skill::skills().iter().map(|s| s.info()).collect();
            out.emit(&infos, || {
                for info in &infos {
                    let formats: Vec<&str> = info.formats.iter().map(|f| f.name()).collect();
                    println!("{} ({})", info.name, info.task);
                    println!(
                        "  families {}; formats {}; devices {}",
                        info.families.join(", "),
                        formats.join(", "),
                        info.devices.join(", ")
                    );
                    println!("  limits   {}", info.limits);
                    println!("  output   {}", info.output);
                }
            })
        }
    }
}

fn size(model: &Model) -> u64 {
    model.manifest.files.values().map(|f| f.size).sum()
}

fn report_imported(model: &Model, quiet: bool, out: &Output) -> anyhow::Result<()> {
    let body =
        json!({ "cid": model.cid.to_string(), "names": model.names, "manifest": model.manifest });
    out.emit(&body, || {
        println!("{}", model.cid);
        if !quiet {
            let m = &model.manifest;
            eprintln!(
                "imported {} ({} {}, {} files, {}) as {}",
                model.label(),
                m.info.family,
                m.info.format.name(),
                m.files.len(),
                human_bytes(size(model)),
                model.names.iter().map(|n| format!("models/{n}")).collect::<Vec<_>>().join(", ")
            );
        }
    })
}
