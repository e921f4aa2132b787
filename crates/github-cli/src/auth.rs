//! Tokens: named GitHub credentials kept in the encrypted [`SecretStore`] (with scopes and
//! expiry; every read and change lands in the store's audit log), and the order a token is
//! looked for — `--token`/config, the credential manager, `GH_TOKEN`, `GITHUB_TOKEN`,
//! `gh auth token`. A token's value is only ever in a [`Secret`]: never logged, never in a
//! `Debug` output, never in a cache key (keys carry a hash of it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipfs_accelerate_common::secrets::{Secret, SecretStore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Secret names of GitHub credentials start with this.
const PREFIX: &str = "github.";
/// `gh auth token` gets this long.
const GH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a token came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum TokenSource {
    /// `--token` on the command line.
    Flag,
    /// `github.token` in the config file.
    Config,
    /// A named credential in the secret store.
    Credential(String),
    /// An environment variable.
    Env(String),
    /// `gh auth token`.
    GhCli,
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Flag => f.write_str("--token"),
            TokenSource::Config => f.write_str("config github.token"),
            TokenSource::Credential(name) => write!(f, "credential {name:?} (secret store)"),
            TokenSource::Env(var) => write!(f, "${var}"),
            TokenSource::GhCli => f.write_str("gh auth token"),
        }
    }
}

/// A token and where it came from.
pub struct Token {
    value: Secret,
    /// Its source.
    pub source: TokenSource,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("source", &self.source).finish_non_exhaustive()
    }
}

impl Token {
    /// A token from `source`.
    pub fn new(value: Secret, source: TokenSource) -> Token {
        Token { value, source }
    }

    /// The token, to store it (never to print it).
    pub fn secret(&self) -> &Secret {
        &self.value
    }

    /// The value, for the `Authorization` header only.
    pub(crate) fn expose(&self) -> &str {
        self.value.expose()
    }

    /// A stable identifier of the token that reveals nothing of it (cache keys, logs).
    pub fn scope_id(&self) -> String {
        let digest = Sha256::digest(self.value.expose().as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// A stored credential's description (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialInfo {
    /// Its name.
    pub name: String,
    /// OAuth scopes it was stored with (as GitHub reported them at login).
    pub scopes: Vec<String>,
    /// Unix time it was stored.
    pub created_at: i64,
    /// Unix time it expires, if it does.
    pub expires_at: Option<i64>,
    /// Whether it has expired.
    pub expired: bool,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    token: String,
    #[serde(default)]
    scopes: Vec<String>,
    created_at: i64,
    #[serde(default)]
    expires_at: Option<i64>,
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Named GitHub credentials in a [`SecretStore`] (secrets named `github.<name>`).
#[derive(Debug)]
pub struct Credentials<'a> {
    store: &'a SecretStore,
}

impl<'a> Credentials<'a> {
    /// The credentials in `store`.
    pub fn new(store: &'a SecretStore) -> Credentials<'a> {
        Credentials { store }
    }

    fn check_name(name: &str) -> Result<()> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.is_empty() || name.len() > 100 || !name.chars().all(allowed) {
            return Err(Error::Config(format!(
                "credential name {name:?}: use letters, digits, '-', '_' or '.'"
            )));
        }
        Ok(())
    }

    /// Stores `token` as `name`, replacing one of the same name.
    pub fn save(
        &self,
        name: &str,
        token: &Secret,
        scopes: Vec<String>,
        expires_at: Option<i64>,
    ) -> Result<()> {
        Credentials::check_name(name)?;
        let stored =
            Stored { token: token.expose().to_string(), scopes, created_at: now(), expires_at };
        let json = serde_json::to_string(&stored)
            .map_err(|e| Error::Config(format!("serialising credential: {e}")))?;
        self.store.set(&format!("{PREFIX}{name}"), &Secret::new(json))?;
        Ok(())
    }

    /// The credential `name` with its token, if stored.
    pub fn get(&self, name: &str) -> Result<Option<(CredentialInfo, Secret)>> {
        Credentials::check_name(name)?;
        let Some(secret) = self.store.get(&format!("{PREFIX}{name}"))? else { return Ok(None) };
        let stored: Stored = serde_json::from_str(secret.expose()).map_err(|e| {
            Error::Config(format!("credential {name:?} is not a GitHub credential record: {e}"))
        })?;
        let info = CredentialInfo {
            name: name.to_string(),
            expired: stored.expires_at.is_some_and(|t| t <= now()),
            scopes: stored.scopes,
            created_at: stored.created_at,
            expires_at: stored.expires_at,
        };
        Ok(Some((info, Secret::new(stored.token))))
    }

    /// Every stored credential, by name.
    pub fn list(&self) -> Result<Vec<CredentialInfo>> {
        let mut out = Vec::new();
        for secret in self.store.list()? {
            if let Some(name) = secret.name.strip_prefix(PREFIX) {
                if let Some((info, _)) = self.get(name)? {
                    out.push(info);
                }
            }
        }
        Ok(out)
    }

    /// Removes `name`; whether it was there.
    pub fn remove(&self, name: &str) -> Result<bool> {
        Credentials::check_name(name)?;
        Ok(self.store.remove(&format!("{PREFIX}{name}"))?)
    }
}

/// Where to look for a token, in order.
pub struct Lookup<'a> {
    /// `--token`.
    pub flag: Option<String>,
    /// `github.token` in the config file.
    pub config: Option<String>,
    /// The secret store, if one opens.
    pub secrets: Option<&'a SecretStore>,
    /// The credential to use (`github.credential`, default `default`).
    pub credential: String,
    /// The environment.
    pub env: &'a (dyn Fn(&str) -> Option<String> + Sync),
    /// Whether to ask `gh auth token` last.
    pub gh: bool,
}

/// One place looked at, for `auth status`.
#[derive(Debug, Clone, Serialize)]
pub struct Looked {
    /// The source.
    pub source: TokenSource,
    /// What was there: `token`, `not set`, `expired`, an error.
    pub found: String,
}

impl Lookup<'_> {
    /// The first token found, and every place looked at (in order) with what was there.
    /// An expired stored credential is skipped, saying so.
    pub async fn resolve(&self) -> Result<(Option<Token>, Vec<Looked>)> {
        let mut found = Found::default();
        let present = |v: &Option<String>| v.clone().filter(|v| !v.is_empty()).map(Secret::new);
        found.offer(TokenSource::Flag, present(&self.flag), "not given");
        found.offer(TokenSource::Config, present(&self.config), "not set");
        let source = TokenSource::Credential(self.credential.clone());
        match self.secrets.map(|s| Credentials::new(s).get(&self.credential)).transpose() {
            Err(e) => found.offer(source, None, &format!("unreadable: {e}")),
            Ok(None) => found.offer(source, None, "no secret store"),
            Ok(Some(None)) => found.offer(source, None, "not stored"),
            Ok(Some(Some((info, _)))) if info.expired => found.offer(source, None, "expired"),
            Ok(Some(Some((_, token)))) => found.offer(source, Some(token), ""),
        }
        for var in ["GH_TOKEN", "GITHUB_TOKEN"] {
            found.offer(TokenSource::Env(var.into()), present(&(self.env)(var)), "not set");
        }
        if self.gh && found.chosen.is_none() {
            match gh_auth_token().await {
                Ok(token) => found.offer(TokenSource::GhCli, Some(token), ""),
                Err(why) => found.offer(TokenSource::GhCli, None, &why),
            }
        }
        Ok((found.chosen, found.looked))
    }
}

/// The token chosen so far and every place looked at.
#[derive(Default)]
struct Found {
    chosen: Option<Token>,
    looked: Vec<Looked>,
}

impl Found {
    fn offer(&mut self, source: TokenSource, value: Option<Secret>, note: &str) {
        let found = match (&value, self.chosen.is_some()) {
            (Some(_), false) => "token (in use)".to_string(),
            (Some(_), true) => "token (shadowed)".to_string(),
            (None, _) => note.to_string(),
        };
        self.looked.push(Looked { source: source.clone(), found });
        if self.chosen.is_none() {
            self.chosen = value.map(|v| Token::new(v, source));
        }
    }
}

/// `gh auth token`, with a deadline.
async fn gh_auth_token() -> std::result::Result<Secret, String> {
    let mut command = tokio::process::Command::new("gh");
    command.args(["auth", "token"]).kill_on_drop(true).stdin(std::process::Stdio::null());
    tracing::debug!("running gh auth token");
    let output = match tokio::time::timeout(GH_TIMEOUT, command.output()).await {
        Err(_) => return Err(format!("gh auth token gave no answer within {GH_TIMEOUT:?}")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("gh is not installed".into())
        }
        Ok(Err(e)) => return Err(format!("gh: {e}")),
        Ok(Ok(output)) => output,
    };
    let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || token.is_empty() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("gh is not logged in: {}", stderr.trim()));
    }
    Ok(Secret::new(token))
}
