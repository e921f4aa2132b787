//! The secret store's security properties, on real files.

// Tests read and damage the store's files on purpose; a test's unwrap is its assertion.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use ipfs_accelerate_common::secrets::{MasterKey, Secret, SecretStore};
use ipfs_accelerate_common::Error;

const VALUE: &str = "sk-live-6f1c0ffee-plaintext-marker";

fn key(byte: u8) -> MasterKey {
    MasterKey::from_bytes([byte; 32])
}

#[test]
fn round_trip_list_remove_and_no_plaintext_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path().join("s"), key(1)).unwrap();
    store.set("openai_api_key", &Secret::new(VALUE.into())).unwrap();
    store.set("hf_token", &Secret::new("hf_other".into())).unwrap();
    assert_eq!(store.get("openai_api_key").unwrap().unwrap().expose(), VALUE);
    let names: Vec<_> = store.list().unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["hf_token", "openai_api_key"]);
    assert!(store.remove("hf_token").unwrap());
    assert!(!store.remove("hf_token").unwrap());
    assert!(store.get("hf_token").unwrap().is_none());

    for (path, bytes) in tests::files_under(dir.path()) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(VALUE), "plaintext in {}", path.display());
        assert!(!text.contains("hf_other"), "plaintext in {}", path.display());
    }
    let audit = std::fs::read_to_string(dir.path().join("s/audit.jsonl")).unwrap();
    assert!(audit.lines().any(|l| l.contains("\"set\"") && l.contains("openai_api_key")));
}

#[test]
fn files_are_private_from_creation() {
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path().join("s"), key(1)).unwrap();
    store.set("a", &Secret::new("x".into())).unwrap();
    let mode =
        |p: &str| std::fs::metadata(dir.path().join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("s"), 0o700);
    for file in ["s/secrets.enc", "s/audit.jsonl", "s/secrets.lock"] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
}

#[test]
fn a_wrong_key_is_a_clear_error_and_the_file_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    SecretStore::open(&path, key(1)).unwrap().set("a", &Secret::new(VALUE.into())).unwrap();
    let before = std::fs::read(path.join("secrets.enc")).unwrap();

    let err = SecretStore::open(&path, key(2)).unwrap_err();
    assert!(
        matches!(&err, Error::SecretsUndecryptable { reason, .. } if reason.contains("master key")),
        "{err}"
    );
    assert_eq!(std::fs::read(path.join("secrets.enc")).unwrap(), before);
    // The right key still opens it.
    assert_eq!(
        SecretStore::open(&path, key(1)).unwrap().get("a").unwrap().unwrap().expose(),
        VALUE
    );
}

#[test]
fn a_flipped_byte_fails_authentication_and_nothing_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = SecretStore::open(&path, key(1)).unwrap();
    store.set("a", &Secret::new(VALUE.into())).unwrap();
    let file = path.join("secrets.enc");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let ct = json["secrets"]["a"]["sealed"]["ciphertext"].as_str().unwrap().to_string();
    let flipped = format!("{}{}", if ct.starts_with('A') { 'B' } else { 'A' }, &ct[1..]);
    json["secrets"]["a"]["sealed"]["ciphertext"] = flipped.into();
    std::fs::write(&file, serde_json::to_vec(&json).unwrap()).unwrap();
    let tampered = std::fs::read(&file).unwrap();

    // The whole-file authenticator catches it before the entry's own seal is tried.
    let err = store.get("a").unwrap_err();
    assert!(
        matches!(&err, Error::SecretsUndecryptable { reason, .. } if reason.contains("\"a\"") && reason.contains("altered")),
        "{err}"
    );
    // Truncation is as clear, and a write to a store that does not open writes nothing.
    std::fs::write(&file, &tampered[..tampered.len() / 2]).unwrap();
    let err = store.set("b", &Secret::new("new".into())).unwrap_err();
    assert!(matches!(err, Error::SecretsUndecryptable { .. }), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), &tampered[..tampered.len() / 2]);
}

#[test]
fn a_ciphertext_moved_to_another_name_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = SecretStore::open(&path, key(1)).unwrap();
    store.set("a", &Secret::new(VALUE.into())).unwrap();
    store.set("b", &Secret::new("other".into())).unwrap();
    let file = path.join("secrets.enc");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    json["secrets"]["b"]["sealed"] = json["secrets"]["a"]["sealed"].clone();
    std::fs::write(&file, serde_json::to_vec(&json).unwrap()).unwrap();
    assert!(matches!(store.get("b"), Err(Error::SecretsUndecryptable { .. })));
}

#[test]
fn concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    SecretStore::open(&path, key(1)).unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let path = path.clone();
            std::thread::spawn(move || {
                // Separate opens: flock locks belong to open file descriptions, as across processes.
                let store = SecretStore::open(&path, key(1)).unwrap();
                for i in 0..15 {
                    store
                        .set(&format!("w{w}-{i}"), &Secret::new(format!("value-{w}-{i}")))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let store = SecretStore::open(&path, key(1)).unwrap();
    assert_eq!(store.list().unwrap().len(), 60);
    assert_eq!(store.get("w3-14").unwrap().unwrap().expose(), "value-3-14");
}

#[test]
fn rotate_key_is_atomic_under_a_concurrent_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = SecretStore::open(&path, key(1)).unwrap();
    for i in 0..50 {
        store.set(&format!("k{i}"), &Secret::new(format!("v{i}"))).unwrap();
    }
    let done = Arc::new(Mutex::new(false));
    let reader = {
        let (path, done) = (path.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut reads = 0;
            let mut opened = 0;
            while !*done.lock().unwrap() || reads == 0 {
                // Whatever moment this lands on, the file is whole: it parses, and the only
                // way a read fails is that a rotation changed the key under it.
                let bytes = std::fs::read(path.join("secrets.enc")).unwrap();
                let json: serde_json::Value =
                    serde_json::from_slice(&bytes).expect("never a half-written file");
                assert_eq!(json["secrets"].as_object().unwrap().len(), 50);
                for k in [1, 2] {
                    match SecretStore::open(&path, key(k)).and_then(|s| s.get("k7")) {
                        Ok(value) => {
                            assert_eq!(value.unwrap().expose(), "v7");
                            opened += 1;
                        }
                        Err(Error::SecretsUndecryptable { reason, .. }) => {
                            assert!(reason.contains("master key"), "{reason}")
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                reads += 1;
            }
            assert!(opened > 0);
            reads
        })
    };
    let mut store = store;
    for round in 0..6 {
        let next = if round % 2 == 0 { key(2) } else { key(1) };
        store = store.rotate_key(next).unwrap();
    }
    *done.lock().unwrap() = true;
    assert!(reader.join().unwrap() > 0);
    assert_eq!(store.get("k49").unwrap().unwrap().expose(), "v49");
    assert!(SecretStore::open(&path, key(2)).is_err(), "six rotations end on key 1");
}

#[test]
fn key_sources_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let secrets_dir = dir.path().join("s");
    std::fs::create_dir_all(&secrets_dir).unwrap();

    // A key file beside the ciphertext is refused.
    let beside = secrets_dir.join("master.key");
    MasterKey::generate().write_new_file(&beside).unwrap();
    let err = SecretStore::open(&secrets_dir, MasterKey::from_file(&beside).unwrap()).unwrap_err();
    assert!(matches!(err, Error::KeyFile { .. }), "{err}");

    // A key file others can read is refused.
    let apart = dir.path().join("master.key");
    MasterKey::generate().write_new_file(&apart).unwrap();
    assert_eq!(std::fs::metadata(&apart).unwrap().permissions().mode() & 0o777, 0o600);
    std::fs::set_permissions(&apart, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(MasterKey::from_file(&apart), Err(Error::KeyFile { .. })));
    std::fs::set_permissions(&apart, std::fs::Permissions::from_mode(0o600)).unwrap();
    let store = SecretStore::open(&secrets_dir, MasterKey::from_file(&apart).unwrap()).unwrap();
    assert!(
        store.key_source().warning().is_some(),
        "a file key is reported as weaker than a keyring"
    );

    // The environment key: base64 of exactly 32 bytes; the value is never echoed in errors.
    assert!(MasterKey::from_env_value("AAAA").is_err());
    let err = MasterKey::from_env_value("not base64 at all!").unwrap_err();
    assert!(!err.to_string().contains("not base64 at all"), "{err}");
    // 32 zero bytes in base64.
    let good = MasterKey::from_env_value("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
    assert_eq!(good.source(), &ipfs_accelerate_common::secrets::KeySource::Env);
}

#[test]
fn secrets_never_reach_debug_output_or_logs() {
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::open(dir.path().join("s"), key(1)).unwrap();
        let secret = Secret::new(VALUE.into());
        store.set("a", &secret).unwrap();
        let got = store.get("a").unwrap().unwrap();
        tracing::info!(?got, %secret, "logging a secret the wrong way still redacts it");
        assert_eq!(format!("{got:?} {secret}"), "[redacted] [redacted]");
        assert!(!format!("{store:?}").contains(VALUE));
    });
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("[redacted]"), "{logs}");
    assert!(!logs.contains(VALUE), "{logs}");
}

#[test]
fn an_interrupted_key_rotation_is_finished_by_the_next_open() {
    use ipfs_accelerate_common::config::{Config, LoadOptions};
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("keys/master.key");
    let env = |var: &str| match var {
        "IPFS_ACCELERATE_DATA_DIR" => Some(dir.path().join("data").display().to_string()),
        "IPFS_ACCELERATE_MASTER_KEY_FILE" => Some(key_file.display().to_string()),
        "IPFS_ACCELERATE_CONFIG" => Some(dir.path().join("none.toml").display().to_string()),
        _ => None,
    };
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let config = Config::load_with_env(&LoadOptions::default(), env).unwrap();
    let store = SecretStore::open_config(&config, true).unwrap();
    store.set("a", &Secret::new(VALUE.into())).unwrap();

    // Crash between re-encryption and installing the new key: the pending key holds it.
    let next = dir.path().join("keys/master.key.next");
    MasterKey::generate().write_new_file(&next).unwrap();
    let _rotated = store.rotate_key(MasterKey::from_file(&next).unwrap()).unwrap();
    assert!(SecretStore::open(
        dir.path().join("data/secrets"),
        MasterKey::from_file(&key_file).unwrap()
    )
    .is_err());

    let reopened = SecretStore::open_config(&config, false).unwrap();
    assert_eq!(reopened.get("a").unwrap().unwrap().expose(), VALUE);
    assert!(!next.exists(), "the pending key was installed");

    // And a full rotation through the API.
    let (rotated, count) = reopened.rotate_master_key().unwrap();
    assert_eq!(count, 1);
    assert_eq!(rotated.get("a").unwrap().unwrap().expose(), VALUE);
    assert!(!next.exists());
}

#[test]
fn provider_keys_prefer_the_store_then_the_original_variables_then_a_typed_error() {
    use ipfs_accelerate_common::secrets::provider_key_with_env;
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path().join("s"), key(1)).unwrap();
    let env = |var: &str| (var == "HUGGINGFACE_HUB_TOKEN").then(|| "hf_from_env".to_string());
    assert_eq!(provider_key_with_env(Some(&store), "hf", env).unwrap().expose(), "hf_from_env");
    store.set("hf", &Secret::new("hf_from_store".into())).unwrap();
    assert_eq!(provider_key_with_env(Some(&store), "hf", env).unwrap().expose(), "hf_from_store");
    let err = provider_key_with_env(Some(&store), "openai", env).unwrap_err();
    assert!(
        matches!(&err, Error::MissingCredential { tried, .. } if tried.contains("$OPENAI_API_KEY")),
        "{err}"
    );
}

#[test]
fn a_crashed_writers_temp_file_does_not_block_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = SecretStore::open(&path, key(1)).unwrap();
    // What a writer killed mid-write leaves behind, under a pid this process now has.
    std::fs::write(path.join(format!(".secrets.enc.{}.tmp", std::process::id())), b"half").unwrap();
    store.set("a", &Secret::new(VALUE.into())).unwrap();
    assert_eq!(store.get("a").unwrap().unwrap().expose(), VALUE);
}

/// Reads the store file as JSON, lets `edit` change it, writes it back.
fn edit_file(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let file = dir.join("secrets.enc");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&file, serde_json::to_vec(&json).unwrap()).unwrap();
}

fn altered(err: &Error, needle: &str) -> bool {
    matches!(err, Error::SecretsUndecryptable { reason, .. } if reason.contains(needle))
}

#[test]
fn a_deleted_entry_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path(), key(1)).unwrap();
    store.set("a", &Secret::new("1".into())).unwrap();
    store.set("b", &Secret::new("2".into())).unwrap();
    edit_file(dir.path(), |json| {
        json["secrets"].as_object_mut().unwrap().remove("b");
    });
    let err = store.get("a").unwrap_err();
    assert!(altered(&err, "\"b\" was deleted"), "{err}");
}

#[test]
fn an_entry_rolled_back_to_an_older_sealed_copy_is_detected() {
    // Each older seal still opens under the key: only the whole-file authenticator sees it.
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path(), key(1)).unwrap();
    store.set("a", &Secret::new("old".into())).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("secrets.enc")).unwrap()).unwrap();
    let old_entry = json["secrets"]["a"].clone();
    store.set("a", &Secret::new("new".into())).unwrap();
    edit_file(dir.path(), |json| json["secrets"]["a"] = old_entry);
    let err = store.get("a").unwrap_err();
    assert!(altered(&err, "\"a\" does not match"), "{err}");
}

#[test]
fn a_whole_file_rolled_back_or_stripped_of_its_authenticator_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path(), key(1)).unwrap();
    store.set("a", &Secret::new("old".into())).unwrap();
    let older = std::fs::read(dir.path().join("secrets.enc")).unwrap();
    store.set("a", &Secret::new("new".into())).unwrap();
    let newer = std::fs::read(dir.path().join("secrets.enc")).unwrap();

    std::fs::write(dir.path().join("secrets.enc"), &older).unwrap();
    let err = store.get("a").unwrap_err();
    assert!(altered(&err, "rolled back"), "{err}");
    let err = store.set("b", &Secret::new("x".into())).unwrap_err();
    assert!(altered(&err, "rolled back"), "a write refuses too: {err}");

    std::fs::write(dir.path().join("secrets.enc"), &newer).unwrap();
    edit_file(dir.path(), |json| {
        json.as_object_mut().unwrap().remove("manifest");
    });
    let err = store.get("a").unwrap_err();
    assert!(altered(&err, "authenticator was removed"), "{err}");

    // A deliberate restore of the older copy is a rollback the store accepts.
    std::fs::write(dir.path().join("secrets.enc"), &newer).unwrap();
    assert_eq!(store.restore(&older).unwrap(), 1);
    assert_eq!(store.get("a").unwrap().unwrap().expose(), "old");
    store.set("a", &Secret::new("after".into())).unwrap();
    assert_eq!(store.get("a").unwrap().unwrap().expose(), "after");
}

#[test]
fn a_file_from_before_the_authenticator_opens_and_gains_one_on_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path(), key(1)).unwrap();
    store.set("a", &Secret::new("1".into())).unwrap();
    // As an older build wrote it: no manifest, no version record.
    edit_file(dir.path(), |json| {
        json.as_object_mut().unwrap().remove("manifest");
    });
    std::fs::remove_file(dir.path().join("secrets.version")).unwrap();
    assert_eq!(store.get("a").unwrap().unwrap().expose(), "1");
    store.set("b", &Secret::new("2".into())).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("secrets.enc")).unwrap()).unwrap();
    assert!(json["manifest"].is_object(), "{json}");
}
