//! Human or JSON output, chosen once by `--json`.

use std::sync::Arc;

use ipfs_accelerate_common::{status, Class, Classify};
use serde::Serialize;

/// Where results and errors go: stdout, as text or as JSON.
pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `value` as JSON when `--json` was given, else calls `human`.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce()) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            human();
        }
        Ok(())
    }

    /// Reports a failed command: one line on stderr, or `{"error": {kind, message}}` on stdout.
    pub fn error(&self, error: &anyhow::Error) {
        let message = format!("{error:#}");
        if self.json && error.downcast_ref::<AlreadyReported>().is_some() {
            return;
        }
        // Written, not `println!`: when stdout or stderr itself is what failed (a full disk
        // under a redirect, a closed pipe), reporting must not turn the error into a panic.
        use std::io::Write;
        if self.json {
            let class = classify(error);
            let body = serde_json::json!({ "error": {
                "kind": class.kind,
                "message": message,
                "retryable": class.retryable,
            } });
            let _ = writeln!(std::io::stdout(), "{body}");
        } else {
            let _ = writeln!(std::io::stderr(), "error: {message}");
        }
    }
}

/// A failure whose details the command already printed (e.g. `verify`'s report): under
/// `--json` nothing more is printed, so stdout stays one JSON document; the exit code says it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AlreadyReported(pub String);

/// A failure of the command line itself: what it was given, not what a library did with it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Arguments that do not go together, or input that cannot be used.
    #[error("{0}")]
    Usage(String),
    /// The named thing (a secret, a cache entry, a credential) is not there.
    #[error("{0}")]
    NotSet(String),
}

impl Classify for CliError {
    fn class(&self) -> Class {
        match self {
            CliError::Usage(_) => Class::new("usage", status::BAD_REQUEST),
            CliError::NotSet(_) => Class::new("not_set", status::NOT_FOUND),
        }
    }
}

/// `bail!` for a [`CliError`] variant.
macro_rules! fail {
    ($variant:ident, $($arg:tt)*) => {
        return Err($crate::output::CliError::$variant(format!($($arg)*)).into())
    };
}
pub(crate) use fail;

/// The class of the outermost typed error in the chain — every library error says its own
/// (a wrapped storage error answers as itself), so this only has to find one.
pub fn classify(error: &anyhow::Error) -> Class {
    macro_rules! first_of {
        ($e:expr, $($ty:ty),+) => {
            $(if let Some(e) = $e.downcast_ref::<$ty>() {
                return e.class();
            })+
        };
    }
    for e in error.chain() {
        first_of!(
            e,
            ipfs_accelerate_worker::Error,
            ipfs_accelerate_backends::Error,
            ipfs_accelerate_github::Error,
            ipfs_accelerate_install_depends::Error,
            ipfs_accelerate_install_depends::select::SelectError,
            ipfs_accelerate_common::Error,
            CliError
        );
        if e.downcast_ref::<std::io::Error>().is_some() {
            return Class::new("io", status::INTERNAL);
        }
    }
    Class::new("other", status::INTERNAL)
}

/// Inputs at least this large get a progress bar (on a terminal, without -Q/--json).
const PROGRESS_MIN_BYTES: u64 = 8 << 20;

/// A progress bar that appears only once the input is known to be large, and only on a
/// terminal (indicatif hides itself otherwise).
#[derive(Clone)]
pub struct Bar(Arc<std::sync::OnceLock<indicatif::ProgressBar>>);

impl Bar {
    pub fn new() -> Bar {
        Bar(Arc::new(std::sync::OnceLock::new()))
    }

    /// The storage crate's progress callback, drawing this bar.
    pub fn callback(&self) -> ipfs_accelerate_common::store::Progress {
        let bar = self.clone();
        Arc::new(move |done: u64, total: Option<u64>| bar.update(done, total))
    }

    fn update(&self, done: u64, total: Option<u64>) {
        if self.0.get().is_none()
            && total.is_none_or(|t| t < PROGRESS_MIN_BYTES)
            && done < PROGRESS_MIN_BYTES
        {
            return;
        }
        let bar = self.0.get_or_init(|| {
            let bar = match total {
                Some(total) => indicatif::ProgressBar::new(total),
                None => indicatif::ProgressBar::new_spinner(),
            };
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            let template = if total.is_some() {
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
            } else {
                "{spinner} {bytes} {bytes_per_sec}"
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar
        });
        bar.set_position(done);
    }

    pub fn finish(&self) {
        if let Some(bar) = self.0.get() {
            bar.finish_and_clear();
        }
    }
}
