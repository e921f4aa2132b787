//! The error aggregator against the fake GitHub: hundreds of errors become one issue per
//! fingerprint, secrets and home paths never reach the server, recently closed issues are
//! reused, a secondary limit delays but drops nothing, and the CLI.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use ipfs_accelerate_common::cache::{Cache, CacheConfig};
use ipfs_accelerate_common::secrets::Secret;
use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_github::client::{ClientConfig, GitHub};
use ipfs_accelerate_github::errors::{Aggregator, Collector, ErrorReport, ErrorsConfig, Redactor};
use ipfs_accelerate_github::pacer::PacerConfig;
use ipfs_accelerate_github::{Token, TokenSource};
use serde_json::Value;
use tests::fake_github::{run_ok, FakeGitHub, Fault, TOKEN};
use tests::Env;

const REPO: &str = "o/r";
const LEAKED_TOKEN: &str = "ghp_SuperSecretToken1234567890abcd";

async fn setup(fake: &FakeGitHub, dir: &std::path::Path) -> (GitHub, Cache) {
    let config = ClientConfig {
        api_url: fake.url.clone(),
        pacer: PacerConfig { per_minute: 6000, per_hour: 100_000, queue: 64 },
        ..ClientConfig::default()
    };
    let cache = Cache::new(
        Store::open(dir, StoreOptions::default()).await.unwrap(),
        CacheConfig::default(),
    );
    let token = Token::new(Secret::new(TOKEN.into()), TokenSource::Flag);
    (GitHub::new(config, Some(&token), cache.clone()).unwrap(), cache)
}

/// An aggregator that files at the first occurrence.
fn eager(cache: Cache) -> Aggregator {
    Aggregator::new(
        cache,
        Redactor::default(),
        ErrorsConfig { threshold: 1, ..ErrorsConfig::default() },
    )
}

/// One of three bugs, each occurrence with its own line numbers, addresses and paths.
fn occurrence(i: usize) -> ErrorReport {
    let bug = i % 3;
    let mut context = BTreeMap::new();
    context.insert("request".into(), format!("Authorization: Bearer {LEAKED_TOKEN}"));
    ErrorReport {
        kind: ["StorageError", "DecodeError", "Timeout"][bug].into(),
        message: format!("failed after {i} ms reading /home/alice/.cache/model-{i}.bin with token {LEAKED_TOKEN}"),
        frames: vec![
            format!("at /home/alice/src/worker/{}.rs:{}:5", ["store", "decode", "net"][bug], 100 + i),
            format!("at 0x7ffd{:08x} in run()", i),
        ],
        context,
    }
}

#[tokio::test]
async fn two_hundred_errors_with_three_fingerprints_file_three_redacted_issues() {
    let fake = FakeGitHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (github, cache) = setup(&fake, dir.path()).await;
    let redactor = Redactor::new([LEAKED_TOKEN.to_string()], Some("/home/alice".into()));
    let aggregator = Arc::new(Aggregator::new(cache, redactor, ErrorsConfig::default()));

    let collector = Collector::start(Arc::clone(&aggregator));
    for i in 0..200 {
        collector.capture(occurrence(i)).unwrap();
    }
    let filed = collector.shutdown(&github, REPO).await.unwrap();
    assert_eq!(filed.len(), 3);
    assert!(filed.iter().all(|f| f.action == "created"));
    let counts: u64 = filed.iter().map(|f| f.count).sum();
    assert_eq!(counts, 200, "every occurrence counted, none lost in the queue");

    {
        let state = fake.fake();
        assert_eq!(state.issues.len(), 3);
        let writes = state.writes();
        assert_eq!(writes.len(), 3, "at most one write per fingerprint");
        for write in &state.requests {
            let text = write.body.to_string() + &write.path;
            assert!(!text.contains(LEAKED_TOKEN), "a token reached the server: {text}");
            assert!(!text.contains("alice"), "a home path reached the server: {text}");
        }
        assert!(state.issues[0].2.contains("~/src/worker/"), "{}", state.issues[0].2);
        assert!(state.issues.iter().all(|i| i.4 == ["ipfs-accelerate-error"]));
    }

    // More occurrences later: a comment on the same issue, found by its marker.
    for i in 200..203 {
        aggregator.capture(&occurrence(i)).await.unwrap();
    }
    let again = aggregator.flush(&github, REPO).await.unwrap();
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|f| f.action == "commented"));
    assert_eq!(fake.fake().comments.len(), 3);
    assert!(aggregator.flush(&github, REPO).await.unwrap().is_empty(), "nothing new, nothing sent");
}

#[tokio::test]
async fn a_recently_closed_issue_is_reused_an_old_one_is_not_and_search_lag_is_covered() {
    let fake = FakeGitHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (github, cache) = setup(&fake, dir.path()).await;
    let aggregator = eager(cache);
    let recent = aggregator.capture(&occurrence(0)).await.unwrap();
    let old = aggregator.capture(&occurrence(1)).await.unwrap();
    {
        let mut state = fake.fake();
        let marker = |f: &str| format!("body\n<!-- ipfs-accelerate:error:{f} -->");
        let label = vec!["ipfs-accelerate-error".to_string()];
        state.issues.push((
            1,
            "recent".into(),
            marker(&recent.fingerprint),
            "closed".into(),
            label.clone(),
        ));
        state.issues.push((2, "old".into(), marker(&old.fingerprint), "closed".into(), label));
        let five_days_ago = (Utc::now() - chrono::Duration::days(5)).to_rfc3339();
        state.closed_at.insert(1, five_days_ago);
        state.closed_at.insert(2, "2025-01-01T00:00:00Z".into());
        state.search_lags = true; // found by listing the label's issues instead
    }
    let filed = aggregator.flush(&github, REPO).await.unwrap();
    let by_issue: Vec<(u64, &str)> = filed.iter().map(|f| (f.issue, f.action.as_str())).collect();
    assert!(by_issue.contains(&(1, "commented")), "{by_issue:?}");
    assert!(
        by_issue.contains(&(3, "created")),
        "an issue closed long ago is not revived: {by_issue:?}"
    );
}

#[tokio::test]
async fn a_secondary_limit_delays_filing_but_drops_nothing() {
    let fake = FakeGitHub::start().await;
    fake.fake().faults.push_back(Fault::SecondaryLimit(1));
    let dir = tempfile::tempdir().unwrap();
    let (github, cache) = setup(&fake, dir.path()).await;
    let aggregator = eager(cache);
    for i in 0..3 {
        aggregator.capture(&occurrence(i)).await.unwrap();
    }
    let filed = aggregator.flush(&github, REPO).await.unwrap();
    assert_eq!(filed.len(), 3);
    assert_eq!(fake.fake().issues.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_reports_lists_and_flushes() {
    let env = Env::new();
    let fake = FakeGitHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.txt");
    let text = format!(
        "Traceback (most recent call last):\n  File \"/home/alice/app.py\", line 3, in <module>\n    call(token=\"{LEAKED_TOKEN}\")\nKeyError: 'model'\n"
    );
    #[allow(clippy::disallowed_methods)]
    std::fs::write(&trace, text).unwrap();
    let run = |args: &[&str]| {
        let mut cmd = fake.cli(&env, REPO);
        cmd.env("HOME", "/home/alice");
        run_ok(cmd, args)
    };
    let trace = trace.to_str().unwrap();
    for _ in 0..2 {
        let out: Value =
            serde_json::from_slice(&run(&["--json", "github", "errors", "report", trace]).stdout)
                .unwrap();
        assert_eq!(out["filed"], serde_json::json!([]), "below the threshold of 3: counted only");
    }
    assert!(fake.fake().issues.is_empty());
    let third: Value =
        serde_json::from_slice(&run(&["--json", "github", "errors", "report", trace]).stdout)
            .unwrap();
    assert_eq!(third["entry"]["count"], 3);
    assert_eq!(third["filed"][0]["action"], "created");

    let listed: Value =
        serde_json::from_slice(&run(&["--json", "github", "errors", "ls"]).stdout).unwrap();
    assert_eq!(listed[0]["count"], 3);
    assert_eq!(listed[0]["issue"], 1);
    assert_eq!(listed[0]["report"]["kind"], "KeyError");
    let flushed: Value =
        serde_json::from_slice(&run(&["--json", "github", "errors", "flush"]).stdout).unwrap();
    assert_eq!(flushed, serde_json::json!([]));

    let state = fake.fake();
    let body = &state.issues[0].2;
    assert!(!body.contains(LEAKED_TOKEN) && !body.contains("alice"), "{body}");
    assert!(body.contains("~/app.py"), "{body}");
}
