//! Hugging Face chat templates, for servers that take raw prompts (TGI's `/generate`, Ollama's
//! raw `/api/generate`): the Jinja `chat_template` of a model's `tokenizer_config.json`,
//! rendered with `minijinja` the way `transformers` renders it — `trim_blocks` and
//! `lstrip_blocks` on, loop controls, Python string and dict methods (`.strip()`,
//! `.startswith()`, `.items()`), `raise_exception(message)` failing the render with the
//! template's message, and `tojson` as Python's `json.dumps(ensure_ascii=False)` (so tool
//! definitions render byte for byte as they do in Python).

use std::fmt::Write;

use minijinja::value::{Kwargs, Value as JinjaValue, ValueKind};
use minijinja::{Environment, ErrorKind};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::types::Message;

/// A compiled chat template with the special tokens it refers to.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

/// The fields of `tokenizer_config.json` a template needs.
#[derive(Deserialize)]
struct TokenizerConfig {
    chat_template: Option<TemplateField>,
    #[serde(default)]
    bos_token: Option<TokenField>,
    #[serde(default)]
    eos_token: Option<TokenField>,
}

/// One template, or named ones (`default`, `tool_use`, `rag`).
#[derive(Deserialize)]
#[serde(untagged)]
enum TemplateField {
    One(String),
    Named(Vec<NamedTemplate>),
}

#[derive(Deserialize)]
struct NamedTemplate {
    name: String,
    template: String,
}

/// A token as a string, or as an `AddedToken` object.
#[derive(Deserialize)]
#[serde(untagged)]
enum TokenField {
    Text(String),
    Added { content: String },
}

impl TokenField {
    fn text(self) -> String {
        match self {
            TokenField::Text(s) | TokenField::Added { content: s } => s,
        }
    }
}

impl ChatTemplate {
    /// Compiles `source` (Jinja) with the model's BOS and EOS tokens.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<JinjaValue, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_filter("tojson", tojson);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| Error::Config(format!("chat template does not compile: {e:#}")))?;
        Ok(ChatTemplate { env, bos_token: bos_token.into(), eos_token: eos_token.into() })
    }

    /// The template of a `tokenizer_config.json` (its `default` one when it names several),
    /// with the BOS and EOS tokens it declares.
    pub fn from_tokenizer_config(json: &str) -> Result<ChatTemplate> {
        let config: TokenizerConfig = serde_json::from_str(json)
            .map_err(|e| Error::Config(format!("tokenizer_config.json: {e}")))?;
        let source = match config.chat_template {
            None => return Err(Error::Config("tokenizer_config.json has no chat_template".into())),
            Some(TemplateField::One(source)) => source,
            Some(TemplateField::Named(named)) => {
                let names: Vec<String> = named.iter().map(|t| t.name.clone()).collect();
                named.into_iter().find(|t| t.name == "default").map(|t| t.template).ok_or_else(
                    || {
                        Error::Config(format!(
                            "tokenizer_config.json has no `default` chat template (it has {})",
                            names.join(", ")
                        ))
                    },
                )?
            }
        };
        let bos = config.bos_token.map(TokenField::text).unwrap_or_default();
        let eos = config.eos_token.map(TokenField::text).unwrap_or_default();
        ChatTemplate::new(&source, &bos, &eos)
    }

    /// The prompt for `messages`; with `add_generation_prompt`, ending where the assistant's
    /// answer starts. `tools` (OpenAI function definitions) are passed as the template's
    /// `tools`. A template's own `raise_exception` (e.g. "roles must alternate") is a
    /// [`Error::Config`] carrying its message.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        tools: Option<&serde_json::Value>,
    ) -> Result<String> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Config(format!("chat template: {e}")))?;
        let context = minijinja::context! {
            messages => JinjaValue::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
            tools => tools.map(JinjaValue::from_serialize),
        };
        template.render(context).map_err(|e| match e.kind() {
            ErrorKind::InvalidOperation => Error::Config(format!(
                "the chat template refused the conversation: {}",
                e.detail().unwrap_or("(no message)")
            )),
            _ => Error::Config(format!("rendering the chat template: {e:#}")),
        })
    }
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=indent)`
/// (keys in their order, `", "`/`": "` separators, or `","` and newlines when indented).
fn tojson(value: &JinjaValue, kwargs: Kwargs) -> std::result::Result<JinjaValue, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    dumps(value, indent, 0, &mut out)?;
    Ok(JinjaValue::from_safe_string(out))
}

fn dumps(
    value: &JinjaValue,
    indent: Option<usize>,
    depth: usize,
    out: &mut String,
) -> std::result::Result<(), minijinja::Error> {
    let newline = |out: &mut String, depth: usize| {
        if let Some(width) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(width * depth));
        }
    };
    let separator = if indent.is_some() { "," } else { ", " };
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            let text = value.to_string();
            // Python writes floats with a fractional part (`1.0`); minijinja writes `1.0` too,
            // and integers without one.
            out.push_str(&text);
        }
        ValueKind::String => {
            let s = value.as_str().unwrap_or_default();
            out.push_str(
                &serde_json::to_string(s).map_err(|e| {
                    minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string())
                })?,
            );
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<JinjaValue> = value.try_iter()?.collect();
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(separator);
                }
                newline(out, depth + 1);
                dumps(item, indent, depth + 1, out)?;
            }
            if !items.is_empty() {
                newline(out, depth);
            }
            out.push(']');
        }
        ValueKind::Map => {
            let keys: Vec<JinjaValue> = value.try_iter()?.collect();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(separator);
                }
                newline(out, depth + 1);
                let name = key.as_str().map_or_else(|| key.to_string(), str::to_string);
                let _ = write!(out, "{}: ", serde_json::Value::String(name));
                dumps(&value.get_item(key)?, indent, depth + 1, out)?;
            }
            if !keys.is_empty() {
                newline(out, depth);
            }
            out.push('}');
        }
        _ => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: cannot serialise a {} value", value.kind()),
            ))
        }
    }
    Ok(())
}
