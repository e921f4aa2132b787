//! The GitHub layer of ipfs-accelerate: a REST client whose every GET goes through a
//! revalidating cache in the shared store, one rate-limit cooldown, a write pacer that keeps
//! content-creating calls under GitHub's secondary limits and never resends a write that may
//! have landed, named credentials in the encrypted secret store, and the peer registry
//! (signed records in one issue per repository), and the error aggregator (redacted,
//! fingerprinted, counted in the store, filed once per fingerprint).
//!
//! Everything this crate persists goes through [`ipfs_accelerate_common`] (`Cache`,
//! `SecretStore`).

pub mod auth;
pub mod client;
mod error;
pub mod errors;
pub mod identity;
pub mod issues;
pub mod pacer;
pub mod registry;

use std::future::Future;
use std::pin::Pin;

pub use auth::{Credentials, Lookup, Token, TokenSource};
pub use client::{ClientConfig, Freshness, GitHub, Page, Source, Stats};
pub use error::{Error, Result};

/// A boxed future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
