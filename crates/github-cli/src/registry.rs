//! The peer registry: workers find each other through one issue per repository. Each worker
//! keeps **one** comment there — a hidden marker with its peer id, then its record as JSON,
//! signed with its ed25519 key.
//!
//! Discovery reads every comment (all pages), and accepts a record only if its author is
//! allowed (configured logins; else the repository's collaborators with push access, looked up
//! once and cached; else, when the token may not list collaborators, authors GitHub marks
//! `OWNER`/`MEMBER`/`COLLABORATOR`), its signature verifies with a key whose peer id it claims,
//! its `last_seen` is RFC 3339 *with an offset* and within the TTL. Anything else is skipped —
//! one comment at a time, with the reason — never the whole discovery. Peers come back
//! freshest first. Addresses with public IPs are published only when configured.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use crate::client::{Freshness, GitHub};
use crate::error::{Error, Result};
use crate::identity::{self, Identity};
use crate::issues::{check_repo, Comment};

const MARKER: &str = "<!-- ipfs-accelerate:peer:";

/// Registry settings (`[github.registry]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// A table that names some keys keeps the defaults of the rest.
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// The registry issue's number; found (or created) by title when unset.
    pub issue: Option<u64>,
    /// The registry issue's title.
    pub title: String,
    /// Records older than this are dropped.
    #[serde(with = "ipfs_accelerate_common::config::duration_text")]
    pub ttl: Duration,
    /// Logins whose records are trusted; empty = collaborators with push access.
    pub allow_authors: Vec<String>,
    /// Publish addresses with public IPs (off: only private, loopback and DNS addresses).
    pub publish_public_addresses: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            issue: None,
            title: "ipfs-accelerate peer registry".into(),
            ttl: Duration::from_secs(30 * 60),
            allow_authors: Vec::new(),
            publish_public_addresses: false,
        }
    }
}

/// What a worker says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRecord {
    /// libp2p peer id of its key.
    pub peer_id: String,
    /// Multiaddrs it listens on.
    pub addresses: Vec<String>,
    /// What it offers (`embeddings`, `chat`, `storage`…).
    pub capabilities: Vec<String>,
    /// Its software version.
    pub version: String,
    /// When it last announced, RFC 3339 with offset.
    pub last_seen: String,
    /// Its ed25519 public key, base64.
    pub public_key: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedRecord {
    #[serde(flatten)]
    record: PeerRecord,
    signature: String,
}

/// A discovered peer.
#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    /// Its record.
    pub record: PeerRecord,
    /// Who posted it.
    pub author: String,
    /// The comment holding it.
    pub comment_id: u64,
    /// Seconds since `last_seen`.
    pub age_secs: i64,
}

/// A comment that was not accepted, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The comment.
    pub comment_id: u64,
    /// Its author.
    pub author: String,
    /// Why.
    pub reason: String,
}

/// What discovery found.
#[derive(Debug, Clone, Serialize)]
pub struct Discovery {
    /// The registry issue.
    pub issue: u64,
    /// Accepted peers, freshest first.
    pub peers: Vec<Peer>,
    /// Registry comments not accepted.
    pub skipped: Vec<Skipped>,
}

/// The result of an announcement.
#[derive(Debug, Clone, Serialize)]
pub struct Announced {
    /// The registry issue.
    pub issue: u64,
    /// The worker's comment.
    pub comment_id: u64,
    /// Whether the comment was new.
    pub created: bool,
    /// The record published.
    pub record: PeerRecord,
    /// Addresses left out because they carry a public IP.
    pub withheld: Vec<String>,
}

/// The registry of one repository.
#[derive(Debug)]
pub struct Registry<'a> {
    github: &'a GitHub,
    repo: String,
    config: RegistryConfig,
}

/// The registry comment for `record`, signed by `identity` (whose peer id it must carry).
pub fn record_comment(identity: &Identity, record: &PeerRecord) -> Result<String> {
    if record.peer_id != identity.peer_id() {
        return Err(Error::Config("a record is signed by the peer it describes".into()));
    }
    let signature = identity.sign(canonical(record)?.as_bytes());
    body(&SignedRecord { record: record.clone(), signature })
}

/// The comment body for a signed record.
fn body(signed: &SignedRecord) -> Result<String> {
    let json = serde_json::to_string_pretty(signed)
        .map_err(|e| Error::Config(format!("serialising the peer record: {e}")))?;
    Ok(format!(
        "{MARKER}{} -->\nPeer `{}`, announced by ipfs-accelerate (signed; edits break the signature).\n\n```json\n{json}\n```\n",
        signed.record.peer_id, signed.record.peer_id
    ))
}

/// The peer id a comment's marker names, if it is a registry comment.
fn marked_peer(body: &str) -> Option<&str> {
    let rest = body.trim_start().strip_prefix(MARKER)?;
    let end = rest.find(" -->")?;
    Some(rest[..end].trim())
}

/// The signed record in a registry comment, checked: signature, peer id, timestamp.
fn parse(body: &str, now: DateTime<Utc>) -> std::result::Result<(PeerRecord, i64), String> {
    let claimed = marked_peer(body).ok_or("no registry marker")?;
    let start = body.find("```json").ok_or("no ```json block")? + "```json".len();
    let end = body[start..].rfind("```").ok_or("unterminated ```json block")? + start;
    let signed: SignedRecord = serde_json::from_str(body[start..end].trim())
        .map_err(|e| format!("malformed record: {e}"))?;
    if signed.record.peer_id != claimed {
        return Err(format!("the marker names {claimed} but the record {}", signed.record.peer_id));
    }
    let message = canonical(&signed.record).map_err(|e| e.to_string())?;
    identity::verify(
        &signed.record.peer_id,
        &signed.record.public_key,
        message.as_bytes(),
        &signed.signature,
    )?;
    let seen: DateTime<FixedOffset> = DateTime::parse_from_rfc3339(&signed.record.last_seen)
        .map_err(|e| {
            format!("last_seen {:?} is not RFC 3339 with an offset: {e}", signed.record.last_seen)
        })?;
    Ok((signed.record, (now - seen.with_timezone(&Utc)).num_seconds()))
}

fn canonical(record: &PeerRecord) -> Result<String> {
    serde_jcs::to_string(record).map_err(|e| Error::Config(format!("canonical JSON: {e}")))
}

/// Whether `address` (a multiaddr) names a public IP.
pub fn is_public(address: &str) -> bool {
    let mut parts = address.split('/').skip(1);
    while let Some(protocol) = parts.next() {
        let Some(value) = parts.next() else { break };
        let ip: Option<std::net::IpAddr> = match protocol {
            "ip4" | "ip6" => value.parse().ok(),
            _ => continue,
        };
        return match ip {
            Some(std::net::IpAddr::V4(v4)) => {
                !(v4.is_private()
                    || v4.is_loopback()
                    || v4.is_link_local()
                    || v4.is_unspecified()
                    || v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]))
            }
            Some(std::net::IpAddr::V6(v6)) => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80)
            }
            None => false,
        };
    }
    false
}

impl<'a> Registry<'a> {
    /// The registry of `repo` through `github`.
    pub fn new(github: &'a GitHub, repo: &str, config: RegistryConfig) -> Result<Registry<'a>> {
        check_repo(repo)?;
        Ok(Registry { github, repo: repo.to_string(), config })
    }

    /// The registry issue: configured, else the lowest-numbered open issue with the exact
    /// title, else (when `create`) a new one.
    pub async fn issue(&self, create: bool) -> Result<Option<u64>> {
        if let Some(number) = self.config.issue {
            return Ok(Some(number));
        }
        let path = format!("/repos/{}/issues?state=open&per_page=100", self.repo);
        let issues = self.github.get_all(&path, Freshness::Revalidate).await?;
        let found = issues
            .iter()
            .filter(|i| {
                i["title"].as_str() == Some(self.config.title.as_str())
                    && i.get("pull_request").is_none()
            })
            .filter_map(|i| i["number"].as_u64())
            .min();
        if found.is_some() || !create {
            return Ok(found);
        }
        let body = "Workers of ipfs-accelerate announce themselves here, one signed comment each. Managed automatically.";
        let issue = self.github.create_issue(&self.repo, &self.config.title, body, &[]).await?;
        Ok(Some(issue.number))
    }

    /// Who may publish records: configured logins, else collaborators with push access
    /// (`None`: the token may not list them — fall back to GitHub's author association).
    async fn allowed(&self) -> Result<Option<HashSet<String>>> {
        if !self.config.allow_authors.is_empty() {
            return Ok(Some(self.config.allow_authors.iter().cloned().collect()));
        }
        let path = format!("/repos/{}/collaborators?permission=push&per_page=100", self.repo);
        match self.github.get_all(&path, Freshness::Cached).await {
            Ok(users) => Ok(Some(
                users.iter().filter_map(|u| u["login"].as_str().map(str::to_string)).collect(),
            )),
            Err(Error::Http { status: 403 | 404, .. }) => {
                tracing::warn!(repo = %self.repo, "cannot list collaborators; trusting OWNER/MEMBER/COLLABORATOR authors");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn author_ok(allowed: &Option<HashSet<String>>, comment: &Comment) -> bool {
        let login = comment.user.as_ref().map_or("", |u| u.login.as_str());
        match allowed {
            Some(logins) => logins.contains(login),
            None => {
                matches!(comment.author_association.as_str(), "OWNER" | "MEMBER" | "COLLABORATOR")
            }
        }
    }

    /// Every acceptable record on the registry, freshest first, with what was skipped.
    pub async fn discover(&self) -> Result<Discovery> {
        let Some(issue) = self.issue(false).await? else {
            return Err(Error::Config(format!(
                "{} has no open issue titled {:?}: announce a peer first, or set github.registry.issue",
                self.repo, self.config.title
            )));
        };
        let comments = self.github.comments(&self.repo, issue, Freshness::Revalidate).await?;
        let allowed = self.allowed().await?;
        let now = Utc::now();
        let ttl = i64::try_from(self.config.ttl.as_secs()).unwrap_or(i64::MAX);
        let (mut peers, mut skipped) = (Vec::new(), Vec::new());
        for comment in comments {
            if marked_peer(&comment.body).is_none() {
                continue;
            }
            let author = comment.user.as_ref().map_or(String::new(), |u| u.login.clone());
            let mut skip = |reason: String| {
                tracing::warn!(comment = comment.id, %author, %reason, "registry comment skipped");
                skipped.push(Skipped { comment_id: comment.id, author: author.clone(), reason });
            };
            if !Registry::author_ok(&allowed, &comment) {
                skip(format!("author {author:?} is not allowed to publish peers"));
                continue;
            }
            match parse(&comment.body, now) {
                Err(reason) => skip(reason),
                Ok((_, age)) if age > ttl => skip(format!("stale: last seen {age} s ago")),
                Ok((record, age)) => peers.push(Peer {
                    record,
                    author: author.clone(),
                    comment_id: comment.id,
                    age_secs: age,
                }),
            }
        }
        peers.sort_by_key(|p| p.age_secs);
        Ok(Discovery { issue, peers, skipped })
    }

    /// Publishes (or refreshes) this worker's one record.
    pub async fn announce(
        &self,
        identity: &Identity,
        addresses: &[String],
        capabilities: &[String],
    ) -> Result<Announced> {
        let issue =
            self.issue(true).await?.ok_or_else(|| Error::Config("no registry issue".into()))?;
        let (published, withheld): (Vec<String>, Vec<String>) = addresses
            .iter()
            .cloned()
            .partition(|a| self.config.publish_public_addresses || !is_public(a));
        if !withheld.is_empty() {
            tracing::warn!(
                ?withheld,
                "public addresses withheld (set github.registry.publish_public_addresses)"
            );
        }
        let record = PeerRecord {
            peer_id: identity.peer_id(),
            addresses: published,
            capabilities: capabilities.to_vec(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            last_seen: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            public_key: identity.public_key(),
        };
        let text = record_comment(identity, &record)?;
        let comments = self.github.comments(&self.repo, issue, Freshness::Revalidate).await?;
        let login = self.github.login().await?.to_string();
        let mine = comments.iter().find(|c| {
            marked_peer(&c.body) == Some(record.peer_id.as_str())
                && c.user.as_ref().is_some_and(|u| u.login == login)
        });
        let (comment_id, created) = match mine {
            Some(existing) => {
                (self.github.update_comment(&self.repo, existing.id, &text).await?.id, false)
            }
            None => (self.github.create_comment(&self.repo, issue, &text).await?.id, true),
        };
        Ok(Announced { issue, comment_id, created, record, withheld })
    }

    /// Announces now and then every `every`, until the future is dropped. A failed beat is
    /// logged and the next one tries again (the registry must outlive GitHub hiccups); writes
    /// still go through the pacer, so beats never outrun its limits.
    pub async fn heartbeat(
        &self,
        identity: &Identity,
        addresses: &[String],
        capabilities: &[String],
        every: Duration,
    ) -> Result<()> {
        if every < Duration::from_secs(1) {
            return Err(Error::Config(
                "a heartbeat interval under one second floods the registry".into(),
            ));
        }
        loop {
            match self.announce(identity, addresses, capabilities).await {
                Ok(announced) => {
                    tracing::info!(comment = announced.comment_id, "peer record refreshed")
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed; retrying next beat"),
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Deletes this account's registry comments that are stale, unreadable, or duplicates of
    /// a fresher one for the same peer; others' comments are left alone. Returns the ids.
    pub async fn prune(&self) -> Result<Vec<u64>> {
        let Some(issue) = self.issue(false).await? else { return Ok(Vec::new()) };
        let login = self.github.login().await?.to_string();
        let comments = self.github.comments(&self.repo, issue, Freshness::Revalidate).await?;
        let now = Utc::now();
        let ttl = i64::try_from(self.config.ttl.as_secs()).unwrap_or(i64::MAX);
        let mut seen = HashSet::new();
        let mut mine: Vec<(&Comment, Option<(PeerRecord, i64)>)> = comments
            .iter()
            .filter(|c| {
                marked_peer(&c.body).is_some() && c.user.as_ref().is_some_and(|u| u.login == login)
            })
            .map(|c| (c, parse(&c.body, now).ok()))
            .collect();
        mine.sort_by_key(|(_, parsed)| parsed.as_ref().map_or(i64::MAX, |(_, age)| *age));
        let mut removed = Vec::new();
        for (comment, parsed) in mine {
            let keep = match &parsed {
                Some((record, age)) => *age <= ttl && seen.insert(record.peer_id.clone()),
                None => false,
            };
            if !keep {
                self.github.delete_comment(&self.repo, comment.id).await?;
                removed.push(comment.id);
            }
        }
        Ok(removed)
    }
}

/// Where a bootstrap address came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bootstrap {
    /// The multiaddr (with `/p2p/<peer id>` when known).
    pub address: String,
    /// `registry`, `env IPFS_ACCELERATE_PEERS`, or `config`.
    pub source: String,
}

/// Registry peers merged with static ones (`IPFS_ACCELERATE_PEERS`, comma-separated, and
/// configured), each once, registry first (freshest first), saying where each came from.
pub fn bootstrap(
    registry: &[Peer],
    env_peers: Option<&str>,
    config_peers: &[String],
) -> Vec<Bootstrap> {
    let mut out: Vec<Bootstrap> = Vec::new();
    let mut push = |address: String, source: &str| {
        if !address.is_empty() && !out.iter().any(|b| b.address == address) {
            out.push(Bootstrap { address, source: source.to_string() });
        }
    };
    for peer in registry {
        for address in &peer.record.addresses {
            let full = if address.contains("/p2p/") {
                address.clone()
            } else {
                format!("{address}/p2p/{}", peer.record.peer_id)
            };
            push(full, "registry");
        }
    }
    for address in env_peers.unwrap_or_default().split(',') {
        push(address.trim().to_string(), "env IPFS_ACCELERATE_PEERS");
    }
    for address in config_peers {
        push(address.trim().to_string(), "config");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Peer records are comments anyone can post: any body, and any damage to a well-formed
    /// one, parses to a record or a reason — never a panic (slicing, offsets, dates).
    #[test]
    fn fuzz_peer_record_comments_never_panic() {
        use proptest::prelude::*;
        let cases =
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
        let well_formed = format!(
            "{MARKER} 12D3KooWabc -->\n```json\n{{\"record\": {{\"peer_id\": \"12D3KooWabc\", \"public_key\": \"AAAA\", \"addresses\": [], \"last_seen\": \"2026-12-07T10:00:00+00:00\"}}, \"signature\": \"AAAA\"}}\n```\n"
        );
        let body = prop_oneof![
            ".{0,200}",
            (0..well_formed.len(), 0..well_formed.len(), ".{0,12}").prop_map(
                move |(a, b, junk)| {
                    let (a, b) = (a.min(b), a.max(b));
                    let cut = |i: usize| {
                        (0..=i).rev().find(|&i| well_formed.is_char_boundary(i)).unwrap_or(0)
                    };
                    format!("{}{junk}{}", &well_formed[..cut(a)], &well_formed[cut(b)..])
                }
            ),
        ];
        proptest!(ProptestConfig::with_cases(cases), |(body in body)| {
            let _ = parse(&body, Utc::now());
        });
    }

    #[test]
    fn public_addresses_are_recognised() {
        assert!(is_public("/ip4/8.8.8.8/tcp/4001"));
        assert!(is_public("/ip6/2001:4860::1/tcp/4001"));
        assert!(!is_public("/ip4/10.1.2.3/tcp/4001"));
        assert!(!is_public("/ip4/127.0.0.1/tcp/4001"));
        assert!(!is_public("/ip4/100.64.0.1/tcp/4001"), "CGNAT");
        assert!(!is_public("/ip6/fd00::1/tcp/4001"));
        assert!(!is_public("/dns4/worker.internal/tcp/4001"));
    }

    #[test]
    fn records_round_trip_and_tampering_is_caught() {
        let identity = Identity::from_seed([3; 32]);
        let record = PeerRecord {
            peer_id: identity.peer_id(),
            addresses: vec!["/ip4/10.0.0.2/tcp/4001".into()],
            capabilities: vec!["embeddings".into()],
            version: "0.1.0".into(),
            last_seen: "2026-11-25T10:00:00+01:00".into(),
            public_key: identity.public_key(),
        };
        let signature = identity.sign(canonical(&record).unwrap().as_bytes());
        let text = body(&SignedRecord { record: record.clone(), signature }).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-11-25T09:01:00Z").unwrap().with_timezone(&Utc);
        let (parsed, age) = parse(&text, now).unwrap();
        assert_eq!((parsed, age), (record, 60), "the offset is honoured");
        let tampered = text.replace("10.0.0.2", "10.0.0.9");
        assert_eq!(parse(&tampered, now).unwrap_err(), "the signature does not verify");
    }

    #[test]
    fn bootstrap_merges_sources_once_each() {
        let identity = Identity::from_seed([4; 32]);
        let peer = Peer {
            record: PeerRecord {
                peer_id: identity.peer_id(),
                addresses: vec!["/ip4/10.0.0.2/tcp/4001".into()],
                capabilities: vec![],
                version: "0.1.0".into(),
                last_seen: String::new(),
                public_key: String::new(),
            },
            author: "a".into(),
            comment_id: 1,
            age_secs: 0,
        };
        let merged = bootstrap(
            &[peer],
            Some("/ip4/10.0.0.3/tcp/1, /ip4/10.0.0.3/tcp/1"),
            &["/dns4/x/tcp/2".into()],
        );
        let sources: Vec<&str> = merged.iter().map(|b| b.source.as_str()).collect();
        assert_eq!(sources, ["registry", "env IPFS_ACCELERATE_PEERS", "config"]);
        assert!(merged[0].address.ends_with(&identity.peer_id()));
    }
}
