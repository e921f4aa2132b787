//! Text generation with llama-architecture GGUF models on candle (our decoder, `llama.rs`): the
//! tokenizer and chat template come from the GGUF metadata (the template rendered with the
//! same minijinja set-up as the backends' HF templates), sampling with temperature, top-k,
//! top-p, repetition penalty and a seed, stop sequences, a token budget, a KV cache per
//! request, and text streamed as it is decoded.
//!
//! Streaming and non-streaming share one loop: the streamed pieces concatenate to exactly the
//! returned text. A piece is only emitted once no stop sequence can still begin inside it and
//! it does not end in half a UTF-8 character.

use std::hash::BuildHasher;
use std::io::Cursor;
use std::time::{Duration, Instant};

use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::Device;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use ipfs_accelerate_backends::template::ChatTemplate;
use ipfs_accelerate_backends::Message;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::llama::Llama;
use crate::error::{Error, Result};
use crate::manifest::{self, Format, Manifest};
use crate::skill::{
    compiled_devices, Cancel, FinishReason, GeneratedText, LoadContext, Loaded, ModelFiles, Skill,
    SkillInfo, Task, Usage,
};

/// GGUF text generation (llama architecture: Llama, SmolLM2, Mistral-style models).
#[derive(Debug)]
pub struct GenerationSkill;

impl Skill for GenerationSkill {
    fn info(&self) -> SkillInfo {
        SkillInfo {
            name: "gguf-llama-generation",
            task: Task::TextGeneration,
            families: &["llama"],
            formats: &[Format::Gguf],
            devices: compiled_devices(),
            limits: "prompt plus max_tokens within the model's context length; GPT-2-style BPE tokenizers from the GGUF",
            output: "generated text with finish reason and token usage; a token stream",
        }
    }

    fn accepts(&self, manifest: &Manifest) -> std::result::Result<(), String> {
        if manifest.info.format != Format::Gguf {
            return Err(format!("loads GGUF files, not {}", manifest.info.format.name()));
        }
        if manifest.info.family != "llama" {
            return Err(format!("runs the llama architecture, not {}", manifest.info.family));
        }
        Ok(())
    }

    fn files(&self, manifest: &Manifest) -> Vec<String> {
        vec![manifest.info.weights.clone()]
    }

    fn load(
        &self,
        manifest: &Manifest,
        mut files: ModelFiles,
        context: &LoadContext,
    ) -> Result<std::sync::Arc<dyn Loaded>> {
        let bytes = files.take(&manifest.info.weights)?;
        Ok(std::sync::Arc::new(TextGenerator::load(
            &manifest.info.weights,
            bytes,
            &context.device,
        )?))
    }
}

crate::capability::loaded!(TextGenerator: generator -> Generate);

impl crate::capability::Generate for TextGenerator {
    fn generate(
        &self,
        prompt: &Prompt,
        params: &GenerateParams,
        cancel: &Cancel,
        on_text: crate::capability::OnText<'_>,
    ) -> Result<GeneratedText> {
        TextGenerator::generate(self, prompt, params, cancel, on_text).map(|(text, _)| text)
    }
}

/// What to generate from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// A user message (rendered through the chat template unless `raw`).
    Text(String),
    /// A conversation (rendered through the chat template).
    Chat(Vec<Message>),
}

/// Sampling and stopping settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// 0 is greedy (deterministic).
    pub temperature: f64,
    /// Nucleus sampling mass, in (0, 1].
    pub top_p: Option<f64>,
    /// Sample among the k most likely tokens.
    pub top_k: Option<usize>,
    /// Penalty on tokens already in the last `repeat_last_n` (1 = none).
    pub repetition_penalty: f32,
    /// Window of the repetition penalty.
    pub repeat_last_n: usize,
    /// Seed of the sampler: with it, sampling is reproducible.
    pub seed: Option<u64>,
    /// Texts that end generation (not included in the output).
    pub stop: Vec<String>,
    /// Send a text prompt as is, without the chat template.
    pub raw: bool,
}

impl Default for GenerateParams {
    /// The Python original's `text generate` defaults: 100 tokens, T 0.7, top-p 0.9, top-k 50.
    fn default() -> Self {
        GenerateParams {
            max_tokens: 100,
            temperature: 0.7,
            top_p: Some(0.9),
            top_k: Some(50),
            repetition_penalty: 1.0,
            repeat_last_n: 64,
            seed: None,
            stop: Vec::new(),
            raw: false,
        }
    }
}

impl GenerateParams {
    /// Greedy, or seeded: the same request gives the same text (so it may be cached).
    pub fn is_deterministic(&self) -> bool {
        self.temperature <= 0.0 || self.seed.is_some()
    }

    /// Checks every setting; the error names the bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidInput(what));
        if self.max_tokens == 0 {
            return bad("max_tokens must be at least 1".into());
        }
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(format!("temperature must be ≥ 0, not {}", self.temperature));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return bad(format!("top_p must be in (0, 1], not {p}"));
            }
        }
        if self.top_k == Some(0) {
            return bad("top_k must be at least 1".into());
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(format!("repetition_penalty must be > 0, not {}", self.repetition_penalty));
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("a stop sequence is empty".into());
        }
        Ok(())
    }

    fn sampling(&self) -> Sampling {
        let temperature = self.temperature;
        if temperature <= 0.0 {
            return Sampling::ArgMax;
        }
        match (self.top_k, self.top_p) {
            (None, None) => Sampling::All { temperature },
            (Some(k), None) => Sampling::TopK { k, temperature },
            (None, Some(p)) => Sampling::TopP { p, temperature },
            (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
        }
    }
}

/// Where generation spent its time.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct GenerationStats {
    /// Processing the prompt (one forward pass over all its tokens).
    pub prompt: Duration,
    /// Generating the tokens after the first.
    pub decode: Duration,
}

/// A loaded GGUF llama model with its tokenizer and chat template.
pub struct TextGenerator {
    weights: Llama,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    stop_ids: Vec<u32>,
    context: usize,
    bytes: u64,
}

impl std::fmt::Debug for TextGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextGenerator")
            .field("context", &self.context)
            .field("template", &self.template.is_some())
            .field("stop_ids", &self.stop_ids)
            .finish_non_exhaustive()
    }
}

impl TextGenerator {
    /// Loads GGUF bytes (`name` is the file's name, for errors).
    pub fn load(name: &str, bytes: Vec<u8>, device: &Device) -> Result<TextGenerator> {
        let size = bytes.len() as u64;
        let mut reader = Cursor::new(bytes);
        let content = manifest::read_gguf(name, &mut reader)?;
        let meta = |key: &str| content.metadata.get(key);
        let text = |key: &str| meta(key).and_then(|v| v.to_string().ok()).cloned();
        let number = |key: &str| meta(key).and_then(|v| v.to_u32().ok());
        let arch = text("general.architecture").unwrap_or_else(|| "llama".into());
        let tokenizer = Tokenizer::from_gguf(&content)
            .map_err(|e| Error::invalid_file(name, format!("its tokenizer does not load: {e}")))?;
        let token =
            |id: Option<u32>| id.and_then(|id| tokenizer.id_to_token(id)).unwrap_or_default();
        let bos = token(number("tokenizer.ggml.bos_token_id"));
        let eos = token(number("tokenizer.ggml.eos_token_id"));
        let template = text("tokenizer.chat_template")
            .map(|source| ChatTemplate::new(&source, &bos, &eos))
            .transpose()
            .map_err(|e| Error::invalid_file(name, format!("its chat template: {e}")))?;
        let mut stop_ids: Vec<u32> = ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"]
            .iter()
            .filter_map(|key| number(key))
            .collect();
        stop_ids.dedup();
        // No guessed default: a wrong context length would run past the rotary tables.
        let context_key = format!("{arch}.context_length");
        let context = number(&context_key)
            .ok_or_else(|| Error::invalid_file(name, format!("no {context_key} in its metadata")))?
            as usize;
        let weights = Llama::load(name, &content, &mut reader, context, device)?;
        let size = weights.bytes().max(size);
        Ok(TextGenerator { weights, tokenizer, template, stop_ids, context, bytes: size })
    }

    /// Resident bytes (the quantized weights).
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// The model's context length in tokens.
    pub fn context_length(&self) -> usize {
        self.context
    }

    /// The text the model is given for `prompt`.
    pub fn prompt_text(&self, prompt: &Prompt, raw: bool) -> Result<String> {
        let messages = match (prompt, &self.template, raw) {
            (Prompt::Text(text), _, true) | (Prompt::Text(text), None, _) => {
                return Ok(text.clone())
            }
            (Prompt::Text(text), Some(_), false) => vec![Message::new("user", text.clone())],
            (Prompt::Chat(_), None, _) => {
                return Err(Error::InvalidInput(
                    "the model has no chat template: give a text prompt".into(),
                ))
            }
            (Prompt::Chat(messages), Some(_), _) => messages.clone(),
        };
        let template =
            self.template.as_ref().ok_or_else(|| Error::Task("template vanished".into()))?;
        template.render(&messages, true, None).map_err(|e| Error::InvalidInput(e.to_string()))
    }

    /// Generates from `prompt`, passing text to `on_text` as it becomes final.
    pub fn generate(
        &self,
        prompt: &Prompt,
        params: &GenerateParams,
        cancel: &Cancel,
        on_text: &mut dyn FnMut(&str) -> Result<()>,
    ) -> Result<(GeneratedText, GenerationStats)> {
        params.validate()?;
        if let Prompt::Text(text) = prompt {
            if text.trim().is_empty() {
                return Err(Error::InvalidInput("the prompt is empty".into()));
            }
        }
        let text = self.prompt_text(prompt, params.raw)?;
        let prompt_ids = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::Inference(format!("tokenizing the prompt: {e}")))?
            .get_ids()
            .to_vec();
        if prompt_ids.is_empty() {
            return Err(Error::InvalidInput("the prompt is empty".into()));
        }
        if prompt_ids.len() >= self.context {
            return Err(Error::InvalidInput(format!(
                "the prompt is {} tokens; the model's context is {}",
                prompt_ids.len(),
                self.context
            )));
        }
        let budget = params.max_tokens.min(self.context - prompt_ids.len());
        let mut state = self.weights.state(prompt_ids.len() + budget);
        let started = Instant::now();
        let logits = self.weights.forward(&prompt_ids, &mut state)?;
        let prompt_time = started.elapsed();
        let decoding = Instant::now();
        let step = |next: u32| Ok(self.weights.forward(&[next], &mut state)?);
        let run = Decoding {
            tokenizer: &self.tokenizer,
            stop_ids: &self.stop_ids,
            params,
            prompt_tokens: prompt_ids.len(),
            budget,
        };
        let generated = decode_loop(&run, logits, step, cancel, on_text)?;
        let stats = GenerationStats { prompt: prompt_time, decode: decoding.elapsed() };
        Ok((generated, stats))
    }
}

/// What one decoding run needs besides the model.
pub struct Decoding<'a> {
    /// Decodes the generated ids (special tokens skipped).
    pub tokenizer: &'a Tokenizer,
    /// Ids that end the answer.
    pub stop_ids: &'a [u32],
    /// Sampling, stop sequences.
    pub params: &'a GenerateParams,
    /// Tokens of the prompt (for the usage counts).
    pub prompt_tokens: usize,
    /// Tokens that may be generated.
    pub budget: usize,
}

/// The sampling loop every generator shares: from the logits after the prompt, sample a
/// token, stop on an end id, a stop sequence or the budget, stream final text to `on_text`,
/// and get the next logits from `step(token)`.
pub fn decode_loop(
    run: &Decoding<'_>,
    mut logits: candle_core::Tensor,
    mut step: impl FnMut(u32) -> Result<candle_core::Tensor>,
    cancel: &Cancel,
    on_text: &mut dyn FnMut(&str) -> Result<()>,
) -> Result<GeneratedText> {
    let params = run.params;
    let seed =
        params.seed.unwrap_or_else(|| std::collections::hash_map::RandomState::new().hash_one(0u8));
    let mut sampler = LogitsProcessor::from_sampling(seed, params.sampling());
    let mut stream = StopStream::new(&params.stop);
    let mut generated: Vec<u32> = Vec::new();
    let (mut finish, mut stop_sequence) = (FinishReason::Length, None);
    loop {
        cancel.check()?;
        if params.repetition_penalty != 1.0 {
            let window = generated.len().saturating_sub(params.repeat_last_n);
            logits = candle_transformers::utils::apply_repeat_penalty(
                &logits,
                params.repetition_penalty,
                &generated[window..],
            )?;
        }
        let next = sampler.sample(&logits)?;
        if run.stop_ids.contains(&next) {
            finish = FinishReason::Stop;
            break;
        }
        generated.push(next);
        let decoded = run
            .tokenizer
            .decode(&generated, true)
            .map_err(|e| Error::Inference(format!("decoding: {e}")))?;
        if let Some(matched) = stream.push(&decoded, on_text)? {
            finish = FinishReason::Stop;
            stop_sequence = Some(matched);
            break;
        }
        if generated.len() >= run.budget {
            break;
        }
        logits = step(next)?;
    }
    let text = stream.finish(on_text)?;
    let usage = Usage { prompt_tokens: run.prompt_tokens, completion_tokens: generated.len() };
    Ok(GeneratedText { text, finish_reason: finish, stop_sequence, usage })
}

/// Turns the growing decoded text into final pieces: holds back what a stop sequence could
/// still start in, and a trailing half character; cuts at the first stop sequence.
struct StopStream<'a> {
    stops: &'a [String],
    hold: usize,
    emitted: String,
    latest: String,
}

impl<'a> StopStream<'a> {
    fn new(stops: &'a [String]) -> StopStream<'a> {
        let hold = stops.iter().map(String::len).max().unwrap_or(1).saturating_sub(1);
        StopStream { stops, hold, emitted: String::new(), latest: String::new() }
    }

    /// Takes the text decoded so far; emits what became final. Returns the stop sequence that
    /// matched, if one did (the text is then cut before it).
    fn push(
        &mut self,
        decoded: &str,
        on_text: &mut dyn FnMut(&str) -> Result<()>,
    ) -> Result<Option<String>> {
        let found = self
            .stops
            .iter()
            .filter_map(|s| decoded.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, _)| *at);
        if let Some((at, stop)) = found {
            self.latest = decoded[..at].to_string();
            return Ok(Some(stop.clone()));
        }
        self.latest = decoded.to_string();
        let complete = decoded.trim_end_matches('\u{FFFD}').len();
        let mut end = complete.saturating_sub(self.hold);
        while !decoded.is_char_boundary(end) {
            end -= 1;
        }
        self.emit(end, on_text)?;
        Ok(None)
    }

    fn emit(&mut self, end: usize, on_text: &mut dyn FnMut(&str) -> Result<()>) -> Result<()> {
        // Decoding only ever appends (byte-level BPE); should a tokenizer rewrite earlier text,
        // nothing more is streamed and the final text still comes whole from `finish`.
        if end > self.emitted.len() && self.latest.starts_with(self.emitted.as_str()) {
            let piece = &self.latest[self.emitted.len()..end];
            on_text(piece)?;
            self.emitted.push_str(piece);
        }
        Ok(())
    }

    /// Emits the rest; returns the whole text.
    fn finish(mut self, on_text: &mut dyn FnMut(&str) -> Result<()>) -> Result<String> {
        self.emit(self.latest.len(), on_text)?;
        Ok(if self.latest.starts_with(self.emitted.as_str()) { self.latest } else { self.emitted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], steps: &[&str]) -> (Vec<String>, String, Option<String>) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut stream = StopStream::new(&stops);
        let mut pieces = Vec::new();
        let mut matched = None;
        for step in steps {
            let mut sink = |p: &str| {
                pieces.push(p.to_string());
                Ok(())
            };
            if let Some(stop) = stream.push(step, &mut sink).unwrap() {
                matched = Some(stop);
                break;
            }
        }
        let text = stream.finish(&mut |p: &str| {
            pieces.push(p.to_string());
            Ok(())
        });
        (pieces, text.unwrap(), matched)
    }

    #[test]
    fn pieces_concatenate_to_the_text_and_stop_before_the_stop_sequence() {
        let (pieces, text, matched) =
            run(&["\n\n"], &["Paris", "Paris is", "Paris is\n", "Paris is\n\nextra"]);
        assert_eq!(text, "Paris is");
        assert_eq!(pieces.concat(), text);
        assert_eq!(matched.as_deref(), Some("\n\n"));
    }

    #[test]
    fn half_characters_are_held_back() {
        let (pieces, text, _) = run(&[], &["caf", "caf\u{FFFD}", "café"]);
        assert_eq!(pieces, ["caf", "é"]);
        assert_eq!(text, "café");
    }

    #[test]
    fn bad_params_are_named() {
        let bad = [
            GenerateParams { max_tokens: 0, ..GenerateParams::default() },
            GenerateParams { temperature: -1.0, ..GenerateParams::default() },
            GenerateParams { top_p: Some(1.5), ..GenerateParams::default() },
            GenerateParams { top_k: Some(0), ..GenerateParams::default() },
            GenerateParams { stop: vec![String::new()], ..GenerateParams::default() },
        ];
        for params in bad {
            assert!(matches!(params.validate(), Err(Error::InvalidInput(_))), "{params:?}");
        }
        assert!(GenerateParams { temperature: 0.0, ..GenerateParams::default() }.is_deterministic());
        assert!(!GenerateParams::default().is_deterministic());
    }
}
