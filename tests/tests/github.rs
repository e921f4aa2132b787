//! The GitHub layer against a local server implementing GitHub's documented behaviour
//! (`tests/fake_github.rs`): the revalidating cache, pagination, the write pacer under a
//! secondary limit, writes that time out after landing, token lookup, and the CLI.

use std::time::Duration;

use ipfs_accelerate_common::cache::{Cache, CacheConfig};
use ipfs_accelerate_common::secrets::{MasterKey, Secret, SecretStore};
use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_github::client::{ClientConfig, Freshness, GitHub, Source};
use ipfs_accelerate_github::pacer::PacerConfig;
use ipfs_accelerate_github::{Credentials, Error, Lookup, Token, TokenSource};
use serde_json::Value;
use tests::fake_github::{FakeGitHub, Fault, LOGIN, TOKEN};
use tests::Env;

const REPO: &str = "o/r";

fn token() -> Token {
    Token::new(Secret::new(TOKEN.into()), TokenSource::Flag)
}

fn config(fake: &FakeGitHub) -> ClientConfig {
    ClientConfig {
        api_url: fake.url.clone(),
        timeout: Duration::from_secs(5),
        pacer: PacerConfig { per_minute: 6000, per_hour: 100_000, queue: 64 },
        ..ClientConfig::default()
    }
}

async fn cache(dir: &std::path::Path) -> Cache {
    Cache::new(Store::open(dir, StoreOptions::default()).await.unwrap(), CacheConfig::default())
}

#[tokio::test]
async fn an_unchanged_answer_is_a_304_served_from_the_cache_at_no_quota() {
    let fake = FakeGitHub::start().await;
    fake.fake().seed_comment(1, "alice", "OWNER", "hello");
    let dir = tempfile::tempdir().unwrap();
    let github = GitHub::new(config(&fake), Some(&token()), cache(dir.path()).await).unwrap();
    let path = "/repos/o/r/issues/1/comments?per_page=100";

    let first = github.get(path, Freshness::Cached).await.unwrap();
    assert_eq!(first.source, Source::Network);
    assert_eq!(first.body[0]["body"], "hello");
    let quota = fake.fake().quota_used;

    let fresh = github.get(path, Freshness::Cached).await.unwrap();
    assert_eq!(fresh.source, Source::Hit, "fresh: no request at all");
    let revalidated = github.get(path, Freshness::Revalidate).await.unwrap();
    assert_eq!(revalidated.source, Source::Revalidated);
    assert_eq!(revalidated.body, first.body);
    assert_eq!(fake.fake().quota_used, quota, "an authorised 304 costs no quota");
    let sent = fake.fake().requests.last().unwrap().clone();
    assert_eq!(sent.method, "GET");

    // A change is seen on revalidation.
    fake.fake().seed_comment(1, "bob", "MEMBER", "second");
    let changed = github.get(path, Freshness::Revalidate).await.unwrap();
    assert_eq!((changed.source, changed.body.as_array().unwrap().len()), (Source::Network, 2));
    let stats = github.stats();
    assert_eq!((stats.hits, stats.revalidated, stats.misses), (1, 1, 2));
    assert_eq!(stats.quota_spent, 2);
    assert_eq!(stats.remaining, Some(5000 - quota - 1));

    // Another worker on the same store shares the entries (and sends a conditional request).
    let other = GitHub::new(config(&fake), Some(&token()), cache(dir.path()).await).unwrap();
    assert_eq!(other.get(path, Freshness::Cached).await.unwrap().source, Source::Hit);
}

#[tokio::test]
async fn every_page_of_350_comments_is_read() {
    let fake = FakeGitHub::start().await;
    for i in 0..350 {
        fake.fake().seed_comment(9, "alice", "OWNER", &format!("comment {i}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let github = GitHub::new(config(&fake), Some(&token()), cache(dir.path()).await).unwrap();
    let comments = github.comments(REPO, 9, Freshness::Cached).await.unwrap();
    assert_eq!(comments.len(), 350);
    assert_eq!(comments[349].body, "comment 349");
    let pages =
        fake.fake().requests.iter().filter(|r| r.path.contains("/issues/9/comments")).count();
    assert_eq!(pages, 4, "100 a page, Link-followed to the end");
}

#[tokio::test]
async fn a_link_to_another_host_is_refused() {
    let fake = FakeGitHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let github = GitHub::new(config(&fake), Some(&token()), cache(dir.path()).await).unwrap();
    let err = github.get("https://evil.example/steal", Freshness::Cached).await.unwrap_err();
    assert!(err.to_string().contains("refusing to send the token there"), "{err}");
}

#[tokio::test]
async fn a_secondary_limit_pauses_writes_which_then_resume_in_order() {
    let fake = FakeGitHub::start().await;
    fake.fake().faults.extend([Fault::SecondaryLimit(1), Fault::SecondaryLimit(1)]);
    let dir = tempfile::tempdir().unwrap();
    let github = GitHub::new(config(&fake), Some(&token()), cache(dir.path()).await).unwrap();
    let started = std::time::Instant::now();
    for i in 0..4 {
        github.create_comment(REPO, 3, &format!("update {i}")).await.unwrap();
    }
    assert!(started.elapsed() >= Duration::from_secs(2), "waited out both retry-afters");
    let fake = fake.fake();
    let bodies: Vec<&str> = fake.comments.iter().map(|c| c.body.as_str()).collect();
    assert_eq!(bodies.len(), 4, "nothing dropped, nothing duplicated");
    for (i, body) in bodies.iter().enumerate() {
        assert!(body.starts_with(&format!("update {i}\n")), "in order: {bodies:?}");
    }
    assert_eq!(fake.writes().len(), 6, "two refused attempts, four writes");
}

#[tokio::test]
async fn a_comment_post_that_times_out_after_landing_is_not_duplicated() {
    let fake = FakeGitHub::start().await;
    fake.fake().faults.push_back(Fault::SlowAnswer(Duration::from_secs(3)));
    let dir = tempfile::tempdir().unwrap();
    let config = ClientConfig { timeout: Duration::from_millis(800), ..config(&fake) };
    let github = GitHub::new(config, Some(&token()), cache(dir.path()).await).unwrap();
    let comment = github.create_comment(REPO, 5, "only once").await.unwrap();
    assert!(comment.body.starts_with("only once"));
    let fake = fake.fake();
    assert_eq!(fake.comments.len(), 1, "the landed comment was found, not posted again");
    assert_eq!(fake.writes().len(), 1);
    assert_eq!(comment.id, fake.comments[0].id);
}

#[tokio::test]
async fn an_issue_post_that_times_out_after_landing_is_not_duplicated() {
    let fake = FakeGitHub::start().await;
    fake.fake().faults.push_back(Fault::SlowAnswer(Duration::from_secs(3)));
    let dir = tempfile::tempdir().unwrap();
    let config = ClientConfig { timeout: Duration::from_millis(800), ..config(&fake) };
    let github = GitHub::new(config, Some(&token()), cache(dir.path()).await).unwrap();
    let issue =
        github.create_issue(REPO, "Crash in loader", "details", &["bug".into()]).await.unwrap();
    assert_eq!(issue.number, 1);
    assert_eq!(fake.fake().issues.len(), 1);
}

#[tokio::test]
async fn a_rejected_token_is_an_auth_error() {
    let fake = FakeGitHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bad = Token::new(Secret::new("ghp_wrong".into()), TokenSource::Flag);
    let github = GitHub::new(config(&fake), Some(&bad), cache(dir.path()).await).unwrap();
    let err = github.whoami().await.unwrap_err();
    assert!(matches!(err, Error::Auth(ref m) if m.contains("Bad credentials")), "{err}");
    let err = github.create_comment(REPO, 1, "x").await.unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err}");
    assert!(fake.fake().comments.is_empty());
}

#[tokio::test]
async fn tokens_are_looked_for_in_the_documented_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path().join("secrets"), MasterKey::generate()).unwrap();
    let env_both = |v: &str| match v {
        "GH_TOKEN" => Some("from-gh-token".to_string()),
        "GITHUB_TOKEN" => Some("from-github-token".to_string()),
        _ => None,
    };
    fn lookup<'a>(
        flag: Option<&str>,
        secrets: Option<&'a SecretStore>,
        env: &'a (dyn Fn(&str) -> Option<String> + Sync),
    ) -> Lookup<'a> {
        Lookup {
            flag: flag.map(str::to_string),
            config: None,
            secrets,
            credential: "default".into(),
            env,
            gh: false,
        }
    }
    let (token, looked) = lookup(None, Some(&store), &env_both).resolve().await.unwrap();
    assert_eq!(token.unwrap().source, TokenSource::Env("GH_TOKEN".into()));
    assert_eq!(looked[2].found, "not stored");
    assert_eq!(looked[4].found, "token (shadowed)");

    Credentials::new(&store)
        .save("default", &Secret::new("stored".into()), vec!["repo".into()], None)
        .unwrap();
    let (token, _) = lookup(None, Some(&store), &env_both).resolve().await.unwrap();
    assert_eq!(token.unwrap().source, TokenSource::Credential("default".into()));
    let (token, _) = lookup(Some("flag"), Some(&store), &env_both).resolve().await.unwrap();
    assert_eq!(token.unwrap().source, TokenSource::Flag);

    // An expired credential is skipped, saying so.
    Credentials::new(&store).save("default", &Secret::new("old".into()), vec![], Some(1)).unwrap();
    let (token, looked) = lookup(None, Some(&store), &env_both).resolve().await.unwrap();
    assert_eq!(token.unwrap().source, TokenSource::Env("GH_TOKEN".into()));
    assert_eq!(looked[2].found, "expired");
    let listed = Credentials::new(&store).list().unwrap();
    assert!(listed[0].expired);
    assert!(
        format!("{:?}", token_debug()).contains("Flag")
            && !format!("{:?}", token_debug()).contains(TOKEN)
    );
}

fn token_debug() -> Token {
    token()
}

fn run(env: &Env, fake: &FakeGitHub, args: &[&str]) -> std::process::Output {
    let mut cmd = env.std_cmd();
    cmd.env("GITHUB_API_URL", &fake.url)
        .env_remove("GH_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .args(args);
    tokio::task::block_in_place(|| cmd.output().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_logs_in_reads_through_the_cache_and_reports_figures() {
    let env = Env::new();
    let fake = FakeGitHub::start().await;
    fake.fake().seed_comment(2, "alice", "OWNER", "hi");

    // Login reads the token from stdin and checks it with GitHub first.
    let mut login = env.std_cmd();
    login.env("GITHUB_API_URL", &fake.url).args(["github", "auth", "login", "--with-token"]);
    let output = tokio::task::block_in_place(|| {
        use std::io::Write;
        let mut child = login
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(TOKEN.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    });
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("for {LOGIN}")));

    let status = run(&env, &fake, &["--json", "github", "auth", "status"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["in_use"], "credential \"default\" (secret store)");
    assert_eq!(status["user"]["login"], LOGIN);
    assert_eq!(status["credentials"][0]["scopes"], serde_json::json!(["repo", "read:org"]));
    assert!(!status.to_string().contains(TOKEN), "the token is never printed");

    let path = "/repos/o/r/issues/2/comments";
    let first = run(&env, &fake, &["github", "api", path]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(String::from_utf8_lossy(&first.stderr).trim(), "network");
    let body: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(body[0]["body"], "hi");
    let second = run(&env, &fake, &["github", "api", path]);
    assert_eq!(String::from_utf8_lossy(&second.stderr).trim(), "hit");
    let quota = fake.fake().quota_used;
    let third = run(&env, &fake, &["github", "api", path, "--refresh"]);
    assert_eq!(String::from_utf8_lossy(&third.stderr).trim(), "revalidated");
    assert_eq!(fake.fake().quota_used, quota);

    let stats = run(&env, &fake, &["--json", "github", "cache", "stats"]);
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["totals"]["hits"], 1);
    assert_eq!(stats["totals"]["revalidated"], 1);
    assert_eq!(stats["totals"]["misses"], 1);

    let cleared = run(&env, &fake, &["--json", "github", "cache", "clear"]);
    let cleared: Value = serde_json::from_slice(&cleared.stdout).unwrap();
    assert_eq!(cleared["removed"], 1);

    let logout = run(&env, &fake, &["github", "auth", "logout"]);
    assert!(logout.status.success());
    let again = run(&env, &fake, &["github", "auth", "logout"]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no stored credential named \"default\"")
    );
}

#[tokio::test]
async fn under_a_spent_rate_limit_cached_answers_are_served_stale_and_others_fail_typed() {
    let fake = FakeGitHub::start().await;
    fake.fake().seed_comment(4, "alice", "OWNER", "cached");
    let dir = tempfile::tempdir().unwrap();
    let config = ClientConfig { max_rate_limit_wait: Duration::from_secs(1), ..config(&fake) };
    let github = GitHub::new(config, Some(&token()), cache(dir.path()).await).unwrap();
    let path = "/repos/o/r/issues/4/comments";
    github.get(path, Freshness::Cached).await.unwrap();

    fake.fake().exhausted = true;
    let stale = github.get(path, Freshness::Revalidate).await.unwrap();
    assert_eq!((stale.source, stale.body[0]["body"].clone()), (Source::Stale, "cached".into()));
    let err = github.get("/repos/o/r/issues/5/comments", Freshness::Cached).await.unwrap_err();
    match err {
        Error::RateLimited { retry_in, .. } => {
            assert!(retry_in > Duration::from_secs(30), "{retry_in:?}")
        }
        other => panic!("{other}"),
    }
    assert_eq!(github.stats().stale, 1);
    assert_eq!(github.stats().remaining, Some(0));
}

#[tokio::test]
async fn a_retry_after_of_u64_max_is_a_rate_limit_error_not_an_overflow() {
    // `retry-after: 18446744073709551615` once overflowed `Instant::now() + wait` (a panic).
    let fake = FakeGitHub::start().await;
    fake.fake().faults.push_back(Fault::SecondaryLimit(u64::MAX));
    let dir = tempfile::tempdir().unwrap();
    let github = GitHub::new(config(&fake), Some(&token()), cache(dir.path()).await).unwrap();
    let err = github.create_comment(REPO, 3, "never").await.unwrap_err();
    assert!(err.to_string().contains("rate limit"), "{err}");
    assert!(fake.fake().comments.is_empty(), "nothing was written");
}
