//! OpenAI and OpenAI-compatible servers: `/v1/chat/completions` (whole and SSE-streamed, tool
//! calls passed through), `/v1/completions`, `/v1/embeddings`, `/v1/models`. The base URL
//! includes the `/v1` (`OPENAI_BASE_URL` convention).

use serde::Deserialize;
use serde_json::{json, Value};

use crate::backend::{deltas, Backend, BoxFuture, DeltaStream, Frame, Kind};
use crate::error::Result;
use crate::http::{sse_data, CallContext, Transport};
use crate::types::{ChatRequest, ChatResponse, Delta, EmbedRequest, Embeddings, ModelInfo, Usage};

/// A client for one OpenAI-compatible deployment.
#[derive(Debug, Clone)]
pub struct OpenAi {
    transport: Transport,
    model: Option<String>,
}

#[derive(Deserialize)]
struct ChatCompletion {
    #[serde(default)]
    model: String,
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    delta: Option<ChoiceMessage>,
    #[serde(default)]
    text: Option<String>,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct ChoiceMessage {
    content: Option<String>,
    tool_calls: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkUsage {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct EmbeddingList {
    #[serde(default)]
    model: String,
    data: Vec<EmbeddingItem>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
    owned_by: Option<String>,
}

impl OpenAi {
    /// A client over `transport`, using `model` when a request names none.
    pub fn new(transport: Transport, model: Option<String>) -> OpenAi {
        OpenAi { transport, model }
    }

    fn body(&self, request: &ChatRequest, stream: bool) -> Result<Value> {
        let mut body =
            serde_json::to_value(request).map_err(|e| self.transport.decode(e.to_string()))?;
        if let (None, Some(model)) = (&request.model, &self.model) {
            body["model"] = json!(model);
        }
        if body.get("model").is_none() {
            // llama.cpp and vLLM serve one model and accept any name; OpenAI proper needs one.
            body["model"] = json!("default");
        }
        body["stream"] = json!(stream);
        Ok(body)
    }

    /// `/completions`: the raw-prompt API (for servers given a rendered chat template).
    pub async fn complete(
        &self,
        prompt: &str,
        max_tokens: Option<u32>,
        ctx: &CallContext,
    ) -> Result<ChatResponse> {
        let model = self.model.clone().unwrap_or_else(|| "default".into());
        let body =
            json!({ "model": model, "prompt": prompt, "max_tokens": max_tokens, "stream": false });
        let completion: ChatCompletion =
            self.transport.post_json("completions", &body, ctx).await?;
        let (model, usage, choice) = completion.first(&self.transport)?;
        let content = choice.text.unwrap_or_default();
        Ok(ChatResponse {
            model,
            content,
            finish_reason: choice.finish_reason,
            tool_calls: None,
            usage,
        })
    }
}

impl ChatCompletion {
    /// The model, usage and first choice; an answer without choices is a decode error.
    fn first(self, transport: &Transport) -> Result<(String, Option<Usage>, Choice)> {
        let choice = self
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| transport.decode("the answer has no choices"))?;
        Ok((self.model, self.usage, choice))
    }
}

/// One SSE `data:` payload of a chat stream.
fn parse_chunk(data: &str, transport: &Transport) -> Result<Frame> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Frame::Done);
    }
    if data.is_empty() {
        return Ok(Frame::Skip);
    }
    let chunk: ChunkUsage = serde_json::from_str(data)
        .map_err(|e| transport.decode(format!("stream chunk: {e}: {data}")))?;
    let usage = chunk.usage;
    let Some(choice) = chunk.choices.into_iter().next() else {
        return Ok(match usage {
            Some(usage) => Frame::Delta(Delta { usage: Some(usage), ..Delta::default() }),
            None => Frame::Skip,
        });
    };
    let delta = choice.delta.unwrap_or_default();
    if delta.content.as_deref().unwrap_or("").is_empty()
        && delta.tool_calls.is_none()
        && choice.finish_reason.is_none()
    {
        return Ok(Frame::Skip);
    }
    Ok(Frame::Delta(Delta {
        content: delta.content.unwrap_or_default(),
        finish_reason: choice.finish_reason,
        tool_calls: delta.tool_calls,
        usage,
    }))
}

impl Backend for OpenAi {
    fn kind(&self) -> Kind {
        Kind::OpenAi
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
            let body = self.body(request, false)?;
            let completion: ChatCompletion =
                self.transport.post_json("chat/completions", &body, ctx).await?;
            let (model, usage, choice) = completion.first(&self.transport)?;
            let message =
                choice.message.ok_or_else(|| self.transport.decode("the choice has no message"))?;
            Ok(ChatResponse {
                model,
                content: message.content.unwrap_or_default(),
                finish_reason: choice.finish_reason,
                tool_calls: message.tool_calls,
                usage,
            })
        })
    }

    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<DeltaStream>> {
        Box::pin(async move {
            let body = self.body(request, true)?;
            let response = self.transport.post_stream("chat/completions", &body, ctx).await?;
            let transport = self.transport.clone();
            Ok(deltas(
                sse_data(response),
                self.deployment().to_string(),
                ctx.deadline,
                move |data| parse_chunk(data, &transport),
            ))
        })
    }

    fn embed<'a>(
        &'a self,
        request: &'a EmbedRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Embeddings>> {
        Box::pin(async move {
            let model = request
                .model
                .clone()
                .or_else(|| self.model.clone())
                .unwrap_or_else(|| "default".into());
            let body = json!({ "model": model, "input": request.input });
            let list: EmbeddingList = self.transport.post_json("embeddings", &body, ctx).await?;
            let mut items = list.data;
            items.sort_by_key(|i| i.index);
            self.transport.expect_count("embeddings", request.input.len(), items.len())?;
            Ok(Embeddings {
                model: list.model,
                vectors: items.into_iter().map(|i| i.embedding).collect(),
                usage: list.usage,
            })
        })
    }

    fn models<'a>(&'a self, ctx: &'a CallContext) -> BoxFuture<'a, Result<Vec<ModelInfo>>> {
        Box::pin(async move {
            let list: ModelList = self.transport.get_json("models", ctx).await?;
            Ok(list
                .data
                .into_iter()
                .map(|m| ModelInfo { id: m.id, owned_by: m.owned_by })
                .collect())
        })
    }
}
