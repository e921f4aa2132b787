//! Deployments and the router's settings: from the `[backends]` section of the config file,
//! and — with no config at all — from the environment variables users already set.
//!
//! ```toml
//! [backends]
//! retries = 3
//! cooldown_after = 3
//! cooldown = "30s"
//!
//! [[backends.deployments]]
//! name = "local"
//! kind = "openai"            # openai | ollama | tgi | tei | ovms
//! base_url = "http://127.0.0.1:8081/v1"
//! model = "smollm2"
//! group = "chat"             # model group; defaults to the name
//! api_key_env = "LOCAL_KEY"  # or a secret of the same name as the deployment
//! rpm = 600
//!
//! [[backends.fallbacks]]
//! from = "chat"
//! to = "openai"
//! on = ["rate_limited", "timeout", "connect", "http", "circuit_open"]   # default: any
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::Kind;
use crate::error::{Error, Result};
use crate::template::ChatTemplate;

/// One deployment: a server, its protocol and the model it is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Its name (`openai`, `local`).
    pub name: String,
    /// Its protocol.
    pub kind: Kind,
    /// The server's base URL (for OpenAI-compatible servers, including `/v1`).
    pub base_url: String,
    /// The model requests name when they name none.
    #[serde(default)]
    pub model: Option<String>,
    /// The model group it serves; its own name when unset.
    #[serde(default)]
    pub group: Option<String>,
    /// Environment variables holding its key, in order (after a secret named like the deployment).
    #[serde(default)]
    pub api_key_env: Vec<String>,
    /// Whether a key is required (OpenAI proper); local servers need none.
    #[serde(default)]
    pub requires_key: bool,
    /// Requests per minute it may receive.
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Tokens per minute it may receive (estimated from the request before sending).
    #[serde(default)]
    pub tpm: Option<u32>,
    /// For servers that take raw prompts (TGI's `/generate`): the model's
    /// `tokenizer_config.json` (its `chat_template`, BOS and EOS) or a `.jinja` template file.
    #[serde(default)]
    pub chat_template: Option<std::path::PathBuf>,
    /// Where this deployment came from (`env OPENAI_BASE_URL`, `config file`).
    #[serde(skip)]
    pub source: String,
}

impl DeploymentConfig {
    /// A deployment with no model, group, key, limits or template set.
    pub fn new(name: &str, kind: Kind, base_url: &str) -> DeploymentConfig {
        DeploymentConfig {
            name: name.to_string(),
            kind,
            base_url: base_url.to_string(),
            model: None,
            group: None,
            api_key_env: Vec::new(),
            requires_key: false,
            rpm: None,
            tpm: None,
            chat_template: None,
            source: String::new(),
        }
    }

    /// The model group.
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.name)
    }

    /// The chat template `chat_template` names, compiled.
    pub fn template(&self) -> Result<Option<ChatTemplate>> {
        let Some(path) = &self.chat_template else { return Ok(None) };
        // A user's read-only input, not something this program keeps.
        #[allow(clippy::disallowed_methods)]
        // storage-audit: allow(reads the user's tokenizer_config.json / template; persists nothing)
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("{}: chat_template {}: {e}", self.name, path.display()))
        })?;
        let in_context = |e: Error| {
            Error::Config(format!("{}: chat_template {}: {e}", self.name, path.display()))
        };
        let template = if path.extension().is_some_and(|x| x == "json") {
            ChatTemplate::from_tokenizer_config(&text)
        } else {
            ChatTemplate::new(&text, "", "")
        };
        template.map(Some).map_err(in_context)
    }
}

/// Route a group's failures to another group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    /// The group that failed.
    pub from: String,
    /// The group to try next.
    pub to: String,
    /// Error kinds that trigger it (`Error::kind`); any when empty.
    #[serde(default)]
    pub on: Vec<String>,
}

/// Everything the router needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// A missing key takes its value from `Default`: the one place defaults are written.
#[serde(default, deny_unknown_fields)]
pub struct BackendsConfig {
    /// Deployments, in order of preference within a group.
    pub deployments: Vec<DeploymentConfig>,
    /// Fallbacks between groups.
    pub fallbacks: Vec<Fallback>,
    /// Attempts per group (first try included).
    pub attempts: u32,
    /// Shortest backoff between attempts.
    #[serde(with = "ipfs_accelerate_common::config::duration_text")]
    pub backoff: Duration,
    /// Longest backoff between attempts.
    #[serde(with = "ipfs_accelerate_common::config::duration_text")]
    pub max_backoff: Duration,
    /// A call's whole budget: queueing, attempts, backoff, fallbacks.
    #[serde(with = "ipfs_accelerate_common::config::duration_text")]
    pub timeout: Duration,
    /// Consecutive failures that put a deployment in cooldown.
    pub cooldown_after: u32,
    /// How long a failing deployment is skipped.
    #[serde(with = "ipfs_accelerate_common::config::duration_text")]
    pub cooldown: Duration,
    /// Calls in flight at once, over all deployments.
    pub concurrency: usize,
    /// Calls that may wait for a slot; more is `QueueFull`.
    pub queue: usize,
}

impl Default for BackendsConfig {
    fn default() -> Self {
        BackendsConfig {
            deployments: Vec::new(),
            fallbacks: Vec::new(),
            attempts: 3,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
            cooldown_after: 3,
            cooldown: Duration::from_secs(30),
            concurrency: 64,
            queue: 1024,
        }
    }
}

fn env_deployment(name: &str, kind: Kind, base_url: String, source: String) -> DeploymentConfig {
    DeploymentConfig { source, ..DeploymentConfig::new(name, kind, &base_url) }
}

/// `host:port` or a URL → a URL.
fn with_scheme(value: &str) -> String {
    if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    }
}

/// The deployments the standard environment variables define, one per service:
/// `OPENAI_API_KEY`/`OPENAI_BASE_URL` → `openai`, `OLLAMA_HOST` (or the Python original's
/// `OLLAMA_API_URL`) → `ollama`, `VLLM_BASE_URL` (`VLLM_API_URL`) → `vllm`, `TGI_ENDPOINT` →
/// `tgi`, `TEI_ENDPOINT` → `tei`, `OVMS_ENDPOINT` (`OVMS_API_URL`) → `ovms`,
/// `IPFS_ACCELERATE_LLAMA_CPP_BASE_URL` → `llamacpp`.
pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Vec<DeploymentConfig> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let first = |names: &[&'static str]| names.iter().find_map(|n| Some((*n, env(n)?)));
    let mut out = Vec::new();
    if let Some((var, base)) = first(&["OPENAI_BASE_URL"]).or_else(|| {
        env("OPENAI_API_KEY").map(|_| ("OPENAI_API_KEY", "https://api.openai.com/v1".to_string()))
    }) {
        let mut d = env_deployment("openai", Kind::OpenAi, base.clone(), format!("env {var}"));
        d.api_key_env = vec!["OPENAI_API_KEY".into()];
        d.requires_key = base.contains("api.openai.com");
        d.model = env("OPENAI_MODEL");
        out.push(d);
    }
    if let Some((var, host)) = first(&["OLLAMA_HOST", "OLLAMA_API_URL"]) {
        let base = with_scheme(&host);
        let base = base.trim_end_matches('/').trim_end_matches("/api").to_string();
        let mut d = env_deployment("ollama", Kind::Ollama, base, format!("env {var}"));
        d.model = env("OLLAMA_MODEL");
        out.push(d);
    }
    if let Some((var, base)) = first(&["VLLM_BASE_URL", "VLLM_API_URL"]) {
        let base = with_scheme(&base);
        // The original's VLLM_API_URL is the server root; ours is the OpenAI base.
        let base = if base.trim_end_matches('/').ends_with("/v1") {
            base
        } else {
            format!("{}/v1", base.trim_end_matches('/'))
        };
        let mut d = env_deployment("vllm", Kind::OpenAi, base, format!("env {var}"));
        d.api_key_env = vec!["VLLM_API_KEY".into()];
        d.model = env("VLLM_MODEL");
        out.push(d);
    }
    for (name, kind, vars) in [
        ("tgi", Kind::Tgi, &["TGI_ENDPOINT"][..]),
        ("tei", Kind::Tei, &["TEI_ENDPOINT"][..]),
        ("ovms", Kind::Ovms, &["OVMS_ENDPOINT", "OVMS_API_URL"][..]),
        (
            "llamacpp",
            Kind::OpenAi,
            &["IPFS_ACCELERATE_LLAMA_CPP_BASE_URL", "IPFS_ACCELERATE_PY_LLAMA_CPP_BASE_URL"][..],
        ),
    ] {
        if let Some((var, base)) = first(vars) {
            let mut d = env_deployment(name, kind, with_scheme(&base), format!("env {var}"));
            if matches!(kind, Kind::Tgi | Kind::Tei) {
                d.api_key_env = vec!["HF_TOKEN".into(), "HF_API_KEY".into(), "HF_API_TOKEN".into()];
            }
            if kind == Kind::Ovms {
                d.api_key_env = vec!["OVMS_API_KEY".into()];
                d.model = env("OVMS_MODEL");
            }
            out.push(d);
        }
    }
    out
}

/// The `[backends]` section (TOML text) over the environment's deployments: a configured
/// deployment replaces an environment one of the same name.
impl ipfs_accelerate_common::config::Section for BackendsConfig {
    const NAME: &'static str = "backends";

    fn validate(&self) -> std::result::Result<(), String> {
        if self.attempts == 0 || self.concurrency == 0 {
            return Err("attempts and concurrency must be at least 1".into());
        }
        Ok(())
    }
}

/// The `[backends]` section of `config`, with the deployments the environment defines (see
/// [`from_env`]) added and the whole checked.
pub fn load(
    config: &ipfs_accelerate_common::config::Config,
    env: impl Fn(&str) -> Option<String>,
) -> Result<BackendsConfig> {
    with_env(config.section::<BackendsConfig>(&env)?, env)
}

/// `config` with the environment's deployments added (a deployment the file names wins over
/// the variable's), checked: unique names, parseable URLs, fallbacks between groups that
/// exist.
pub fn with_env(
    mut config: BackendsConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<BackendsConfig> {
    for d in &mut config.deployments {
        d.source = "config file".into();
    }
    for d in from_env(env) {
        if !config.deployments.iter().any(|c| c.name == d.name) {
            config.deployments.push(d);
        }
    }
    let mut seen = std::collections::HashSet::new();
    for d in &config.deployments {
        if !seen.insert(d.name.as_str()) {
            return Err(Error::Config(format!("two deployments are named {:?}", d.name)));
        }
        url::Url::parse(&d.base_url).map_err(|e| {
            Error::Config(format!("deployment {:?}: base_url {:?}: {e}", d.name, d.base_url))
        })?;
    }
    for f in &config.fallbacks {
        for group in [&f.from, &f.to] {
            if !config.deployments.iter().any(|d| d.group() == group) {
                return Err(Error::Config(format!(
                    "fallback names group {group:?}, which no deployment serves"
                )));
            }
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn the_standard_variables_define_one_deployment_each() {
        let deployments = from_env(env(&[
            ("OPENAI_BASE_URL", "http://127.0.0.1:8081/v1"),
            ("OPENAI_API_KEY", "x"),
            ("OLLAMA_HOST", "127.0.0.1:11434"),
            ("VLLM_API_URL", "http://gpu:8000"),
            ("TEI_ENDPOINT", "http://tei:80"),
        ]));
        let names: Vec<_> =
            deployments.iter().map(|d| (d.name.as_str(), d.base_url.as_str())).collect();
        assert_eq!(
            names,
            [
                ("openai", "http://127.0.0.1:8081/v1"),
                ("ollama", "http://127.0.0.1:11434"),
                ("vllm", "http://gpu:8000/v1"),
                ("tei", "http://tei:80"),
            ]
        );
        assert!(!deployments[0].requires_key, "a local OpenAI-compatible server needs no key");
        let only_key = from_env(env(&[("OPENAI_API_KEY", "x")]));
        assert_eq!(only_key[0].base_url, "https://api.openai.com/v1");
        assert!(only_key[0].requires_key);
        let legacy = from_env(env(&[("OLLAMA_API_URL", "http://localhost:11434/api")]));
        assert_eq!(legacy[0].base_url, "http://localhost:11434");
        assert!(from_env(env(&[("OPENAI_BASE_URL", " ")])).is_empty());
    }

    fn load(text: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<BackendsConfig> {
        let section =
            toml::from_str(text.unwrap_or_default()).map_err(|e| Error::Config(e.to_string()))?;
        with_env(section, env)
    }

    #[test]
    fn the_config_section_is_validated() {
        let text = r#"
            attempts = 2
            cooldown = "5s"
            [[deployments]]
            name = "local"
            kind = "openai"
            base_url = "http://127.0.0.1:1/v1"
            group = "chat"
            [[fallbacks]]
            from = "chat"
            to = "nowhere"
        "#;
        let err = load(Some(text), env(&[])).unwrap_err();
        assert!(err.to_string().contains("group \"nowhere\""), "{err}");
        let config =
            load(Some(&text.replace("nowhere", "chat")), env(&[("OLLAMA_HOST", "h:1")])).unwrap();
        assert_eq!(config.attempts, 2);
        assert_eq!(config.cooldown, Duration::from_secs(5));
        assert_eq!(config.deployments.len(), 2);
        assert!(load(Some("[[deployments]]\nname = 1"), env(&[])).is_err());
        assert!(load(Some("unknown = 1"), env(&[])).is_err());
    }
}
