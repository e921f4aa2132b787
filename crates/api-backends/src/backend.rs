//! The interface every protocol client implements, and the stream type of streamed answers.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use futures_util::{Stream, StreamExt};

use crate::error::{Error, Result};
use crate::http::CallContext;
use crate::types::{
    ChatRequest, ChatResponse, Delta, EmbedRequest, Embeddings, ModelInfo, Ranked, RerankRequest,
};

/// A boxed future, so [`Backend`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A streamed answer: deltas as they arrive. A stream that stops before the server said it was
/// done yields an error, never a silent truncation.
pub type DeltaStream = Pin<Box<dyn Stream<Item = Result<Delta>> + Send>>;

/// The protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// OpenAI and compatible servers (vLLM, TGI's `/v1`, llama.cpp, OVMS's OpenAI API).
    OpenAi,
    /// Ollama's native API.
    Ollama,
    /// Text Generation Inference's native API.
    Tgi,
    /// Text Embeddings Inference.
    Tei,
    /// OpenVINO Model Server (KServe v2 / TF-Serving REST).
    Ovms,
}

impl Kind {
    /// `openai`, `ollama`, …
    pub fn name(self) -> &'static str {
        match self {
            Kind::OpenAi => "openai",
            Kind::Ollama => "ollama",
            Kind::Tgi => "tgi",
            Kind::Tei => "tei",
            Kind::Ovms => "ovms",
        }
    }
}

/// One deployment's client. Unsupported operations answer [`Error::Unsupported`].
pub trait Backend: Send + Sync {
    /// Its protocol.
    fn kind(&self) -> Kind;
    /// Its deployment name.
    fn deployment(&self) -> &str;
    /// A whole chat answer.
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<ChatResponse>> {
        let _ = (request, ctx);
        Box::pin(async move { Err(self.unsupported("chat")) })
    }
    /// A streamed chat answer.
    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<DeltaStream>> {
        let _ = (request, ctx);
        Box::pin(async move { Err(self.unsupported("chat")) })
    }
    /// Embeddings.
    fn embed<'a>(
        &'a self,
        request: &'a EmbedRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Embeddings>> {
        let _ = (request, ctx);
        Box::pin(async move { Err(self.unsupported("embeddings")) })
    }
    /// Candidates ordered by relevance, most relevant first.
    fn rerank<'a>(
        &'a self,
        request: &'a RerankRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Vec<Ranked>>> {
        let _ = (request, ctx);
        Box::pin(async move { Err(self.unsupported("rerank")) })
    }
    /// The models it serves.
    fn models<'a>(&'a self, ctx: &'a CallContext) -> BoxFuture<'a, Result<Vec<ModelInfo>>>;

    /// The [`Error::Unsupported`] for `operation` on this backend.
    fn unsupported(&self, operation: &str) -> Error {
        Error::Unsupported {
            deployment: self.deployment().to_string(),
            kind: self.kind().name().to_string(),
            operation: operation.to_string(),
        }
    }
}

/// How a protocol's stream frames end.
pub(crate) enum Frame {
    /// A piece of the answer.
    Delta(Delta),
    /// A frame with nothing for the caller (keep-alive, role-only).
    Skip,
    /// The server said the answer is complete.
    Done,
}

/// Turns a stream of frames (SSE `data` strings or NDJSON lines) into deltas: each frame
/// waits at most until `deadline`; the stream must end with [`Frame::Done`] or a delta with a
/// `finish_reason`, else the last item is an error.
pub(crate) fn deltas<S, E>(
    frames: S,
    deployment: String,
    deadline: Instant,
    parse: impl Fn(&str) -> Result<Frame> + Send + 'static,
) -> DeltaStream
where
    S: Stream<Item = std::result::Result<String, E>> + Send + 'static,
    E: std::fmt::Display,
{
    struct State<S, P> {
        frames: Pin<Box<S>>,
        parse: P,
        finished: bool,
        deployment: String,
        deadline: Instant,
    }
    let state = State { frames: Box::pin(frames), parse, finished: false, deployment, deadline };
    let stream = futures_util::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        loop {
            let left = state.deadline.saturating_duration_since(Instant::now());
            let next = match tokio::time::timeout(left, state.frames.next()).await {
                Err(_) => {
                    let error =
                        Error::Timeout { deployment: state.deployment.clone(), after: left };
                    return Some((Err(error), None));
                }
                Ok(next) => next,
            };
            match next {
                None if state.finished => return None,
                None => {
                    let error = Error::Decode {
                        deployment: state.deployment.clone(),
                        reason: "the stream ended before the server said the answer was complete"
                            .into(),
                    };
                    return Some((Err(error), None));
                }
                Some(Err(e)) => {
                    let error = Error::Connect {
                        deployment: state.deployment.clone(),
                        reason: format!("stream broke: {e}"),
                    };
                    return Some((Err(error), None));
                }
                Some(Ok(frame)) => match (state.parse)(&frame) {
                    Err(e) => return Some((Err(e), None)),
                    Ok(Frame::Skip) => continue,
                    Ok(Frame::Done) => return None,
                    Ok(Frame::Delta(delta)) => {
                        if delta.finish_reason.is_some() {
                            state.finished = true;
                        }
                        return Some((Ok(delta), Some(state)));
                    }
                },
            }
        }
    });
    Box::pin(stream)
}
