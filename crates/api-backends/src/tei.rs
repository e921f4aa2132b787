//! Text Embeddings Inference: `/embed`, `/embed_sparse`, `/rerank`, `/info`, and the
//! OpenAI-compatible `/v1/embeddings`. The base URL is the server root (`TEI_ENDPOINT`).
//!
//! TEI refuses a request with more inputs than its `max_client_batch_size`: inputs are sent in
//! batches of that size (read once from `/info`), one after another, so one call never floods
//! the server.

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::OnceCell;

use crate::backend::{Backend, BoxFuture, Kind};
use crate::error::Result;
use crate::http::{CallContext, Transport};
use crate::openai::OpenAi;
use crate::types::{EmbedRequest, Embeddings, ModelInfo, Ranked, RerankRequest, SparseEmbedding};

/// A client for one TEI server.
#[derive(Debug)]
pub struct Tei {
    transport: Transport,
    openai: OpenAi,
    info: OnceCell<TeiInfo>,
}

/// What `/info` says about the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeiInfo {
    /// The model it serves.
    pub model_id: String,
    /// Its dtype.
    #[serde(default)]
    pub model_dtype: Option<String>,
    /// `{"embedding": {"pooling": "mean"}}`, `{"reranker": …}`, `{"classifier": …}`.
    #[serde(default)]
    pub model_type: serde_json::Value,
    /// Longest input in tokens.
    #[serde(default)]
    pub max_input_length: Option<u64>,
    /// Most inputs in one request.
    #[serde(default = "default_batch")]
    pub max_client_batch_size: usize,
    /// The server's version.
    #[serde(default)]
    pub version: Option<String>,
}

/// TEI's default `--max-client-batch-size`.
fn default_batch() -> usize {
    32
}

#[derive(Deserialize)]
struct SparseValue {
    index: u32,
    value: f32,
}

impl Tei {
    /// A client over `transport` (the server root).
    pub fn new(transport: Transport, model: Option<String>) -> Result<Tei> {
        let openai = OpenAi::new(transport.at("v1")?, model);
        Ok(Tei { transport, openai, info: OnceCell::new() })
    }

    /// `/info`, read once per client.
    pub async fn info(&self, ctx: &CallContext) -> Result<&TeiInfo> {
        self.info.get_or_try_init(|| self.transport.get_json("info", ctx)).await
    }

    /// `inputs` in batches the server accepts.
    async fn batches<'i>(
        &self,
        inputs: &'i [String],
        ctx: &CallContext,
    ) -> Result<std::slice::Chunks<'i, String>> {
        let size = self.info(ctx).await?.max_client_batch_size.max(1);
        Ok(inputs.chunks(size))
    }

    /// `/embed_sparse`: one sparse vector per input (SPLADE models).
    pub async fn embed_sparse(
        &self,
        inputs: &[String],
        ctx: &CallContext,
    ) -> Result<Vec<SparseEmbedding>> {
        let mut out = Vec::with_capacity(inputs.len());
        for batch in self.batches(inputs, ctx).await? {
            let body = json!({ "inputs": batch });
            let vectors: Vec<Vec<SparseValue>> =
                self.transport.post_json("embed_sparse", &body, ctx).await?;
            self.transport.expect_count("embeddings", batch.len(), vectors.len())?;
            out.extend(vectors.into_iter().map(|mut values| {
                values.sort_by_key(|v| v.index);
                SparseEmbedding {
                    indices: values.iter().map(|v| v.index).collect(),
                    values: values.iter().map(|v| v.value).collect(),
                }
            }));
        }
        Ok(out)
    }

    /// The OpenAI-compatible `/v1/embeddings`.
    pub async fn embed_openai(
        &self,
        request: &EmbedRequest,
        ctx: &CallContext,
    ) -> Result<Embeddings> {
        self.openai.embed(request, ctx).await
    }
}

impl Backend for Tei {
    fn kind(&self) -> Kind {
        Kind::Tei
    }

    fn deployment(&self) -> &str {
        self.transport.deployment()
    }

    /// `/embed`, normalised (TEI's default), in batches.
    fn embed<'a>(
        &'a self,
        request: &'a EmbedRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Embeddings>> {
        Box::pin(async move {
            let mut vectors = Vec::with_capacity(request.input.len());
            for batch in self.batches(&request.input, ctx).await? {
                let body = json!({ "inputs": batch, "normalize": true });
                let batch_vectors: Vec<Vec<f32>> =
                    self.transport.post_json("embed", &body, ctx).await?;
                self.transport.expect_count("embeddings", batch.len(), batch_vectors.len())?;
                vectors.extend(batch_vectors);
            }
            let model = self.info(ctx).await?.model_id.clone();
            Ok(Embeddings { model, vectors, usage: None })
        })
    }

    /// `/rerank`: scores in [0, 1], most relevant first.
    fn rerank<'a>(
        &'a self,
        request: &'a RerankRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Vec<Ranked>>> {
        Box::pin(async move {
            let mut ranked = Vec::with_capacity(request.texts.len());
            let mut offset = 0;
            for batch in self.batches(&request.texts, ctx).await? {
                let body = json!({ "query": request.query, "texts": batch, "raw_scores": false });
                let scores: Vec<Ranked> = self.transport.post_json("rerank", &body, ctx).await?;
                self.transport.expect_count("scores", batch.len(), scores.len())?;
                ranked.extend(scores.into_iter().map(|r| Ranked { index: r.index + offset, ..r }));
                offset += batch.len();
            }
            crate::types::sort_ranked(&mut ranked);
            Ok(ranked)
        })
    }

    fn models<'a>(&'a self, ctx: &'a CallContext) -> BoxFuture<'a, Result<Vec<ModelInfo>>> {
        Box::pin(async move {
            let info = self.info(ctx).await?;
            Ok(vec![ModelInfo { id: info.model_id.clone(), owned_by: None }])
        })
    }
}
