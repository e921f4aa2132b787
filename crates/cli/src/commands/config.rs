use ipfs_accelerate_backends::config::BackendsConfig;
use ipfs_accelerate_common::config::Config;
use ipfs_accelerate_github::ClientConfig;
use ipfs_accelerate_worker::WorkerConfig;
use serde_json::json;

use crate::cli::ConfigCommand;
use crate::output::Output;

pub fn run(command: ConfigCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show => show(config, out),
    }
}

/// Every key of every section: the storage core's own, then each crate's section, each with
/// its value and the layer that decided it.
fn show(config: &Config, out: &Output) -> anyhow::Result<()> {
    let env = |v: &str| std::env::var(v).ok();
    let mut entries = config.entries();
    entries.extend(config.section_entries::<WorkerConfig>(env)?);
    entries.extend(config.section_entries::<BackendsConfig>(env)?);
    entries.extend(config.section_entries::<ClientConfig>(env)?);
    let body = json!({ "config_file": config.config_file(), "entries": entries });
    out.emit(&body, || {
        match config.config_file() {
            Some(path) => println!("# config file: {}", path.display()),
            None => println!("# config file: none"),
        }
        let width = entries.iter().map(|e| e.key.len()).max().unwrap_or(0);
        for entry in &entries {
            let value = match &entry.value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "none".into(),
                other => other.to_string(),
            };
            println!("{:width$}  {value}  ({})", entry.key, entry.source);
        }
    })
}
