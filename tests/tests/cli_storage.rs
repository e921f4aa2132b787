//! `ipfs-accelerate storage …` as a user runs it, on real files and a real store.

// End-to-end tests write their input files and inspect the store's files on purpose.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::{Read, Write};
use std::process::Stdio;

use predicates::prelude::*;
use serde_json::Value;
use tests::kubo;
use tests::Env;

fn file(env: &Env, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = env.home().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn store_files(env: &Env) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    tests::files_under(&env.home().join("data/store/blocks"))
}

#[test]
fn every_kubo_vector_through_add_quieter_and_cid() {
    let env = Env::new();
    for vector in kubo::vectors() {
        for sub in ["add", "cid"] {
            let mut child = env
                .std_cmd()
                .args(["storage", sub, "--profile", &vector.profile, "-"])
                .args(if sub == "add" { &["-Q"][..] } else { &[][..] })
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // Stream the bytes (up to 1 GiB) into the child: never a file on disk.
            let mut stdin = child.stdin.take().unwrap();
            let mut reader = vector.reader();
            let writer =
                std::thread::spawn(move || std::io::copy(&mut reader, &mut stdin).unwrap());
            let output = child.wait_with_output().unwrap();
            writer.join().unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            assert_eq!(
                String::from_utf8_lossy(&output.stdout).trim(),
                vector.cid,
                "{sub} {} {}",
                vector.profile,
                vector.size()
            );
        }
    }
}

#[test]
fn add_cat_get_stat_round_trip_with_json() {
    let env = Env::new();
    let mut data = vec![0u8; 3 << 20];
    kubo::KuboBytes::new("cli", data.len() as u64).read_exact(&mut data).unwrap();
    let input = file(&env, "input.bin", &data);
    let added =
        env.json(&["storage", "add", "--pin", "--name", "models/test", input.to_str().unwrap()]);
    let cid = added["cid"].as_str().unwrap().to_string();
    assert_eq!(added["size"], data.len());
    assert_eq!(added["pinned"], true);

    let cat = env.cmd().args(["storage", "cat", &cid]).output().unwrap();
    assert!(cat.status.success());
    assert_eq!(cat.stdout, data);
    let range = env
        .cmd()
        .args(["storage", "cat", &cid, "--offset", "1048570", "--length", "12"])
        .output()
        .unwrap();
    assert_eq!(range.stdout, data[1048570..1048582]);

    let out = env.home().join("out.bin");
    env.json(&["storage", "get", &cid, "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), data);

    let stat = env.json(&["storage", "stat", &cid]);
    assert_eq!(stat["size"], data.len());
    assert_eq!(stat["pinned"], "recursive");
    assert_eq!(stat["names"][0], "models/test");
    assert_eq!(stat["blocks_missing"], 0);

    let names = env.json(&["storage", "names", "get", "models/test"]);
    assert_eq!(names["cid"], cid);
    let status = env.json(&["storage", "status"]);
    assert_eq!(status["pins"], 1);
    assert_eq!(status["reclaimable_bytes"], 0);
    let ls = env.json(&["storage", "ls"]);
    assert_eq!(ls.as_array().unwrap().len(), 2, "listed as pinned and as named");
}

#[test]
fn gc_reports_freed_bytes_and_keeps_pinned_content() {
    let env = Env::new();
    let keep = file(&env, "keep", b"keep me");
    let drop = file(&env, "drop", &vec![9u8; 100_000]);
    let kept = env.json(&["storage", "add", "--pin", keep.to_str().unwrap()]);
    env.json(&["storage", "add", drop.to_str().unwrap()]);
    let gc = env.json(&["storage", "gc"]);
    assert_eq!(gc["bytes_freed"], 100_000);
    env.cmd()
        .args(["storage", "cat", kept["cid"].as_str().unwrap()])
        .assert()
        .success()
        .stdout("keep me");
}

#[test]
fn car_export_and_import_through_the_cli() {
    let env = Env::new();
    let input = file(&env, "in", &vec![3u8; 2_500_000]);
    let cid = env.json(&["storage", "add", "--profile", "kubo-cidv1", input.to_str().unwrap()])
        ["cid"]
        .as_str()
        .unwrap()
        .to_string();
    let car = env.home().join("x.car");
    let exported = env.json(&["storage", "export", &cid, "-o", car.to_str().unwrap()]);
    assert!(exported["blocks"].as_u64().unwrap() >= 2);

    let other = Env::new();
    let imported = other.json(&["storage", "import", car.to_str().unwrap()]);
    assert_eq!(imported["roots"][0], cid);
    assert_eq!(other.json(&["storage", "pin", "ls"])[0]["cid"], cid);
    let cat = other.cmd().args(["storage", "cat", &cid]).output().unwrap();
    assert_eq!(cat.stdout, vec![3u8; 2_500_000]);
}

#[test]
fn bad_input_is_a_clear_error_with_non_zero_exit_and_touches_nothing() {
    let env = Env::new();
    let precious = file(&env, "precious", &vec![5u8; 300_000]);
    let cid = env.json(&["storage", "add", "--pin", precious.to_str().unwrap()])["cid"]
        .as_str()
        .unwrap()
        .to_string();
    let before = store_files(&env);

    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (vec!["storage".into(), "cat".into(), "not-a-cid".into()], "is not a CID", "invalid_cid"),
        (
            vec![
                "storage".into(),
                "cat".into(),
                "bafy2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362".into(),
            ],
            "legacy non-CID id",
            "legacy_fake_cid",
        ),
        (
            // A dag-cbor CID: well formed, not served.
            vec![
                "storage".into(),
                "stat".into(),
                "bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".into(),
            ],
            "codec 0x71",
            "unsupported_cid",
        ),
        (
            vec![
                "storage".into(),
                "cat".into(),
                "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq".into(),
            ],
            "is not in the store",
            "not_found",
        ),
        (
            vec![
                "storage".into(),
                "pin".into(),
                "rm".into(),
                "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq".into(),
            ],
            "is not pinned",
            "not_pinned",
        ),
        (
            vec!["storage".into(), "add".into(), "/nonexistent/file".into()],
            "/nonexistent/file",
            "io",
        ),
        (
            vec!["storage".into(), "names".into(), "get".into(), "no/such".into()],
            "is not set",
            "name_not_found",
        ),
    ];
    for (args, message, kind) in cases {
        env.cmd().args(&args).assert().failure().code(1).stderr(predicate::str::contains(message));
        let output = env.cmd().arg("--json").args(&args).output().unwrap();
        let body: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(body["error"]["kind"], kind, "{args:?}");
    }

    // A truncated CAR.
    let car = env.home().join("x.car");
    env.json(&["storage", "export", &cid, "-o", car.to_str().unwrap()]);
    let bytes = std::fs::read(&car).unwrap();
    let truncated = file(&env, "truncated.car", &bytes[..bytes.len() - 1000]);
    env.cmd().args(["storage", "import", truncated.to_str().unwrap()]).assert().failure().stderr(
        predicate::str::contains("CAR file is invalid")
            .or(predicate::str::contains("is not in the store")),
    );
    // Garbage for a CAR from stdin.
    env.cmd()
        .args(["storage", "import", "-"])
        .write_stdin("garbage")
        .assert()
        .failure()
        .stderr(predicate::str::contains("CAR"));

    assert_eq!(store_files(&env), before, "no stored byte changed");
    env.cmd().args(["storage", "verify"]).assert().success();
    let cat = env.cmd().args(["storage", "cat", &cid]).output().unwrap();
    assert_eq!(cat.stdout, vec![5u8; 300_000]);
}

#[test]
fn a_flipped_bit_makes_cat_and_verify_fail_naming_the_block() {
    let env = Env::new();
    let input = file(&env, "in", &vec![1u8; 2 << 20]);
    let cid = env.json(&["storage", "add", "--pin", input.to_str().unwrap()])["cid"]
        .as_str()
        .unwrap()
        .to_string();
    let (path, mut bytes) = store_files(&env).into_iter().next().unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let cat = env.cmd().args(["storage", "cat", &cid]).output().unwrap();
    assert_eq!(cat.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&cat.stderr);
    assert!(stderr.contains("is corrupt"), "{stderr}");
    assert!(cat.stdout.iter().all(|&b| b == 1), "no corrupt byte is written");
    let verify = env.cmd().args(["--json", "storage", "verify"]).output().unwrap();
    assert_eq!(verify.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(
        report["corrupt"].as_array().unwrap().len(),
        1,
        "exactly the flipped block: {report}"
    );
    assert!(stderr.contains(report["corrupt"][0].as_str().unwrap()), "cat named the same block");
    assert_eq!(report["missing"].as_array().unwrap().len(), 0);

    // A second store holding the same content repairs this one.
    let other = Env::new();
    other.json(&["storage", "add", "--pin", input.to_str().unwrap()]);
    let repaired = env.json(&[
        "storage",
        "verify",
        "--repair-from",
        other.home().join("data").to_str().unwrap(),
    ]);
    assert_eq!(repaired["repaired"].as_array().unwrap().len(), 1);
    env.cmd().args(["storage", "verify"]).assert().success();
    assert_eq!(
        env.cmd().args(["storage", "cat", &cid]).output().unwrap().stdout,
        vec![1u8; 2 << 20]
    );
}

#[test]
fn progress_goes_to_stderr_and_quiet_prints_only_the_cid() {
    let env = Env::new();
    let input = file(&env, "in", b"abc");
    env.cmd()
        .args(["storage", "add", "--quiet", input.to_str().unwrap()])
        .assert()
        .success()
        .stdout("bafkreif2pall7dybz7vecqka3zo24irdwabwdi4wc55jznaq75q7eaavvu\n");
    let mut child = env
        .std_cmd()
        .args(["storage", "add", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"abc").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "added bafkreif2pall7dybz7vecqka3zo24irdwabwdi4wc55jznaq75q7eaavvu -\n"
    );
}
