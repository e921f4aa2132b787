//! OpenVINO Model Server: KServe v2 (`/v2/models/{m}/ready`, `/v2/models/{m}`,
//! `/v2/models/{m}/infer` with typed tensors), TF-Serving (`/v1/models/{m}:predict`), the
//! model list (`/v1/config`), and the OpenAI-compatible API OVMS serves under `/v3` (chat,
//! embeddings) with its rerank endpoint. The base URL is the server root (`OVMS_ENDPOINT`).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

use crate::backend::{Backend, BoxFuture, DeltaStream, Kind};
use crate::error::{Error, Result};
use crate::http::{CallContext, Transport};
use crate::openai::OpenAi;
use crate::types::{
    ChatRequest, ChatResponse, EmbedRequest, Embeddings, ModelInfo, Ranked, RerankRequest,
};

/// A client for one OVMS server.
#[derive(Debug)]
pub struct Ovms {
    transport: Transport,
    model: Option<String>,
    openai: OpenAi,
}

/// A tensor's elements, typed by its KServe datatype.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// `BOOL`
    Bool(Vec<bool>),
    /// `UINT8`
    U8(Vec<u8>),
    /// `UINT16`
    U16(Vec<u16>),
    /// `UINT32`
    U32(Vec<u32>),
    /// `UINT64`
    U64(Vec<u64>),
    /// `INT8`
    I8(Vec<i8>),
    /// `INT16`
    I16(Vec<i16>),
    /// `INT32`
    I32(Vec<i32>),
    /// `INT64`
    I64(Vec<i64>),
    /// `FP16`, carried as `f32` in JSON.
    F16(Vec<f32>),
    /// `FP32`
    F32(Vec<f32>),
    /// `FP64`
    F64(Vec<f64>),
    /// `BYTES`, as UTF-8 strings in JSON.
    Bytes(Vec<String>),
}

macro_rules! tensor_data {
    ($($variant:ident => $name:literal),* $(,)?) => {
        impl TensorData {
            /// The KServe datatype name.
            pub fn datatype(&self) -> &'static str {
                match self { $(TensorData::$variant(_) => $name),* }
            }

            /// Number of elements.
            pub fn len(&self) -> usize {
                match self { $(TensorData::$variant(v) => v.len()),* }
            }

            /// Whether there are no elements.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            fn to_json(&self) -> Value {
                match self { $(TensorData::$variant(v) => json!(v)),* }
            }

            /// `data` (flat, or nested row-major as KServe allows) as `datatype`.
            fn from_json(datatype: &str, data: Value) -> std::result::Result<TensorData, String> {
                let mut flat = Vec::new();
                flatten(data, &mut flat);
                let flat = Value::Array(flat);
                match datatype {
                    $($name => serde_json::from_value(flat).map(TensorData::$variant)
                        .map_err(|e| format!("{datatype} data: {e}")),)*
                    other => Err(format!("unknown datatype {other:?}")),
                }
            }
        }
    };
}

tensor_data! {
    Bool => "BOOL", U8 => "UINT8", U16 => "UINT16", U32 => "UINT32", U64 => "UINT64",
    I8 => "INT8", I16 => "INT16", I32 => "INT32", I64 => "INT64",
    F16 => "FP16", F32 => "FP32", F64 => "FP64", Bytes => "BYTES",
}

fn flatten(value: Value, out: &mut Vec<Value>) {
    match value {
        Value::Array(items) => items.into_iter().for_each(|item| flatten(item, out)),
        scalar => out.push(scalar),
    }
}

/// A named, shaped, typed tensor, as KServe v2 sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The model's input or output name.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<u64>,
    /// Elements, row-major.
    pub data: TensorData,
}

impl Tensor {
    /// A tensor whose element count must match its shape.
    pub fn new(name: &str, shape: Vec<u64>, data: TensorData) -> Result<Tensor> {
        let tensor = Tensor { name: name.to_string(), shape, data };
        tensor.check().map_err(Error::Config)?;
        Ok(tensor)
    }

    fn check(&self) -> std::result::Result<(), String> {
        let elements = self.shape.iter().try_fold(1u64, |n, d| n.checked_mul(*d));
        match elements {
            Some(n) if n == self.data.len() as u64 => Ok(()),
            _ => Err(format!(
                "tensor {:?}: shape {:?} does not hold {} {} elements",
                self.name,
                self.shape,
                self.data.len(),
                self.data.datatype()
            )),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct WireTensor {
    name: String,
    shape: Vec<u64>,
    datatype: String,
    data: Value,
}

impl Serialize for Tensor {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        WireTensor {
            name: self.name.clone(),
            shape: self.shape.clone(),
            datatype: self.data.datatype().into(),
            data: self.data.to_json(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Tensor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Tensor, D::Error> {
        let wire = WireTensor::deserialize(d)?;
        let data = TensorData::from_json(&wire.datatype, wire.data)
            .map_err(|e| D::Error::custom(format!("tensor {:?}: {e}", wire.name)))?;
        let tensor = Tensor { name: wire.name, shape: wire.shape, data };
        tensor.check().map_err(D::Error::custom)?;
        Ok(tensor)
    }
}

/// A KServe v2 inference answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InferResponse {
    /// The model that answered.
    pub model_name: String,
    /// Its version.
    #[serde(default)]
    pub model_version: Option<String>,
    /// The request id echoed back.
    #[serde(default)]
    pub id: Option<String>,
    /// The outputs.
    pub outputs: Vec<Tensor>,
}

impl InferResponse {
    /// The output named `name`.
    pub fn output(&self, name: &str) -> Option<&Tensor> {
        self.outputs.iter().find(|t| t.name == name)
    }
}

/// A KServe v2 model's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// Its name.
    pub name: String,
    /// Versions served.
    #[serde(default)]
    pub versions: Vec<String>,
    /// `OpenVINO`.
    #[serde(default)]
    pub platform: String,
    /// Inputs: name, datatype, shape (−1 for dynamic dimensions).
    #[serde(default)]
    pub inputs: Vec<TensorSpec>,
    /// Outputs.
    #[serde(default)]
    pub outputs: Vec<TensorSpec>,
}

/// A declared input or output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Its name.
    pub name: String,
    /// Its datatype.
    pub datatype: String,
    /// Its shape; −1 is dynamic.
    pub shape: Vec<i64>,
}

#[derive(Deserialize)]
struct Predictions {
    predictions: Value,
}

#[derive(Deserialize)]
struct RerankResults {
    results: Vec<RerankResult>,
}

#[derive(Deserialize)]
struct RerankResult {
    index: usize,
    relevance_score: f32,
}

impl Ovms {
    /// A client over `transport` (the server root); `model` is used when a call names none.
    pub fn new(transport: Transport, model: Option<String>) -> Result<Ovms> {
        let openai = OpenAi::new(transport.at("v3")?, model.clone());
        Ok(Ovms { transport, model, openai })
    }

    fn model<'a>(&'a self, model: Option<&'a str>) -> Result<&'a str> {
        model.or(self.model.as_deref()).ok_or_else(|| {
            Error::Config(format!(
                "{}: OVMS needs a model name: pass one, set OVMS_MODEL, or `model` in the deployment",
                self.transport.deployment()
            ))
        })
    }

    fn model_path(&self, model: Option<&str>, rest: &str) -> Result<String> {
        let model = self.model(model)?;
        Ok(format!("v2/models/{}{rest}", url_segment(model)))
    }

    /// `/v2/models/{m}/ready`: whether the model is loaded and serving.
    pub async fn ready(&self, model: Option<&str>, ctx: &CallContext) -> Result<bool> {
        self.transport.probe(&self.model_path(model, "/ready")?, ctx).await
    }

    /// `/v2/models/{m}`: inputs and outputs with their types and shapes.
    pub async fn metadata(&self, model: Option<&str>, ctx: &CallContext) -> Result<ModelMetadata> {
        self.transport.get_json(&self.model_path(model, "")?, ctx).await
    }

    /// `/v2/models/{m}/infer`: typed tensors in, typed tensors out.
    pub async fn infer(
        &self,
        model: Option<&str>,
        inputs: &[Tensor],
        ctx: &CallContext,
    ) -> Result<InferResponse> {
        let body = json!({ "id": ctx.request_id.to_string(), "inputs": inputs });
        self.transport.post_json(&self.model_path(model, "/infer")?, &body, ctx).await
    }

    /// `/v1/models/{m}:predict` (TF-Serving row format): `instances` in, `predictions` out.
    pub async fn predict(
        &self,
        model: Option<&str>,
        instances: &Value,
        ctx: &CallContext,
    ) -> Result<Value> {
        let path = format!("v1/models/{}:predict", url_segment(self.model(model)?));
        let body = json!({ "instances": instances });
        let answer: Predictions = self.transport.post_json(&path, &body, ctx).await?;
        Ok(answer.predictions)
    }
}

/// A model name as one URL path segment.
fn url_segment(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>().replace('+', "%20")
}

impl Backend for Ovms {
    fn kind(&self) -> Kind {
        Kind::Ovms
    }

    fn deployment(&self) -> &str {
        self.transport.deployment()
    }

    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<ChatResponse>> {
        self.openai.chat(request, ctx)
    }

    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<DeltaStream>> {
        self.openai.chat_stream(request, ctx)
    }

    fn embed<'a>(
        &'a self,
        request: &'a EmbedRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Embeddings>> {
        self.openai.embed(request, ctx)
    }

    /// `/v3/rerank` (Cohere's shape: `documents` in, `results` with `relevance_score` out).
    fn rerank<'a>(
        &'a self,
        request: &'a RerankRequest,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Vec<Ranked>>> {
        Box::pin(async move {
            let body = json!({
                "model": self.model(request.model.as_deref())?,
                "query": request.query,
                "documents": request.texts,
            });
            let answer: RerankResults = self.transport.post_json("v3/rerank", &body, ctx).await?;
            self.transport.expect_count("scores", request.texts.len(), answer.results.len())?;
            let mut ranked: Vec<Ranked> = answer
                .results
                .into_iter()
                .map(|r| Ranked { index: r.index, score: r.relevance_score })
                .collect();
            crate::types::sort_ranked(&mut ranked);
            Ok(ranked)
        })
    }

    /// `/v1/config`: every model with an `AVAILABLE` version.
    fn models<'a>(&'a self, ctx: &'a CallContext) -> BoxFuture<'a, Result<Vec<ModelInfo>>> {
        Box::pin(async move {
            let config: serde_json::Map<String, Value> =
                self.transport.get_json("v1/config", ctx).await?;
            Ok(config
                .into_iter()
                .filter(|(_, status)| {
                    status["model_version_status"]
                        .as_array()
                        .is_some_and(|v| v.iter().any(|s| s["state"] == "AVAILABLE"))
                })
                .map(|(id, _)| ModelInfo { id, owned_by: None })
                .collect())
        })
    }
}
