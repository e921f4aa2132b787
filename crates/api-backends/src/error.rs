//! The one error type of the backends: every failure of every protocol, typed so the router
//! can decide what to retry, what to fall back on and what to report as is.

use std::time::Duration;

use ipfs_accelerate_common::{Class, Classify};

/// Why a backend call failed. Never a fabricated result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server refused the credentials, or there were none to send.
    #[error("{deployment}: authentication failed: {reason}")]
    Auth {
        /// The deployment.
        deployment: String,
        /// What the server said, or where a key was looked for.
        reason: String,
    },
    /// The server (or our own limiter) says to slow down.
    #[error("{deployment}: rate limited{}", retry_after.map(|d| format!(" (retry after {} ms)", d.as_millis())).unwrap_or_default())]
    RateLimited {
        /// The deployment.
        deployment: String,
        /// When the server says to try again.
        retry_after: Option<Duration>,
    },
    /// Any other non-success status.
    #[error("{deployment}: HTTP {status}: {body}")]
    Http {
        /// The deployment.
        deployment: String,
        /// The status code.
        status: u16,
        /// The start of the body the server sent.
        body: String,
    },
    /// No answer within the deadline.
    #[error("{deployment}: no answer within {} ms", after.as_millis())]
    Timeout {
        /// The deployment.
        deployment: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The connection could not be made, or broke.
    #[error("{deployment}: connection failed: {reason}")]
    Connect {
        /// The deployment.
        deployment: String,
        /// The transport's explanation.
        reason: String,
    },
    /// The server answered something that is not what its protocol documents, or a stream
    /// ended before it said it was done.
    #[error("{deployment}: unexpected response: {reason}")]
    Decode {
        /// The deployment.
        deployment: String,
        /// What was wrong.
        reason: String,
    },
    /// The deployment failed repeatedly and is cooling down.
    #[error("{deployment}: cooling down after repeated failures ({} ms left)", remaining.as_millis())]
    CircuitOpen {
        /// The deployment.
        deployment: String,
        /// Until it is tried again.
        remaining: Duration,
    },
    /// The queue in front of the deployments is full.
    #[error("queue full ({capacity} waiting)")]
    QueueFull {
        /// Its capacity.
        capacity: usize,
    },
    /// The backend has no such operation (embeddings on a chat-only server).
    #[error("{deployment}: {operation} is not supported by {kind}")]
    Unsupported {
        /// The deployment.
        deployment: String,
        /// Its protocol.
        kind: String,
        /// What was asked.
        operation: String,
    },
    /// The caller gave up (dropped the call or its deadline passed while queued).
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// The configuration names something that does not exist or cannot be used.
    #[error("backend configuration: {0}")]
    Config(String),
    /// The storage layer (cache, secrets) failed.
    #[error(transparent)]
    Storage(#[from] ipfs_accelerate_common::Error),
}

impl Classify for Error {
    /// As a proxy answers: the upstream's failures are 502/504 (its credentials are ours, not
    /// the caller's), its 4xx refusals of the request itself pass through.
    fn class(&self) -> Class {
        use ipfs_accelerate_common::status::*;
        let retryable = self.is_retryable();
        let (kind, status) = match self {
            Error::Storage(e) => return e.class(),
            Error::Auth { .. } => ("auth", BAD_GATEWAY),
            Error::RateLimited { .. } => ("rate_limited", TOO_MANY_REQUESTS),
            Error::Http { status, .. }
                if (400..500).contains(status) && *status != 401 && *status != 403 =>
            {
                ("http", *status)
            }
            Error::Http { .. } => ("http", BAD_GATEWAY),
            Error::Timeout { .. } => ("timeout", GATEWAY_TIMEOUT),
            Error::Connect { .. } => ("connect", BAD_GATEWAY),
            Error::Decode { .. } => ("decode", BAD_GATEWAY),
            Error::CircuitOpen { .. } => return Class::retryable("circuit_open", UNAVAILABLE),
            Error::QueueFull { .. } => return Class::retryable("queue_full", TOO_MANY_REQUESTS),
            Error::Unsupported { .. } => ("unsupported", BAD_REQUEST),
            Error::Cancelled(_) => ("cancelled", CLIENT_CLOSED),
            Error::Config(_) => ("config", INTERNAL),
        };
        Class { kind, retryable, status }
    }
}

impl Error {
    /// Whether the same request may succeed if sent again to the same deployment: rate limits,
    /// timeouts, broken connections and 5xx (except 501). Never auth, bad requests, decode
    /// errors of a complete answer, or configuration.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::RateLimited { .. } | Error::Timeout { .. } | Error::Connect { .. } => true,
            Error::Http { status, .. } => matches!(status, 500 | 502 | 503 | 504 | 408),
            _ => false,
        }
    }

    /// Whether it counts against the deployment's health (cooldown): the server's failures,
    /// not the caller's.
    pub fn counts_against_deployment(&self) -> bool {
        match self {
            Error::Http { status, .. } => *status >= 500,
            Error::Timeout { .. } | Error::Connect { .. } | Error::RateLimited { .. } => true,
            Error::Auth { .. } => true,
            Error::Decode { .. } => true,
            _ => false,
        }
    }

    /// The server's requested wait, when it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
