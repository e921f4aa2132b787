//! The OS-keyring key source, for real: the Linux kernel keyutils store inside a fresh session
//! keyring. The test re-runs itself under `keyctl session -` (Debian package `keyutils`, which
//! `.ci/run` and `cargo xtask test` install), so it neither needs nor touches the caller's own
//! session keyring.

// A test's unwrap is its assertion; the fixture writes an empty config file.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::process::Command;

use ipfs_accelerate_common::config::{Config, KeyStorage, LoadOptions};
use ipfs_accelerate_common::secrets::{KeySource, MasterKey, Secret, SecretStore};
use ipfs_accelerate_common::Error;

const INSIDE: &str = "IPFS_ACCELERATE_TEST_IN_KEYCTL_SESSION";

#[test]
fn master_key_in_the_kernel_keyring() {
    if std::env::var_os(INSIDE).is_none() {
        let exe = std::env::current_exe().unwrap();
        let status = Command::new("keyctl")
            .args(["session", "-"])
            .arg(exe)
            .args(["keyring::master_key_in_the_kernel_keyring", "--exact", "--nocapture"])
            .env(INSIDE, "1")
            .status()
            .expect("keyctl is needed for the keyring test: apt-get install keyutils");
        assert!(status.success(), "the keyring test failed inside `keyctl session -`");
        return;
    }

    // A service name of this run's own: the per-user persistent keyring outlives sessions, and
    // a user's real `ipfs-accelerate` key must never be read, replaced or removed by a test.
    let service = format!("ipfs-accelerate-test-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.toml"), "").unwrap();
    let env = |var: &str| match var {
        "IPFS_ACCELERATE_KEYRING_SERVICE" => Some(service.clone()),
        "IPFS_ACCELERATE_DATA_DIR" => Some(dir.path().join("data").display().to_string()),
        "IPFS_ACCELERATE_CONFIG" => Some(dir.path().join("empty.toml").display().to_string()),
        "IPFS_ACCELERATE_KEY_SOURCE" => Some("keyring".into()),
        _ => None,
    };
    let config = Config::load_with_env(&LoadOptions::default(), env).unwrap();
    assert_eq!(config.key_source().value, KeyStorage::Keyring);

    // An empty keyring: reading is a clear error, not a silent fallback to a file.
    let err = SecretStore::open_config(&config, false).unwrap_err();
    assert!(matches!(&err, Error::NoMasterKey { looked } if looked.contains("keyring")), "{err}");
    assert!(!config.key_file().value.exists(), "no key file was made behind the user's back");

    let store = SecretStore::open_config(&config, true).unwrap();
    assert!(
        matches!(store.key_source(), KeySource::Keyring { backend, service: s } if backend == "linux-keyutils" && *s == service)
    );
    assert!(store.key_source().warning().unwrap().contains("reboot"));
    store.set("openai", &Secret::new("sk-keyring".into())).unwrap();

    // Another open finds the same key in the keyring.
    let again = SecretStore::open_config(&config, false).unwrap();
    assert_eq!(again.get("openai").unwrap().unwrap().expose(), "sk-keyring");

    // Rotation keeps the key in the keyring and the secrets readable; the old key is gone.
    let old = MasterKey::resolve(&config, false).unwrap();
    let (rotated, count) = again.rotate_master_key().unwrap();
    assert_eq!(count, 1);
    assert_eq!(rotated.get("openai").unwrap().unwrap().expose(), "sk-keyring");
    assert!(SecretStore::open(dir.path().join("data/secrets"), old).is_err());
    assert_eq!(
        SecretStore::open_config(&config, false).unwrap().get("openai").unwrap().unwrap().expose(),
        "sk-keyring"
    );

    // Leave nothing behind in the persistent keyring.
    for user in ["master-key", "master-key.next"] {
        let description = format!("keyring:{user}@{service}");
        let _ = Command::new("keyctl").args(["purge", "-s", "user", &description]).status();
    }
}
