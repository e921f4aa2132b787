//! The store under faults from below: a lost or damaged index, a stray file, a real small
//! filesystem filled to 100% and then remounted read-only (a tmpfs in a user namespace, via
//! `unshare`), and syscalls failing with ENOSPC or EIO (`strace -e inject`). After each: a
//! clear error or success, never a panic, and nothing already stored is lost.

// The tests damage the store's files on purpose.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Output;

use tests::{assert_reported, Env};

fn store_dir(env: &Env) -> PathBuf {
    env.home().join("data/store")
}

#[test]
fn a_lost_index_is_an_error_naming_the_rebuild_which_restores_it() {
    // Opening a store whose meta.sqlite was gone silently made an empty one; `verify` passed
    // with 0 blocks and `gc` deleted every block file as a stray.
    for damage in ["missing", "empty", "garbage"] {
        let env = Env::new();
        let data = tests::pseudo_random(1, 3_000_000);
        let cid = env.add(&env.write_file("a", &data), true);
        env.ok(&["storage", "names", "set", "model/a", &cid]);
        let other_data = tests::pseudo_random(2, 1_200_000);
        let other = env.add(&env.write_file("b", &other_data), false);
        let db = store_dir(&env).join("meta.sqlite");
        let block_files = || tests::files_under(&store_dir(&env).join("blocks")).len();
        let before = block_files();
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        match damage {
            "missing" => std::fs::remove_file(&db).unwrap(),
            "empty" => std::fs::write(&db, b"").unwrap(),
            _ => std::fs::write(&db, tests::pseudo_random(9, 8192)).unwrap(),
        }
        for args in [&["storage", "gc"][..], &["storage", "verify"], &["storage", "cat", &cid]] {
            assert_reported(&env.run(args), "storage verify --rebuild-index");
        }
        assert_eq!(block_files(), before, "{damage}: nothing was deleted");

        let rebuilt: serde_json::Value =
            serde_json::from_str(&env.ok(&["--json", "storage", "verify", "--rebuild-index"]))
                .unwrap();
        // The large blocks from their files; the small roots, the pin and the name from the
        // journal; the unpinned file's root named so that gc keeps it.
        assert_eq!(rebuilt["files"].as_u64().unwrap(), before as u64, "{rebuilt}");
        assert_eq!(rebuilt["journal_blocks"].as_u64().unwrap(), 2, "{rebuilt}");
        assert_eq!(
            (rebuilt["pins"].as_u64(), rebuilt["names"].as_u64()),
            (Some(1), Some(1)),
            "{rebuilt}"
        );
        assert_eq!(
            rebuilt["recovered"],
            serde_json::json!([format!("recovered/{other}")]),
            "{rebuilt}"
        );
        assert_eq!(rebuilt["unrestorable"], serde_json::json!([]), "{rebuilt}");
        env.ok(&["storage", "gc"]);
        env.ok(&["storage", "verify"]);
        assert_eq!(block_files(), before, "{damage}: the recovered blocks survive gc");
        assert_eq!(env.ok(&["storage", "names", "get", "model/a"]), cid);
        for (cid, data) in [(&cid, &data), (&other, &other_data)] {
            let cat = env.std_cmd().args(["storage", "cat", cid]).output().unwrap();
            assert!(cat.stdout == *data, "{damage}: {cid} reads back");
        }
        let again = env.run(&["storage", "verify", "--rebuild-index"]);
        assert_reported(&again, "nothing to rebuild");
    }
}

#[test]
fn a_stray_regular_file_in_blocks_does_not_break_gc() {
    let env = Env::new();
    let data = tests::pseudo_random(2, 2_000_000);
    let cid = env.add(&env.write_file("a", &data), true);
    env.add(&env.write_file("b", &tests::pseudo_random(3, 2_000_000)), false);
    std::fs::write(store_dir(&env).join("blocks/stray.txt"), b"not a shard").unwrap();
    let gc: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "storage", "gc"])).unwrap();
    assert!(gc["blocks_removed"].as_u64().unwrap() >= 2, "{gc}");
    env.ok(&["storage", "verify"]);
    assert_eq!(env.std_cmd().args(["storage", "cat", &cid]).output().unwrap().stdout, data);
}

/// Runs `script` as root of a fresh user and mount namespace (`unshare -rm`), with `$B` the
/// binary, `$MNT` an empty directory to mount on and `$WORK` this test's home.
fn in_namespace(env: &Env, script: &str) -> Output {
    let mnt = env.home().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let output = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-euc", script])
        .env("B", tests::binary())
        .env("MNT", &mnt)
        .env("WORK", env.home())
        .env("HOME", env.home())
        .env("XDG_CONFIG_HOME", env.home().join("config"))
        .env("IPFS_ACCELERATE_DATA_DIR", mnt.join("data"))
        .output()
        .expect("unshare (util-linux) runs: `cargo xtask test` installs it");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "namespace script failed: {stderr}");
    output
}

#[test]
fn a_full_disk_then_a_read_only_one_still_reads_and_frees() {
    let env = Env::new();
    env.write_file("keep", &tests::pseudo_random(4, 8_000_000));
    env.write_file("junk", &tests::pseudo_random(5, 8_000_000));
    let script = r#"
mount -t tmpfs -o size=160m tmpfs "$MNT"
KEEP=$("$B" storage add -Q --pin "$WORK/keep")
JUNK=$("$B" storage add -Q --pin "$WORK/junk")
test -f "$MNT/data/store/reserve" && echo "reserve: yes"
# Fill the filesystem to the last byte.
dd if=/dev/zero of="$MNT/filler" bs=1M 2>/dev/null || true
dd if=/dev/zero of="$MNT/filler2" bs=4k 2>/dev/null || true
echo "free: $(df -B1 --output=avail "$MNT" | tail -1 | tr -d ' ')"
if "$B" storage add -Q "$WORK/junk" >/dev/null 2>"$WORK/add.err"; then echo "add: stored (deduplicated)"; else echo "add: refused"; fi
"$B" storage cat "$KEEP" | cmp - "$WORK/keep" && echo "cat full: same"
"$B" storage pin rm "$JUNK" >/dev/null && echo "pin rm full: ok"
"$B" --json storage gc > "$WORK/gc.json" && echo "gc full: ok"
"$B" storage verify >/dev/null && echo "verify full: ok"
rm -f "$MNT/filler" "$MNT/filler2"
mount -o remount,ro "$MNT"
"$B" storage cat "$KEEP" | cmp - "$WORK/keep" && echo "cat ro: same"
"$B" storage verify >/dev/null && echo "verify ro: ok"
"$B" --json storage ls > "$WORK/ls.json" && echo "ls ro: ok"
if "$B" storage add -Q "$WORK/junk" 2>"$WORK/ro-add.err"; then echo "add ro: stored?"; else echo "add ro: refused"; fi
"#;
    let output = in_namespace(&env, script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in [
        "reserve: yes",
        "free: 0",
        "cat full: same",
        "pin rm full: ok",
        "gc full: ok",
        "verify full: ok",
        "cat ro: same",
        "verify ro: ok",
        "ls ro: ok",
        "add ro: refused",
    ] {
        assert!(stdout.contains(line), "wanted {line:?} in:\n{stdout}");
    }
    let gc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.home().join("gc.json")).unwrap()).unwrap();
    assert!(gc["bytes_freed"].as_u64().unwrap() >= 8_000_000, "{gc}");
    let refused = std::fs::read_to_string(env.home().join("ro-add.err")).unwrap();
    assert!(refused.contains("ead-only") && !refused.contains("panicked"), "{refused}");
}

/// `strace` failing the `when`th call of `syscalls` with `errno` while `args` runs.
fn injected(env: &Env, syscalls: &str, errno: &str, when: &str, args: &[&str]) -> Output {
    std::process::Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-e"])
        .arg(format!("inject={syscalls}:error={errno}:when={when}"))
        .arg(tests::binary())
        .args(args)
        .env_clear()
        .env("HOME", env.home())
        .env("XDG_CONFIG_HOME", env.home().join("config"))
        .env("IPFS_ACCELERATE_DATA_DIR", env.home().join("data"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("strace runs: `cargo xtask test` installs it")
}

#[test]
fn syscalls_failing_with_enospc_and_eio_lose_nothing() {
    let env = Env::new();
    let keep = tests::pseudo_random(6, 3_000_000);
    let keep_cid = env.add(&env.write_file("keep", &keep), true);
    let faults: &[(&str, &str, &str)] = &[
        ("write", "ENOSPC", "3"),
        ("pwrite64", "ENOSPC", "2"),
        ("fsync,fdatasync", "EIO", "1"),
        ("syncfs", "EIO", "1"),
        ("rename,renameat,renameat2", "EIO", "1"),
        ("unlink,unlinkat", "EIO", "1"),
        ("openat", "ENOSPC", "40"),
    ];
    let (mut injected_runs, mut errors) = (0, 0);
    for (round, (syscalls, errno, when)) in faults.iter().enumerate() {
        let data = tests::pseudo_random(100 + round as u64, 2_000_000);
        let path = env.write_file(&format!("f{round}"), &data);
        let path = path.to_str().unwrap();
        env.add(
            &env.write_file("junk", &tests::pseudo_random(200 + round as u64, 1_500_000)),
            false,
        );
        for args in [&["storage", "add", "--pin", path][..], &["storage", "gc"]] {
            let output = injected(&env, syscalls, errno, when, args);
            injected_runs += 1;
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!stderr.contains("panicked"), "{syscalls} {errno}: {stderr}");
            assert!(
                matches!(output.status.code(), Some(0 | 1)),
                "{syscalls}={errno} on {args:?}: exit {:?}: {stderr}",
                output.status
            );
            errors += u32::from(output.status.code() == Some(1));
            // Whatever failed, the store is whole and the operation works once the fault ends.
            env.ok(&["storage", "verify"]);
            assert_eq!(
                env.std_cmd().args(["storage", "cat", &keep_cid]).output().unwrap().stdout,
                keep
            );
        }
        let cid = env.add(Path::new(path), true);
        assert_eq!(env.std_cmd().args(["storage", "cat", &cid]).output().unwrap().stdout, data);
    }
    env.ok(&["storage", "gc"]);
    env.ok(&["storage", "verify"]);
    assert!(errors >= 4, "most injected faults surface as errors ({errors} of {injected_runs})");
    eprintln!("syscall faults: {injected_runs} runs injected, {errors} reported errors, 0 panics, 0 lost blocks");
}
