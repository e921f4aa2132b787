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
            Error::Io { .. } => "io",
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }
}

/// `Result` with the storage crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
