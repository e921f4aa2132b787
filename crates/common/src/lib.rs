//! The shared storage layer of ipfs-accelerate.

//!
//! Everything the system persists goes through this crate: it is the only one that touches the
//! filesystem for persistent state (invariant "one door to the disk", enforced by `clippy.toml`).
//!
//! - [`config`]: the typed configuration, layered defaults → config file → environment → flags,
//!   with the source of every value, and the one truthiness parser for environment values.
//! - [`store`], [`cache`], [`secrets`], [`remote`], [`unixfs`], [`cid`]: the store and what
//!   is built on it (see each module).
//! - [`http`]: the bounds on what remote servers send (waits, bodies, stream lines).
//! - [`crash`]: crash points the fault tests kill the process at.
//!
//! ```
//! use ipfs_accelerate_common::config::{Config, LoadOptions};
//!
//! // An environment with one override; `Config::load` reads the real process environment.
//! let env = |name: &str| (name == "IPFS_ACCELERATE_DATA_DIR").then(|| "/srv/ipfs-accelerate".to_string());
//! let config = Config::load_with_env(&LoadOptions::default(), env)?;
//! assert_eq!(config.data_dir().value.to_str(), Some("/srv/ipfs-accelerate"));
//! # Ok::<(), ipfs_accelerate_common::Error>(())
//! ```

// This crate is the door: the workspace clippy.toml bans std::fs and tokio::fs everywhere else.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod cache;
pub mod cid;
pub mod config;
pub mod crash;
mod error;
pub mod http;
pub mod remote;
pub mod secrets;
pub mod store;
pub mod unixfs;

pub use error::{chain_text, status, Class, Classify, Error, Result};
