//! The one error type of the GitHub layer.

use std::time::Duration;

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

impl Error {
    /// A short machine-readable kind, for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Auth(_) => "auth",
            Error::RateLimited { .. } => "rate_limited",
            Error::Http { .. } => "http",
            Error::Timeout { .. } => "timeout",
            Error::Connect { .. } => "connect",
            Error::Decode { .. } => "decode",
            Error::QueueFull { .. } => "queue_full",
            Error::Config(_) => "config",
            Error::Storage(_) => "storage",
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
