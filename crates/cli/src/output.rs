//! Human or JSON output, chosen once by `--json`.

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
        if self.json {
            let body =
                serde_json::json!({ "error": { "kind": error_kind(error), "message": message } });
            println!("{body}");
        } else {
            eprintln!("error: {message}");
        }
    }
}

/// A failure whose details the command already printed (e.g. `verify`'s report): under
/// `--json` nothing more is printed, so stdout stays one JSON document; the exit code says it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AlreadyReported(pub String);

/// The machine-readable kind of the innermost typed error in the chain.
fn error_kind(error: &anyhow::Error) -> &'static str {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<ipfs_accelerate_common::Error>())
        .map_or("other", ipfs_accelerate_common::Error::kind)
}
