//! One module per command group; each turns parsed arguments into library calls and output.

mod backends;
mod cache;
mod config;
mod github;
mod hardware;
mod infer;
mod models;
mod secrets;
pub(crate) mod storage;

use clap::CommandFactory;
use ipfs_accelerate_common::config::{Config, LoadOptions};

use crate::cli::{Cli, Command, GlobalArgs};
use crate::output::Output;

pub fn run(cli: Cli, out: &Output) -> anyhow::Result<()> {
    match cli.command {
        Command::Config(command) => config::run(command, &load_config(&cli.global)?, out),
        Command::Cache(command) => {
            let config = load_config(&cli.global)?;
            runtime()?.block_on(cache::run(command, &config, out))
        }
        Command::Secrets(command) => {
            let config = load_config(&cli.global)?;
            runtime()?.block_on(secrets::run(command, &config, out))
        }
        Command::Storage(command) => {
            let config = load_config(&cli.global)?;
            runtime()?.block_on(storage::run(command, &config, cli.global.quiet > 0, out))
        }
        Command::Backends(command) => {
            let config = load_config(&cli.global)?;
            runtime()?.block_on(backends::run(command, &config, out))
        }
        Command::Github(args) => {
            let config = load_config(&cli.global)?;
            runtime()?.block_on(github::run(args, &config, out))
        }
        Command::Models(command) => {
            let config = load_config(&cli.global)?;
            runtime()?.block_on(models::run(command, &config, cli.global.quiet > 0, out))
        }
        Command::Infer(args) => {
            let config = load_config(&cli.global)?;
            runtime()?.block_on(infer::run(args, &config, cli.global.quiet > 0, out))
        }
        Command::Hardware { refresh } => {
            let config = load_config(&cli.global)?;
            runtime()?.block_on(hardware::hardware(&config, refresh, out))
        }
        Command::Install { features, plan: _, apply } => {
            let config = load_config(&cli.global)?;
            runtime()?.block_on(hardware::install(&config, &features, apply, out))
        }
        Command::Doctor { refresh } => {
            let config = load_config(&cli.global)?;
            runtime()?.block_on(hardware::doctor(&config, refresh, out))
        }
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "ipfs-accelerate", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn load_config(global: &GlobalArgs) -> anyhow::Result<Config> {
    let options =
        LoadOptions { config_file: global.config.clone(), data_dir: global.data_dir.clone() };
    Ok(Config::load(&options)?)
}
