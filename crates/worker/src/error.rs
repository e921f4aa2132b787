//! The one error type of the worker crate.

/// What went wrong, named after what the caller can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage layer failed (a corrupt block names its CID here).
    #[error(transparent)]
    Storage(#[from] ipfs_accelerate_common::Error),
    /// No model has this name, and it is not a CID of one.
    #[error("no model named {name:?} in the registry (`ipfs-accelerate models ls` lists them; `models import PATH --name {name}` adds one)")]
    UnknownModel {
        /// What was asked for.
        name: String,
    },
    /// A CID that does not name a model of this registry (no manifest, or an unreadable one).
    #[error("{cid} is not a model: {reason}")]
    NotAModel {
        /// The CID.
        cid: String,
        /// Why.
        reason: String,
    },
    /// An import source that is not a model this registry can take.
    #[error("cannot import {source_path}: {reason}")]
    Import {
        /// The path given.
        source_path: String,
        /// Why.
        reason: String,
    },
    /// A model file that is not what its name or manifest says (a GGUF that is not GGUF, a
    /// config that does not parse, a tokenizer that does not load).
    #[error("model file {file} is invalid: {reason}")]
    InvalidModelFile {
        /// The file (path inside the model).
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// No skill runs this model for this task.
    #[error("model {model} cannot be used for {task}: {reason}")]
    Unsupported {
        /// The model (name or CID).
        model: String,
        /// The task asked for.
        task: &'static str,
        /// Why.
        reason: String,
    },
    /// The request itself is invalid (empty text, a bad parameter).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// No device can run the skill (a forced device that is unusable, a GPU build without
    /// its runtime).
    #[error("no device: {0}")]
    Device(String),
    /// The model does not fit the worker's memory budget even alone.
    #[error(
        "model {model} needs {needed} bytes, over the worker's memory budget of {budget} bytes"
    )]
    OverBudget {
        /// The model.
        model: String,
        /// Its estimated resident size.
        needed: u64,
        /// The budget.
        budget: u64,
    },
    /// The model's queue is full: retry later.
    #[error("the queue for model {model} is full ({depth} waiting)")]
    QueueFull {
        /// The model.
        model: String,
        /// How many requests were waiting.
        depth: usize,
    },
    /// The request was cancelled before it finished.
    #[error("cancelled")]
    Cancelled,
    /// The inference engine failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// A model hub request failed.
    #[error("model hub {url}: {reason}")]
    Hub {
        /// The URL asked.
        url: String,
        /// What happened.
        reason: String,
    },
    /// A background task died.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl Error {
    /// The stable machine-readable name of this error (the `kind` of `--json` errors).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Storage(e) => e.kind(),
            Error::UnknownModel { .. } => "unknown_model",
            Error::NotAModel { .. } => "not_a_model",
            Error::Import { .. } => "import",
            Error::InvalidModelFile { .. } => "invalid_model_file",
            Error::Unsupported { .. } => "unsupported",
            Error::InvalidInput(_) => "invalid_input",
            Error::Device(_) => "device",
            Error::OverBudget { .. } => "over_budget",
            Error::QueueFull { .. } => "queue_full",
            Error::Cancelled => "cancelled",
            Error::Inference(_) => "inference",
            Error::Hub { .. } => "hub",
            Error::Task(_) => "task",
        }
    }

    pub(crate) fn invalid_file(file: &str, reason: impl std::fmt::Display) -> Error {
        Error::InvalidModelFile { file: file.to_string(), reason: reason.to_string() }
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Inference(e.to_string())
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
