//! Which CPU kernels each native engine runs on this machine, decided at run time.
//!
//! The binary is built for x86-64's baseline and every engine picks its vector kernels when it
//! runs: whisper.cpp through ggml's CPU variants linked side by side (the vendored
//! `whisper-rs-sys` dispatcher picks the best the CPU and OS support), candle's matmuls through
//! gemm's detection, candle's quantized dot products through its own, ONNX Runtime's MLAS
//! through its own. This module asks the same questions those engines ask, so `hardware`,
//! `doctor` and the benchmarks say what `infer` will run, and a CPU below x86-64-v3 is named
//! as the slow path it is rather than discovered.
#![allow(unsafe_code)] // Four calls into the whisper-rs-sys dispatcher; see the SAFETY notes.

use std::ffi::CStr;

use serde::Serialize;

use crate::error::{Error, Result};

/// One engine's kernels on this CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineKernels {
    /// `whisper.cpp`, `candle gemm`, `candle quantized`, `onnx runtime`.
    pub engine: &'static str,
    /// The kernel set it runs (`haswell: AVX2 FMA F16C`, `AVX-512`, `scalar`).
    pub kernels: String,
    /// What else is worth knowing: the variants linked, the path it would take elsewhere.
    pub detail: String,
    /// Whether it can run here at all.
    pub runs: bool,
}

/// The instruction sets of x86-64-v3 (AVX2, FMA, F16C and friends): the level every engine
/// here has fast kernels for. Below it they run scalar or SSE paths.
#[cfg(target_arch = "x86_64")]
pub fn missing_v3() -> Vec<&'static str> {
    use std::arch::is_x86_feature_detected as has;
    let mut missing = Vec::new();
    for (name, present) in [
        ("avx", has!("avx")),
        ("avx2", has!("avx2")),
        ("fma", has!("fma")),
        ("f16c", has!("f16c")),
        ("bmi2", has!("bmi2")),
    ] {
        if !present {
            missing.push(name);
        }
    }
    missing
}

/// Not x86-64: nothing is measured against x86-64-v3.
#[cfg(not(target_arch = "x86_64"))]
pub fn missing_v3() -> Vec<&'static str> {
    Vec::new()
}

/// The kernels every native engine of this build runs on this CPU.
pub fn cpu_kernels() -> Vec<EngineKernels> {
    vec![whisper(), gemm(), quantized(), onnx_runtime()]
}

/// The ggml CPU variant whisper.cpp runs, or a typed error where none can run on this CPU.
pub fn whisper_variant() -> Result<String> {
    let (selected, variants) = ggml_variants();
    selected.map(|i| variants[i].0.clone()).ok_or_else(|| {
        Error::Device(format!(
            "whisper.cpp cannot run on this CPU: none of its CPU variants ({}) is supported",
            variants.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// The linked variants with their scores, and the one selected.
fn ggml_variants() -> (Option<usize>, Vec<(String, i32)>) {
    // SAFETY: the dispatcher's functions take and return plain integers, or a pointer to a
    // static NUL-terminated name (null past the end, checked); choosing a variant only runs
    // CPUID/XGETBV and the variants' feature scores, once.
    let (count, selected) = unsafe {
        (whisper_rs_sys::ggml_cpu_variant_count(), whisper_rs_sys::ggml_cpu_variant_selected())
    };
    let variants = (0..count)
        .map(|i| {
            // SAFETY: as above; `i` is within the count.
            let (name, score) = unsafe {
                (
                    whisper_rs_sys::ggml_cpu_variant_name(i),
                    whisper_rs_sys::ggml_cpu_variant_score(i),
                )
            };
            let name = if name.is_null() {
                format!("#{i}")
            } else {
                // SAFETY: non-null names are static C strings.
                unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
            };
            (name, score)
        })
        .collect::<Vec<_>>();
    (usize::try_from(selected).ok().filter(|&i| i < variants.len()), variants)
}

/// The instruction sets the selected ggml variant was built with (ggml's own report).
fn ggml_features() -> Vec<&'static str> {
    // SAFETY: each forwards to the selected variant's `int f(void)`.
    let flags = unsafe {
        [
            ("AVX", whisper_rs_sys::ggml_cpu_has_avx()),
            ("AVX2", whisper_rs_sys::ggml_cpu_has_avx2()),
            ("FMA", whisper_rs_sys::ggml_cpu_has_fma()),
            ("F16C", whisper_rs_sys::ggml_cpu_has_f16c()),
            ("AVX512", whisper_rs_sys::ggml_cpu_has_avx512()),
            ("AVX512_VBMI", whisper_rs_sys::ggml_cpu_has_avx512_vbmi()),
            ("AVX512_VNNI", whisper_rs_sys::ggml_cpu_has_avx512_vnni()),
            ("AVX512_BF16", whisper_rs_sys::ggml_cpu_has_avx512_bf16()),
            ("NEON", whisper_rs_sys::ggml_cpu_has_neon()),
        ]
    };
    flags.iter().filter(|(_, on)| *on != 0).map(|(name, _)| *name).collect()
}

fn whisper() -> EngineKernels {
    let (selected, variants) = ggml_variants();
    let linked = variants
        .iter()
        .map(
            |(name, score)| {
                if *score > 0 {
                    name.clone()
                } else {
                    format!("{name} (not on this CPU)")
                }
            },
        )
        .collect::<Vec<_>>()
        .join(", ");
    match selected {
        Some(i) => {
            let features = ggml_features();
            let set = if features.is_empty() { "SSE2".to_string() } else { features.join(" ") };
            EngineKernels {
                engine: "whisper.cpp",
                kernels: format!("{}: {set}", variants[i].0),
                detail: format!("ggml CPU variants linked: {linked}"),
                runs: true,
            }
        }
        None => EngineKernels {
            engine: "whisper.cpp",
            kernels: "none".into(),
            detail: format!("no ggml CPU variant runs on this CPU (linked: {linked})"),
            runs: false,
        },
    }
}

/// An engine that runs here, on `kernels`.
fn running(engine: &'static str, kernels: &str, detail: &str) -> EngineKernels {
    EngineKernels { engine, kernels: kernels.into(), detail: detail.into(), runs: true }
}

#[cfg(target_arch = "x86_64")]
fn gemm() -> EngineKernels {
    use std::arch::is_x86_feature_detected as has;
    // gemm's own dispatch (gemm-common `init_gemm_fn`, with the workspace's x86-v4 feature).
    let kernels = if has!("avx512f") {
        "AVX-512 (x86-64-v4)"
    } else if has!("fma") {
        "AVX2+FMA (x86-64-v3)"
    } else {
        "scalar"
    };
    running(
        "candle gemm",
        kernels,
        "float matmuls of every candle model (MiniLM, CLIP, ViT, LLaVA, wav2vec2, CLAP, X-CLIP)",
    )
}

#[cfg(target_arch = "x86_64")]
fn quantized() -> EngineKernels {
    use std::arch::is_x86_feature_detected as has;
    // candle's quantized dispatch: its repacked VNNI kernels (repack_x86 `level`), else its
    // AVX2+FMA dot products (k_quants `has_avx2_fma`), else the scalar ones.
    let kernels = if has!("avx512f") && has!("avx512vnni") {
        "AVX-512 VNNI (repacked Q8_0)"
    } else if has!("avxvnni") && has!("avx2") {
        "AVX-VNNI (repacked Q8_0)"
    } else if has!("avx2") && has!("fma") {
        "AVX2+FMA"
    } else {
        "scalar"
    };
    running("candle quantized", kernels, "GGUF text generation (the llama decoder's Q8_0 matmuls)")
}

#[cfg(target_arch = "x86_64")]
fn onnx_runtime() -> EngineKernels {
    use std::arch::is_x86_feature_detected as has;
    // MLAS (ONNX Runtime's CPU kernels) dispatches on the same bits when the library loads.
    let kernels = if has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
        "AVX-512"
    } else if has!("avx2") && has!("fma") {
        "AVX2+FMA"
    } else {
        "SSE"
    };
    running("onnx runtime", kernels, "Piper voices; MLAS picks its kernels when the library loads")
}

/// Elsewhere each engine picks its kernels itself; this build does not second-guess them.
#[cfg(not(target_arch = "x86_64"))]
fn chosen_by(engine: &'static str, chooser: &str) -> EngineKernels {
    running(engine, std::env::consts::ARCH, &format!("chosen by {chooser}"))
}

#[cfg(not(target_arch = "x86_64"))]
fn gemm() -> EngineKernels {
    chosen_by("candle gemm", "gemm at run time")
}

#[cfg(not(target_arch = "x86_64"))]
fn quantized() -> EngineKernels {
    chosen_by("candle quantized", "candle at build and run time")
}

#[cfg(not(target_arch = "x86_64"))]
fn onnx_runtime() -> EngineKernels {
    chosen_by("onnx runtime", "MLAS when the library loads")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whisper_runs_the_best_variant_this_cpu_supports() {
        let (selected, variants) = ggml_variants();
        let selected = selected.expect("a variant runs on any CPU of the target");
        assert!(variants[selected].1 > 0, "{variants:?}");
        if std::env::var_os("GGML_CPU_VARIANT").is_none() {
            let best = variants.iter().map(|(_, score)| *score).max();
            assert_eq!(Some(variants[selected].1), best, "{variants:?}");
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            let names: Vec<&str> = variants.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["x64", "haswell", "skylakex", "icelake", "zen4"]);
            // The variant's instruction sets are ones this CPU has.
            use std::arch::is_x86_feature_detected as has;
            let features = ggml_features();
            assert_eq!(
                features.contains(&"AVX512"),
                variants[selected].0 != "x64" && variants[selected].0 != "haswell"
            );
            if features.contains(&"AVX512") {
                assert!(has!("avx512f") && has!("avx512bw") && has!("avx512vl"));
            }
            if features.contains(&"AVX2") {
                assert!(has!("avx2") && has!("fma") && has!("f16c"));
            }
            // x86-64-v3 machines never get the baseline variant, AVX-512 ones never haswell.
            if missing_v3().is_empty() {
                assert_ne!(variants[selected].0, "x64");
            }
        }
        assert_eq!(whisper_variant().expect("a variant"), variants[selected].0);
    }

    #[test]
    fn every_engine_reports_what_it_runs() {
        let kernels = cpu_kernels();
        let engines: Vec<&str> = kernels.iter().map(|k| k.engine).collect();
        assert_eq!(engines, ["whisper.cpp", "candle gemm", "candle quantized", "onnx runtime"]);
        assert!(kernels.iter().all(|k| k.runs && !k.kernels.is_empty()), "{kernels:?}");
    }
}
