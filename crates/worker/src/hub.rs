//! `models pull`: a model from the Hugging Face hub (or a mirror at `HF_ENDPOINT`) streamed
//! straight into the store — no download directory, no second copy — with every LFS file
//! checked against the SHA-256 the hub lists and every file against its size. A file that
//! fails its check fails the whole pull: the model is committed whole or not at all.
//!
//! Hub routes used (what `huggingface_hub` uses): `GET /api/models/{repo}/revision/{rev}?blobs=true`
//! (the commit and the files with sizes and LFS hashes) and `GET /{repo}/resolve/{commit}/{path}`
//! (a file; `Range: bytes=…` for the safetensors header read before the download).
//!
//! Why not the `hf-hub` crate: it downloads into its own cache directory (a second copy outside
//! the store, against the one-door rule), and its 1.x releases bring the Xet client (74
//! crates) for what is two GET routes here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{stream, StreamExt, TryStreamExt};
use ipfs_accelerate_common::store::{AddInput, Progress, TreeEntry};
use ipfs_accelerate_common::unixfs::Profile;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::manifest::{self, Source};
use crate::registry::{ImportOptions, Model, Registry};

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Options for [`pull`].
#[derive(Clone)]
pub struct PullOptions {
    /// The hub's base URL (`HF_ENDPOINT`).
    pub endpoint: String,
    /// A token for gated or private repositories (`HF_TOKEN`); sent only to the endpoint.
    pub token: Option<String>,
    /// Branch, tag or commit.
    pub revision: String,
    /// The model's name [default: the repository's name].
    pub name: Option<String>,
    /// Also take files in other frameworks' formats.
    pub all_files: bool,
    /// The UnixFS profile the files are stored under.
    pub profile: Profile,
    /// Called with bytes stored so far and the total.
    pub progress: Option<Progress>,
    /// Connect deadline; a download stalled longer than `read_timeout` fails.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response.
    pub read_timeout: Duration,
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("revision", &self.revision)
            .field("name", &self.name)
            .field("all_files", &self.all_files)
            .finish_non_exhaustive()
    }
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            endpoint: DEFAULT_ENDPOINT.into(),
            token: None,
            revision: "main".into(),
            name: None,
            all_files: false,
            profile: Profile::default(),
            progress: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

impl PullOptions {
    /// The defaults under the environment: `HF_ENDPOINT`, `HF_TOKEN` (or the older
    /// `HUGGING_FACE_HUB_TOKEN`).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> PullOptions {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        PullOptions {
            endpoint: set("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into()),
            token: set("HF_TOKEN").or_else(|| set("HUGGING_FACE_HUB_TOKEN")),
            ..PullOptions::default()
        }
    }
}

#[derive(Deserialize)]
struct RepoInfo {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
    #[serde(rename = "cardData", default)]
    card_data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

/// Files in other frameworks' formats, skipped unless asked for.
fn other_framework(path: &str) -> bool {
    const DIRS: [&str; 4] = ["onnx/", "openvino/", "coreml/", "tflite/"];
    const EXTENSIONS: [&str; 8] =
        [".h5", ".msgpack", ".ot", ".onnx", ".onnx_data", ".tflite", ".mlmodel", ".pb"];
    DIRS.iter().any(|d| path.starts_with(d)) || EXTENSIONS.iter().any(|e| path.ends_with(e))
}

/// Downloads `repo` at `options.revision` into the registry.
pub async fn pull(registry: &Registry, repo: &str, options: PullOptions) -> Result<Model> {
    check_repo(repo)?;
    let client = ipfs_accelerate_common::http::client(options.connect_timeout)
        .read_timeout(options.read_timeout)
        .build()
        .map_err(|e| Error::Hub { url: options.endpoint.clone(), reason: e.to_string() })?;
    let hub = Hub {
        client,
        endpoint: options.endpoint.trim_end_matches('/').to_string(),
        token: options.token.clone(),
    };

    let info_url =
        format!("{}/api/models/{repo}/revision/{}?blobs=true", hub.endpoint, options.revision);
    // A listing of thousands of files is a few MB; the cap keeps a hostile answer bounded.
    let listing =
        ipfs_accelerate_common::http::read_body(hub.get(&info_url, None).await?, 32 << 20)
            .await
            .map_err(|e| Error::Hub { url: info_url.clone(), reason: e.to_string() })?;
    let info: RepoInfo = serde_json::from_slice(&listing).map_err(|e| Error::Hub {
        url: info_url.clone(),
        reason: format!("not a model listing: {e}"),
    })?;
    let mut files: Vec<&Sibling> = info
        .siblings
        .iter()
        .filter(|s| !s.rfilename.split('/').any(|p| p.starts_with('.')))
        .filter(|s| options.all_files || !other_framework(&s.rfilename))
        .collect();
    let listed: std::collections::BTreeMap<String, ()> =
        files.iter().map(|s| (s.rfilename.clone(), ())).collect();
    if !listed.contains_key("config.json") {
        return Err(Error::Hub {
            url: info_url,
            reason: "no config.json: only Hugging Face model layouts can be pulled (download a GGUF file and `models import` it)".into(),
        });
    }
    let weights = crate::source::weights_file(&listed).ok_or_else(|| Error::Hub {
        url: info_url.clone(),
        reason: "no weights (*.safetensors or pytorch_model.bin)".into(),
    })?;
    // A PyTorch pickle beside safetensors is the same weights again.
    if weights.ends_with(".safetensors") && !options.all_files {
        files.retain(|s| !s.rfilename.ends_with(".bin") || !s.rfilename.contains("pytorch_model"));
    }

    // What the manifest needs, read before the download: the config and the weights' header.
    let file_url = |path: &str| format!("{}/{repo}/resolve/{}/{path}", hub.endpoint, info.sha);
    let config = hub
        .get(&file_url("config.json"), None)
        .await?
        .bytes()
        .await
        .map_err(|e| Error::Hub { url: file_url("config.json"), reason: e.to_string() })?;
    let header = if weights.ends_with(".safetensors") {
        let url = file_url(&weights);
        let first = hub.range(&url, 0, 8).await?;
        let len = manifest::safetensors_header_len(&weights, &first)?;
        Some(hub.range(&url, 8, len as u64).await?)
    } else {
        None
    };
    let mut detected = manifest::detect_hf(&config, &weights, header.as_deref())?;
    detected.license = info
        .card_data
        .as_ref()
        .and_then(|c| c.get("license"))
        .and_then(|l| l.as_str())
        .map(str::to_string);

    let entries = files
        .iter()
        .map(|sibling| {
            let url = file_url(&sibling.rfilename);
            let expect = Expected {
                size: sibling.lfs.as_ref().map(|l| l.size).or(sibling.size),
                sha256: sibling.lfs.as_ref().map(|l| l.sha256.to_ascii_lowercase()),
            };
            TreeEntry {
                path: sibling.rfilename.clone(),
                input: AddInput::Reader(Box::new(hub.download(url, expect))),
            }
        })
        .collect();
    let source = Source::Hub {
        repo: repo.to_string(),
        revision: info.sha.clone(),
        endpoint: hub.endpoint.clone(),
    };
    let import = ImportOptions {
        name: options.name,
        profile: options.profile,
        progress: options.progress,
        ..ImportOptions::default()
    };
    registry.store_model(entries, detected, source, import).await.map_err(|e| match e {
        // A failed check surfaces through the store as an I/O error on the download.
        Error::Storage(ipfs_accelerate_common::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::InvalidData =>
        {
            Error::Hub { url: hub.endpoint.clone(), reason: source.to_string() }
        }
        other => other,
    })
}

fn check_repo(repo: &str) -> Result<()> {
    let valid = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    match repo.split_once('/') {
        Some((org, name)) if valid(org) && valid(name) => Ok(()),
        _ => Err(Error::InvalidInput(format!(
            "{repo:?} is not a hub repository (expected org/name)"
        ))),
    }
}

struct Expected {
    size: Option<u64>,
    sha256: Option<String>,
}

#[derive(Clone)]
struct Hub {
    client: reqwest::Client,
    endpoint: String,
    token: Option<String>,
}

impl Hub {
    async fn get(&self, url: &str, range: Option<String>) -> Result<reqwest::Response> {
        let mut request = self.client.get(url);
        if let Some(token) = &self.token {
            // reqwest drops Authorization when a redirect leaves the host (LFS goes to a CDN).
            request = request.bearer_auth(token);
        }
        if let Some(range) = range {
            request = request.header(reqwest::header::RANGE, range);
        }
        let response =
            tracing::Instrument::instrument(request.send(), tracing::info_span!("hub", %url))
                .await
                .map_err(|e| Error::Hub {
                    url: url.to_string(),
                    reason: ipfs_accelerate_common::chain_text(&e),
                })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let reason = match status.as_u16() {
            401 | 403 => {
                format!("HTTP {status}: gated or private; set HF_TOKEN to a token with access")
            }
            404 => format!("HTTP {status}: no such repository, revision or file"),
            429 => format!("HTTP {status}: rate-limited by the hub; retry later"),
            _ => format!("HTTP {status}"),
        };
        Err(Error::Hub { url: url.to_string(), reason })
    }

    /// `len` bytes at `offset` of the file at `url`.
    async fn range(&self, url: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let range = format!("bytes={offset}-{}", offset + len - 1);
        let response = self.get(url, Some(range)).await?;
        let partial = response.status() == reqwest::StatusCode::PARTIAL_CONTENT;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Error::Hub { url: url.to_string(), reason: e.to_string() })?;
        // A server that ignores Range sends the whole file: take the part asked for.
        let start = if partial { 0 } else { offset as usize };
        bytes.get(start..start + len as usize).map(<[u8]>::to_vec).ok_or_else(|| Error::Hub {
            url: url.to_string(),
            reason: format!("short read at {offset}+{len}"),
        })
    }

    /// The file at `url` as a reader that starts the request when first read and fails with
    /// `InvalidData` at its end when the bytes are not what the hub listed.
    fn download(
        &self,
        url: String,
        expected: Expected,
    ) -> impl tokio::io::AsyncRead + Send + Unpin + 'static {
        let hub = self.clone();
        let state = Arc::new(Mutex::new((Sha256::new(), 0u64)));
        let seen = Arc::clone(&state);
        let check_url = url.clone();
        let body = stream::once(async move {
            let response = hub.get(&url, None).await.map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(response.bytes_stream().map_err(std::io::Error::other))
        })
        .try_flatten()
        .inspect_ok(move |chunk: &Bytes| {
            if let Ok(mut state) = seen.lock() {
                state.0.update(chunk);
                state.1 += chunk.len() as u64;
            }
        })
        .chain(stream::once(async move {
            let (hasher, size) = {
                let state =
                    state.lock().map_err(|_| std::io::Error::other("hash state poisoned"))?;
                (state.0.clone(), state.1)
            };
            let invalid = |what: String| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{check_url}: {what}"))
            };
            if let Some(expected) = expected.size {
                if size != expected {
                    return Err(invalid(format!("{size} bytes, the hub lists {expected}")));
                }
            }
            if let Some(expected) = &expected.sha256 {
                let actual: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
                if &actual != expected {
                    return Err(invalid(format!("SHA-256 {actual}, the hub lists {expected}")));
                }
            }
            Ok(Bytes::new())
        }))
        .try_filter(|chunk| std::future::ready(!chunk.is_empty()));
        tokio_util::io::StreamReader::new(Box::pin(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_checked() {
        assert!(check_repo("sentence-transformers/all-MiniLM-L6-v2").is_ok());
        for bad in ["noslash", "a/b/c", "../x", "a/..", "a/b c", "/x"] {
            assert!(check_repo(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn other_frameworks_are_recognised() {
        assert!(other_framework("onnx/model.onnx"));
        assert!(other_framework("tf_model.h5"));
        assert!(!other_framework("model.safetensors"));
        assert!(!other_framework("1_Pooling/config.json"));
    }

    #[test]
    fn token_is_redacted_in_debug() {
        let options = PullOptions { token: Some("hf_secret".into()), ..PullOptions::default() };
        assert!(!format!("{options:?}").contains("hf_secret"));
    }
}
