//! Ollama's native API: `/api/chat` and `/api/generate` (whole, or streamed as NDJSON),
//! `/api/embed`, `/api/tags`, `/api/show`. The base URL is the server root
//! (`http://127.0.0.1:11434`, the `OLLAMA_HOST` convention).
//!
//! A streamed answer is one JSON object per line; the last has `"done": true` with the token
//! counts. Ollama reports a failure mid-stream as a line `{"error": "…"}`, which ends the
//! stream as an error.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::backend::{deltas, Backend, BoxFuture, DeltaStream, Frame, Kind};
use crate::error::{Error, Result};
use crate::http::{lines, CallContext, Transport};
use crate::types::{ChatRequest, ChatResponse, Delta, EmbedRequest, Embeddings, ModelInfo, Usage};

/// A client for one Ollama server.
#[derive(Debug, Clone)]
pub struct Ollama {
    transport: Transport,
    model: Option<String>,
}

/// One `/api/chat` or `/api/generate` answer, or one line of their streams.
#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    model: String,
    #[serde(default)]
    message: Option<ReplyMessage>,
    /// `/api/generate`'s text.
    #[serde(default)]
    response: Option<String>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize, Default)]
struct ReplyMessage {
    #[serde(default)]
    content: String,
    #[serde(default)]
    tool_calls: Option<Value>,
}

impl Reply {
    fn usage(&self) -> Option<Usage> {
        let (prompt, completion) = (self.prompt_eval_count?, self.eval_count.unwrap_or(0));
        Some(Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
        })
    }

    /// Ollama says `stop`/`length`, and nothing on a `done` line of older servers.
    fn finish_reason(&self) -> Option<String> {
        self.done.then(|| self.done_reason.clone().unwrap_or_else(|| "stop".into()))
    }

    fn text(&mut self) -> String {
        match (self.message.take(), self.response.take()) {
            (Some(message), _) => message.content,
            (None, Some(response)) => response,
            (None, None) => String::new(),
        }
    }
}

#[derive(Deserialize)]
struct EmbedReply {
    #[serde(default)]
    model: String,
    embeddings: Vec<Vec<f32>>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
}

#[derive(Deserialize)]
struct Tags {
    models: Vec<Tag>,
}

#[derive(Deserialize)]
struct Tag {
    name: String,
}

/// What `/api/show` says about a model.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct ModelDetails {
    /// The prompt template (Go template syntax).
    #[serde(default)]
    pub template: Option<String>,
    /// Default parameters, one per line.
    #[serde(default)]
    pub parameters: Option<String>,
    /// Family, format, parameter size, quantisation.
    #[serde(default)]
    pub details: Value,
    /// GGUF metadata (`general.architecture`, context length, …).
    #[serde(default)]
    pub model_info: Value,
    /// `completion`, `embedding`, `tools`, `vision`, … (newer servers).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

impl Ollama {
    /// A client over `transport` (the server root), using `model` when a request names none.
    pub fn new(transport: Transport, model: Option<String>) -> Ollama {
        Ollama { transport, model }
    }

    fn model(&self, requested: Option<&str>) -> Result<String> {
        requested.map(str::to_string).or_else(|| self.model.clone()).ok_or_else(|| {
            Error::Config(format!(
                "{}: Ollama needs a model name: pass one, set OLLAMA_MODEL, or `model` in the deployment",
                self.transport.deployment()
            ))
        })
    }

    fn chat_body(&self, request: &ChatRequest, stream: bool) -> Result<Value> {
        let messages = serde_json::to_value(&request.messages)
            .map_err(|e| Error::Config(format!("messages: {e}")))?;
        let mut body = json!({
            "model": self.model(request.model.as_deref())?,
            "messages": messages,
            "stream": stream,
        });
        let options = options(request);
        if !options.is_empty() {
            body["options"] = Value::Object(options);
        }
        if let Some(tools) = &request.tools {
            body["tools"] = tools.clone();
        }
        Ok(body)
    }

    /// `/api/generate`: a raw prompt (`raw: true` — no template applied by the server; for
    /// prompts already rendered with a chat template).
    pub async fn generate(
        &self,
        prompt: &str,
        request: &ChatRequest,
        ctx: &CallContext,
    ) -> Result<ChatResponse> {
        let body = json!({
            "model": self.model(request.model.as_deref())?,
            "prompt": prompt,
            "raw": true,
            "stream": false,
            "options": options(request),
        });
        let reply: Reply = self.transport.post_json("api/generate", &body, ctx).await?;
        self.answer(reply)
    }

    /// `/api/show`: a model's template, parameters and metadata.
    pub async fn show(&self, model: Option<&str>, ctx: &CallContext) -> Result<ModelDetails> {
        let body = json!({ "model": self.model(model)? });
        self.transport.post_json("api/show", &body, ctx).await
    }

    fn answer(&self, mut reply: Reply) -> Result<ChatResponse> {
        if let Some(error) = reply.error.take() {
            return Err(self.transport.decode(format!("the server reported: {error}")));
        }
        let usage = reply.usage();
        let finish_reason = reply.finish_reason();
        let tool_calls = reply.message.as_mut().and_then(|m| m.tool_calls.take());
        Ok(ChatResponse {
            content: reply.text(),
            model: reply.model,
            finish_reason,
            tool_calls,
            usage,
        })
    }
}

/// The sampling settings Ollama takes under `options`.
fn options(request: &ChatRequest) -> Map<String, Value> {
    let mut options = Map::new();
    if let Some(t) = request.temperature {
        options.insert("temperature".into(), json!(t));
    }
    if let Some(p) = request.top_p {
        options.insert("top_p".into(), json!(p));
    }
    if let Some(n) = request.max_tokens {
        options.insert("num_predict".into(), json!(n));
    }
    if let Some(seed) = request.seed {
        options.insert("seed".into(), json!(seed));
    }
    if !request.stop.is_empty() {
        options.insert("stop".into(), json!(request.stop));
    }
    options
}

/// One NDJSON line of a stream.
fn parse_line(line: &str, transport: &Transport) -> Result<Frame> {
    if line.trim().is_empty() {
        return Ok(Frame::Skip);
    }
    let mut reply: Reply = serde_json::from_str(line)
        .map_err(|e| transport.decode(format!("stream line: {e}: {line}")))?;
    if let Some(error) = reply.error.take() {
        return Err(transport.decode(format!("the server reported mid-stream: {error}")));
    }
    let finish_reason = reply.finish_reason();
    let usage = if reply.done { reply.usage() } else { None };
    let tool_calls = reply.message.as_mut().and_then(|m| m.tool_calls.take());
    let content = reply.text();
    if content.is_empty() && tool_calls.is_none() && finish_reason.is_none() {
        return Ok(Frame::Skip);
    }
    Ok(Frame::Delta(Delta { content, finish_reason, tool_calls, usage }))
}

impl Backend for Ollama {
    fn kind(&self) -> Kind {
        Kind::Ollama
    }

    fn deployment(&self) -> &str {
        self.transport.deployment()
    }

    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<ChatResponse>> {
        Box::pin(async move {
            let body = self.chat_body(request, false)?;
            let reply: Reply = self.transport.post_json("api/chat", &body, ctx).await?;
            self.answer(reply)
        })
    }

    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<DeltaStream>> {
        Box::pin(async move {
            let body = self.chat_body(request, true)?;
            let response = self.transport.post_stream("api/chat", &body, ctx).await?;
            let transport = self.transport.clone();
            Ok(deltas(lines(response), self.deployment().to_string(), ctx.deadline, move |line| {
                parse_line(line, &transport)
            }))
        })
    }

    fn embed<'a>(
        &'a self,
        request: &'a EmbedRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Embeddings>> {
        Box::pin(async move {
            let body =
                json!({ "model": self.model(request.model.as_deref())?, "input": request.input });
            let reply: EmbedReply = self.transport.post_json("api/embed", &body, ctx).await?;
            self.transport.expect_count(
                "embeddings",
                request.input.len(),
                reply.embeddings.len(),
            )?;
            Ok(Embeddings {
                model: reply.model,
                vectors: reply.embeddings,
                usage: reply.prompt_eval_count.map(|n| Usage {
                    prompt_tokens: n,
                    completion_tokens: 0,
                    total_tokens: n,
                }),
            })
        })
    }

    fn models<'a>(&'a self, ctx: &'a CallContext) -> BoxFuture<'a, Result<Vec<ModelInfo>>> {
        Box::pin(async move {
            let tags: Tags = self.transport.get_json("api/tags", ctx).await?;
            Ok(tags.models.into_iter().map(|m| ModelInfo { id: m.name, owned_by: None }).collect())
        })
    }
}
