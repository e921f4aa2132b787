//! The typed configuration: defaults → config file → environment → command-line flags.
//!
//! Every value carries the [`Source`] it came from, so `ipfs-accelerate config show` can say why
//! a value is what it is. Environment values are parsed strictly: a value that is not understood
//! is an [`Error::InvalidEnv`] naming the variable, never a silent default. Booleans go through
//! the one truthiness parser, [`parse_bool`].
//!
//! Variable names follow the Python original where it had one (`STORAGE_FORCE_LOCAL`,
//! `IPFS_KIT_DISABLE`, `CI`, `IPFS_ACCELERATE_CACHE_DIR`).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::unixfs::Profile;
use crate::{Error, Result};

/// Environment variable naming the data directory (where the store lives).
pub const ENV_DATA_DIR: &str = "IPFS_ACCELERATE_DATA_DIR";
/// The Python original's cache root; accepted as the data directory when [`ENV_DATA_DIR`] is
/// unset, because that directory held the original's blob store.
pub const ENV_LEGACY_CACHE_DIR: &str = "IPFS_ACCELERATE_CACHE_DIR";
/// Environment variable naming the config file.
pub const ENV_CONFIG: &str = "IPFS_ACCELERATE_CONFIG";
/// Environment variable choosing the UnixFS import profile for new content.
pub const ENV_PROFILE: &str = "IPFS_ACCELERATE_PROFILE";
/// Environment variable setting the store's size budget (`20GiB`, `500MB`, `1048576`).
pub const ENV_STORAGE_BUDGET: &str = "IPFS_ACCELERATE_STORAGE_BUDGET";
/// The Python original's switch forcing local-only storage.
pub const ENV_STORAGE_FORCE_LOCAL: &str = "STORAGE_FORCE_LOCAL";
/// The Python original's switch disabling the IPFS tier.
pub const ENV_IPFS_KIT_DISABLE: &str = "IPFS_KIT_DISABLE";
/// Set by CI systems; remote tiers are off in CI unless explicitly enabled.
pub const ENV_CI: &str = "CI";
/// Environment variable choosing where the master key is kept: `file` or `keyring`.
pub const ENV_KEY_SOURCE: &str = "IPFS_ACCELERATE_KEY_SOURCE";
/// Environment variable naming the keyring service the master key is stored under.
pub const ENV_KEYRING_SERVICE: &str = "IPFS_ACCELERATE_KEYRING_SERVICE";
/// Environment variable naming the master-key file of the secret store.
pub const ENV_MASTER_KEY_FILE: &str = "IPFS_ACCELERATE_MASTER_KEY_FILE";
/// Kubo's own variable for its RPC API address (a multiaddr or URL); enables the Kubo tier.
pub const ENV_IPFS_API: &str = "IPFS_API";
/// `s3://bucket/prefix`: enables the S3 tier.
pub const ENV_S3_URL: &str = "IPFS_ACCELERATE_S3_URL";
/// The AWS SDKs' custom-endpoint variable (an S3-compatible server).
pub const ENV_AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
/// The AWS SDKs' region variable.
pub const ENV_AWS_REGION: &str = "AWS_REGION";
/// Set to a true value to keep remote tiers on when `CI` is set.
pub const ENV_REMOTE_IN_CI: &str = "IPFS_ACCELERATE_REMOTE_IN_CI";
/// The deadline of one remote request (`30s`, `500ms`, `2m`; a bare number is seconds).
pub const ENV_REMOTE_TIMEOUT: &str = "IPFS_ACCELERATE_REMOTE_TIMEOUT";

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The config file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(&'static str),
    /// This command-line flag.
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A configuration value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The effective value.
    pub value: T,
    /// The layer that decided it.
    pub source: Source,
}

impl<T> Setting<T> {
    fn default(value: T) -> Self {
        Setting { value, source: Source::Default }
    }

    fn set(&mut self, value: T, source: Source) {
        *self = Setting { value, source };
    }
}

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config PATH`: read this file instead of the default location; it must exist.
    pub config_file: Option<PathBuf>,
    /// `--data-dir PATH`.
    pub data_dir: Option<PathBuf>,
}

/// Storage settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// UnixFS profile for new content (`storage.profile`, `IPFS_ACCELERATE_PROFILE`).
    pub profile: Setting<Profile>,
    /// Size budget in bytes for unpinned content; `None` means unbounded (`storage.budget`).
    pub budget: Setting<Option<u64>>,
    /// Force local-only storage (`storage.force_local`, `STORAGE_FORCE_LOCAL`).
    pub force_local: Setting<bool>,
    /// Disable the IPFS tier (`storage.ipfs_kit_disable`, `IPFS_KIT_DISABLE`).
    pub ipfs_kit_disable: Setting<bool>,
}

/// Remote tiers: where they are and when they may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// Kubo RPC API as an `http(s)://host:port` URL (`remote.ipfs_api`, `IPFS_API`, given as a
    /// multiaddr such as `/ip4/127.0.0.1/tcp/5001` or a URL). `None`: no Kubo tier.
    pub ipfs_api: Setting<Option<String>>,
    /// The S3 location (`remote.s3_url`, `IPFS_ACCELERATE_S3_URL`). `None`: no S3 tier.
    pub s3_url: Setting<Option<S3Url>>,
    /// A custom S3 endpoint (`remote.s3_endpoint`, `AWS_ENDPOINT_URL`).
    pub s3_endpoint: Setting<Option<String>>,
    /// The S3 region (`remote.s3_region`, `AWS_REGION`).
    pub s3_region: Setting<String>,
    /// Use remote tiers even under CI (`remote.in_ci`, `IPFS_ACCELERATE_REMOTE_IN_CI`).
    pub in_ci: Setting<bool>,
    /// The deadline of one remote request (`remote.timeout`, `IPFS_ACCELERATE_REMOTE_TIMEOUT`).
    pub timeout: Setting<std::time::Duration>,
}

/// An `s3://bucket/prefix` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl std::str::FromStr for S3Url {
    type Err = ();

    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        let rest = s.trim().strip_prefix("s3://").ok_or(())?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(());
        }
        Ok(S3Url { bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() })
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix.as_str() {
            "" => write!(f, "s3://{}", self.bucket),
            prefix => write!(f, "s3://{}/{prefix}", self.bucket),
        }
    }
}

impl serde::Serialize for S3Url {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    config_file: Option<PathBuf>,
    /// Sections owned by other crates (`[worker]`, `[backends]`, `[github]`), typed by them
    /// through [`Config::section`].
    sections: std::collections::BTreeMap<&'static str, toml::Table>,
    data_dir: Setting<PathBuf>,
    storage: StorageConfig,
    remote: RemoteConfig,
    ci: Setting<bool>,
    key_file: Setting<PathBuf>,
    key_source: Setting<KeyStorage>,
    keyring_service: Setting<String>,
}

/// Where the secret store's master key is kept (`secrets.key_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStorage {
    /// A 0600 file (`secrets.key_file`): durable; readable by anyone who can read the file.
    #[default]
    File,
    /// The OS keyring (on Linux, the kernel keyutils session keyring, which is memory only:
    /// the key is gone after logout or reboot).
    Keyring,
}

impl std::str::FromStr for KeyStorage {
    type Err = ();

    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "file" => Ok(KeyStorage::File),
            "keyring" => Ok(KeyStorage::Keyring),
            _ => Err(()),
        }
    }
}

/// A section of the config file that another crate owns (`[worker]`, `[backends]`,
/// `[github]`): a typed struct with defaults for every key, loaded by [`Config::section`] and
/// listed key by key, with sources, by [`Config::section_entries`]. Sizes are read with
/// [`size_text`], durations with [`duration_text`]: one parser each for every section.
pub trait Section: serde::Serialize + serde::de::DeserializeOwned + Default {
    /// The table's name.
    const NAME: &'static str;
    /// Keys an environment variable overrides, with the variable. A bool key takes the
    /// truthiness words of [`parse_bool`], a number key a number, any other key the text.
    const ENV: &'static [(&'static str, &'static str)] = &[];

    /// Rules no single field's type says (ranges, references between keys); the reason,
    /// naming the key, when one is broken.
    fn validate(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// Records `source` for every key of `table`, nested tables as dotted paths.
fn file_keys(
    prefix: &str,
    table: &toml::Table,
    source: &Source,
    out: &mut std::collections::BTreeMap<String, Source>,
) {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if let toml::Value::Table(inner) = value {
            file_keys(&path, inner, source, out);
        }
        out.insert(path, source.clone());
    }
}

/// `config show` rows for `value` under `prefix`: objects are walked, anything else (arrays
/// of deployments included) is one row.
fn flatten(
    prefix: &str,
    value: &serde_json::Value,
    sources: &std::collections::BTreeMap<String, Source>,
    out: &mut Vec<ConfigEntry>,
) {
    let Some(object) = value.as_object() else { return };
    for (key, value) in object {
        let key = format!("{prefix}.{key}");
        if value.is_object() {
            flatten(&key, value, sources, out);
            continue;
        }
        // The section's own name is not part of the paths `sources` holds.
        let inner = key.split_once('.').map_or("", |(_, rest)| rest);
        let source = sources.get(inner).cloned().unwrap_or(Source::Default);
        out.push(ConfigEntry {
            key: key.clone(),
            value: value.clone(),
            source: source.to_string(),
        });
    }
}

/// One row of `config show`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConfigEntry {
    /// Dotted key, as written in the config file.
    pub key: String,
    /// The effective value.
    pub value: serde_json::Value,
    /// Where it came from ("default", "file …", "env …", "flag …").
    pub source: String,
}

impl Config {
    /// Loads the configuration from the process environment.
    pub fn load(options: &LoadOptions) -> Result<Config> {
        Config::load_with_env(options, |name| std::env::var(name).ok())
    }

    /// Loads the configuration with `env` standing in for the process environment.
    pub fn load_with_env(
        options: &LoadOptions,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        // Unset and empty are the same: `CI=` in a shell means "not CI".
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let dirs = directories::ProjectDirs::from("", "", "ipfs-accelerate");

        let (file_path, file_required) = match (&options.config_file, env(ENV_CONFIG)) {
            (Some(path), _) => (Some(path.clone()), true),
            (None, Some(path)) => (Some(PathBuf::from(path)), true),
            (None, None) => (dirs.as_ref().map(|d| d.config_dir().join("config.toml")), false),
        };
        let (file, config_file) = match &file_path {
            Some(path) => match FileConfig::read(path, file_required)? {
                Some(file) => (file, Some(path.clone())),
                None => (FileConfig::default(), None),
            },
            None => (FileConfig::default(), None),
        };
        let file_base = config_file.as_deref().and_then(Path::parent).unwrap_or(Path::new(""));
        let layers = Layers {
            env: &env,
            file_source: Source::File(config_file.clone().unwrap_or_default()),
        };
        // Paths in the config file are relative to the file.
        let file_path =
            |p: &Option<PathBuf>| p.as_ref().map(|p| file_base.join(p).display().to_string());
        let path = |s: &str| Some(PathBuf::from(s));
        let text = |s: &str| Some(s.to_string());

        let mut data_dir =
            Setting::default(dirs.as_ref().map(|d| d.data_dir().to_path_buf()).unwrap_or_default());
        layers.apply(
            &mut data_dir,
            "data_dir",
            file_path(&file.data_dir),
            ENV_LEGACY_CACHE_DIR,
            "a path",
            path,
        )?;
        layers.apply(&mut data_dir, "data_dir", None, ENV_DATA_DIR, "a path", path)?;
        if let Some(dir) = &options.data_dir {
            data_dir.set(dir.clone(), Source::Flag("--data-dir"));
        }
        if data_dir.value.as_os_str().is_empty() {
            return Err(Error::NoHomeDirectory);
        }

        let mut profile = Setting::default(Profile::default());
        let file_profile = file.storage.profile.clone();
        layers.apply(
            &mut profile,
            "storage.profile",
            file_profile,
            ENV_PROFILE,
            PROFILE_EXPECTED,
            |s| s.parse().ok(),
        )?;

        let mut budget = Setting::default(None);
        let file_budget = file.storage.budget.as_ref().map(|b| match b {
            FileSize::Bytes(n) => n.to_string(),
            FileSize::Text(t) => t.clone(),
        });
        layers.apply(
            &mut budget,
            "storage.budget",
            file_budget,
            ENV_STORAGE_BUDGET,
            SIZE_EXPECTED,
            |s| parse_size(s).map(Some),
        )?;

        let flag = |file_value: Option<bool>,
                    key: &'static str,
                    var: &'static str|
         -> Result<Setting<bool>> {
            let mut setting = Setting::default(false);
            layers.apply(
                &mut setting,
                key,
                file_value.map(|b| b.to_string()),
                var,
                BOOL_EXPECTED,
                truthy,
            )?;
            Ok(setting)
        };
        let storage = StorageConfig {
            profile,
            budget,
            force_local: flag(
                file.storage.force_local,
                "storage.force_local",
                ENV_STORAGE_FORCE_LOCAL,
            )?,
            ipfs_kit_disable: flag(
                file.storage.ipfs_kit_disable,
                "storage.ipfs_kit_disable",
                ENV_IPFS_KIT_DISABLE,
            )?,
        };
        let ci = flag(None, "ci", ENV_CI)?;

        let mut ipfs_api = Setting::default(None);
        layers.apply(
            &mut ipfs_api,
            "remote.ipfs_api",
            file.remote.ipfs_api.clone(),
            ENV_IPFS_API,
            IPFS_API_EXPECTED,
            |s| crate::remote::kubo::api_url(s).map(Some),
        )?;
        let mut s3_url = Setting::default(None);
        layers.apply(
            &mut s3_url,
            "remote.s3_url",
            file.remote.s3_url.clone(),
            ENV_S3_URL,
            S3_URL_EXPECTED,
            |s| s.parse().ok().map(Some),
        )?;
        let mut s3_endpoint = Setting::default(None);
        layers.apply(
            &mut s3_endpoint,
            "remote.s3_endpoint",
            file.remote.s3_endpoint.clone(),
            ENV_AWS_ENDPOINT_URL,
            "an http:// or https:// URL",
            |s| {
                (s.starts_with("http://") || s.starts_with("https://")).then(|| Some(s.to_string()))
            },
        )?;
        let mut s3_region = Setting::default("us-east-1".to_string());
        layers.apply(
            &mut s3_region,
            "remote.s3_region",
            file.remote.s3_region.clone(),
            ENV_AWS_REGION,
            "a region name",
            text,
        )?;
        let mut timeout = Setting::default(DEFAULT_REMOTE_TIMEOUT);
        layers.apply(
            &mut timeout,
            "remote.timeout",
            file.remote.timeout.clone(),
            ENV_REMOTE_TIMEOUT,
            DURATION_EXPECTED,
            parse_duration,
        )?;
        let remote = RemoteConfig {
            ipfs_api,
            s3_url,
            s3_endpoint,
            s3_region,
            in_ci: flag(file.remote.in_ci, "remote.in_ci", ENV_REMOTE_IN_CI)?,
            timeout,
        };

        // secrets.key_file: beside the config, never in the data directory with the ciphertext.
        let mut key_file = Setting::default(
            dirs.as_ref().map(|d| d.config_dir().join("master.key")).unwrap_or_default(),
        );
        layers.apply(
            &mut key_file,
            "secrets.key_file",
            file_path(&file.secrets.key_file),
            ENV_MASTER_KEY_FILE,
            "a path",
            path,
        )?;
        let mut key_source = Setting::default(KeyStorage::default());
        let file_source = file.secrets.key_source.clone();
        layers.apply(
            &mut key_source,
            "secrets.key_source",
            file_source,
            ENV_KEY_SOURCE,
            KEY_SOURCE_EXPECTED,
            |s| s.parse().ok(),
        )?;
        let mut keyring_service = Setting::default("ipfs-accelerate".to_string());
        let file_service = file.secrets.keyring_service.clone();
        layers.apply(
            &mut keyring_service,
            "secrets.keyring_service",
            file_service,
            ENV_KEYRING_SERVICE,
            "a name",
            text,
        )?;

        let sections =
            [("backends", file.backends), ("github", file.github), ("worker", file.worker)]
                .into_iter()
                .filter_map(|(name, table)| Some((name, table?)))
                .collect();
        Ok(Config {
            config_file,
            sections,
            data_dir,
            storage,
            remote,
            ci,
            key_file,
            key_source,
            keyring_service,
        })
    }

    /// The config file that was read, if one was.
    pub fn config_file(&self) -> Option<&Path> {
        self.config_file.as_deref()
    }

    /// The section `S` owns, typed: its defaults, under the config file's values, under the
    /// environment variables `S::ENV` names (read through `env`), then `S::validate`d.
    pub fn section<S: Section>(&self, env: impl Fn(&str) -> Option<String>) -> Result<S> {
        Ok(self.resolve::<S>(&env)?.0)
    }

    /// Every key of section `S` (nested tables flattened to dotted keys) with its effective
    /// value and source, for `config show`.
    pub fn section_entries<S: Section>(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<ConfigEntry>> {
        let (value, sources) = self.resolve::<S>(&env)?;
        let value = serde_json::to_value(&value).map_err(|e| Error::ConfigSection {
            section: S::NAME,
            reason: format!("cannot show it: {e}"),
        })?;
        let mut entries = Vec::new();
        flatten(S::NAME, &value, &sources, &mut entries);
        Ok(entries)
    }

    /// `S` with the source of each key that did not come from the defaults (dotted paths
    /// inside the section).
    fn resolve<S: Section>(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(S, std::collections::BTreeMap<String, Source>)> {
        let invalid = |reason: String| Error::ConfigSection { section: S::NAME, reason };
        let mut table = self.sections.get(S::NAME).cloned().unwrap_or_default();
        let mut sources = std::collections::BTreeMap::new();
        if let Some(path) = &self.config_file {
            file_keys("", &table, &Source::File(path.clone()), &mut sources);
        }
        let defaults = serde_json::to_value(S::default()).map_err(|e| invalid(e.to_string()))?;
        for (key, var) in S::ENV {
            let Some(text) = env(var).filter(|v| !v.trim().is_empty()) else { continue };
            // A key without a default (`null`) takes an integer as one, else the text.
            use serde_json::Value as Json;
            let default = defaults.get(*key);
            let value = match (default, text.trim().parse::<i64>()) {
                (Some(Json::Bool(_)), _) => toml::Value::Boolean(parse_bool(var, &text)?),
                (Some(Json::Number(_) | Json::Null), Ok(n)) => toml::Value::Integer(n),
                (Some(Json::Number(_)), Err(_)) => {
                    toml::Value::Float(text.trim().parse().map_err(|_| Error::InvalidEnv {
                        var: (*var).into(),
                        value: text.clone(),
                        expected: "a number",
                    })?)
                }
                _ => toml::Value::String(text.clone()),
            };
            table.insert((*key).to_string(), value);
            sources.insert((*key).to_string(), Source::Env(var));
        }
        let section: S = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| invalid(e.message().to_string()))?;
        section.validate().map_err(invalid)?;
        Ok((section, sources))
    }

    /// Where the store and everything else this system keeps lives.
    pub fn data_dir(&self) -> &Setting<PathBuf> {
        &self.data_dir
    }

    /// Storage settings.
    pub fn storage(&self) -> &StorageConfig {
        &self.storage
    }

    /// Remote tier settings.
    pub fn remote(&self) -> &RemoteConfig {
        &self.remote
    }

    /// Whether this process runs under CI (`CI` set to a true value).
    pub fn ci(&self) -> &Setting<bool> {
        &self.ci
    }

    /// The master-key file of the secret store (used unless `IPFS_ACCELERATE_MASTER_KEY` is set).
    pub fn key_file(&self) -> &Setting<PathBuf> {
        &self.key_file
    }

    /// Where the master key is kept.
    pub fn key_source(&self) -> &Setting<KeyStorage> {
        &self.key_source
    }

    /// The keyring service the master key is stored under (`secrets.keyring_service`).
    pub fn keyring_service(&self) -> &Setting<String> {
        &self.keyring_service
    }

    /// Every setting with its value and source, in a stable order, for `config show`.
    pub fn entries(&self) -> Vec<ConfigEntry> {
        fn entry<T: serde::Serialize>(key: &'static str, s: &Setting<T>) -> ConfigEntry {
            ConfigEntry {
                key: key.to_string(),
                value: serde_json::to_value(&s.value).unwrap_or(serde_json::Value::Null),
                source: s.source.to_string(),
            }
        }
        let profile = Setting {
            value: self.storage.profile.value.name(),
            source: self.storage.profile.source.clone(),
        };
        let timeout = Setting {
            value: humantime::format_duration(self.remote.timeout.value).to_string(),
            source: self.remote.timeout.source.clone(),
        };
        vec![
            entry("data_dir", &self.data_dir),
            entry("storage.profile", &profile),
            entry("storage.budget", &self.storage.budget),
            entry("storage.force_local", &self.storage.force_local),
            entry("storage.ipfs_kit_disable", &self.storage.ipfs_kit_disable),
            entry("remote.ipfs_api", &self.remote.ipfs_api),
            entry("remote.s3_url", &self.remote.s3_url),
            entry("remote.s3_endpoint", &self.remote.s3_endpoint),
            entry("remote.s3_region", &self.remote.s3_region),
            entry("remote.in_ci", &self.remote.in_ci),
            entry("remote.timeout", &timeout),
            entry("ci", &self.ci),
            entry("secrets.key_source", &self.key_source),
            entry("secrets.key_file", &self.key_file),
            entry("secrets.keyring_service", &self.keyring_service),
        ]
    }
}

const PROFILE_EXPECTED: &str = "unixfs-v1-2025, unixfs-v0-2015 (alias legacy-cid-v0) or kubo-cidv1";
const SIZE_EXPECTED: &str = "a byte count such as 1048576, 500MB or 20GiB";
const KEY_SOURCE_EXPECTED: &str = "file or keyring";
const BOOL_EXPECTED: &str = "one of 1, true, yes, on, 0, false, no, off";
const IPFS_API_EXPECTED: &str =
    "a multiaddr such as /ip4/127.0.0.1/tcp/5001 or a URL such as http://127.0.0.1:5001";
const S3_URL_EXPECTED: &str = "s3://bucket or s3://bucket/prefix (bucket: 3-63 of a-z 0-9 . -)";
const DURATION_EXPECTED: &str = "a duration such as 30s, 500ms or 2m (a bare number is seconds)";
/// Long enough for a 1 MiB block over a slow link; short enough that a dead tier is noticed.
const DEFAULT_REMOTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Parses a deadline: a [`duration`] that is not zero.
fn parse_duration(text: &str) -> Option<std::time::Duration> {
    duration(text).filter(|d| !d.is_zero())
}

/// The one duration parser: `30s`, `500ms`, `2m`, `14d`, or a bare number of seconds.
pub fn duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    match text.parse::<u64>() {
        Ok(seconds) => Some(std::time::Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(text).ok(),
    }
}

/// The one truthiness parser for environment values.
///
/// Accepts `1 true yes on` and `0 false no off`, case-insensitively, surrounding whitespace
/// ignored; anything else is an [`Error::InvalidEnv`] naming `var`.
///
/// ```
/// use ipfs_accelerate_common::config::parse_bool;
/// assert!(parse_bool("STORAGE_FORCE_LOCAL", "Yes").unwrap());
/// assert!(!parse_bool("STORAGE_FORCE_LOCAL", "off").unwrap());
/// assert!(parse_bool("STORAGE_FORCE_LOCAL", "maybe").is_err());
/// ```
pub fn parse_bool(var: &str, value: &str) -> Result<bool> {
    truthy(value).ok_or_else(|| Error::InvalidEnv {
        var: var.into(),
        value: value.into(),
        expected: BOOL_EXPECTED,
    })
}

/// The truthiness table behind [`parse_bool`].
fn truthy(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The file and environment layers, applied to one setting at a time.
struct Layers<'a, E: Fn(&str) -> Option<String>> {
    env: &'a E,
    file_source: Source,
}

impl<E: Fn(&str) -> Option<String>> Layers<'_, E> {
    /// Sets `setting` from the config file's value for `key`, then from `var`, each parsed by
    /// `parse`; a value `parse` rejects is an error naming the key or the variable.
    fn apply<T>(
        &self,
        setting: &mut Setting<T>,
        key: &'static str,
        file_value: Option<String>,
        var: &'static str,
        expected: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<()> {
        if let Some(text) = file_value {
            let value = parse(&text).ok_or(Error::InvalidConfigValue {
                key,
                value: text.clone(),
                expected,
            })?;
            setting.set(value, self.file_source.clone());
        }
        if let Some(text) = (self.env)(var) {
            let value = parse(&text).ok_or(Error::InvalidEnv {
                var: var.into(),
                value: text.clone(),
                expected,
            })?;
            setting.set(value, Source::Env(var));
        }
        Ok(())
    }
}

/// Parses a byte size: a plain count, or a number with a unit (`B`, `KB`/`MB`/`GB`/`TB` in
/// powers of 1000, `KiB`/`MiB`/`GiB`/`TiB` in powers of 1024; case-insensitive).
///
/// ```
/// use ipfs_accelerate_common::config::parse_size;
/// assert_eq!(parse_size("20GiB"), Some(20 << 30));
/// assert_eq!(parse_size("1.5 MB"), Some(1_500_000));
/// assert_eq!(parse_size("lots"), None);
/// ```
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "tb" | "t" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(multiplier);
    }
    let n: f64 = number.parse().ok()?;
    let bytes = n * multiplier as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    #[serde(default)]
    storage: FileStorage,
    #[serde(default)]
    secrets: FileSecrets,
    #[serde(default)]
    remote: FileRemote,
    /// Deployments, model groups and router settings, read by the backends crate.
    backends: Option<toml::Table>,
    /// The GitHub layer's settings (API URL, repository, registry issue), read by its crate.
    #[serde(default)]
    github: Option<toml::Table>,
    /// The local inference worker's settings (memory budget, queues, default models), read by
    /// the worker crate.
    #[serde(default)]
    worker: Option<toml::Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRemote {
    ipfs_api: Option<String>,
    s3_url: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    in_ci: Option<bool>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSecrets {
    key_file: Option<PathBuf>,
    key_source: Option<String>,
    keyring_service: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    profile: Option<String>,
    budget: Option<FileSize>,
    force_local: Option<bool>,
    ipfs_kit_disable: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileSize {
    Bytes(u64),
    Text(String),
}

impl FileConfig {
    /// Reads and parses `path`; a missing file is `None` unless `required`.
    fn read(path: &Path, required: bool) -> Result<Option<FileConfig>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
            Err(e) => return Err(Error::io("read config file", path, e)),
        };
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| Error::ConfigFile { path: path.to_path_buf(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(vars: &[(&str, &str)], options: LoadOptions) -> Result<Config> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load_with_env(&options, |name| vars.get(name).cloned())
    }

    /// An empty config file, so a developer's own `~/.config` cannot change the outcome.
    fn no_file() -> LoadOptions {
        LoadOptions { config_file: Some("/dev/null".into()), data_dir: None }
    }

    #[test]
    fn truthiness_accepts_the_documented_words_only() {
        for yes in ["1", "true", "TRUE", "yes", "On", " on "] {
            assert!(parse_bool("X", yes).unwrap(), "{yes}");
        }
        for no in ["0", "false", "No", "off"] {
            assert!(!parse_bool("X", no).unwrap(), "{no}");
        }
        for bad in ["maybe", "2", "y", "enabled", ""] {
            let err = parse_bool("STORAGE_FORCE_LOCAL", bad).unwrap_err();
            assert!(err.to_string().contains("STORAGE_FORCE_LOCAL"), "{err}");
        }
    }

    #[test]
    fn sizes_parse_with_units() {
        let cases = [
            ("0", Some(0)),
            ("1048576", Some(1 << 20)),
            ("1KiB", Some(1024)),
            ("1 kb", Some(1000)),
            ("20GiB", Some(20 << 30)),
            ("0.5GiB", Some(1 << 29)),
            ("-1", None),
            ("12XB", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_size(text), expected, "{text:?}");
        }
    }

    #[test]
    fn env_overrides_file_and_flag_overrides_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "data_dir = \"store\"\n[storage]\nbudget = \"1GiB\"\nforce_local = true\n",
        )
        .unwrap();
        let options = LoadOptions { config_file: Some(file.clone()), data_dir: None };
        let config = load(&[("STORAGE_FORCE_LOCAL", "no")], options.clone()).unwrap();
        assert_eq!(config.data_dir().value, dir.path().join("store"));
        assert_eq!(config.data_dir().source, Source::File(file.clone()));
        assert_eq!(config.storage().budget.value, Some(1 << 30));
        assert!(!config.storage().force_local.value);
        assert_eq!(config.storage().force_local.source, Source::Env("STORAGE_FORCE_LOCAL"));

        let with_flag = LoadOptions { data_dir: Some("/flag".into()), ..options };
        let config = load(&[("IPFS_ACCELERATE_DATA_DIR", "/env")], with_flag).unwrap();
        assert_eq!(config.data_dir().value, PathBuf::from("/flag"));
        assert_eq!(config.data_dir().source, Source::Flag("--data-dir"));
    }

    #[test]
    fn the_config_file_can_say_what_the_remote_variables_say() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "[remote]\nipfs_api = \"/dns4/ipfs.internal/tcp/5001\"\ns3_url = \"s3://models/cas\"\n\
             s3_endpoint = \"http://10.0.0.5:9000\"\ns3_region = \"eu-west-1\"\nin_ci = true\ntimeout = \"5s\"\n",
        )
        .unwrap();
        let options = LoadOptions { config_file: Some(file.clone()), data_dir: None };
        let config = load(&[("AWS_REGION", "us-west-2")], options).unwrap();
        let remote = config.remote();
        assert_eq!(remote.ipfs_api.value.as_deref(), Some("http://ipfs.internal:5001"));
        assert_eq!(remote.ipfs_api.source, Source::File(file));
        let s3 = remote.s3_url.value.as_ref().unwrap();
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("models", "cas"));
        assert_eq!(remote.s3_endpoint.value.as_deref(), Some("http://10.0.0.5:9000"));
        // The environment wins over the file.
        assert_eq!(remote.s3_region.value, "us-west-2");
        assert!(remote.in_ci.value);
        assert_eq!(remote.timeout.value, std::time::Duration::from_secs(5));
        let shown = config.entries();
        assert!(shown.iter().any(|e| e.key == "remote.timeout" && e.value == "5s"));
    }

    #[test]
    fn legacy_cache_dir_is_used_only_when_data_dir_is_unset() {
        let config = load(&[("IPFS_ACCELERATE_CACHE_DIR", "/legacy")], no_file()).unwrap();
        assert_eq!(config.data_dir().source, Source::Env(ENV_LEGACY_CACHE_DIR));
        let config = load(
            &[("IPFS_ACCELERATE_CACHE_DIR", "/legacy"), ("IPFS_ACCELERATE_DATA_DIR", "/new")],
            no_file(),
        )
        .unwrap();
        assert_eq!(config.data_dir().value, PathBuf::from("/new"));
    }

    #[test]
    fn malformed_values_name_their_variable_or_key() {
        let err = load(&[("STORAGE_FORCE_LOCAL", "maybe")], no_file()).unwrap_err();
        assert!(matches!(&err, Error::InvalidEnv { var, .. } if var == "STORAGE_FORCE_LOCAL"));
        let err = load(&[("IPFS_ACCELERATE_PROFILE", "v2")], no_file()).unwrap_err();
        assert!(err.to_string().contains("IPFS_ACCELERATE_PROFILE"), "{err}");
        let err = load(&[("CI", "sometimes")], no_file()).unwrap_err();
        assert!(err.to_string().contains("CI="), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "[storage]\nbudgett = 3\n").unwrap();
        let options = LoadOptions { config_file: Some(file.clone()), data_dir: None };
        let err = load(&[], options).unwrap_err();
        assert!(
            matches!(&err, Error::ConfigFile { path, message } if path == &file && message.contains("budgett")),
            "{err}"
        );
    }

    #[test]
    fn an_explicit_config_file_must_exist() {
        let options =
            LoadOptions { config_file: Some("/nonexistent/c.toml".into()), data_dir: None };
        assert!(matches!(load(&[], options), Err(Error::Io { .. })));
    }

    #[test]
    fn empty_env_values_count_as_unset() {
        let config = load(&[("CI", ""), ("STORAGE_FORCE_LOCAL", "")], no_file()).unwrap();
        assert_eq!(config.ci().source, Source::Default);
    }
}

/// Durations as humantime text (`"30s"`, `"250ms"`, `"14d"`) in TOML sections other crates own:
/// `#[serde(with = "ipfs_accelerate_common::config::duration_text")]`.
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `d` as humantime text.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Seconds(u64),
        Text(String),
    }

    /// Reads humantime text (`"30s"`, `"2m"`) or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Text::deserialize(d)? {
            Text::Seconds(n) => Ok(Duration::from_secs(n)),
            Text::Text(t) => super::duration(&t).ok_or_else(|| {
                serde::de::Error::custom(format!("{t:?} is not {}", super::DURATION_EXPECTED))
            }),
        }
    }
}

/// Sizes as a byte count or text (`"8GiB"`, `"500MB"`) in TOML sections, optional:
/// `#[serde(with = "ipfs_accelerate_common::config::size_text")]` on an `Option<u64>`.
pub mod size_text {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }

    /// Writes the byte count.
    pub fn serialize<S: Serializer>(size: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match size {
            Some(n) => s.serialize_u64(*n),
            None => s.serialize_none(),
        }
    }

    /// Reads a byte count or a size with a unit.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Size>::deserialize(d)? {
            None => Ok(None),
            Some(Size::Bytes(n)) => Ok(Some(n)),
            Some(Size::Text(t)) => super::parse_size(&t).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!("{t:?} is not {}", super::SIZE_EXPECTED))
            }),
        }
    }
}
