//! Dependency checks and install plans, against fake programs on a fake PATH, and the plan
//! runner against real commands.
#![allow(clippy::disallowed_methods, clippy::disallowed_types, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ipfs_accelerate_install_depends::deps::{self, Context, Step};
use ipfs_accelerate_install_depends::{Error, FixedNvml, Host, NvmlFailure};

fn fake_host(dir: &std::path::Path, programs: &[(&str, &str)]) -> Host {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, banner) in programs {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\necho '{banner}'\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let nvml = Arc::new(FixedNvml(Err(NvmlFailure { probe: "-".into(), reason: "-".into() })));
    Host::new(dir.join("root"), [("PATH".to_string(), bin.display().to_string())], nvml)
}

#[tokio::test]
async fn present_tools_report_their_versions_and_missing_ones_get_a_plan() {
    let dir = tempfile::tempdir().unwrap();
    let host = fake_host(
        dir.path(),
        &[("cmake", "cmake version 3.25.1"), ("g++", "g++ (Debian 12.2.0-14) 12.2.0")],
    );
    let context = Context { host, venv: dir.path().join("venv"), cpu: None };
    let whisper = deps::select_features(&["whisper".to_string()]).unwrap();
    let statuses = deps::check(&context, &whisper).await;
    assert!(statuses[0].ready, "{statuses:?}");
    let cmake = &statuses[0].checks[0];
    assert_eq!((cmake.requirement.name, cmake.version.as_deref()), ("cmake", Some("3.25.1")));
    assert!(cmake.detail.ends_with("bin/cmake"));
    let cxx = &statuses[0].checks[1];
    assert!(cxx.detail.ends_with("bin/g++"), "the c++ requirement accepts g++: {cxx:?}");
    assert!(deps::plan(&context, &statuses, true).is_empty(), "nothing to install");

    let llama = deps::select_features(&["llama-server".to_string()]).unwrap();
    let statuses = deps::check(&context, &llama).await;
    assert!(!statuses[0].ready);
    let steps = deps::plan(&context, &statuses, true);
    let lines: Vec<String> = steps.iter().map(ToString::to_string).collect();
    // python3 is not on this fake PATH: the venv support comes from apt, then the venv, then
    // pip inside it, with llama.cpp's build flags never left to GGML_NATIVE.
    assert!(
        lines.iter().any(|l| l.contains("apt-get install -y --no-install-recommends python3-venv")),
        "{lines:#?}"
    );
    let venv = dir.path().join("venv");
    assert!(lines.contains(&format!("python3 -m venv {}", venv.display())), "{lines:#?}");
    let pip = lines.iter().find(|l| l.contains("pip install")).unwrap();
    assert!(pip.starts_with("CMAKE_ARGS='-DGGML_NATIVE=OFF"), "{pip}");
    assert!(pip.contains(&format!("{}/bin/python -m pip install", venv.display())), "{pip}");
}

#[tokio::test]
async fn no_plan_ever_touches_the_system_python() {
    let dir = tempfile::tempdir().unwrap();
    let context =
        Context { host: fake_host(dir.path(), &[]), venv: dir.path().join("venv"), cpu: None };
    let statuses = deps::check(&context, &deps::features()).await;
    assert!(statuses.iter().all(|s| !s.ready), "nothing is installed on the fake machine");
    let steps = deps::plan(&context, &statuses, true);
    assert!(!steps.is_empty());
    for step in &steps {
        let line = step.to_string();
        assert!(!line.contains("--break-system-packages"), "{line}");
        assert!(!line.contains("--user"), "{line}");
        if line.contains("pip") {
            assert!(line.contains("venv/bin/python -m pip"), "pip only inside the venv: {line}");
        }
    }
    // Drivers and Kubo are for a person; they are listed, not run.
    assert!(steps.iter().any(
        |s| matches!(s, Step::Manual { instructions, .. } if instructions.contains("NVIDIA driver"))
    ));
    // Optional requirements are planned only for features named explicitly.
    let unnamed = deps::plan(&context, &statuses, false);
    assert!(!unnamed.iter().any(|s| s.to_string().contains("s3s-fs")));
    assert!(steps
        .iter()
        .any(|s| s.to_string() == "cargo install --locked s3s-fs --version 0.14.1"));
}

#[test]
fn unknown_features_are_named_with_the_known_ones() {
    let err = deps::select_features(&["cudnn".to_string()]).unwrap_err();
    assert!(matches!(err, Error::UnknownFeature { .. }));
    assert_eq!(
        err.to_string(),
        "unknown feature \"cudnn\" (known: cuda, whisper, onnx-runtime, s3, ipfs, llama-server)"
    );
}

#[tokio::test]
async fn apply_runs_each_step_in_order_and_stops_at_the_first_failure() {
    let dir = tempfile::tempdir().unwrap();
    let marker = |name: &str| dir.path().join(name).display().to_string();
    let step = |script: String| Step::Run {
        purpose: "test step".into(),
        env: vec![("STEP_VALUE".into(), "from-env".into())],
        program: "sh".into(),
        args: vec!["-c".into(), script],
    };
    let steps = vec![
        step(format!("echo \"$STEP_VALUE\" > {}", marker("one"))),
        Step::Manual { purpose: "driver".into(), instructions: "install it".into() },
        step("exit 3".into()),
        step(format!("echo three > {}", marker("three"))),
    ];
    let err = deps::apply(&steps, Duration::from_secs(30)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "install step `STEP_VALUE=from-env sh -c 'exit 3'` failed (exit status: 3)"
    );
    assert_eq!(std::fs::read_to_string(marker("one")).unwrap(), "from-env\n");
    assert!(!std::path::Path::new(&marker("three")).exists(), "no step runs after a failure");

    let ok = deps::apply(&steps[..2], Duration::from_secs(30)).await.unwrap();
    assert_eq!(ok.ran.len(), 1);
    assert_eq!(ok.manual, ["# by hand: install it"]);

    let slow = [step("exec sleep 5".into())];
    let err = deps::apply(&slow, Duration::from_millis(200)).await.unwrap_err();
    assert!(err.to_string().contains("did not finish within 0 s"), "{err}");
}
