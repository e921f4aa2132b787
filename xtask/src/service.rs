//! Real local servers for the integration tests: install once (cached), start on a free
//! loopback port, wait for readiness with a deadline, export the address in an environment
//! variable, and always stop.
//!
//! [`Services::start_all`] starts one entry per server (`crate::servers`).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).context("xtask has no parent directory")
}

/// Where installed tools are cached between runs (ignored by git, survives `cargo clean`).
pub fn cache_dir(root: &Path) -> PathBuf {
    root.join(".cache")
}

/// Runs `install` unless `stamp` exists, then writes `stamp`; so a second run is free.
pub fn ensure_installed(
    stamp: &Path,
    what: &str,
    install: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if stamp.exists() {
        return Ok(());
    }
    eprintln!("xtask: installing {what} (once; cached at {})", stamp.display());
    install().with_context(|| format!("installing {what}"))?;
    if let Some(dir) = stamp.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(stamp, what)?;
    Ok(())
}

/// Makes sure `tool` is on PATH, installing Debian package `package` when it is not and this
/// process may (root); otherwise says what to install.
pub fn ensure_apt_tool(tool: &str, package: &str) -> anyhow::Result<()> {
    let found = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if found(tool) {
        return Ok(());
    }
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !is_root {
        bail!("{tool} is needed by the tests: install the Debian package {package} (sudo apt-get install {package})");
    }
    eprintln!("xtask: installing {package} for {tool}");
    for args in
        [&["update", "-qq"][..], &["install", "-y", "-qq", "--no-install-recommends", package][..]]
    {
        let status = Command::new("timeout")
            .arg("600")
            .arg("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
    }
    if !found(tool) {
        bail!("{package} was installed but {tool} is still not on PATH");
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1 (the OS picks; the listener is closed before returning).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `ready` until it returns `Ok(true)`; fails on its first error or after `timeout`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} was not ready within {timeout:?}")
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn accepts_connections(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A started server: killed and reaped on drop.
pub struct Running {
    name: String,
    child: Child,
    env: Vec<(String, String)>,
}

impl Running {
    /// Spawns `command` and waits until it accepts connections on `port`.
    pub fn spawn(
        name: &str,
        mut command: Command,
        port: u16,
        timeout: Duration,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Running> {
        let child = command.spawn().with_context(|| format!("starting {name}"))?;
        let mut running = Running { name: name.to_string(), child, env };
        wait_until(name, timeout, || {
            // A server that died will never become ready: say so instead of waiting.
            if let Some(status) = running.child.try_wait()? {
                bail!("{name} exited before it was ready ({status})");
            }
            Ok(accepts_connections(port))
        })?;
        eprintln!("xtask: {name} ready on 127.0.0.1:{port}");
        Ok(running)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("xtask: stopped {}", self.name);
    }
}

/// Every server the suite needs, stopped together on drop.
#[derive(Default)]
pub struct Services {
    running: Vec<Running>,
}

impl Services {
    /// Starts every server the integration tests need (installed by
    /// [`crate::servers::install`]), with their state under `work`.
    pub fn start_all(root: &Path, work: &Path) -> anyhow::Result<Services> {
        let running = vec![
            crate::servers::start_ipfs(root, work)?,
            crate::servers::start_s3(root, work)?,
            crate::servers::start_llama(root, work)?,
        ];
        Ok(Services { running })
    }

    /// Every server's variables.
    pub fn env(&self) -> impl Iterator<Item = &(String, String)> {
        self.running.iter().flat_map(|r| r.env.iter())
    }

    /// Passes every server's address variables to `command`.
    pub fn export_to(&self, command: &mut Command) {
        for running in &self.running {
            command.envs(running.env.iter().map(|(k, v)| (k, v)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_server_starts_on_a_free_port_and_stops_on_drop() {
        let port = free_port().unwrap();
        let mut command = Command::new("python3");
        command.args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()]);
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let env = vec![("TEST_HTTP_URL".to_string(), format!("http://127.0.0.1:{port}"))];
        let running =
            Running::spawn("http.server", command, port, Duration::from_secs(20), env).unwrap();
        assert!(accepts_connections(port));
        let services = Services { running: vec![running] };
        let mut probe = Command::new("true");
        services.export_to(&mut probe);
        assert!(probe.get_envs().any(|(k, _)| k == "TEST_HTTP_URL"));
        drop(services);
        assert!(!accepts_connections(port), "server still listening after drop");
    }

    #[test]
    fn a_server_that_exits_fails_fast_with_its_name() {
        let port = free_port().unwrap();
        let command = Command::new("false");
        let err = Running::spawn("doomed", command, port, Duration::from_secs(600), vec![])
            .err()
            .unwrap();
        assert!(err.to_string().contains("doomed exited before it was ready"), "{err}");
    }
}
