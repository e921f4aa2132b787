//! The `ipfs-accelerate` binary.

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::output::Output;

/// See the workspace manifest: candle's per-op buffers fault pages in under glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    init_tracing(cli.global.verbose, cli.global.quiet);
    let out = Output::new(cli.global.json);
    match commands::run(cli, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            out.error(&error);
            ExitCode::FAILURE
        }
    }
}

/// Bad arguments: clap's own report, or under `--json` the one error shape with kind `usage`
/// (so a script reading stdout never gets plain text). Help and `--version` are not errors.
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let informational = matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if informational || !std::env::args().any(|a| a == "--json") {
        error.exit();
    }
    let text = error.to_string();
    let message = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
    let body =
        serde_json::json!({ "error": { "kind": "usage", "message": message, "retryable": false } });
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{body}");
    ExitCode::from(2)
}

/// A reader that went away (`ipfs-accelerate … | head`) ends the command as it ends `cat`:
/// quietly, with the status SIGPIPE gives (128 + 13), not a panic. Rust ignores SIGPIPE, so
/// `println!` into a closed pipe panics with this message; the panic is the only place left
/// to catch it short of replacing every `println!`.
fn quiet_on_closed_stdout() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
}

/// Logs go to stderr; `RUST_LOG` wins over `-v`/`-q` when set.
fn init_tracing(verbose: u8, quiet: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match i16::from(verbose) - i16::from(quiet) {
        i16::MIN..=-1 => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
