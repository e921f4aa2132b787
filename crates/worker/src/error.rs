//! The one error type of the worker crate.

use ipfs_accelerate_common::{Class, Classify};

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
    /// A model asked to do what its task is not (an embedding model asked to generate).
    #[error("model {model} is a {task} model; it cannot be used for {asked}")]
    WrongTask {
        /// The model (its registry name, or its CID).
        model: String,
        /// The task its manifest declares.
        task: String,
        /// The task asked for.
        asked: &'static str,
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
    /// A background task died (panicked or was dropped before it answered).
    #[error("internal task failed: {0}")]
    Task(String),
}

impl Classify for Error {
    fn class(&self) -> Class {
        use ipfs_accelerate_common::status::*;
        match self {
            Error::Storage(e) => e.class(),
            Error::UnknownModel { .. } => Class::new("unknown_model", NOT_FOUND),
            Error::NotAModel { .. } => Class::new("not_a_model", BAD_REQUEST),
            Error::Import { .. } => Class::new("import", BAD_REQUEST),
            Error::InvalidModelFile { .. } => Class::new("invalid_model_file", UNPROCESSABLE),
            Error::Unsupported { .. } => Class::new("unsupported", BAD_REQUEST),
            Error::WrongTask { .. } => Class::new("wrong_task", BAD_REQUEST),
            Error::InvalidInput(_) => Class::new("invalid_input", BAD_REQUEST),
            Error::Device(_) => Class::new("device", UNAVAILABLE),
            Error::OverBudget { .. } => Class::new("over_budget", UNAVAILABLE),
            Error::QueueFull { .. } => Class::retryable("queue_full", TOO_MANY_REQUESTS),
            Error::Cancelled => Class::new("cancelled", CLIENT_CLOSED),
            Error::Inference(_) => Class::new("inference", INTERNAL),
            Error::Hub { .. } => Class::retryable("hub", BAD_GATEWAY),
            Error::Task(_) => Class::new("task", INTERNAL),
        }
    }
}

impl Error {
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
