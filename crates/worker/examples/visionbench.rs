//! The Rust side of `cargo xtask bench vision`: CLIP ViT-B/32 image embeddings and ViT-B/16
//! classification at their real sizes with random weights (speed does not depend on the
//! values), loaded through the skills' own loaders from safetensors bytes, images/s at batch
//! 1 and 16, best of N after a warm-up. candle's thread pool follows `RAYON_NUM_THREADS`
//! (set by xtask). Prints one JSON object.
//!
//! `visionbench '{"runs": R}'`, or `'{"runs": R, "only": "clip_b32_batch1"}'` for one case (to profile).

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::clip::vision_model::{ClipVisionConfig, ClipVisionTransformer};
use candle_transformers::models::vit;
use ipfs_accelerate_worker::vision::{Clip, Vit};
use serde_json::json;

/// The allocator the `ipfs-accelerate` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Random weights under the names `build` asks for, as safetensors bytes.
fn weights(build: impl FnOnce(VarBuilder)) -> Vec<u8> {
    let map = VarMap::new();
    build(VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu));
    let file = tempfile::NamedTempFile::new().unwrap();
    map.save(file.path()).unwrap();
    std::fs::read(file.path()).unwrap()
}

/// Best images/s over `runs` timed calls of `forward` on a batch, after one warm-up.
fn images_per_second(batch: usize, runs: usize, forward: impl Fn(&Tensor)) -> f64 {
    let pixels = Tensor::randn(0f32, 1f32, (batch, 3, 224, 224), &Device::Cpu).unwrap();
    forward(&pixels);
    let best = (0..runs)
        .map(|_| {
            let started = Instant::now();
            forward(&pixels);
            started.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    batch as f64 / best
}

fn main() {
    let args: serde_json::Value =
        serde_json::from_str(&std::env::args().nth(1).expect("JSON arguments")).unwrap();
    let runs = args["runs"].as_u64().unwrap() as usize;

    // CLIP ViT-B/32 (openai/clip-vit-base-patch32): the loader's defaults are its shapes.
    let text = ClipTextConfig {
        vocab_size: 49_408,
        embed_dim: 512,
        activation: Activation::QuickGelu,
        intermediate_size: 2048,
        max_position_embeddings: 77,
        pad_with: None,
        num_hidden_layers: 12,
        num_attention_heads: 8,
        projection_dim: 512,
    };
    let vision = ClipVisionConfig::vit_base_patch32();
    let clip_bytes = weights(|vb| {
        ClipTextTransformer::new(vb.pp("text_model"), &text).unwrap();
        ClipVisionTransformer::new(vb.pp("vision_model"), &vision).unwrap();
        candle_nn::linear_no_bias(512, 512, vb.pp("text_projection")).unwrap();
        candle_nn::linear_no_bias(768, 512, vb.pp("visual_projection")).unwrap();
    });
    let clip = Clip::load(b"{}", clip_bytes, None, None, &Device::Cpu).unwrap();
    let clip_forward = |pixels: &Tensor| {
        clip.image_embeddings(pixels).unwrap();
    };

    // ViT-B/16 (google/vit-base-patch16-224), 1000 ImageNet classes.
    let config = vit::Config::vit_base_patch16_224();
    let vit_bytes = weights(|vb| {
        vit::Model::new(&config, 1000, vb).unwrap();
    });
    let labels: serde_json::Map<String, serde_json::Value> =
        (0..1000).map(|i| (i.to_string(), json!(format!("class {i}")))).collect();
    let vit_config = json!({
        "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "image_size": 224, "patch_size": 16, "num_channels": 3, "qkv_bias": true,
        "id2label": labels,
    });
    let vit = Vit::load(&serde_json::to_vec(&vit_config).unwrap(), vit_bytes, None, &Device::Cpu)
        .unwrap();
    let vit_forward = |pixels: &Tensor| {
        vit.logits(pixels).unwrap();
    };

    let mut out = serde_json::Map::new();
    for (name, forward) in [
        ("clip_b32", &clip_forward as &dyn Fn(&Tensor)),
        ("vit_b16", &vit_forward as &dyn Fn(&Tensor)),
    ] {
        for batch in [1, 16] {
            let key = format!("{name}_batch{batch}");
            if args["only"].as_str().is_some_and(|only| only != key) {
                continue;
            }
            let rate = images_per_second(batch, runs, forward);
            eprintln!("visionbench: {name} batch {batch}: {rate:.2} images/s");
            out.insert(key, json!(rate));
        }
    }
    out.insert("kernels".into(), json!(ipfs_accelerate_worker::kernels::cpu_kernels()));
    println!("{}", serde_json::Value::Object(out));
}
