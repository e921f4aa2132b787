//! One module per command group; each turns parsed arguments into library calls and output.

mod config;

use clap::CommandFactory;
use ipfs_accelerate_common::config::{Config, LoadOptions};

use crate::cli::{Cli, Command, GlobalArgs};
use crate::output::Output;

pub fn run(cli: Cli, out: &Output) -> anyhow::Result<()> {
    match cli.command {
        Command::Config(command) => config::run(command, &load_config(&cli.global)?, out),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "ipfs-accelerate", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn load_config(global: &GlobalArgs) -> anyhow::Result<Config> {
    let options =
        LoadOptions { config_file: global.config.clone(), data_dir: global.data_dir.clone() };
    Ok(Config::load(&options)?)
}
