//! Vision skills on candle: CLIP (image and text embeddings, image–text similarity), ViT
//! (image classification), LLaVA 1.5 (questions about an image) and X-CLIP (video–text
//! similarity), with HF's image preprocessing reproduced to the bit and one
//! hardened fetcher for image URLs ([`image`]).

pub mod clip;
pub mod image;
pub mod llava;
pub mod vit;
pub mod xclip;

pub use clip::{Clip, TextScore};
pub use image::{DecodeLimits, FetchPolicy, Processor};
pub use llava::Llava;
pub use vit::{ImageLabel, Vit};
pub use xclip::{VideoTextScore, XClip};

/// A CLIP-family `config.json` as JSON, with the sub-configs older checkpoints saved as
/// `text_config_dict` / `vision_config_dict` moved to `text_config` / `vision_config` when
/// those are absent (transformers reads either).
pub(crate) fn clip_family_config(bytes: &[u8]) -> serde_json::Result<serde_json::Value> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
    if let Some(object) = value.as_object_mut() {
        for part in ["text_config", "vision_config"] {
            let legacy = format!("{part}_dict");
            let current_missing = object.get(part).is_none_or(serde_json::Value::is_null);
            if current_missing {
                if let Some(dict) = object.remove(&legacy).filter(|d| !d.is_null()) {
                    object.insert(part.to_string(), dict);
                }
            }
        }
    }
    Ok(value)
}
