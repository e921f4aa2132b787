//! The GitHub layer of ipfs-accelerate: a REST client whose every GET goes through a
//! revalidating cache in the shared store, one rate-limit cooldown, a write pacer that keeps
//! content-creating calls under GitHub's secondary limits and never resends a write that may
//! have landed, and named credentials in the encrypted secret store.
//!
//! Everything this crate persists goes through [`ipfs_accelerate_common`] (`Cache`,
//! `SecretStore`).

pub mod auth;
pub mod client;
mod error;
pub mod issues;
pub mod pacer;

use std::future::Future;
use std::pin::Pin;

pub use auth::{Credentials, Lookup, Token, TokenSource};
pub use client::{ClientConfig, Freshness, GitHub, Page, Source, Stats};
pub use error::{Error, Result};

/// A boxed future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
