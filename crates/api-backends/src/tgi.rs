//! Text Generation Inference's native API: `/generate`, `/generate_stream` (SSE) and `/info`.
//! The base URL is the server root (`TGI_ENDPOINT`).
//!
//! `/generate` takes a raw prompt: with a chat template configured (a model's
//! `tokenizer_config.json`), chats are rendered with it and sent there; without one they go to
//! the OpenAI-compatible Messages API TGI serves under `/v1`, which applies the server's own
//! template.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::backend::{deltas, Backend, BoxFuture, DeltaStream, Frame, Kind};
use crate::error::Result;
use crate::http::{sse_data, CallContext, Transport};
use crate::openai::OpenAi;
use crate::template::ChatTemplate;
use crate::types::{ChatRequest, ChatResponse, Delta, ModelInfo};

/// A client for one TGI server.
#[derive(Debug)]
pub struct Tgi {
    transport: Transport,
    /// What answers are labelled with: `/generate` does not name the model.
    model: Option<String>,
    template: Option<ChatTemplate>,
    messages_api: OpenAi,
}

/// What `/info` says about the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TgiInfo {
    /// The model it serves.
    pub model_id: String,
    /// Its revision.
    #[serde(default)]
    pub model_sha: Option<String>,
    /// Its dtype.
    #[serde(default)]
    pub model_dtype: Option<String>,
    /// Longest prompt it takes.
    #[serde(default)]
    pub max_input_tokens: Option<u64>,
    /// Longest prompt plus answer.
    #[serde(default)]
    pub max_total_tokens: Option<u64>,
    /// The server's version.
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Deserialize)]
struct Generated {
    generated_text: String,
    #[serde(default)]
    details: Option<Details>,
}

#[derive(Deserialize)]
struct Details {
    finish_reason: String,
}

#[derive(Deserialize)]
struct StreamEvent {
    #[serde(default)]
    token: Option<Token>,
    #[serde(default)]
    details: Option<Details>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Token {
    text: String,
    #[serde(default)]
    special: bool,
}

/// TGI's reasons in OpenAI's words.
fn finish_reason(details: &Details) -> String {
    match details.finish_reason.as_str() {
        "length" => "length".into(),
        "eos_token" | "stop_sequence" => "stop".into(),
        other => other.into(),
    }
}

impl Tgi {
    /// A client over `transport` (the server root), rendering chats with `template` when given.
    pub fn new(
        transport: Transport,
        model: Option<String>,
        template: Option<ChatTemplate>,
    ) -> Result<Tgi> {
        let messages_api = OpenAi::new(transport.at("v1")?, model.clone());
        Ok(Tgi { transport, model, template, messages_api })
    }

    /// `/generate`'s body. TGI rejects a temperature of 0: deterministic requests are greedy
    /// (`do_sample: false`) instead.
    fn body(prompt: &str, request: &ChatRequest, stream: bool) -> Value {
        let sample = request.temperature.is_some_and(|t| t > 0.0);
        let mut parameters = json!({
            "details": true,
            "do_sample": sample,
            "return_full_text": false,
            "max_new_tokens": request.max_tokens,
            "seed": request.seed,
        });
        if sample {
            parameters["temperature"] = json!(request.temperature);
            parameters["top_p"] = json!(request.top_p);
        }
        if !request.stop.is_empty() {
            parameters["stop"] = json!(request.stop);
        }
        json!({ "inputs": prompt, "parameters": parameters, "stream": stream })
    }

    /// `/generate`: the answer to a raw prompt.
    pub async fn generate(
        &self,
        prompt: &str,
        request: &ChatRequest,
        ctx: &CallContext,
    ) -> Result<ChatResponse> {
        let body = Tgi::body(prompt, request, false);
        let generated: Generated = self.transport.post_json("generate", &body, ctx).await?;
        let details = generated.details;
        Ok(ChatResponse {
            model: self.model.clone().unwrap_or_default(),
            content: generated.generated_text,
            finish_reason: details.as_ref().map(finish_reason),
            tool_calls: None,
            // TGI counts generated tokens but not the prompt's: no usage rather than half of it.
            usage: None,
        })
    }

    /// `/generate_stream`: a raw prompt's answer as it is generated. Special tokens (EOS) are
    /// not text; the event carrying `details` ends the answer.
    pub async fn generate_stream(
        &self,
        prompt: &str,
        request: &ChatRequest,
        ctx: &CallContext,
    ) -> Result<DeltaStream> {
        let body = Tgi::body(prompt, request, true);
        let response = self.transport.post_stream("generate_stream", &body, ctx).await?;
        let transport = self.transport.clone();
        Ok(deltas(sse_data(response), self.deployment().to_string(), ctx.deadline, move |data| {
            if data.trim().is_empty() {
                return Ok(Frame::Skip);
            }
            let event: StreamEvent = serde_json::from_str(data)
                .map_err(|e| transport.decode(format!("stream event: {e}: {data}")))?;
            if let Some(error) = event.error {
                return Err(transport.decode(format!("the server reported mid-stream: {error}")));
            }
            let content = match event.token {
                Some(token) if !token.special => token.text,
                _ => String::new(),
            };
            let finish_reason = event.details.as_ref().map(finish_reason);
            if content.is_empty() && finish_reason.is_none() {
                return Ok(Frame::Skip);
            }
            Ok(Frame::Delta(Delta { content, finish_reason, tool_calls: None, usage: None }))
        }))
    }

    /// `/info`.
    pub async fn info(&self, ctx: &CallContext) -> Result<TgiInfo> {
        self.transport.get_json("info", ctx).await
    }

    fn prompt(&self, template: &ChatTemplate, request: &ChatRequest) -> Result<String> {
        template.render(&request.messages, true, request.tools.as_ref())
    }
}

impl Backend for Tgi {
    fn kind(&self) -> Kind {
        Kind::Tgi
    }

    fn deployment(&self) -> &str {
        self.transport.deployment()
    }

    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<ChatResponse>> {
        match &self.template {
            None => self.messages_api.chat(request, ctx),
            Some(template) => Box::pin(async move {
                let prompt = self.prompt(template, request)?;
                self.generate(&prompt, request, ctx).await
            }),
        }
    }

    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<DeltaStream>> {
        match &self.template {
            None => self.messages_api.chat_stream(request, ctx),
            Some(template) => Box::pin(async move {
                let prompt = self.prompt(template, request)?;
                self.generate_stream(&prompt, request, ctx).await
            }),
        }
    }

    fn models<'a>(&'a self, ctx: &'a CallContext) -> BoxFuture<'a, Result<Vec<ModelInfo>>> {
        Box::pin(async move {
            let info = self.info(ctx).await?;
            Ok(vec![ModelInfo { id: info.model_id, owned_by: None }])
        })
    }
}
