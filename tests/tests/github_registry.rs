//! The peer registry against the fake GitHub: signed records over many pages, each bad
//! comment skipped alone, one comment per worker, pruning only one's own, and the CLI.

use chrono::Utc;
use ipfs_accelerate_common::cache::{Cache, CacheConfig};
use ipfs_accelerate_common::secrets::Secret;
use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_github::client::{ClientConfig, GitHub};
use ipfs_accelerate_github::identity::Identity;
use ipfs_accelerate_github::pacer::PacerConfig;
use ipfs_accelerate_github::registry::{record_comment, PeerRecord, Registry, RegistryConfig};
use ipfs_accelerate_github::{Token, TokenSource};
use serde_json::Value;
use tests::fake_github::{run_ok, FakeGitHub, LOGIN, TOKEN};
use tests::Env;

const REPO: &str = "o/r";
const TITLE: &str = "ipfs-accelerate peer registry";

async fn client(fake: &FakeGitHub, dir: &std::path::Path) -> GitHub {
    let config = ClientConfig {
        api_url: fake.url.clone(),
        pacer: PacerConfig { per_minute: 6000, per_hour: 100_000, queue: 64 },
        ..ClientConfig::default()
    };
    let cache = Cache::new(
        Store::open(dir, StoreOptions::default()).await.unwrap(),
        CacheConfig::default(),
    );
    GitHub::new(config, Some(&Token::new(Secret::new(TOKEN.into()), TokenSource::Flag)), cache)
        .unwrap()
}

fn record(identity: &Identity, last_seen: String, address: &str) -> PeerRecord {
    PeerRecord {
        peer_id: identity.peer_id(),
        addresses: vec![address.to_string()],
        capabilities: vec!["embeddings".into()],
        version: "0.1.0".into(),
        last_seen,
        public_key: identity.public_key(),
    }
}

fn seconds_ago(secs: i64) -> String {
    (Utc::now() - chrono::Duration::seconds(secs)).to_rfc3339()
}

fn registry_issue(fake: &FakeGitHub) -> u64 {
    let mut state = fake.fake();
    state.issues.push((1, TITLE.into(), "registry".into(), "open".into(), vec![]));
    state.collaborators = vec!["alice".into(), LOGIN.into()];
    1
}

#[tokio::test]
async fn hundreds_of_records_over_four_pages_and_each_bad_one_skipped_alone() {
    let fake = FakeGitHub::start().await;
    let issue = registry_issue(&fake);
    {
        let mut state = fake.fake();
        for i in 0..345u32 {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            let identity = Identity::from_seed(seed);
            // Some workers write their local offset: same instant, different form.
            let when = if i % 2 == 0 {
                seconds_ago(i64::from(i))
            } else {
                (Utc::now() - chrono::Duration::seconds(i64::from(i)))
                    .with_timezone(&chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap())
                    .to_rfc3339()
            };
            let body =
                record_comment(&identity, &record(&identity, when, "/ip4/10.0.0.1/tcp/4001"))
                    .unwrap();
            state.seed_comment(issue, "alice", "COLLABORATOR", &body);
        }
        let outsider = Identity::from_seed([201; 32]);
        let body =
            record_comment(&outsider, &record(&outsider, seconds_ago(1), "/ip4/10.6.6.6/tcp/1"))
                .unwrap();
        state.seed_comment(issue, "mallory", "NONE", &body);

        let forged = Identity::from_seed([202; 32]);
        let body = record_comment(&forged, &record(&forged, seconds_ago(1), "/ip4/10.0.0.2/tcp/1"))
            .unwrap();
        state.seed_comment(issue, "alice", "COLLABORATOR", &body.replace("10.0.0.2", "10.6.6.6"));

        let naive = Identity::from_seed([203; 32]);
        let when = Utc::now().naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string();
        let body = record_comment(&naive, &record(&naive, when, "/ip4/10.0.0.3/tcp/1")).unwrap();
        state.seed_comment(issue, "alice", "COLLABORATOR", &body);

        let broken = Identity::from_seed([204; 32]);
        let body = format!(
            "<!-- ipfs-accelerate:peer:{} -->\n```json\n{{\"peer_id\": \n```",
            broken.peer_id()
        );
        state.seed_comment(issue, "alice", "COLLABORATOR", &body);

        let old = Identity::from_seed([205; 32]);
        let body =
            record_comment(&old, &record(&old, seconds_ago(7200), "/ip4/10.0.0.4/tcp/1")).unwrap();
        state.seed_comment(issue, "alice", "COLLABORATOR", &body);

        state.seed_comment(
            issue,
            "alice",
            "COLLABORATOR",
            "An ordinary comment: ignored, not skipped.",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let github = client(&fake, dir.path()).await;
    let registry = Registry::new(&github, REPO, RegistryConfig::default()).unwrap();
    let found = registry.discover().await.unwrap();

    assert_eq!(found.peers.len(), 345);
    assert!(found.peers.windows(2).all(|w| w[0].age_secs <= w[1].age_secs), "freshest first");
    let reasons: Vec<&str> = found.skipped.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(reasons[0].contains("\"mallory\" is not allowed"), "{reasons:?}");
    assert_eq!(reasons[1], "the signature does not verify");
    assert!(reasons[2].contains("is not RFC 3339 with an offset"), "{reasons:?}");
    assert!(reasons[3].starts_with("malformed record"), "{reasons:?}");
    assert!(reasons[4].starts_with("stale"), "{reasons:?}");
    let pages = fake
        .fake()
        .requests
        .iter()
        .filter(|r| r.path.starts_with("/repos/o/r/issues/1/comments"))
        .count();
    assert_eq!(pages, 4, "351 comments, 100 a page");
}

#[tokio::test]
async fn one_comment_per_worker_public_ips_withheld_and_prune_touches_only_our_own() {
    let fake = FakeGitHub::start().await;
    fake.fake().collaborators = vec![LOGIN.into(), "alice".into()];
    let dir = tempfile::tempdir().unwrap();
    let github = client(&fake, dir.path()).await;
    let registry = Registry::new(&github, REPO, RegistryConfig::default()).unwrap();
    let me = Identity::from_seed([42; 32]);

    let addresses = ["/ip4/192.168.1.5/tcp/4001".to_string(), "/ip4/8.8.8.8/tcp/4001".to_string()];
    let first = registry.announce(&me, &addresses, &["chat".into()]).await.unwrap();
    assert!(first.created);
    assert_eq!(first.withheld, ["/ip4/8.8.8.8/tcp/4001"]);
    assert_eq!(fake.fake().issues.len(), 1, "the registry issue was created");
    let second = registry.announce(&me, &addresses, &["chat".into()]).await.unwrap();
    assert!(!second.created);
    assert_eq!(second.comment_id, first.comment_id);
    assert_eq!(fake.fake().comments.len(), 1, "one comment per worker");
    assert!(!fake.fake().comments[0].body.contains("8.8.8.8"));

    let found = registry.discover().await.unwrap();
    assert_eq!(found.peers[0].record.peer_id, me.peer_id());
    assert_eq!(found.peers[0].record.addresses, ["/ip4/192.168.1.5/tcp/4001"]);

    // Stale comments: one of ours (an old worker key), one of alice's.
    let issue = first.issue;
    let old = Identity::from_seed([43; 32]);
    let ours =
        record_comment(&old, &record(&old, seconds_ago(7200), "/ip4/10.0.0.1/tcp/1")).unwrap();
    let theirs_identity = Identity::from_seed([44; 32]);
    let theirs = record_comment(
        &theirs_identity,
        &record(&theirs_identity, seconds_ago(7200), "/ip4/10.0.0.2/tcp/1"),
    )
    .unwrap();
    let (our_stale, their_stale) = {
        let mut state = fake.fake();
        (
            state.seed_comment(issue, LOGIN, "OWNER", &ours),
            state.seed_comment(issue, "alice", "COLLABORATOR", &theirs),
        )
    };
    let removed = registry.prune().await.unwrap();
    assert_eq!(removed, [our_stale]);
    let ids: Vec<u64> = fake.fake().comments.iter().map(|c| c.id).collect();
    assert_eq!(ids, [first.comment_id, their_stale]);
}

#[tokio::test]
async fn without_collaborator_access_authors_are_judged_by_association() {
    let fake = FakeGitHub::start().await;
    let issue = registry_issue(&fake);
    fake.fake().collaborators_forbidden = true;
    for (seed, login, association) in [(1u8, "carol", "COLLABORATOR"), (2, "bob", "NONE")] {
        let identity = Identity::from_seed([seed; 32]);
        let body =
            record_comment(&identity, &record(&identity, seconds_ago(5), "/ip4/10.0.0.9/tcp/1"))
                .unwrap();
        fake.fake().seed_comment(issue, login, association, &body);
    }
    let dir = tempfile::tempdir().unwrap();
    let github = client(&fake, dir.path()).await;
    let registry = Registry::new(&github, REPO, RegistryConfig::default()).unwrap();
    let found = registry.discover().await.unwrap();
    assert_eq!(found.peers.iter().map(|p| p.author.as_str()).collect::<Vec<_>>(), ["carol"]);
    assert_eq!(found.skipped[0].author, "bob");
}

#[tokio::test]
async fn a_heartbeat_refreshes_the_one_comment() {
    let fake = FakeGitHub::start().await;
    fake.fake().collaborators = vec![LOGIN.into()];
    let dir = tempfile::tempdir().unwrap();
    let github = client(&fake, dir.path()).await;
    let registry = Registry::new(&github, REPO, RegistryConfig::default()).unwrap();
    let me = Identity::from_seed([9; 32]);
    let beats = registry.heartbeat(&me, &[], &[], std::time::Duration::from_secs(1));
    let _ = tokio::time::timeout(std::time::Duration::from_millis(2500), beats).await;
    let state = fake.fake();
    assert_eq!(state.comments.len(), 1);
    // Beats at 0 s, 1 s, 2 s: created, then updated (at least once even on a slow machine).
    assert!(state.comments[0].version >= 1, "the later beats update the one comment");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_announces_lists_and_merges_bootstrap_peers() {
    let env = Env::new();
    let fake = FakeGitHub::start().await;
    fake.fake().collaborators = vec![LOGIN.into()];
    let run = |args: &[&str]| {
        let mut cmd = fake.cli(&env, REPO);
        cmd.env("IPFS_ACCELERATE_PEERS", "/dns4/seed.example/tcp/4001");
        run_ok(cmd, args)
    };
    let announce = [
        "--json",
        "github",
        "peers",
        "announce",
        "--address",
        "/ip4/10.0.0.5/tcp/4001",
        "--address",
        "/ip4/8.8.8.8/tcp/4001",
        "--capability",
        "embeddings",
    ];
    let output = run(&announce);
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("withheld public address /ip4/8.8.8.8/tcp/4001"));
    let announced: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(announced["created"], true);
    let peer_id = announced["record"]["peer_id"].as_str().unwrap().to_string();
    assert!(peer_id.starts_with("12D3KooW"));

    // The same worker (same key in its secret store) refreshes its one comment.
    let again: Value = serde_json::from_slice(&run(&announce).stdout).unwrap();
    assert_eq!(
        (again["created"].clone(), again["record"]["peer_id"].clone()),
        (Value::Bool(false), Value::String(peer_id.clone()))
    );

    let listed: Value =
        serde_json::from_slice(&run(&["--json", "github", "peers", "list"]).stdout).unwrap();
    assert_eq!(
        listed["peers"][0]["record"]["addresses"],
        serde_json::json!(["/ip4/10.0.0.5/tcp/4001"])
    );
    let merged: Value =
        serde_json::from_slice(&run(&["--json", "github", "peers", "list", "--bootstrap"]).stdout)
            .unwrap();
    assert_eq!(merged[0]["address"], format!("/ip4/10.0.0.5/tcp/4001/p2p/{peer_id}"));
    assert_eq!(merged[0]["source"], "registry");
    assert_eq!(merged[1]["source"], "env IPFS_ACCELERATE_PEERS");
}
