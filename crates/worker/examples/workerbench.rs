//! The worker's figures for `cargo xtask bench worker`, as one JSON object on stdout:
//! a measured f32 matmul peak, MiniLM embedding throughput at batch 1 and 32 with the model
//! FLOPs they imply, and SmolLM2 prompt and decode tokens/s — each through the real loading
//! path (wheel → store → verified read → skill).
//!
//! `workerbench MINILM_WHEEL SMOLLM2_WHEEL [embeddings]` (threads from RAYON_NUM_THREADS;
//! `embeddings`: only those figures, for profiling).

// Example code: the wheels and a scratch store are its input.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_worker::skill::{self, LoadContext, Loaded, ModelFiles, Task};
use ipfs_accelerate_worker::text::{GenerateParams, Prompt, TextEmbedder, TextGenerator};
use ipfs_accelerate_worker::{Cancel, ImportOptions, Registry};
use serde_json::json;

/// The allocator the `ipfs-accelerate` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SENTENCES: [&str; 8] = [
    "A man is playing a guitar on the stage tonight.",
    "The new movie is awesome and everyone should watch it.",
    "The stock market fell sharply after the announcement.",
    "Paris is the capital and most populous city of France.",
    "A cheetah is running behind its prey in the savanna.",
    "Two children are playing with a ball in the park.",
    "The committee will publish its report next month.",
    "Quantum computers use qubits instead of classical bits.",
];

/// The prompt both engines process for the prompt rate (about 110 tokens).
const PROMPT: &str = "The history of the city begins with a small fishing village on the river. \
Over the centuries merchants arrived, bridges were built, and markets grew along the banks. \
Scholars founded a university, artists opened workshops, and travellers wrote about its towers. \
By the modern era the city had become a centre of trade, learning and music, known across the \
continent for its festivals and its libraries. Write the next chapter of this history:";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (minilm, smollm2) = (&args[0], &args[1]);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let registry = rt.block_on(async {
        Registry::new(Store::open(dir.path(), StoreOptions::default()).await.unwrap())
    });
    let embedder = load(&rt, &registry, minilm, "minilm", Task::TextEmbedding);
    let generator = load(&rt, &registry, smollm2, "smollm2", Task::TextGeneration);

    // `workerbench A B embeddings`: only the embedding figures (for profiling).
    let only_embeddings = args.get(2).is_some_and(|a| a == "embeddings");
    let peak = matmul_peak();
    let embedder: &TextEmbedder = embedder.as_any().downcast_ref().expect("an embedder");
    let generator: &TextGenerator = generator.as_any().downcast_ref().expect("a generator");
    let cancel = Cancel::new();
    let texts: Vec<String> = (0..64).map(|i| SENTENCES[i % SENTENCES.len()].to_string()).collect();
    // Warm up (allocations, thread pool).
    embedder.embed(&texts[..32], None, &cancel).unwrap();
    let mut embeddings = serde_json::Map::new();
    for batch in [1usize, 32] {
        let mut tokens = 0usize;
        let mut sentences = 0usize;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(4) {
            for chunk in texts.chunks(batch) {
                let out = embedder.embed(chunk, None, &cancel).unwrap();
                tokens += out.tokens.iter().sum::<usize>();
                sentences += chunk.len();
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let avg_tokens = tokens as f64 / sentences as f64;
        let flops = bert_flops(avg_tokens) * sentences as f64 / secs;
        embeddings.insert(
            format!("batch_{batch}"),
            json!({
                "sentences_per_sec": sentences as f64 / secs,
                "avg_tokens": avg_tokens,
                "gflops": flops / 1e9,
                "efficiency": flops / 1e9 / peak,
            }),
        );
    }

    if only_embeddings {
        println!(
            "{}",
            json!({
                "matmul_peak_gflops": peak,
                "embeddings": embeddings,
                "kernels": ipfs_accelerate_worker::kernels::cpu_kernels(),
            })
        );
        return;
    }
    let params = GenerateParams {
        max_tokens: 128,
        temperature: 0.0,
        raw: true,
        ..GenerateParams::default()
    };
    let prompt = Prompt::Text(PROMPT.to_string());
    generator
        .generate(
            &prompt,
            &GenerateParams { max_tokens: 8, ..params.clone() },
            &cancel,
            &mut |_| Ok(()),
        )
        .unwrap();
    let mut best_prompt = 0f64;
    let mut best_decode = 0f64;
    let mut generated = 0;
    for _ in 0..5 {
        let (text, stats) = generator.generate(&prompt, &params, &cancel, &mut |_| Ok(())).unwrap();
        best_prompt = best_prompt.max(text.usage.prompt_tokens as f64 / stats.prompt.as_secs_f64());
        // The first token comes from the prompt pass; the decode time covers the rest.
        let decoded = text.usage.completion_tokens.saturating_sub(1).max(1);
        best_decode = best_decode.max(decoded as f64 / stats.decode.as_secs_f64());
        generated = text.usage.completion_tokens;
    }
    let figures = json!({
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "prompt": PROMPT,
        "matmul_peak_gflops": peak,
        "embeddings": embeddings,
        "kernels": ipfs_accelerate_worker::kernels::cpu_kernels(),
        "generation": {
            "prompt_tokens_per_sec": best_prompt,
            "decode_tokens_per_sec": best_decode,
            "completion_tokens": generated,
        },
    });
    println!("{figures}");
}

fn load(
    rt: &tokio::runtime::Runtime,
    registry: &Registry,
    wheel: &str,
    name: &str,
    task: Task,
) -> std::sync::Arc<dyn Loaded> {
    rt.block_on(async {
        let options = ImportOptions { name: Some(name.into()), ..ImportOptions::default() };
        let model = registry.import(std::path::Path::new(wheel), options).await.unwrap();
        let skill = skill::find(task, name, &model.manifest).unwrap();
        let mut files = BTreeMap::new();
        for path in skill.files(&model.manifest) {
            files.insert(path.clone(), registry.read_file(&model, &path).await.unwrap());
        }
        skill.load(&model.manifest, ModelFiles::new(files), &LoadContext::cpu()).unwrap()
    })
}

/// Multiply-adds ×2 of all-MiniLM-L6-v2 for one sentence of `tokens` tokens: the six layers'
/// projections (Q, K, V, O: 4·H², FFN: 2·H·I per token) and attention (QKᵀ and AV: 2·L·H
/// per token each); embeddings and pooling are lookups and sums.
fn bert_flops(tokens: f64) -> f64 {
    let (layers, hidden, intermediate) = (6.0, 384.0, 1536.0);
    let per_token =
        2.0 * (4.0 * hidden * hidden + 2.0 * hidden * intermediate) + 2.0 * 2.0 * tokens * hidden;
    layers * tokens * per_token
}

/// The best f32 matmul rate candle reaches on this machine (GFLOP/s), over a few shapes.
fn matmul_peak() -> f64 {
    let mut best = 0f64;
    for n in [512usize, 1024, 2048] {
        let a =
            Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
        let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu).unwrap();
        a.matmul(&b).unwrap();
        let reps = (2048 / n).pow(3).clamp(1, 64);
        let started = Instant::now();
        for _ in 0..reps {
            a.matmul(&b).unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        best = best.max(2.0 * (n as f64).powi(3) * reps as f64 / secs / 1e9);
    }
    best
}
