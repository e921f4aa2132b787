//! Encrypted secrets: AES-256-GCM per secret, the key held apart from the ciphertext.
//!
//! Each secret is sealed with a fresh random 96-bit nonce and associated data binding it to
//! the format version and its own name, so a ciphertext moved to another name fails to open.
//! A check value sealed the same way detects a wrong master key even in an empty store.
//!
//! The Python original lost every secret when a decrypt failed (it started over empty and the
//! next write replaced the file) and kept its key file beside the ciphertext. Here:
//! - a file that fails to decrypt is an error naming the cause, and is never written;
//! - writes are temp file (created 0600) + fsync + rename, under an exclusive advisory lock
//!   held across read-modify-write, so concurrent processes lose nothing;
//! - the master key comes from an explicit [`MasterKey`] source; a key file inside the secrets
//!   directory is refused;
//! - [`Secret`] prints `[redacted]` and zeroes its memory on drop;
//! - every change appends a JSON line (time, action, name; never a value) to `audit.jsonl`.
//!
//! ```
//! use ipfs_accelerate_common::secrets::{MasterKey, Secret, SecretStore};
//! let dir = tempfile::tempdir()?;
//! let store = SecretStore::open(dir.path().join("secrets"), MasterKey::from_bytes([7; 32]))?;
//! store.set("openai_api_key", &Secret::new("sk-test".into()))?;
//! assert_eq!(store.get("openai_api_key")?.unwrap().expose(), "sk-test");
//! assert_eq!(format!("{:?}", store.get("openai_api_key")?.unwrap()), "[redacted]");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Error, Result};

/// The file format; part of every secret's associated data.
const FORMAT: &str = "ipfs-accelerate-secrets/1";
/// The plaintext of the key check value.
const CHECK: &[u8] = b"ipfs-accelerate master key check";
/// How long to wait for another process's lock on the store.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// A secret value: `Debug` and `Display` print `[redacted]`; the memory is zeroed on drop.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: String) -> Secret {
        Secret(Zeroizing::new(value))
    }

    /// The value, for the one place that must send it (an HTTP header, a child's env).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a master key came from, as `secrets status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeySource {
    /// The `IPFS_ACCELERATE_MASTER_KEY` environment variable (base64).
    Env,
    /// A key file (mode 0600).
    File {
        /// The file.
        path: PathBuf,
    },
    /// The OS keyring.
    Keyring {
        /// The keyring implementation.
        backend: String,
        /// The service name the key is stored under.
        service: String,
    },
    /// Given by the program (tests, embedding applications).
    Explicit,
}

impl KeySource {
    /// A warning when this source is weaker than an OS keyring, for `status` to show.
    pub fn warning(&self) -> Option<&'static str> {
        match self {
            KeySource::Env => Some("the master key is in an environment variable: any process that can read this environment can decrypt the secrets"),
            KeySource::File { .. } => Some("the master key is in a file: anyone who can read that file can decrypt the secrets"),
            KeySource::Keyring { .. } => Some("the Linux kernel keyring holds the key in memory only: it is gone after logout or reboot, and the secrets with it, unless the key is also kept elsewhere"),
            KeySource::Explicit => None,
        }
    }
}

/// A 256-bit master key and its source; zeroed on drop, never printed.
pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
    source: KeySource,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("source", &self.source).finish_non_exhaustive()
    }
}

/// Environment variable holding a base64 master key.
pub const ENV_MASTER_KEY: &str = "IPFS_ACCELERATE_MASTER_KEY";

impl MasterKey {
    /// A key given by the program.
    pub fn from_bytes(key: [u8; 32]) -> MasterKey {
        MasterKey { key: Zeroizing::new(key), source: KeySource::Explicit }
    }

    /// A fresh random key.
    pub fn generate() -> MasterKey {
        let key = Aes256Gcm::generate_key(&mut OsRng);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&key);
        MasterKey::from_bytes(bytes)
    }

    /// The key in [`ENV_MASTER_KEY`], when set: 32 bytes in standard base64.
    pub fn from_env_value(value: &str) -> Result<MasterKey> {
        let key = decode_key(value.trim()).map_err(|reason| Error::InvalidEnv {
            var: ENV_MASTER_KEY.into(),
            value: "[redacted]".into(),
            expected: reason,
        })?;
        Ok(MasterKey { key, source: KeySource::Env })
    }

    /// The key in `path` (base64 of 32 bytes). The file must not be readable by group or
    /// others.
    pub fn from_file(path: &Path) -> Result<MasterKey> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| Error::io("stat key file", path, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(Error::KeyFile {
                path: path.to_path_buf(),
                reason: "its mode lets group or others read it; chmod 600".into(),
            });
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| Error::io("read key file", path, e))?,
        );
        let key = decode_key(text.trim())
            .map_err(|reason| Error::KeyFile { path: path.to_path_buf(), reason: reason.into() })?;
        Ok(MasterKey { key, source: KeySource::File { path: path.to_path_buf() } })
    }

    /// Writes this key to a new file at `path`, created with mode 0600 (never replacing one).
    pub fn write_new_file(&self, path: &Path) -> Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io("create key file", path, e))?;
        let text = Zeroizing::new(B64.encode(*self.key));
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("write key file", path, e))?;
        match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => fsync_dir(dir),
            _ => fsync_dir(Path::new(".")),
        }
    }

    /// The key `config` selects: [`ENV_MASTER_KEY`] when set (an explicit choice), else the
    /// slot `secrets.key_source` names: the key file `secrets.key_file` or the OS keyring. With
    /// `create`, an empty slot gets a fresh key (a file is created 0600 in a 0700 directory);
    /// without, it is [`Error::NoMasterKey`]. An unusable keyring is an error, never a quiet
    /// fallback to a weaker source.
    pub fn resolve(config: &crate::config::Config, create: bool) -> Result<MasterKey> {
        if let Some(value) = std::env::var(ENV_MASTER_KEY).ok().filter(|v| !v.is_empty()) {
            return MasterKey::from_env_value(&value);
        }
        let slot = Slot::of_config(config);
        if let Some(key) = slot.read(false)? {
            return Ok(key);
        }
        if !create {
            return Err(Error::NoMasterKey { looked: slot.describe() });
        }
        slot.write(false, &MasterKey::generate())?;
        tracing::info!(slot = %slot.describe(), "generated a new master key");
        slot.read(false)?.ok_or_else(|| Error::NoMasterKey { looked: slot.describe() })
    }

    /// Where this key came from.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.as_slice().into())
    }
}

fn decode_key(text: &str) -> std::result::Result<Zeroizing<[u8; 32]>, &'static str> {
    let bytes = Zeroizing::new(B64.decode(text).map_err(|_| "base64 of a 32-byte key")?);
    let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| "base64 of exactly 32 bytes")?;
    Ok(Zeroizing::new(key))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sealed {
    nonce: String,
    ciphertext: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoreFile {
    format: String,
    check: Sealed,
    secrets: BTreeMap<String, Entry>,
    /// The whole-file authenticator: a sealed [`Manifest`] (absent only in files written
    /// before it existed, which are accepted until the first write adds one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest: Option<Sealed>,
    /// The manifest's version, once authenticated (not stored outside the manifest).
    #[serde(skip)]
    version: u64,
}

impl StoreFile {
    fn empty(key: &MasterKey) -> Result<StoreFile> {
        Ok(StoreFile {
            format: FORMAT.into(),
            check: seal(key, "__check__", CHECK)?,
            secrets: BTreeMap::new(),
            manifest: None,
            version: 0,
        })
    }
}

/// What the manifest seals: a version that grows with every write, and a digest of every
/// entry. Each secret is sealed on its own, so without this an entry could be deleted, or
/// swapped for an older sealed copy of itself, and every remaining seal would still open.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    version: u64,
    entries: BTreeMap<String, String>,
}

impl Manifest {
    fn of(file: &StoreFile, version: u64) -> Manifest {
        let entries = file
            .secrets
            .iter()
            .map(|(name, entry)| {
                use sha2::Digest;
                let mut hash = sha2::Sha256::new();
                for part in [entry.sealed.nonce.as_bytes(), entry.sealed.ciphertext.as_bytes()] {
                    hash.update(part);
                    hash.update([0]);
                }
                hash.update(entry.updated.to_le_bytes());
                let digest: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
                (name.clone(), digest)
            })
            .collect();
        Manifest { version, entries }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    sealed: Sealed,
    updated: i64,
}

/// A secret's name and when it last changed (values are only returned by [`SecretStore::get`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretInfo {
    /// The name.
    pub name: String,
    /// Unix time of the last change.
    pub updated: i64,
}

/// The encrypted secret store in one directory: `secrets.enc`, `secrets.lock`, `audit.jsonl`.
#[derive(Debug)]
pub struct SecretStore {
    dir: PathBuf,
    key: MasterKey,
}

impl SecretStore {
    /// Opens (creating the directory, mode 0700) the store in `dir` with `key`. A key file
    /// inside `dir` is refused: the key must never sit beside the ciphertext. Fails if an
    /// existing store does not open with `key`.
    pub fn open(dir: impl Into<PathBuf>, key: MasterKey) -> Result<SecretStore> {
        let dir = dir.into();
        if let KeySource::File { path } = key.source() {
            let key_dir =
                path.parent().map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()));
            let secrets_dir = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            if key_dir.is_some_and(|k| k.starts_with(&secrets_dir)) {
                return Err(Error::KeyFile { path: path.clone(), reason: format!("it lies inside the secrets directory {}; keep the key apart from the ciphertext", dir.display()) });
            }
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io("create directory", &dir, e))?;
        let store = SecretStore { dir, key };
        store.read_file()?; // fail now, not on first use, if the key is wrong
        Ok(store)
    }

    /// The store in `<data_dir>/secrets` under the key `config` selects (see
    /// [`MasterKey::resolve`]). If that key does not open the store but the pending key of an
    /// interrupted [`SecretStore::rotate_master_key`] does, that rotation is finished first.
    pub fn open_config(config: &crate::config::Config, create_key: bool) -> Result<SecretStore> {
        let dir = config.data_dir().value.join("secrets");
        let key = MasterKey::resolve(config, create_key)?;
        let slot = Slot::of_source(key.source());
        match (SecretStore::open(&dir, key), slot) {
            (Err(e @ Error::SecretsUndecryptable { .. }), Some(slot)) => {
                // A rotation may be running (it holds the lock throughout) or may have died
                // between re-encrypting and promoting its key. Wait for the lock, then look
                // again: the current key may open the store by now.
                let _lock = lock_dir(&dir)?;
                let current = slot
                    .read(false)?
                    .ok_or_else(|| Error::NoMasterKey { looked: slot.describe() })?;
                if let Ok(store) = SecretStore::open(&dir, current) {
                    return Ok(store);
                }
                let Some(pending) = slot.read(true)? else { return Err(e) };
                SecretStore::open(&dir, pending)?;
                slot.promote()?;
                tracing::warn!(slot = %slot.describe(), "finished an interrupted key rotation");
                let key = slot
                    .read(false)?
                    .ok_or_else(|| Error::NoMasterKey { looked: slot.describe() })?;
                SecretStore::open(&dir, key)
            }
            (other, _) => other,
        }
    }

    /// Rotates to a fresh key kept where the current one is (key file or keyring): the new key
    /// is stored in a pending slot before any secret depends on it, the secrets are
    /// re-encrypted atomically, then the pending key replaces the current one. An interruption
    /// at any point leaves a store that [`SecretStore::open_config`] opens. Returns the rotated
    /// store and the number of secrets.
    pub fn rotate_master_key(self) -> Result<(SecretStore, usize)> {
        let Some(slot) = Slot::of_source(self.key.source()) else {
            return Err(Error::KeyFile {
                path: PathBuf::from(ENV_MASTER_KEY),
                reason: "rotation needs a key file or the keyring; this key comes from the environment: unset it".into(),
            });
        };
        // Held across every step, so two rotations cannot interleave: the second waits, then
        // finds the store re-keyed under it and stops before touching anything.
        let _lock = self.lock()?;
        let file = self.read_file().map_err(|e| match e {
            Error::SecretsUndecryptable { path, .. } => Error::SecretsUndecryptable {
                path,
                reason: "the store was re-keyed while this rotation waited (another rotation finished first); nothing was changed".into(),
            },
            e => e,
        })?;
        // A pending key left by a rotation interrupted before re-encryption is unused (the
        // current key opened the store), so it can go.
        slot.remove_pending()?;
        slot.write(true, &MasterKey::generate())?;
        crate::crash::crash_point("rotate-pending-written");
        let pending =
            slot.read(true)?.ok_or_else(|| Error::NoMasterKey { looked: slot.describe() })?;
        let count = file.as_ref().map_or(0, |f| f.secrets.len());
        let rotated = self.rotate_key_locked(file, pending)?;
        crate::crash::crash_point("rotate-reencrypted");
        slot.promote()?;
        crate::crash::crash_point("rotate-promoted");
        let key =
            slot.read(false)?.ok_or_else(|| Error::NoMasterKey { looked: slot.describe() })?;
        Ok((SecretStore { dir: rotated.dir, key }, count))
    }

    /// The key's source.
    pub fn key_source(&self) -> &KeySource {
        self.key.source()
    }

    fn path(&self) -> PathBuf {
        self.dir.join("secrets.enc")
    }

    /// Stores `value` under `name`.
    pub fn set(&self, name: &str, value: &Secret) -> Result<()> {
        validate(name)?;
        self.update("set", name, |file, key| {
            let sealed = seal(key, name, value.expose().as_bytes())?;
            file.secrets.insert(name.to_string(), Entry { sealed, updated: now() });
            Ok(())
        })
    }

    /// The secret under `name`, if any.
    pub fn get(&self, name: &str) -> Result<Option<Secret>> {
        validate(name)?;
        let Some(file) = self.read_file()? else { return Ok(None) };
        let Some(entry) = file.secrets.get(name) else { return Ok(None) };
        let plain = open_sealed(&self.key, &self.path(), name, &entry.sealed)?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| Error::SecretsUndecryptable {
            path: self.path(),
            reason: format!("secret {name:?} is not UTF-8"),
        })?;
        self.audit("get", name)?;
        Ok(Some(Secret::new(text)))
    }

    /// Names and change times, sorted.
    pub fn list(&self) -> Result<Vec<SecretInfo>> {
        Ok(self
            .read_file()?
            .map(|file| {
                file.secrets
                    .iter()
                    .map(|(name, e)| SecretInfo { name: name.clone(), updated: e.updated })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Removes `name`; returns whether it was there.
    pub fn remove(&self, name: &str) -> Result<bool> {
        validate(name)?;
        let mut removed = false;
        self.update("remove", name, |file, _| {
            removed = file.secrets.remove(name).is_some();
            Ok(())
        })?;
        Ok(removed)
    }

    /// Re-encrypts every secret under `new_key` in one atomic replacement; afterwards the store
    /// opens only with `new_key`. A reader at any moment sees the old file or the new, whole.
    pub fn rotate_key(self, new_key: MasterKey) -> Result<SecretStore> {
        let _lock = self.lock()?;
        let file = self.read_file()?;
        self.rotate_key_locked(file, new_key)
    }

    /// [`SecretStore::rotate_key`] of `file` (as read under the lock the caller holds).
    fn rotate_key_locked(self, file: Option<StoreFile>, new_key: MasterKey) -> Result<SecretStore> {
        let Some(file) = file else {
            return Ok(SecretStore { dir: self.dir, key: new_key });
        };
        let mut rotated = StoreFile { version: file.version, ..StoreFile::empty(&new_key)? };
        for (name, entry) in &file.secrets {
            let plain = open_sealed(&self.key, &self.path(), name, &entry.sealed)?;
            rotated.secrets.insert(
                name.clone(),
                Entry { sealed: seal(&new_key, name, &plain)?, updated: entry.updated },
            );
        }
        self.write_file(&rotated, &new_key)?;
        self.audit("rotate-key", "*")?;
        Ok(SecretStore { dir: self.dir, key: new_key })
    }

    /// Replaces the store with an encrypted backup (as [`SecretStore::encrypted_bytes`] gave it),
    /// after checking that the backup and every secret in it open with this store's key.
    /// Returns the number of secrets restored. Nothing is written if any check fails.
    pub fn restore(&self, backup: &[u8]) -> Result<usize> {
        let source = PathBuf::from("<backup>");
        let file: StoreFile =
            serde_json::from_slice(backup).map_err(|e| Error::SecretsUndecryptable {
                path: source.clone(),
                reason: format!("not a secrets backup ({e})"),
            })?;
        if file.format != FORMAT {
            return Err(Error::SecretsUndecryptable {
                path: source,
                reason: format!("unknown format {:?}", file.format),
            });
        }
        open_sealed(&self.key, &source, "__check__", &file.check).map_err(|_| {
            Error::SecretsUndecryptable {
                path: source.clone(),
                reason: "the current master key does not open this backup; nothing was restored"
                    .into(),
            }
        })?;
        for (name, entry) in &file.secrets {
            open_sealed(&self.key, &source, name, &entry.sealed)?;
        }
        if let Some(manifest) = &file.manifest {
            check_manifest(&self.key, &source, &file, manifest)?;
        }
        let _lock = self.lock()?;
        // A restore is a deliberate rollback: it is written as the newest version.
        self.write_file(&file, &self.key)?;
        self.audit("restore", "*")?;
        Ok(file.secrets.len())
    }

    /// The encrypted file's bytes (for an encrypted backup; no plaintext).
    pub fn encrypted_bytes(&self) -> Result<Option<Vec<u8>>> {
        match std::fs::read(self.path()) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", self.path(), e)),
        }
    }

    fn update(
        &self,
        action: &str,
        name: &str,
        change: impl FnOnce(&mut StoreFile, &MasterKey) -> Result<()>,
    ) -> Result<()> {
        let _lock = self.lock()?;
        let mut file = match self.read_file()? {
            Some(file) => file,
            None => StoreFile::empty(&self.key)?,
        };
        change(&mut file, &self.key)?;
        self.write_file(&file, &self.key)?;
        self.audit(action, name)
    }

    /// Reads and authenticates the file: `None` if there is none; an error (and no write) if it
    /// is malformed or does not open with this key.
    fn read_file(&self) -> Result<Option<StoreFile>> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let file: StoreFile =
            serde_json::from_slice(&bytes).map_err(|e| Error::SecretsUndecryptable {
                path: path.clone(),
                reason: format!("not a secrets file ({e}); it may be truncated or damaged"),
            })?;
        if file.format != FORMAT {
            return Err(Error::SecretsUndecryptable {
                path,
                reason: format!("unknown format {:?}", file.format),
            });
        }
        open_sealed(&self.key, &path, "__check__", &file.check).map_err(|_| Error::SecretsUndecryptable {
            path: path.clone(),
            reason: "the master key does not open this file (wrong key, or the file was altered); nothing was changed".into(),
        })?;
        let mut file = file;
        let written = self.written_version()?;
        let altered = |reason: String| Error::SecretsUndecryptable { path: path.clone(), reason };
        file.version = match &file.manifest {
            Some(manifest) => check_manifest(&self.key, &path, &file, manifest)?,
            None if written > 0 => {
                return Err(altered("its whole-file authenticator was removed (the file was altered); nothing was changed".into()))
            }
            None => 0, // written before manifests existed; the next write adds one
        };
        if file.version < written {
            return Err(altered(format!(
                "it is version {} but version {written} was written here (the file was rolled back to an older copy); nothing was changed",
                file.version
            )));
        }
        Ok(Some(file))
    }

    fn version_path(&self) -> PathBuf {
        self.dir.join("secrets.version")
    }

    /// The version of the last write here (`secrets.version`; 0 before the first).
    fn written_version(&self) -> Result<u64> {
        let path = self.version_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map_err(|_| Error::SecretsUndecryptable {
                path: path.clone(),
                reason: format!(
                    "not a version number: {:?}",
                    text.chars().take(40).collect::<String>()
                ),
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io("read", &path, e)),
        }
    }

    /// Writes `file` sealed under `key` as the next version: the file first, then the version
    /// record (a kill between leaves a file newer than the record, which reads fine).
    fn write_file(&self, file: &StoreFile, key: &MasterKey) -> Result<()> {
        let version = file.version.max(self.written_version()?).saturating_add(1);
        let manifest = serde_json::to_vec(&Manifest::of(file, version))
            .map_err(|e| Error::Task(format!("encoding the secrets manifest: {e}")))?;
        let sealed = StoreFile {
            format: file.format.clone(),
            check: file.check.clone(),
            secrets: file
                .secrets
                .iter()
                .map(|(name, e)| {
                    (name.clone(), Entry { sealed: e.sealed.clone(), updated: e.updated })
                })
                .collect(),
            manifest: Some(seal(key, "__manifest__", &manifest)?),
            version,
        };
        let bytes = serde_json::to_vec_pretty(&sealed)
            .map_err(|e| Error::Task(format!("encoding secrets: {e}")))?;
        self.replace(&self.path(), &bytes)?;
        crate::crash::crash_point("secrets-renamed");
        self.replace(&self.version_path(), format!("{version}\n").as_bytes())
    }

    /// Replaces `path` with `bytes` atomically and durably: temp file (0600) + fsync + rename
    /// + directory fsync. The caller holds the lock.
    fn replace(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        // We hold the exclusive lock, so a temp file with our name is a crashed writer's (a
        // reused pid): clear it rather than fail every write from now on.
        match std::fs::remove_file(&temp) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &temp, e)),
        }
        let result = (|| {
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
                .map_err(|e| Error::io("create", &temp, e))?;
            out.write_all(bytes)
                .and_then(|()| out.sync_all())
                .map_err(|e| Error::io("write", &temp, e))?;
            std::fs::rename(&temp, path).map_err(|e| Error::io("rename", path, e))?;
            fsync_dir(&self.dir)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    fn lock(&self) -> Result<File> {
        lock_dir(&self.dir)
    }

    fn audit(&self, action: &str, name: &str) -> Result<()> {
        let path = self.dir.join("audit.jsonl");
        let line = serde_json::json!({ "time": now(), "action": action, "name": name, "pid": std::process::id() });
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        file.write_all(format!("{line}\n").as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io("append", &path, e))
    }
}

/// Takes the store's exclusive lock (`secrets.lock` in `dir`), waiting up to [`LOCK_TIMEOUT`].
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("secrets.lock");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    let deadline = Instant::now() + LOCK_TIMEOUT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(Error::io("lock", &path, std::io::Error::other(e.to_string()))),
        }
    }
}

/// Makes a rename or creation in `dir` durable: without it a power cut can undo a rename that
/// already returned (the key promotion, the secrets file).
fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("fsync", dir, e))
}

/// Authenticates `manifest` against `file`'s entries; returns its version.
fn check_manifest(
    key: &MasterKey,
    path: &Path,
    file: &StoreFile,
    manifest: &Sealed,
) -> Result<u64> {
    let altered = |reason: String| Error::SecretsUndecryptable { path: path.to_path_buf(), reason };
    let plain = open_sealed(key, path, "__manifest__", manifest)
        .map_err(|_| altered("its whole-file authenticator does not open (the file was altered); nothing was changed".into()))?;
    let sealed: Manifest = serde_json::from_slice(&plain)
        .map_err(|e| altered(format!("its whole-file authenticator is malformed ({e})")))?;
    let actual = Manifest::of(file, sealed.version);
    for (name, digest) in &sealed.entries {
        match actual.entries.get(name) {
            None => return Err(altered(format!("secret {name:?} was deleted outside the store; nothing was changed"))),
            Some(d) if d != digest => {
                return Err(altered(format!("secret {name:?} does not match the file's authenticator: it was altered, or replaced by an older sealed copy, outside the store; nothing was changed")))
            }
            Some(_) => {}
        }
    }
    if let Some(name) = actual.entries.keys().find(|n| !sealed.entries.contains_key(*n)) {
        return Err(altered(format!(
            "secret {name:?} was added outside the store; nothing was changed"
        )));
    }
    Ok(sealed.version)
}

/// Where a master key is kept durably enough to rotate: a file, or a keyring entry; each has
/// a current and a pending place.
enum Slot {
    File(PathBuf),
    Keyring(String),
}

impl Slot {
    fn of_config(config: &crate::config::Config) -> Slot {
        match config.key_source().value {
            crate::config::KeyStorage::File => Slot::File(config.key_file().value.clone()),
            crate::config::KeyStorage::Keyring => {
                Slot::Keyring(config.keyring_service().value.clone())
            }
        }
    }

    fn of_source(source: &KeySource) -> Option<Slot> {
        match source {
            KeySource::File { path } => Some(Slot::File(path.clone())),
            KeySource::Keyring { service, .. } => Some(Slot::Keyring(service.clone())),
            KeySource::Env | KeySource::Explicit => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Slot::File(path) => format!("key file {}", path.display()),
            Slot::Keyring(service) => format!("the OS keyring (service {service})"),
        }
    }

    fn file_path(path: &Path, pending: bool) -> PathBuf {
        if !pending {
            return path.to_path_buf();
        }
        let mut name = path.as_os_str().to_owned();
        name.push(".next");
        PathBuf::from(name)
    }

    fn read(&self, pending: bool) -> Result<Option<MasterKey>> {
        match self {
            Slot::File(path) => {
                let path = Slot::file_path(path, pending);
                match std::fs::metadata(&path) {
                    Ok(_) => MasterKey::from_file(&path).map(Some),
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io("stat key file", &path, e)),
                }
            }
            Slot::Keyring(service) => keyring::read(service, pending),
        }
    }

    fn write(&self, pending: bool, key: &MasterKey) -> Result<()> {
        match self {
            Slot::File(path) => {
                let path = Slot::file_path(path, pending);
                if let Some(dir) = path.parent() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                        .map_err(|e| Error::io("create directory", dir, e))?;
                }
                key.write_new_file(&path)
            }
            Slot::Keyring(service) => keyring::write(service, pending, key),
        }
    }

    fn promote(&self) -> Result<()> {
        match self {
            Slot::File(path) => {
                let pending = Slot::file_path(path, true);
                std::fs::rename(&pending, path).map_err(|e| Error::io("rename", path, e))?;
                match path.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => fsync_dir(dir),
                    _ => fsync_dir(Path::new(".")),
                }
            }
            Slot::Keyring(service) => {
                let key = keyring::read(service, true)?
                    .ok_or_else(|| Error::Keyring { reason: "the pending key vanished".into() })?;
                keyring::write(service, false, &key)?;
                keyring::remove(service, true)
            }
        }
    }

    fn remove_pending(&self) -> Result<()> {
        match self {
            Slot::File(path) => {
                let pending = Slot::file_path(path, true);
                match std::fs::remove_file(&pending) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(Error::io("remove", &pending, e)),
                }
            }
            Slot::Keyring(service) => keyring::remove(service, true),
        }
    }
}

/// The OS keyring through `keyring-core`: on Linux the kernel keyutils store.
mod keyring {
    use std::sync::Arc;

    use keyring_core::{CredentialStore, Entry};
    use zeroize::Zeroizing;

    use super::{KeySource, MasterKey};
    use crate::{Error, Result};

    fn err(e: impl std::fmt::Display) -> Error {
        Error::Keyring { reason: e.to_string() }
    }

    #[cfg(target_os = "linux")]
    fn store() -> Result<(Arc<CredentialStore>, &'static str)> {
        let store: Arc<CredentialStore> =
            linux_keyutils_keyring_store::Store::new().map_err(err)?;
        Ok((store, "linux-keyutils"))
    }

    #[cfg(not(target_os = "linux"))]
    fn store() -> Result<(Arc<CredentialStore>, &'static str)> {
        Err(Error::Keyring { reason: "no keyring backend is built for this platform yet; use secrets.key_source = \"file\"".into() })
    }

    fn entry(service: &str, pending: bool) -> Result<(Entry, &'static str)> {
        let (store, backend) = store()?;
        let user = if pending { "master-key.next" } else { "master-key" };
        Ok((Entry::new_in_store(&store, service, user).map_err(err)?, backend))
    }

    pub(super) fn read(service: &str, pending: bool) -> Result<Option<MasterKey>> {
        let (entry, backend) = entry(service, pending)?;
        match entry.get_secret() {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                let key: [u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::Keyring { reason: format!("the stored key is {} bytes, not 32", bytes.len()) })?;
                let source = KeySource::Keyring { backend: backend.into(), service: service.into() };
                Ok(Some(MasterKey { key: Zeroizing::new(key), source }))
            }
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(err(format!("{e} (on Linux the kernel keyring works inside a login session; try `keyctl session -`)"))),
        }
    }

    pub(super) fn write(service: &str, pending: bool, key: &MasterKey) -> Result<()> {
        let (entry, _) = entry(service, pending)?;
        entry.set_secret(key.key.as_slice()).map_err(|e| err(format!("storing the key: {e}")))
    }

    pub(super) fn remove(service: &str, pending: bool) -> Result<()> {
        let (entry, _) = entry(service, pending)?;
        match entry.delete_credential() {
            Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }
}

fn validate(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.starts_with("__");
    if ok {
        return Ok(());
    }
    Err(Error::InvalidName {
        input: name.to_string(),
        reason: "secret names are 1-128 of A-Z a-z 0-9 . _ - and do not start with __",
    })
}

fn aad(name: &str) -> Vec<u8> {
    format!("{FORMAT}\0{name}").into_bytes()
}

fn seal(key: &MasterKey, name: &str, plain: &[u8]) -> Result<Sealed> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ciphertext = key
        .cipher()
        .encrypt(&nonce, Payload { msg: plain, aad: &aad(name) })
        .map_err(|_| Error::Task("AES-GCM encryption failed".into()))?;
    Ok(Sealed { nonce: B64.encode(nonce), ciphertext: B64.encode(ciphertext) })
}

fn open_sealed(
    key: &MasterKey,
    path: &Path,
    name: &str,
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>> {
    let undecryptable =
        |reason: String| Error::SecretsUndecryptable { path: path.to_path_buf(), reason };
    let nonce = B64
        .decode(&sealed.nonce)
        .map_err(|_| undecryptable(format!("secret {name:?}: nonce is not base64")))?;
    if nonce.len() != 12 {
        return Err(undecryptable(format!("secret {name:?}: nonce is not 96 bits")));
    }
    let ciphertext = B64
        .decode(&sealed.ciphertext)
        .map_err(|_| undecryptable(format!("secret {name:?}: ciphertext is not base64")))?;
    key.cipher()
        .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: &aad(name) })
        .map(Zeroizing::new)
        .map_err(|_| {
            undecryptable(format!("secret {name:?} failed authentication (wrong key, or altered)"))
        })
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Environment variables the Python original read for each provider's key, in order.
pub fn provider_env_vars(provider: &str) -> &'static [&'static str] {
    match provider {
        "openai" => &["OPENAI_API_KEY"],
        "anthropic" => &["ANTHROPIC_API_KEY"],
        "gemini" | "google" => &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
        "groq" => &["GROQ_API_KEY"],
        "github" => &["GH_TOKEN", "GITHUB_TOKEN"],
        "hf" | "huggingface" => &["HF_TOKEN", "HUGGINGFACE_HUB_TOKEN", "HF_API_TOKEN"],
        "vastai" => &["VASTAI_API_KEY", "VAST_API_KEY"],
        _ => &[],
    }
}

/// A provider's credential: the secret named `provider` in `store` if there is one, else the
/// first of the provider's environment variables that is set, else
/// [`Error::MissingCredential`] naming everything tried. Never a placeholder.
pub fn provider_key(store: Option<&SecretStore>, provider: &str) -> Result<Secret> {
    provider_key_with_env(store, provider, |var| std::env::var(var).ok())
}

/// [`provider_key`] with `env` standing in for the process environment.
pub fn provider_key_with_env(
    store: Option<&SecretStore>,
    provider: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Secret> {
    let mut tried = Vec::new();
    if let Some(store) = store {
        if let Some(secret) = store.get(provider)? {
            return Ok(secret);
        }
        tried.push(format!("secret {provider:?}"));
    }
    for var in provider_env_vars(provider) {
        if let Some(value) = env(var).filter(|v| !v.is_empty()) {
            return Ok(Secret::new(value));
        }
        tried.push(format!("${var}"));
    }
    Err(Error::MissingCredential { provider: provider.to_string(), tried: tried.join(", ") })
}
