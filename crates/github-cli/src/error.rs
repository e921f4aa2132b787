//! The one error type of the GitHub layer.

use std::time::Duration;

use ipfs_accelerate_common::{Class, Classify};

/// Why a GitHub operation failed. Never a fabricated result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No token anywhere, or GitHub refused it.
    #[error("GitHub authentication: {0}")]
    Auth(String),
    /// The primary or a secondary rate limit is in force and no cached answer can stand in.
    #[error("GitHub rate limit: {reason} (retry in {} s)", retry_in.as_secs())]
    RateLimited {
        /// GitHub's explanation or the header that said so.
        reason: String,
        /// Until the limit lifts.
        retry_in: Duration,
    },
    /// Any other non-success status.
    #[error("GitHub {method} {path}: HTTP {status}: {message}")]
    Http {
        /// The method.
        method: String,
        /// The path asked for.
        path: String,
        /// The status.
        status: u16,
        /// GitHub's `message`, or the start of the body.
        message: String,
    },
    /// No answer within the call's deadline.
    #[error("GitHub {method} {path}: no answer within {} ms", after.as_millis())]
    Timeout {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The connection failed.
    #[error("GitHub {path}: connection failed: {reason}")]
    Connect {
        /// The path.
        path: String,
        /// The transport's explanation.
        reason: String,
    },
    /// An answer that is not what GitHub documents.
    #[error("GitHub {path}: unexpected response: {reason}")]
    Decode {
        /// The path.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// More writes are waiting than the pacer's queue holds.
    #[error("GitHub write queue full ({capacity} waiting)")]
    QueueFull {
        /// The bound.
        capacity: usize,
    },
    /// Configuration names something impossible.
    #[error("GitHub configuration: {0}")]
    Config(String),
    /// The storage layer (cache, secrets) failed.
    #[error(transparent)]
    Storage(#[from] ipfs_accelerate_common::Error),
}

impl Classify for Error {
    fn class(&self) -> Class {
        use ipfs_accelerate_common::status::*;
        match self {
            Error::Storage(e) => e.class(),
            Error::Auth(_) => Class::new("auth", BAD_GATEWAY),
            Error::RateLimited { .. } => Class::retryable("rate_limited", TOO_MANY_REQUESTS),
            Error::Http { status, .. } => Class {
                kind: "http",
                retryable: matches!(status, 408 | 429) || *status >= 500,
                status: if *status == 404 { NOT_FOUND } else { BAD_GATEWAY },
            },
            Error::Timeout { .. } => Class::retryable("timeout", GATEWAY_TIMEOUT),
            Error::Connect { .. } => Class::retryable("connect", BAD_GATEWAY),
            Error::Decode { .. } => Class::new("decode", BAD_GATEWAY),
            Error::QueueFull { .. } => Class::retryable("queue_full", TOO_MANY_REQUESTS),
            Error::Config(_) => Class::new("config", INTERNAL),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
