//! The Kubo tier: a thin typed client for Kubo's HTTP RPC API (`/api/v0`), and [`Kubo`], the
//! [`Remote`] built on it.
//!
//! Why not `ipfs-api-backend-hyper`: its dependency chain ends in `core2`, every version of
//! which is yanked (a fresh resolve of anything depending on it fails), it sits on hyper 0.14
//! beside our hyper 1 stack, and its typed `add` rejects a numeric `Size`. This client follows
//! its API surface on `reqwest`: every request has a deadline, numbers are accepted as numbers or
//! strings, CIDs in replies are parsed and compared as CIDs (nodes answer in base58btc or
//! base32), and multipart parts carry a Content-Type (js-ipfs requires one).
//!
//! ```no_run
//! # async fn demo() -> ipfs_accelerate_common::Result<()> {
//! use std::time::Duration;
//! use ipfs_accelerate_common::remote::KuboClient;
//!
//! let kubo = KuboClient::new("/ip4/127.0.0.1/tcp/5001", Duration::from_secs(10))?;
//! println!("{}", kubo.version().await?.version);
//! # Ok(()) }
//! ```

use std::time::Duration;

use cid::Cid;
use futures_util::StreamExt;
use multiaddr::{Multiaddr, Protocol};
use serde::{Deserialize, Deserializer};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

use super::{Blockstore, BoxFuture, Remote};
use crate::cid::{names_block, same_block, Block, DAG_PB, RAW};
use crate::{Error, Result};

/// Converts `IPFS_API` (a multiaddr like `/ip4/127.0.0.1/tcp/5001`, or an `http(s)://` URL) to
/// the API's base URL; `None` if it is neither.
///
/// ```
/// use ipfs_accelerate_common::remote::kubo::api_url;
/// assert_eq!(api_url("/ip4/127.0.0.1/tcp/5001").as_deref(), Some("http://127.0.0.1:5001"));
/// assert_eq!(api_url("/dns4/ipfs.local/tcp/443/https").as_deref(), Some("https://ipfs.local:443"));
/// assert_eq!(api_url("http://[::1]:5001/").as_deref(), Some("http://[::1]:5001"));
/// assert_eq!(api_url("localhost:5001"), None);
/// ```
pub fn api_url(text: &str) -> Option<String> {
    let text = text.trim();
    if text.starts_with("http://") || text.starts_with("https://") {
        let url = reqwest::Url::parse(text).ok()?;
        url.host_str()?;
        return Some(url.as_str().trim_end_matches('/').to_string());
    }
    let addr: Multiaddr = text.parse().ok()?;
    let (mut host, mut port, mut scheme) = (None, None, "http");
    for protocol in addr.iter() {
        match protocol {
            Protocol::Ip4(ip) => host = Some(ip.to_string()),
            Protocol::Ip6(ip) => host = Some(format!("[{ip}]")),
            Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name) => {
                host = Some(name.to_string())
            }
            Protocol::Tcp(p) => port = Some(p),
            Protocol::Http => scheme = "http",
            Protocol::Https | Protocol::Tls => scheme = "https",
            _ => return None,
        }
    }
    Some(format!("{scheme}://{}:{}", host?, port?))
}

/// A Kubo RPC API client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KuboClient {
    base: String,
    http: reqwest::Client,
}

/// `/api/v0/version`.
#[derive(Debug, Clone, Deserialize)]
pub struct VersionResponse {
    /// The node's version ("0.38.1"; js-ipfs says "0.18.1").
    #[serde(rename = "Version")]
    pub version: String,
    /// The repo version.
    #[serde(rename = "Repo", default, deserialize_with = "lenient_string")]
    pub repo: String,
}

/// `/api/v0/id`.
#[derive(Debug, Clone, Deserialize)]
pub struct IdResponse {
    /// The node's peer id.
    #[serde(rename = "ID")]
    pub id: String,
    /// The node's agent ("kubo/0.38.1/", "js-ipfs/0.18.1").
    #[serde(rename = "AgentVersion", default)]
    pub agent_version: String,
    /// The addresses the node listens on.
    #[serde(rename = "Addresses", default)]
    pub addresses: Option<Vec<String>>,
}

/// `/api/v0/add`: the added file.
#[derive(Debug, Clone, Deserialize)]
pub struct AddResponse {
    /// The file name sent.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// The root CID.
    #[serde(rename = "Hash", deserialize_with = "de_cid")]
    pub hash: Cid,
    /// The DAG's size in bytes (Kubo sends a string, js-ipfs a number).
    #[serde(rename = "Size", deserialize_with = "lenient_u64")]
    pub size: u64,
}

/// `/api/v0/block/stat` and `block/put`.
#[derive(Debug, Clone, Deserialize)]
pub struct BlockStat {
    /// The block's CID as the node writes it.
    #[serde(rename = "Key", deserialize_with = "de_cid")]
    pub key: Cid,
    /// The block's size in bytes.
    #[serde(rename = "Size", deserialize_with = "lenient_u64")]
    pub size: u64,
}

/// The UnixFS layout options of `/api/v0/add` that decide the CID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddOptions {
    /// CID version (0 or 1).
    pub cid_version: u8,
    /// Leaves as raw blocks.
    pub raw_leaves: bool,
    /// Fixed chunk size in bytes.
    pub chunk_size: usize,
    /// Pin the result.
    pub pin: bool,
}

impl AddOptions {
    /// The options matching `profile`, when Kubo's `add` can reproduce it (`kubo-cidv1` and
    /// `unixfs-v0-2015`; `unixfs-v1-2025`'s 1024-link nodes are not an `add` option).
    pub fn for_profile(profile: crate::unixfs::Profile) -> Option<AddOptions> {
        use crate::unixfs::Profile;
        match profile {
            Profile::UnixfsV1_2025 => None,
            Profile::KuboCidV1 | Profile::UnixfsV0_2015 => Some(AddOptions {
                cid_version: if profile.cid_version() == cid::Version::V0 { 0 } else { 1 },
                raw_leaves: profile.raw_leaves(),
                chunk_size: profile.chunk_size(),
                pin: false,
            }),
        }
    }
}

#[derive(Deserialize)]
struct KuboErrorBody {
    #[serde(rename = "Message")]
    message: String,
}

#[derive(Deserialize)]
struct PinsResponse {
    #[serde(rename = "Pins", default)]
    pins: Vec<String>,
}

#[derive(Deserialize)]
struct PinLsResponse {
    #[serde(rename = "Keys", default)]
    keys: std::collections::HashMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct BlockRmLine {
    #[serde(rename = "Error", default)]
    error: Option<String>,
}

impl KuboClient {
    /// A client for the API at `api` (a multiaddr or URL); every request is abandoned after
    /// `timeout`. Contacts nothing.
    pub fn new(api: &str, timeout: Duration) -> Result<KuboClient> {
        let base = api_url(api).ok_or_else(|| Error::InvalidEnv {
            var: crate::config::ENV_IPFS_API.into(),
            value: api.into(),
            expected: "a multiaddr such as /ip4/127.0.0.1/tcp/5001 or an http(s) URL",
        })?;
        let http = crate::http::client(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Remote {
                tier: format!("kubo at {base}"),
                reason: e.to_string(),
            })?;
        Ok(KuboClient { base, http })
    }

    /// The API's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `version`.
    pub async fn version(&self) -> Result<VersionResponse> {
        self.json("version", &[], None).await
    }

    /// `id`.
    pub async fn id(&self) -> Result<IdResponse> {
        self.json("id", &[], None).await
    }

    /// `add` of one file with the given layout; the node computes the CID.
    pub async fn add(&self, data: Vec<u8>, options: AddOptions) -> Result<AddResponse> {
        let query = [
            ("cid-version", options.cid_version.to_string()),
            ("raw-leaves", options.raw_leaves.to_string()),
            ("chunker", format!("size-{}", options.chunk_size)),
            ("pin", options.pin.to_string()),
        ];
        let text = self.text("add", &query, Some(data)).await?;
        // One JSON object per line; the file's is the last.
        let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        self.decode("add", line)
    }

    /// `cat`: the node's bytes for a file, **unverified** (the DAG is not visible here). Use
    /// [`Kubo::get`] for verified blocks; this exists to cross-check a node.
    pub async fn cat_unverified(&self, cid: &Cid) -> Result<Vec<u8>> {
        self.bytes("cat", &[("arg", cid.to_string())], None).await
    }

    /// `block/put` of one block under its codec and sha2-256; checks the node's CID names the
    /// same bytes.
    pub async fn block_put(&self, block: &Block) -> Result<BlockStat> {
        let codec = match block.cid().codec() {
            RAW => "raw",
            DAG_PB => "dag-pb",
            other => {
                return Err(Error::UnsupportedCid {
                    cid: block.cid().to_string(),
                    reason: format!("codec 0x{other:x} cannot be put to Kubo"),
                })
            }
        };
        // `format`, not `cid-codec`: every Kubo still reads it (deprecated since 0.13, and an
        // error when combined with a non-raw `cid-codec`), and js-ipfs reads only it.
        let query = [("format", codec.to_string()), ("mhtype", "sha2-256".to_string())];
        let stat: BlockStat = self.json("block/put", &query, Some(block.data().to_vec())).await?;
        if !same_block(&stat.key, block.cid()) {
            return Err(self.error(
                "block/put",
                format!("node stored {} as {}: a different block", block.cid(), stat.key),
            ));
        }
        Ok(stat)
    }

    /// `block/get`: the node's bytes for `cid`, verified.
    pub async fn block_get(&self, cid: &Cid) -> Result<Block> {
        let data = self.bytes("block/get", &[("arg", cid.to_string())], None).await?;
        Block::verified(*cid, data)
    }

    /// `block/stat` of a block the node has; `None` when it does not.
    pub async fn block_stat(&self, cid: &Cid) -> Result<Option<BlockStat>> {
        // `offline`: Kubo answers from its own blockstore instead of searching the network.
        // js-ipfs ignores it and waits for the block, so `timeout` bounds that wait.
        let query = [
            ("arg", cid.to_string()),
            ("offline", "true".to_string()),
            ("timeout", format!("{}ms", LOCAL_LOOKUP.as_millis())),
        ];
        match self.json::<BlockStat>("block/stat", &query, None).await {
            Ok(stat) => Ok(Some(stat)),
            Err(Error::RemoteStatus { message, .. }) if is_not_found(&message) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `block/rm`.
    pub async fn block_rm(&self, cid: &Cid) -> Result<()> {
        let text = self.text("block/rm", &[("arg", cid.to_string())], None).await?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let line: BlockRmLine = self.decode("block/rm", line)?;
            if let Some(error) = line.error.filter(|e| !e.is_empty()) {
                return Err(self.error("block/rm", error));
            }
        }
        Ok(())
    }

    /// `pin/add` (recursive).
    pub async fn pin_add(&self, cid: &Cid) -> Result<()> {
        let query = [("arg", cid.to_string()), ("recursive", "true".to_string())];
        let reply: PinsResponse = self.json("pin/add", &query, None).await?;
        self.expect_pinned("pin/add", cid, &reply.pins)
    }

    /// `pin/rm`.
    pub async fn pin_rm(&self, cid: &Cid) -> Result<()> {
        let reply: PinsResponse = self.json("pin/rm", &[("arg", cid.to_string())], None).await?;
        self.expect_pinned("pin/rm", cid, &reply.pins)
    }

    /// `pin/ls` of `cid` (recursive pins): whether it is pinned.
    pub async fn pin_ls(&self, cid: &Cid) -> Result<bool> {
        let query = [("arg", cid.to_string()), ("type", "recursive".to_string())];
        match self.json::<PinLsResponse>("pin/ls", &query, None).await {
            Ok(reply) => Ok(reply.keys.keys().any(|k| names_block(k, cid))),
            Err(Error::RemoteStatus { message, .. }) if message.contains("not pinned") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `dag/export`: the DAG under `root` as a CAR v1 stream written to `writer`; returns
    /// bytes written. The deadline covers the whole transfer. The CAR is the node's word: read
    /// it with [`crate::store::Store::import_car`], which verifies every block.
    pub async fn dag_export_to<W: AsyncWrite + Unpin>(
        &self,
        root: &Cid,
        writer: &mut W,
    ) -> Result<u64> {
        let response = self.send("dag/export", &[("arg", root.to_string())], None).await?;
        let mut body = response.bytes_stream();
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.error("dag/export", reqwest_reason(&e)))?;
            writer.write_all(&chunk).await.map_err(|e| Error::io("write", "<car>", e))?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }

    /// `dag/import` of a CAR v1 file (without pinning its roots).
    pub async fn dag_import(&self, car: Vec<u8>) -> Result<()> {
        self.text("dag/import", &[("pin-roots", "false".to_string())], Some(car)).await?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("kubo at {}", self.base)
    }

    fn error(&self, op: &str, reason: String) -> Error {
        Error::Remote { tier: self.describe(), reason: format!("{op}: {reason}") }
    }

    fn expect_pinned(&self, op: &str, cid: &Cid, pins: &[String]) -> Result<()> {
        if pins.iter().any(|p| names_block(p, cid)) {
            Ok(())
        } else {
            Err(self.error(op, format!("the reply does not list {cid}: {pins:?}")))
        }
    }

    async fn send(
        &self,
        op: &'static str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response> {
        let span = tracing::debug_span!("kubo", op, url = %self.base);
        async {
            let mut request = self.http.post(format!("{}/api/v0/{op}", self.base)).query(query);
            if let Some(data) = body {
                let part = reqwest::multipart::Part::bytes(data)
                    .file_name("data")
                    .mime_str("application/octet-stream")
                    .map_err(|e| self.error(op, e.to_string()))?;
                request = request.multipart(reqwest::multipart::Form::new().part("file", part));
            }
            let response = request.send().await.map_err(|e| {
                tracing::debug!(error = %e, "request failed");
                self.error(op, reqwest_reason(&e))
            })?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let text = crate::http::read_body(response, 64 << 10)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let message = serde_json::from_str::<KuboErrorBody>(&text)
                .map(|b| b.message)
                .unwrap_or_else(|_| text.chars().take(200).collect());
            tracing::debug!(%status, %message, "node refused");
            Err(Error::RemoteStatus { tier: self.describe(), op, status: status.as_u16(), message })
        }
        .instrument(span)
        .await
    }

    async fn bytes(
        &self,
        op: &'static str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let response = self.send(op, query, body).await?;
        let bytes = crate::http::read_body(response, MAX_REPLY).await.map_err(|e| match e {
            crate::http::BodyError::Transport(e) => self.error(op, reqwest_reason(&e)),
            too_large => self.error(op, too_large.to_string()),
        })?;
        Ok(bytes.to_vec())
    }

    async fn text(
        &self,
        op: &'static str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<String> {
        let bytes = self.bytes(op, query, body).await?;
        String::from_utf8(bytes).map_err(|_| self.error(op, "reply is not UTF-8".into()))
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let text = self.text(op, query, body).await?;
        self.decode(op, &text)
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, op: &str, text: &str) -> Result<T> {
        serde_json::from_str(text).map_err(|e| {
            let shown: String = text.chars().take(200).collect();
            self.error(op, format!("unexpected reply ({e}): {shown}"))
        })
    }
}

/// The Kubo tier: verified blocks and recursive pins on an IPFS node.
#[derive(Debug, Clone)]
pub struct Kubo {
    client: KuboClient,
}

impl Kubo {
    /// The tier over `client`.
    pub fn new(client: KuboClient) -> Kubo {
        Kubo { client }
    }

    /// The RPC client.
    pub fn client(&self) -> &KuboClient {
        &self.client
    }
}

impl Blockstore for Kubo {
    fn describe(&self) -> String {
        self.client.describe()
    }

    fn get<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Result<Block>> {
        Box::pin(self.client.block_get(cid))
    }

    fn put<'a>(&'a self, block: &'a Block) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.client.block_put(block).await.map(drop) })
    }

    fn has<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(self.client.block_stat(cid).await?.is_some()) })
    }
}

impl Remote for Kubo {
    fn kind(&self) -> &'static str {
        "kubo"
    }

    fn id(&self) -> String {
        format!("kubo {}", self.client.base)
    }

    fn probe(&self) -> BoxFuture<'_, Result<String>> {
        Box::pin(async move {
            let version = self.client.version().await?;
            Ok(format!("IPFS node {} (repo {})", version.version, version.repo))
        })
    }

    /// One `dag/import` of a CAR per batch instead of a `block/put` per block: fewer round
    /// trips, and no multipart limit (js-ipfs caps `block/put` bodies at 1 MiB, so a 1 MiB
    /// chunk plus its multipart framing does not fit).
    fn put_many<'a>(&'a self, blocks: &'a [Block]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if blocks.is_empty() {
                return Ok(());
            }
            let car = crate::store::car::encode(blocks).await?;
            self.client.dag_import(car).await
        })
    }

    fn delete<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.client.block_rm(cid))
    }

    fn pin<'a>(&'a self, root: &'a Cid) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.client.pin_add(root))
    }

    fn is_pinned<'a>(&'a self, root: &'a Cid) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.client.pin_ls(root))
    }

    fn unpin<'a>(&'a self, root: &'a Cid) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.client.pin_rm(root).await {
                Err(Error::RemoteStatus { message, .. }) if message.contains("not pinned") => {
                    Ok(())
                }
                other => other,
            }
        })
    }
}

/// How long `block/stat` may look for a block the node should already have.
/// The largest reply read whole: a block is at most 4 MiB (Kubo's bitswap limit); a
/// `pin/ls` of many pins is the largest JSON.
const MAX_REPLY: usize = 64 << 20;
const LOCAL_LOOKUP: Duration = Duration::from_secs(1);

/// Kubo: "block was not found locally (offline): ipld: could not find …"; js-ipfs, which
/// cannot look offline: "request timed out" after [`LOCAL_LOOKUP`].
fn is_not_found(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["not found", "could not find", "not exist", "timed out"].iter().any(|s| m.contains(s))
}

/// The innermost cause ("Connection refused (os error 111)") and whether it was the deadline.
fn reqwest_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer within the deadline".into();
    }
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    let root = source.to_string();
    if e.is_connect() {
        format!("cannot connect: {root}")
    } else {
        root
    }
}

fn de_cid<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Cid, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Plain(String),
        /// `{"/": "bafy…"}` (dag-json links).
        Link {
            #[serde(rename = "/")]
            cid: String,
        },
    }
    let text = match Text::deserialize(d)? {
        Text::Plain(s) | Text::Link { cid: s } => s,
    };
    Cid::try_from(text.as_str()).map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Number(u64),
        Text(String),
    }
    match Number::deserialize(d)? {
        Number::Number(n) => Ok(n),
        Number::Text(t) => t.trim().parse().map_err(serde::de::Error::custom),
    }
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_numbers_or_strings() {
        let kubo: AddResponse = serde_json::from_str(
            r#"{"Name":"a","Hash":"bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am","Size":"6"}"#,
        )
        .unwrap();
        let js: AddResponse = serde_json::from_str(
            r#"{"Name":"a","Hash":"zb2rhcc1wJn2GHDLT2YkmPq5b69cXc2xfRZZmyufbjFUfBkxr","Size":6}"#,
        )
        .unwrap();
        assert_eq!(kubo.size, 6);
        assert_eq!(js.size, 6);
        // The same CID in two bases.
        assert_eq!(kubo.hash, js.hash);
    }

    #[test]
    fn a_cidv0_and_its_cidv1_name_the_same_block() {
        let v0 = Cid::try_from("QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN").unwrap();
        let v1 =
            Cid::try_from("bafybeiffndsajwhk3lwjewwdxqntmjm4b5wxaaanokonsggenkbw6slwk4").unwrap();
        assert!(same_block(&v0, &v1));
        let raw =
            Cid::try_from("bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am").unwrap();
        assert!(!same_block(&v0, &raw));
    }

    #[test]
    fn bad_api_addresses_are_rejected_with_the_variable() {
        for bad in ["", "localhost:5001", "/ip4/127.0.0.1/udp/5001", "/ip4/127.0.0.1", "ftp://x"] {
            let err = KuboClient::new(bad, Duration::from_secs(1)).unwrap_err();
            assert!(err.to_string().contains("IPFS_API"), "{bad}: {err}");
        }
    }
}
