//! `ipfs-accelerate secrets …`: the encrypted secret store.

use std::io::Read;

use anyhow::Context;
use ipfs_accelerate_common::config::Config;
use ipfs_accelerate_common::secrets::{MasterKey, Secret, SecretStore};
use ipfs_accelerate_common::store::{AddOptions, Store};
use ipfs_accelerate_common::Error;
use serde_json::json;

use crate::cli::SecretsCommand;
use crate::output::{fail, Output};

pub async fn run(command: SecretsCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    let dir = config.data_dir().value.join("secrets");
    match command {
        SecretsCommand::Set { name, from_stdin } => {
            let value = read_value(&name, from_stdin)?;
            open(config, true)?.set(&name, &value)?;
            out.emit(&json!({ "set": name }), || println!("set {name}"))
        }
        SecretsCommand::Get { name, reveal } => {
            let value = open(config, false)?.get(&name)?;
            let Some(value) = value else { fail!(NotSet, "secret {name:?} is not set") };
            let shown = reveal.then(|| value.expose().to_string());
            out.emit(&json!({ "name": name, "set": true, "value": shown }), || match &shown {
                Some(v) => println!("{v}"),
                None => println!("{name} is set (use --reveal to print it)"),
            })
        }
        SecretsCommand::Ls => {
            let list = open(config, false)?.list()?;
            out.emit(&list, || {
                for s in &list {
                    println!("{}\t{}", s.name, s.updated);
                }
            })
        }
        SecretsCommand::Rm { name } => {
            if !open(config, false)?.remove(&name)? {
                fail!(NotSet, "secret {name:?} is not set");
            }
            out.emit(&json!({ "removed": name }), || println!("removed {name}"))
        }
        SecretsCommand::Status => {
            let key = match MasterKey::resolve(config, false) {
                Ok(key) => Some(key),
                Err(Error::NoMasterKey { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            let (source, warning) = match &key {
                Some(key) => (serde_json::to_value(key.source())?, key.source().warning()),
                None => (json!(null), None),
            };
            let secrets = match key {
                Some(key) => SecretStore::open(&dir, key)?.list()?.len(),
                None => 0,
            };
            let body = json!({
                "directory": dir,
                "key_source": source,
                "configured": config.key_source().value,
                "key_file": config.key_file().value,
                "warning": warning,
                "secrets": secrets,
            });
            out.emit(&body, || {
                println!("directory   {}", dir.display());
                match &body["key_source"] {
                    serde_json::Value::Null => println!(
                        "master key  none yet ({} is created by `secrets set`)",
                        config.key_file().value.display()
                    ),
                    source => println!("master key  {source}"),
                }
                if let Some(warning) = warning {
                    println!("warning     {warning}");
                }
                println!("secrets     {secrets}");
            })
        }
        SecretsCommand::Backup => {
            let secrets = open(config, false)?;
            let Some(bytes) = secrets.encrypted_bytes()? else {
                fail!(NotSet, "there are no secrets to back up")
            };
            let store = Store::open_config(config).await?;
            let added =
                store.add_bytes(bytes, AddOptions { pin: true, ..AddOptions::default() }).await?;
            out.emit(&json!({ "cid": added.root.to_string(), "pinned": true }), || {
                println!("{}", added.root)
            })
        }
        SecretsCommand::Restore { cid } => {
            let cid = ipfs_accelerate_common::cid::parse(&cid)?;
            let store = Store::open_config(config).await?;
            let backup = store.cat_bytes(&cid).await?;
            let restored = open(config, true)?.restore(&backup)?;
            out.emit(&json!({ "restored": restored, "cid": cid.to_string() }), || {
                println!("restored {restored} secrets from {cid}")
            })
        }
        SecretsCommand::RotateKey => {
            let (_, count) = open(config, false)?.rotate_master_key()?;
            out.emit(&json!({ "rotated": count }), || {
                println!("re-encrypted {count} secrets under a new master key")
            })
        }
    }
}

fn open(config: &Config, create_key: bool) -> anyhow::Result<SecretStore> {
    Ok(SecretStore::open_config(config, create_key)?)
}

pub(crate) fn read_value(name: &str, from_stdin: bool) -> anyhow::Result<Secret> {
    let mut value = if from_stdin {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading the secret from stdin")?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        text
    } else {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            fail!(Usage, "stdin is not a terminal: pipe the secret in with --from-stdin");
        }
        rpassword::prompt_password(format!("value for {name}: "))
            .context("reading the secret from the terminal")?
    };
    if value.is_empty() {
        fail!(Usage, "refusing to store an empty secret");
    }
    Ok(Secret::new(std::mem::take(&mut value)))
}
