//! S3 and S3-compatible object stores (MinIO, Ceph, R2, s3s) for data sets, model files and
//! results: put (multipart above 8 MiB), get (whole or a byte range), head, list, delete.
//!
//! Built on the same `object_store` client the storage crate's S3 tier uses
//! ([`S3Endpoint`]): custom endpoint with path-style requests, region, and credentials from the
//! standard AWS chain. Missing objects are `None`, never an error; everything else is a typed
//! [`Error`] naming the bucket and key.

use std::ops::Range;
use std::sync::Arc;

use futures_util::TryStreamExt;
pub use ipfs_accelerate_common::remote::s3::S3Endpoint;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;

use crate::error::{Error, Result};

/// A client for one bucket.
#[derive(Debug, Clone)]
pub struct S3Client {
    store: Arc<dyn ObjectStore>,
    bucket: String,
}

/// An object's listing entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Last modified, Unix seconds.
    pub last_modified: i64,
    /// Its entity tag, when the server gives one.
    pub e_tag: Option<String>,
}

impl ObjectInfo {
    fn new(meta: object_store::ObjectMeta) -> ObjectInfo {
        ObjectInfo {
            key: meta.location.to_string(),
            size: meta.size,
            last_modified: meta.last_modified.timestamp(),
            e_tag: meta.e_tag,
        }
    }
}

impl S3Client {
    /// A client for `endpoint`'s bucket. Contacts nothing.
    pub fn new(endpoint: &S3Endpoint) -> Result<S3Client> {
        let store = endpoint
            .object_store()
            .map_err(|e| Error::Config(format!("s3 bucket {}: {e}", endpoint.bucket)))?;
        Ok(S3Client { store, bucket: endpoint.bucket.clone() })
    }

    /// A client over any object store (in-memory in unit tests).
    pub fn with_store(store: Arc<dyn ObjectStore>, bucket: &str) -> S3Client {
        S3Client { store, bucket: bucket.to_string() }
    }

    fn deployment(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn error(&self, key: &str, op: &str, e: object_store::Error) -> Error {
        let deployment = self.deployment(key);
        tracing::debug!(%deployment, op, error = %e, "s3 call failed");
        let reason = format!("{op}: {e}");
        match e {
            object_store::Error::Unauthenticated { .. }
            | object_store::Error::PermissionDenied { .. } => Error::Auth { deployment, reason },
            object_store::Error::Precondition { .. } => {
                Error::Http { deployment, status: 412, body: reason }
            }
            object_store::Error::AlreadyExists { .. } => {
                Error::Http { deployment, status: 409, body: reason }
            }
            object_store::Error::InvalidPath { .. } => Error::Config(reason),
            _ => Error::Connect { deployment, reason },
        }
    }

    fn path(key: &str) -> Result<ObjectPath> {
        ObjectPath::parse(key).map_err(|e| Error::Config(format!("s3 key {key:?}: {e}")))
    }

    /// Stores `data` under `key` (multipart above 8 MiB; a failed part aborts the upload).
    pub async fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let path = S3Client::path(key)?;
        ipfs_accelerate_common::remote::s3::upload(self.store.as_ref(), &path, data)
            .await
            .map_err(|e| self.error(key, "put", e))
    }

    /// The object under `key`, or `None`.
    pub async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>> {
        let path = S3Client::path(key)?;
        match self.store.get(&path).await {
            Ok(object) => Ok(Some(object.bytes().await.map_err(|e| self.error(key, "get", e))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, "get", e)),
        }
    }

    /// Bytes `range` of the object under `key`, or `None` if there is no such object.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<bytes::Bytes>> {
        let path = S3Client::path(key)?;
        match self.store.get_range(&path, range).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, "get range", e)),
        }
    }

    /// The object's size and dates, or `None`.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let path = S3Client::path(key)?;
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(ObjectInfo::new(meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, "head", e)),
        }
    }

    /// Every object under `prefix` (all pages), sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let path = (!prefix.is_empty()).then(|| S3Client::path(prefix)).transpose()?;
        let mut objects: Vec<ObjectInfo> = self
            .store
            .list(path.as_ref())
            .map_ok(ObjectInfo::new)
            .try_collect()
            .await
            .map_err(|e| self.error(prefix, "list", e))?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Deletes `key`; deleting a missing object succeeds (as S3 does).
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = S3Client::path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, "delete", e)),
        }
    }
}
