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

impl Error {
    /// A short, stable, machine-readable name for the kind of error (used in `--json` output).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidEnv { .. } => "invalid_env",
            Error::InvalidConfigValue { .. } => "invalid_config_value",
            Error::ConfigFile { .. } => "config_file",
            Error::NoHomeDirectory => "no_home_directory",
            Error::InvalidCid { .. } => "invalid_cid",
            Error::LegacyFakeCid { .. } => "legacy_fake_cid",
            Error::UnsupportedCid { .. } => "unsupported_cid",
            Error::Corrupt { .. } => "corrupt",
            Error::NotFound { .. } => "not_found",
            Error::MalformedBlock { .. } => "malformed_block",
            Error::InvalidCar { .. } => "invalid_car",
            Error::NameConflict { .. } => "name_conflict",
            Error::NameNotFound { .. } => "name_not_found",
            Error::InvalidName { .. } => "invalid_name",
            Error::InvalidPath { .. } => "invalid_path",
            Error::NotADirectory { .. } => "not_a_directory",
            Error::NoSuchPath { .. } => "no_such_path",
            Error::NotPinned { .. } => "not_pinned",
            Error::Database { .. } => "database",
            Error::StoreIndex { .. } => "store_index",
            Error::IndexReadable { .. } => "index_readable",
            Error::InvalidCacheKey { .. } => "invalid_cache_key",
            Error::CacheValue { .. } => "cache_value",
            Error::SecretsUndecryptable { .. } => "secrets_undecryptable",
            Error::KeyFile { .. } => "key_file",
            Error::NoMasterKey { .. } => "no_master_key",
            Error::Keyring { .. } => "keyring",
            Error::MissingCredential { .. } => "missing_credential",
            Error::Remote { .. } => "remote",
            Error::RemoteStatus { .. } => "remote_status",
            Error::NoRemote { .. } => "no_remote",
            Error::Task(_) => "task",
            Error::Io { .. } => "io",
        }
    }

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
