use std::path::PathBuf;

/// The one error type of the storage crate; variants are named after what the caller can do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable holds a value that cannot be parsed.
    #[error("environment variable {var}={value:?} is invalid: expected {expected}")]
    InvalidEnv {
        /// The variable's name.
        var: String,
        /// The value found.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A config value (from the file or a flag) cannot be parsed.
    #[error("config value {key} = {value:?} is invalid: expected {expected}")]
    InvalidConfigValue {
        /// The dotted config key.
        key: &'static str,
        /// The value found.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// The config file exists but is not valid TOML for our schema.
    #[error("config file {path} is invalid: {message}")]
    ConfigFile {
        /// The file that was read.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A section another crate owns (`[worker]`, `[backends]`, `[github]`) does not parse or
    /// breaks one of its rules.
    #[error("config [{section}]: {reason}")]
    ConfigSection {
        /// The section.
        section: &'static str,
        /// What is wrong, naming the key.
        reason: String,
    },
    /// No home directory could be determined for the default paths, and none was configured.
    #[error("cannot determine a home directory for default paths; set --data-dir or IPFS_ACCELERATE_DATA_DIR")]
    NoHomeDirectory,
    /// The input is not a CID.
    #[error("{input:?} is not a CID: {reason}")]
    InvalidCid {
        /// What was given.
        input: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The input is one of the Python original's fake ids (`bafy` + hex), not a CID.
    #[error("{input:?} is a legacy non-CID id from ipfs_accelerate_py (\"bafy\" + hex digest); it names nothing in IPFS: re-add the content to get its CID")]
    LegacyFakeCid {
        /// What was given.
        input: String,
    },
    /// A well-formed CID with a codec or hash this store does not serve.
    #[error("unsupported CID {cid}: {reason}")]
    UnsupportedCid {
        /// The CID.
        cid: String,
        /// What is unsupported.
        reason: String,
    },
    /// Bytes did not hash to the CID they were stored or fetched under. Never returned as data.
    #[error("block {cid} is corrupt: its bytes hash to {actual}")]
    Corrupt {
        /// The block's CID.
        cid: String,
        /// The CID the bytes actually have.
        actual: String,
    },
    /// A block is not in the store.
    #[error("block {cid} is not in the store")]
    NotFound {
        /// The missing block's CID.
        cid: String,
    },
    /// A block's bytes are not a valid node of its codec (e.g. malformed dag-pb or UnixFS).
    #[error("block {cid} is not valid {format}: {reason}")]
    MalformedBlock {
        /// The block's CID.
        cid: String,
        /// The format it should be in.
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A CAR file is malformed or truncated.
    #[error("CAR file is invalid: {reason}")]
    InvalidCar {
        /// What is wrong.
        reason: String,
    },
    /// A name update lost a compare-and-swap race or named a wrong expected value.
    #[error("name {namespace}/{name} is {actual}, not {expected} as the update required")]
    NameConflict {
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
        /// What the caller expected.
        expected: String,
        /// What it is.
        actual: String,
    },
    /// A name is not set.
    #[error("name {namespace}/{name} is not set")]
    NameNotFound {
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
    },
    /// A namespace or name that cannot be stored (empty, too long, control characters).
    #[error("invalid name {input:?}: {reason}")]
    InvalidName {
        /// What was given.
        input: String,
        /// Why.
        reason: &'static str,
    },
    /// A path inside a tree (a directory entry) that cannot be stored.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path or name given.
        path: String,
        /// Why.
        reason: String,
    },
    /// A CID that had to name a UnixFS directory names something else.
    #[error("{cid} is not a directory: {reason}")]
    NotADirectory {
        /// The CID.
        cid: String,
        /// What it is instead.
        reason: String,
    },
    /// A path does not exist under a directory.
    #[error("{root} has no entry {path:?}")]
    NoSuchPath {
        /// The directory's CID.
        root: String,
        /// The path looked up.
        path: String,
    },
    /// A content is not pinned (for `unpin`).
    #[error("{cid} is not pinned")]
    NotPinned {
        /// The CID.
        cid: String,
    },
    /// The metadata database failed.
    #[error("store database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The store's index (`meta.sqlite`) is missing, empty or unreadable while the store holds
    /// data: opening it would silently start an empty store over the old blocks.
    #[error("store index {path}: {reason}; nothing was changed. `ipfs-accelerate storage verify --rebuild-index` rebuilds it from the block files (verifying each)")]
    StoreIndex {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `--rebuild-index` on a store whose index is fine (a rebuild would drop pins and names).
    #[error("store index {path} is readable: there is nothing to rebuild (`storage verify` checks every block)")]
    IndexReadable {
        /// The database file.
        path: PathBuf,
    },
    /// The secrets file does not open: wrong key, damage or tampering. It was not modified.
    #[error("secrets file {path} cannot be decrypted: {reason}")]
    SecretsUndecryptable {
        /// The file.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
    /// A master-key file that cannot be used.
    #[error("master key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The problem.
        reason: String,
    },
    /// No master key where the configuration says it is kept.
    #[error("no master key: IPFS_ACCELERATE_MASTER_KEY is not set and {looked} holds none (`secrets set` creates one)")]
    NoMasterKey {
        /// Where it was looked for.
        looked: String,
    },
    /// The OS keyring could not be used. Nothing falls back silently to a weaker key source.
    #[error("OS keyring: {reason}")]
    Keyring {
        /// What failed.
        reason: String,
    },
    /// No credential for a provider anywhere it may come from.
    #[error("no credential for {provider}: tried {tried}")]
    MissingCredential {
        /// The provider.
        provider: String,
        /// Where it was looked for.
        tried: String,
    },
    /// A cache key or namespace that cannot be used.
    #[error("invalid cache key: {reason}")]
    InvalidCacheKey {
        /// Why.
        reason: String,
    },
    /// A cached value is not the JSON its reader expects (written by another schema version).
    #[error("cache entry {namespace}/{key} is not readable as {expected}: {reason}")]
    CacheValue {
        /// Its namespace.
        namespace: String,
        /// Its key.
        key: String,
        /// The type expected.
        expected: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// A remote tier failed: unreachable, past its deadline, refusing, or answering nonsense.
    #[error("{tier}: {reason}")]
    Remote {
        /// The tier ("kubo at http://127.0.0.1:5001", "s3 at s3://bucket/prefix").
        tier: String,
        /// What failed.
        reason: String,
    },
    /// A remote tier answered a request with an error status.
    #[error("{tier}: {op}: {message} (HTTP {status})")]
    RemoteStatus {
        /// The tier.
        tier: String,
        /// The RPC or operation.
        op: &'static str,
        /// The HTTP status.
        status: u16,
        /// The tier's own message.
        message: String,
    },
    /// An operation needs a remote tier and none is active.
    #[error("no remote tier is active: {reason}")]
    NoRemote {
        /// Why each configured tier is off, or that none is configured.
        reason: String,
    },
    /// A blocking task was cancelled or panicked.
    #[error("internal task failed: {0}")]
    Task(String),
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("read", "create", "rename" …).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What an error means to whoever must answer for it — the CLI's `--json` errors, `serve`'s
/// HTTP answers and MCP's tool errors all read this and nothing else.
///
/// Every library crate's error implements [`Classify`]; a wrapped error (a storage failure
/// inside a worker error) answers with the class of what it wraps, so the kind names the
/// precise failure, never the layer it passed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Class {
    /// A short, stable, machine-readable name (`not_found`, `rate_limited`, …). Kinds are one
    /// vocabulary across crates: the same name means the same thing wherever it appears.
    pub kind: &'static str,
    /// Whether sending the same request again later, unchanged, may succeed.
    pub retryable: bool,
    /// The HTTP status a server answers with.
    pub status: u16,
}

impl Class {
    /// A failure that a retry cannot mend.
    pub const fn new(kind: &'static str, status: u16) -> Class {
        Class { kind, retryable: false, status }
    }

    /// A failure that may pass if tried again later.
    pub const fn retryable(kind: &'static str, status: u16) -> Class {
        Class { kind, retryable: true, status }
    }
}

/// Statuses used by more than one crate, named once.
pub mod status {
    /// The request is malformed or asks for something impossible.
    pub const BAD_REQUEST: u16 = 400;
    /// The thing named does not exist.
    pub const NOT_FOUND: u16 = 404;
    /// The request conflicts with the current state.
    pub const CONFLICT: u16 = 409;
    /// Well-formed, but its content cannot be processed.
    pub const UNPROCESSABLE: u16 = 422;
    /// Too many requests: a queue or a rate limit is full.
    pub const TOO_MANY_REQUESTS: u16 = 429;
    /// The client went away or cancelled (nginx's convention; no standard status exists).
    pub const CLIENT_CLOSED: u16 = 499;
    /// Our own failure.
    pub const INTERNAL: u16 = 500;
    /// An upstream server (a backend, a remote tier, GitHub) failed or answered nonsense.
    pub const BAD_GATEWAY: u16 = 502;
    /// Not available now (cooling down, no device, no tier).
    pub const UNAVAILABLE: u16 = 503;
    /// An upstream server did not answer in time.
    pub const GATEWAY_TIMEOUT: u16 = 504;
    /// The disk is full.
    pub const INSUFFICIENT_STORAGE: u16 = 507;
}

/// An error that can say what it is: see [`Class`].
pub trait Classify: std::error::Error {
    /// Its class.
    fn class(&self) -> Class;

    /// Its kind alone.
    fn kind(&self) -> &'static str {
        self.class().kind
    }
}

impl Classify for Error {
    fn class(&self) -> Class {
        use status::*;
        if self.is_no_space() {
            return Class::new("no_space", INSUFFICIENT_STORAGE);
        }
        match self {
            Error::InvalidEnv { .. } => Class::new("invalid_env", INTERNAL),
            Error::InvalidConfigValue { .. } => Class::new("invalid_config_value", INTERNAL),
            Error::ConfigFile { .. } => Class::new("config_file", INTERNAL),
            Error::ConfigSection { .. } => Class::new("config_section", INTERNAL),
            Error::NoHomeDirectory => Class::new("no_home_directory", INTERNAL),
            Error::InvalidCid { .. } => Class::new("invalid_cid", BAD_REQUEST),
            Error::LegacyFakeCid { .. } => Class::new("legacy_fake_cid", BAD_REQUEST),
            Error::UnsupportedCid { .. } => Class::new("unsupported_cid", BAD_REQUEST),
            Error::Corrupt { .. } => Class::new("corrupt", INTERNAL),
            Error::NotFound { .. } => Class::new("not_found", NOT_FOUND),
            Error::MalformedBlock { .. } => Class::new("malformed_block", UNPROCESSABLE),
            Error::InvalidCar { .. } => Class::new("invalid_car", BAD_REQUEST),
            Error::NameConflict { .. } => Class::new("name_conflict", CONFLICT),
            Error::NameNotFound { .. } => Class::new("name_not_found", NOT_FOUND),
            Error::InvalidName { .. } => Class::new("invalid_name", BAD_REQUEST),
            Error::InvalidPath { .. } => Class::new("invalid_path", BAD_REQUEST),
            Error::NotADirectory { .. } => Class::new("not_a_directory", BAD_REQUEST),
            Error::NoSuchPath { .. } => Class::new("no_such_path", NOT_FOUND),
            Error::NotPinned { .. } => Class::new("not_pinned", NOT_FOUND),
            // Another process holding the write lock past the busy timeout passes.
            Error::Database { source, .. }
                if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    || source.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseLocked) =>
            {
                Class::retryable("database_busy", UNAVAILABLE)
            }
            Error::Database { .. } => Class::new("database", INTERNAL),
            Error::StoreIndex { .. } => Class::new("store_index", INTERNAL),
            Error::IndexReadable { .. } => Class::new("index_readable", CONFLICT),
            Error::InvalidCacheKey { .. } => Class::new("invalid_cache_key", BAD_REQUEST),
            Error::CacheValue { .. } => Class::new("cache_value", INTERNAL),
            Error::SecretsUndecryptable { .. } => Class::new("secrets_undecryptable", INTERNAL),
            Error::KeyFile { .. } => Class::new("key_file", INTERNAL),
            Error::NoMasterKey { .. } => Class::new("no_master_key", INTERNAL),
            Error::Keyring { .. } => Class::new("keyring", INTERNAL),
            Error::MissingCredential { .. } => Class::new("missing_credential", INTERNAL),
            Error::Remote { .. } => Class::retryable("remote", BAD_GATEWAY),
            Error::RemoteStatus { status, .. } => Class {
                kind: "remote_status",
                retryable: matches!(status, 408 | 429) || *status >= 500,
                status: BAD_GATEWAY,
            },
            Error::NoRemote { .. } => Class::new("no_remote", UNAVAILABLE),
            Error::Task(_) => Class::new("task", INTERNAL),
            Error::Io { .. } => Class::new("io", INTERNAL),
        }
    }
}

impl Error {
    /// Whether this is the filesystem being full (`ENOSPC`, or SQLite's `SQLITE_FULL`).
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            // SQLITE_IOERR_SHMSIZE (4874): the `-shm` file could not be grown, which on
            // Linux means the filesystem is full.
            Error::Database { source, .. } => {
                source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
                    || matches!(source, rusqlite::Error::SqliteFailure(e, _) if e.extended_code == 4874)
            }
            _ => false,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }
}

/// An error with its whole `source()` chain, `outer: inner: innermost` — for errors (HTTP
/// clients, object stores) whose top line says only that something failed.
pub fn chain_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.ends_with(&part) {
            text = format!("{text}: {part}");
        }
        source = inner.source();
    }
    text
}

/// `Result` with the storage crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
