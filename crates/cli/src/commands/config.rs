use ipfs_accelerate_common::config::Config;
use serde_json::json;

use crate::cli::ConfigCommand;
use crate::output::Output;

pub fn run(command: ConfigCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show => show(config, out),
    }
}

fn show(config: &Config, out: &Output) -> anyhow::Result<()> {
    let entries = config.entries();
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
                other => other.to_string(),
            };
            println!("{:width$}  {value}  ({})", entry.key, entry.source);
        }
    })
}
