//! Vision skills on candle: CLIP (image and text embeddings, image–text similarity), ViT
//! (image classification), LLaVA 1.5 (questions about an image) and X-CLIP (video–text
//! similarity), with HF's image preprocessing reproduced to the bit and one
//! hardened fetcher for image URLs ([`image`]).

pub mod clip;
pub mod image;
pub mod llava;
pub mod vit;
pub mod xclip;

pub use clip::{Clip, ClipSkill, TextScore};
pub use image::{DecodeLimits, FetchPolicy, Processor};
pub use llava::{Llava, LlavaSkill};
pub use vit::{ImageLabel, Vit, VitSkill};
pub use xclip::{VideoTextScore, XClip, XClipSkill};
