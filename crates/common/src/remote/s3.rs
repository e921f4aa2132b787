//! The S3 tier: blocks as objects under `<prefix>/blocks/<CIDv1>` in an S3-compatible bucket,
//! through `object_store` (SigV4, path-style requests to a custom endpoint, the standard AWS
//! credential chain, multipart uploads).
//!
//! A pin is a marker object `<prefix>/pins/<CIDv1>` written after every block of the DAG is
//! stored: S3 keeps objects until deleted, so the marker records intent for whoever collects
//! the bucket's garbage.

use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use tracing::Instrument;

use super::{Blockstore, BoxFuture, Remote};
use crate::cid::Block;
use crate::config::{RemoteConfig, S3Url};
use crate::{Error, Result};

/// Blocks larger than this go up as multipart uploads (S3's minimum part is 5 MiB).
/// The largest object read as one block (Kubo refuses blocks over 4 MiB; we allow slack).
const MAX_BLOCK: u64 = 16 << 20;
const MULTIPART_THRESHOLD: usize = 8 << 20;
/// Part size of a multipart upload.
const PART_SIZE: usize = 5 << 20;

/// The S3 tier.
#[derive(Debug, Clone)]
pub struct S3 {
    store: Arc<dyn ObjectStore>,
    location: String,
    prefix: String,
}

impl S3 {
    /// The tier the configuration describes: bucket and prefix from `location`, endpoint and
    /// region from `remote` (`AWS_ENDPOINT_URL`, `AWS_REGION`), credentials from the standard
    /// AWS chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, web identity, instance
    /// metadata). Contacts nothing.
    pub fn from_config(location: &S3Url, remote: &RemoteConfig) -> Result<S3> {
        let endpoint = S3Endpoint {
            bucket: location.bucket.clone(),
            endpoint: remote.s3_endpoint.value.clone(),
            region: remote.s3_region.value.clone(),
            timeout: remote.timeout.value,
        };
        let store = endpoint.object_store().map_err(|e| Error::Remote {
            tier: format!("s3 at {location}"),
            reason: format!("configuration: {e}"),
        })?;
        Ok(S3::new(store, location))
    }

    /// The tier over any object store (an in-memory one in tests), under `location`'s prefix.
    pub fn new(store: Arc<dyn ObjectStore>, location: &S3Url) -> S3 {
        S3 { store, location: location.to_string(), prefix: location.prefix.clone() }
    }

    fn key(&self, kind: &str, cid: &Cid) -> ObjectPath {
        // CIDv1 in base32 for every block, so a CIDv0 and its CIDv1 share one object.
        let v1 = Cid::new_v1(cid.codec(), *cid.hash());
        match self.prefix.as_str() {
            "" => ObjectPath::from(format!("{kind}/{v1}")),
            prefix => ObjectPath::from(format!("{prefix}/{kind}/{v1}")),
        }
    }

    fn error(&self, op: &str, e: object_store::Error) -> Error {
        Error::Remote { tier: self.describe(), reason: format!("{op}: {}", innermost(&e)) }
    }

    async fn exists(&self, key: &ObjectPath) -> Result<bool> {
        match self.store.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("head", e)),
        }
    }

    async fn upload(&self, key: &ObjectPath, data: &[u8]) -> Result<()> {
        upload(self.store.as_ref(), key, data).await.map_err(|e| self.error("put", e))
    }
}

/// How to reach an S3-compatible service — the one `object_store` client construction shared
/// by this tier and the backends' S3 client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Endpoint {
    /// The bucket.
    pub bucket: String,
    /// A custom endpoint (`AWS_ENDPOINT_URL`): an S3-compatible server, addressed path-style,
    /// plain HTTP allowed when the URL says `http://`. AWS itself when `None`.
    pub endpoint: Option<String>,
    /// The region (`AWS_REGION`).
    pub region: String,
    /// Per-request timeout (connects give up after at most 5 s).
    pub timeout: Duration,
}

impl S3Endpoint {
    /// The client, with credentials from the standard AWS chain (`AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, web identity, instance metadata) and two
    /// retries within the timeout. Contacts nothing.
    pub fn object_store(&self) -> std::result::Result<Arc<dyn ObjectStore>, object_store::Error> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(self.timeout)
                    .with_connect_timeout(self.timeout.min(Duration::from_secs(5))),
            )
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: self.timeout,
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &self.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        Ok(Arc::new(builder.build()?))
    }
}

/// Stores `data` at `key`: one PUT, or a multipart upload (5 MiB parts) above 8 MiB, aborted
/// if a part fails so no orphaned parts are left to pay for.
pub async fn upload(
    store: &dyn ObjectStore,
    key: &ObjectPath,
    data: &[u8],
) -> std::result::Result<(), object_store::Error> {
    if data.len() <= MULTIPART_THRESHOLD {
        store.put(key, PutPayload::from(bytes::Bytes::copy_from_slice(data))).await?;
        return Ok(());
    }
    let mut upload = store.put_multipart(key).await?;
    for part in data.chunks(PART_SIZE) {
        let payload = PutPayload::from(bytes::Bytes::copy_from_slice(part));
        if let Err(e) = upload.put_part(payload).await {
            // The error that matters is the part's; the abort only frees storage.
            let _ = upload.abort().await;
            return Err(e);
        }
    }
    upload.complete().await?;
    Ok(())
}

impl Blockstore for S3 {
    fn describe(&self) -> String {
        format!("s3 at {}", self.location)
    }

    fn get<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Result<Block>> {
        let span = tracing::debug_span!("s3", op = "get", %cid);
        Box::pin(
            async move {
                let key = self.key("blocks", cid);
                let object = match self.store.get(&key).await {
                    Ok(object) => object,
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(Error::Remote {
                            tier: self.describe(),
                            reason: format!("block {cid} is not in the bucket"),
                        })
                    }
                    Err(e) => return Err(self.error("get", e)),
                };
                if object.meta.size > MAX_BLOCK {
                    return Err(Error::Remote {
                        tier: self.describe(),
                        reason: format!(
                            "object for block {cid} is {} bytes, over the {MAX_BLOCK}-byte block limit",
                            object.meta.size
                        ),
                    });
                }
                let data = object.bytes().await.map_err(|e| self.error("get", e))?;
                Block::verified(*cid, data.to_vec())
            }
            .instrument(span),
        )
    }

    fn put<'a>(&'a self, block: &'a Block) -> BoxFuture<'a, Result<()>> {
        let span = tracing::debug_span!("s3", op = "put", cid = %block.cid());
        Box::pin(
            async move {
                let key = self.key("blocks", block.cid());
                // Content-addressed: an object under this key already holds these bytes.
                if self.exists(&key).await? {
                    return Ok(());
                }
                self.upload(&key, block.data()).await
            }
            .instrument(span),
        )
    }

    fn has<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { self.exists(&self.key("blocks", cid)).await })
    }
}

impl Remote for S3 {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn id(&self) -> String {
        format!("s3 {}", self.location)
    }

    fn probe(&self) -> BoxFuture<'_, Result<String>> {
        Box::pin(async move {
            // A HEAD of a key that need not exist: answers 404 when the bucket is reachable and
            // the credentials are accepted, and an error naming the problem otherwise.
            let key = match self.prefix.as_str() {
                "" => ObjectPath::from(".ipfs-accelerate-probe"),
                prefix => ObjectPath::from(format!("{prefix}/.ipfs-accelerate-probe")),
            };
            self.exists(&key).await?;
            Ok(format!("bucket reachable at {}", self.location))
        })
    }

    fn delete<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let key = self.key("blocks", cid);
            self.store.delete(&key).await.map_err(|e| self.error("delete", e))
        })
    }

    fn pin<'a>(&'a self, root: &'a Cid) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if !self.has(root).await? {
                return Err(Error::Remote {
                    tier: self.describe(),
                    reason: format!("cannot pin {root}: its root block is not in the bucket"),
                });
            }
            let marker =
                serde_json::json!({ "cid": root.to_string(), "pinned_at": crate::store::now() });
            self.upload(&self.key("pins", root), marker.to_string().as_bytes()).await
        })
    }

    fn is_pinned<'a>(&'a self, root: &'a Cid) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { self.exists(&self.key("pins", root)).await })
    }

    fn unpin<'a>(&'a self, root: &'a Cid) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.store.delete(&self.key("pins", root)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.error("unpin", e)),
            }
        })
    }
}

/// object_store wraps the HTTP error several levels deep; the root says what happened.
fn innermost(e: &object_store::Error) -> String {
    let mut text = e.to_string();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(next) = source {
        text = next.to_string();
        source = next.source();
    }
    text
}
