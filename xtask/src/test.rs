//! `cargo xtask test`: the single entry point for every check CI runs.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::service::{self, Services};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let (own, passthrough) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let mut lint = true;
    for arg in own {
        match arg.as_str() {
            "--no-lint" => lint = false,
            other => bail!("unknown flag {other:?} for `cargo xtask test`"),
        }
    }
    let started = Instant::now();
    let root = service::workspace_root()?;

    if lint {
        step("cargo fmt --check", cargo(&["fmt", "--all", "--", "--check"]))?;
        step(
            "cargo clippy",
            cargo(&["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]),
        )?;
    }

    eprintln!("xtask test: running storage-audit --check");
    crate::audit::run(&["--check".to_string()])?;

    // Tools the tests run: keyctl gives the keyring test a fresh kernel session keyring.
    service::ensure_apt_tool("keyctl", "keyutils")?;

    // Servers the integration tests talk to; each stops when `services` drops, pass or fail.
    let services = Services::start_all(&root)?;

    let nextest = Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    // Doc tests first (nextest does not run them), so the runner's summary is the last word.
    let doc = if nextest && passthrough.is_empty() {
        let mut doc = cargo(&["test", "--workspace", "--locked", "--doc"]);
        services.export_to(&mut doc);
        step("doc tests", doc)
    } else {
        Ok(())
    };
    let mut tests = if nextest {
        cargo(&["nextest", "run", "--workspace", "--locked", "--no-fail-fast"])
    } else {
        cargo(&["test", "--workspace", "--locked", "--no-fail-fast"])
    };
    tests.args(passthrough);
    services.export_to(&mut tests);
    let result = step("tests", tests);
    drop(services);
    doc.and(result)?;
    eprintln!("xtask test: all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

fn cargo(args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args);
    command
}

fn step(name: &str, mut command: Command) -> anyhow::Result<()> {
    eprintln!("xtask test: running {name}");
    let status = command.status().with_context(|| format!("could not start {name}"))?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}
