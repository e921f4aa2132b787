//! Builds whisper.cpp and ggml (cmake) so that one binary runs on every CPU of its target.
//!
//! ggml compiles its CPU backend for one instruction set chosen at build time: built with
//! AVX-512 it dies of SIGILL on CPUs without it; built natively it takes whatever the build
//! machine has (AMX included, which crashed on this project's Xeons). ggml's own answer,
//! `GGML_CPU_ALL_VARIANTS`, builds one shared library per variant and `dlopen`s the best, which
//! needs shared libraries beside the binary. This build keeps one static binary instead:
//!
//! 1. whisper, ggml (the backend registry) and ggml-base are built once, with ggml's CPU
//!    backend for the target's baseline (`x64`: SSE2 only, what every x86-64 CPU runs);
//! 2. on x86-64 Linux the CPU backend is built again for each variant in [`X86_VARIANTS`]
//!    (ggml's own list and flags), each in its own cmake tree;
//! 3. every symbol a variant's archive defines is renamed with the variant's prefix
//!    (`objcopy --redefine-syms`), together with ggml's feature score for that variant
//!    (`cpu-feats.cpp`, compiled with the variant's definitions), so the variants link side
//!    by side and no code of one is ever reached from another;
//! 4. a generated dispatcher defines `ggml_backend_cpu_reg` — the one CPU symbol the registry
//!    calls — and picks, on first use, the variant with the highest score whose instruction
//!    sets the CPU has and the OS enables (ggml's score does not check the OS: see its FIXME).
//!
//! Only the chosen variant's code ever runs, and static initialisers of the others are safe
//! to run anywhere: ggml's own `dlopen` scheme loads every variant to score it as well.
//! `GGML_CPU_VARIANT=<name>` at run time picks a variant by name where the CPU can run it
//! (benchmarks compare variants on one machine that way).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// ggml's x86 CPU variants (`ggml/src/CMakeLists.txt`, `GGML_CPU_ALL_VARIANTS`) that this build
/// links: the baseline, x86-64-v3, and the AVX-512 families. The AMX variant (sapphirerapids)
/// is left out: ggml's AMX code crashed on this project's Xeons, and the zen4 variant (AVX-512
/// with VBMI, VNNI and BF16) serves those CPUs. Variants that only add AVX-VNNI or older sets
/// (alderlake, sandybridge, …) are left out for build time; those CPUs take the next one down.
const X86_VARIANTS: &[(&str, &[&str])] = &[
    ("x64", &[]),
    ("haswell", &["SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2"]),
    ("skylakex", &["SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512"]),
    (
        "icelake",
        &["SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VBMI", "AVX512_VNNI"],
    ),
    (
        "zen4",
        &[
            "SSE42",
            "AVX",
            "F16C",
            "FMA",
            "AVX2",
            "BMI2",
            "AVX512",
            "AVX512_VBMI",
            "AVX512_VNNI",
            "AVX512_BF16",
        ],
    ),
];

/// Every x86 feature switch of ggml's CPU CMake; each variant sets all of them, on or off.
const X86_FEATURES: &[&str] = &[
    "SSE42",
    "AVX",
    "AVX2",
    "BMI2",
    "AVX_VNNI",
    "FMA",
    "F16C",
    "AVX512",
    "AVX512_VBMI",
    "AVX512_VNNI",
    "AVX512_BF16",
    "AMX_TILE",
    "AMX_INT8",
    "AMX_BF16",
];

fn main() {
    for feature in ["COREML", "CUDA", "HIPBLAS", "OPENBLAS", "METAL", "VULKAN", "OPENMP", "INTEL_SYCL"]
    {
        if env::var_os(format!("CARGO_FEATURE_{feature}")).is_some() {
            panic!(
                "this vendored whisper-rs-sys builds ggml's CPU backend only; feature `{}` is not \
                 supported (see vendor/whisper-rs-sys/Cargo.toml)",
                feature.to_lowercase().replace('_', "-")
            );
        }
    }
    println!("cargo:rustc-link-lib=dylib=stdc++");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=whisper.cpp");
    println!("cargo:rerun-if-env-changed=CMAKE_BUILD_PARALLEL_LEVEL");

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    // cmake writes into its source tree (bindings/javascript/package.json): build a copy.
    let source = out.join("whisper.cpp");
    if !source.exists() {
        copy_dir(&manifest.join("whisper.cpp"), &source).expect("copy whisper.cpp sources");
    }

    let multi = env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64")
        && env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");

    // The main tree: whisper, ggml, ggml-base and the baseline CPU backend.
    let mut main = cmake_config(&source, &out.join("main"));
    for feature in X86_FEATURES {
        main.define(format!("GGML_{feature}"), "OFF");
    }
    let main_dir = main.build();
    let main_libs = main_dir.join("build");
    for lib in ["whisper", "ggml", "ggml-base"] {
        link_static(&find_archive(&main_libs, lib));
    }
    let baseline = find_archive(&main_libs, "ggml-cpu");

    let dispatch = out.join("ggml-cpu-dispatch.cpp");
    if multi {
        let cpu = out.join("cpu");
        fs::create_dir_all(&cpu).expect("create cpu dir");
        for (tag, features) in X86_VARIANTS {
            let archive = if *tag == "x64" {
                baseline.clone()
            } else {
                let mut config = cmake_config(&source, &out.join(format!("variant-{tag}")));
                for feature in X86_FEATURES {
                    let on = features.contains(feature);
                    config.define(format!("GGML_{feature}"), if on { "ON" } else { "OFF" });
                }
                let dir = config.build_target("ggml-cpu").build();
                find_archive(&dir.join("build"), "ggml-cpu")
            };
            let renamed = cpu.join(format!("libggml-cpu-{tag}.a"));
            fs::copy(&archive, &renamed).expect("copy variant archive");
            let score = compile_score(&source, tag, features, &out);
            run(Command::new(tool("AR", "ar")).arg("rs").arg(&renamed).arg(&score));
            rename_symbols(&renamed, &format!("ggml_cpu_{tag}__"));
            link_static(&renamed);
        }
        let header = source.join("ggml/include/ggml-cpu.h");
        fs::write(&dispatch, x86_dispatcher(&fs::read_to_string(header).expect("ggml-cpu.h")))
            .expect("write dispatcher");
    } else {
        // Elsewhere the CPU backend is the baseline build, under its own names.
        link_static(&baseline);
        fs::write(&dispatch, BASELINE_DISPATCHER).expect("write dispatcher");
    }
    // whisper-rs reads it (DEP_WHISPER_WHISPER_CPP_VERSION).
    let cmake_lists = fs::read_to_string(source.join("CMakeLists.txt")).expect("CMakeLists.txt");
    let version = cmake_lists
        .lines()
        .find_map(|l| l.strip_prefix(r#"project("whisper.cpp" VERSION "#))
        .map(|v| v.trim_end_matches(')'))
        .expect("whisper.cpp's CMakeLists.txt declares its version");
    println!("cargo:WHISPER_CPP_VERSION={version}");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file(&dispatch)
        .include(source.join("ggml/include"))
        .warnings(false)
        .compile("ggml-cpu-dispatch");
}

/// cmake for whisper.cpp with this crate's fixed choices: static, CPU only, no native flags,
/// llamafile's tiled matmuls on (whisper.cpp leaves them off; they ran Whisper base 1.5x
/// faster than ggml's per-row dot products here, `cargo xtask bench speech`).
fn cmake_config(source: &Path, out_dir: &Path) -> cmake::Config {
    fs::create_dir_all(out_dir).expect("create cmake out dir");
    let mut config = cmake::Config::new(source);
    config
        .out_dir(out_dir)
        .profile("Release")
        .define("BUILD_SHARED_LIBS", "OFF")
        .define("WHISPER_ALL_WARNINGS", "OFF")
        .define("WHISPER_ALL_WARNINGS_3RD_PARTY", "OFF")
        .define("WHISPER_BUILD_TESTS", "OFF")
        .define("WHISPER_BUILD_EXAMPLES", "OFF")
        .define("GGML_NATIVE", "OFF")
        .define("GGML_OPENMP", "OFF")
        .define("GGML_METAL", "OFF")
        .define("GGML_LLAMAFILE", "ON")
        .pic(true);
    if env::var("PROFILE").as_deref() == Ok("debug") || env::var_os("CARGO_FEATURE_FORCE_DEBUG").is_some() {
        // Unoptimised ggml is unusably slow; keep optimisation with debug info.
        config.define("CMAKE_BUILD_TYPE", "RelWithDebInfo");
    } else {
        config.define("CMAKE_BUILD_TYPE", "Release");
    }
    config
}

/// ggml's feature score for one variant (`arch/x86/cpu-feats.cpp` compiled with the variant's
/// definitions, as `GGML_CPU_ALL_VARIANTS` builds it); it exports `ggml_backend_score`.
fn compile_score(source: &Path, tag: &str, features: &[&str], out: &Path) -> PathBuf {
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .file(source.join("ggml/src/ggml-cpu/arch/x86/cpu-feats.cpp"))
        .include(source.join("ggml/src"))
        .include(source.join("ggml/include"))
        .define("GGML_BACKEND_DL", None)
        .define("GGML_BACKEND_BUILD", None)
        .define("GGML_BACKEND_SHARED", None)
        .out_dir(out.join(format!("score-{tag}")))
        .cargo_metadata(false)
        .warnings(false);
    for feature in features {
        build.define(&format!("GGML_{feature}"), None);
    }
    let mut objects = build.compile_intermediates();
    assert_eq!(objects.len(), 1, "one object for cpu-feats.cpp");
    objects.remove(0)
}

/// Renames every global symbol `archive` defines to `prefix` + name, references included, and
/// every COMDAT group's signature: the linker keeps one group per signature across the whole
/// link, and GCC signs a constructor's group with a local `…C5Ev` symbol that nm does not
/// list, so an unrenamed signature would let one variant's group replace another's (its
/// renamed constructor then resolves to nothing).
fn rename_symbols(archive: &Path, prefix: &str) {
    let listing = Command::new(tool("NM", "nm"))
        .args(["--defined-only", "--extern-only", "--format=posix"])
        .arg(archive)
        .output()
        .expect("run nm (binutils)");
    assert!(listing.status.success(), "nm failed on {}", archive.display());
    let groups = Command::new(tool("READELF", "readelf"))
        .args(["--section-groups", "--wide"])
        .arg(archive)
        .output()
        .expect("run readelf (binutils)");
    assert!(groups.status.success(), "readelf failed on {}", archive.display());
    let groups = String::from_utf8(groups.stdout).expect("readelf prints text");
    let mut map = String::new();
    let mut names: Vec<&str> = std::str::from_utf8(&listing.stdout)
        .expect("nm prints text")
        .lines()
        // Member headers end with ':'; symbol lines are "name type [value size]".
        .filter(|line| !line.ends_with(':'))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    // "COMDAT group section [    4] `.group' [_ZN…C5Ev] contains 3 sections:"
    names.extend(groups.lines().filter_map(|line| {
        let rest = line.strip_prefix("COMDAT group section")?;
        let (_, signature) = rest.split_once("] `.group' [")?;
        signature.split_once("] contains").map(|(signature, _)| signature)
    }));
    names.sort_unstable();
    names.dedup();
    assert!(
        names.contains(&"ggml_backend_cpu_reg") && names.contains(&"ggml_backend_score"),
        "{} lacks the CPU backend's entry points",
        archive.display()
    );
    for name in names {
        writeln!(map, "{name} {prefix}{name}").expect("write to string");
    }
    let map_file = archive.with_extension("syms");
    fs::write(&map_file, map).expect("write symbol map");
    run(Command::new(tool("OBJCOPY", "objcopy"))
        .arg(format!("--redefine-syms={}", map_file.display()))
        .arg(archive));
}

/// The dispatcher for the x86 variants: `ggml_backend_cpu_reg` and every `ggml_cpu_has_*`-style
/// query of `ggml-cpu.h` forward to the chosen variant.
fn x86_dispatcher(cpu_header: &str) -> String {
    let mut s = String::from(X86_DISPATCHER_HEAD);
    for (tag, _) in X86_VARIANTS {
        writeln!(
            s,
            "extern \"C\" int ggml_cpu_{tag}__ggml_backend_score(void);\n\
             extern \"C\" ggml_backend_reg_t ggml_cpu_{tag}__ggml_backend_cpu_reg(void);"
        )
        .expect("write to string");
    }
    s.push_str("\nstatic const variant VARIANTS[] = {\n");
    for (tag, features) in X86_VARIANTS {
        let avx = features.contains(&"AVX");
        let avx512 = features.contains(&"AVX512");
        writeln!(
            s,
            "    {{ \"{tag}\", ggml_cpu_{tag}__ggml_backend_score, ggml_cpu_{tag}__ggml_backend_cpu_reg, {avx}, {avx512} }},"
        )
        .expect("write to string");
    }
    s.push_str("};\n");
    s.push_str(X86_DISPATCHER_BODY);
    // `int ggml_cpu_has_x(void)` and `int ggml_cpu_get_x(void)`: what the variant was built with.
    for line in cpu_header.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("GGML_BACKEND_API int ") else { continue };
        let Some((name, args)) = rest.split_once('(') else { continue };
        let name = name.trim();
        if (name.starts_with("ggml_cpu_has_") || name.starts_with("ggml_cpu_get_"))
            && args.starts_with("void)")
        {
            for (tag, _) in X86_VARIANTS {
                writeln!(s, "extern \"C\" int ggml_cpu_{tag}__{name}(void);").expect("write");
            }
            write!(s, "extern \"C\" int {name}(void) {{\n    switch (selected()) {{\n").expect("write");
            for (i, (tag, _)) in X86_VARIANTS.iter().enumerate() {
                writeln!(s, "        case {i}: return ggml_cpu_{tag}__{name}();").expect("write");
            }
            s.push_str("        default: return 0;\n    }\n}\n");
        }
    }
    s
}

const X86_DISPATCHER_HEAD: &str = r#"// Generated by whisper-rs-sys's build.rs: picks ggml's CPU backend variant at run time.
#include "ggml-backend.h"
#include <cpuid.h>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {
struct variant {
    const char * name;
    int (*score)(void);
    ggml_backend_reg_t (*reg)(void);
    bool avx;
    bool avx512;
};
}
"#;

const X86_DISPATCHER_BODY: &str = r#"
static const int N_VARIANTS = (int) (sizeof(VARIANTS) / sizeof(VARIANTS[0]));

// Which register states the OS saves (XCR0): AVX needs XMM and YMM, AVX-512 also the opmask
// and the upper ZMM halves. A CPU may have AVX-512 while its OS (or hypervisor) leaves it off.
static uint64_t os_xcr0(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE)) {
        return 0;
    }
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t) hi << 32) | lo;
}

static int usable_score(int i) {
    const variant & v = VARIANTS[i];
    const uint64_t xcr0 = os_xcr0();
    if (v.avx && (xcr0 & 0x6) != 0x6) {
        return 0;
    }
    if (v.avx512 && (xcr0 & 0xe6) != 0xe6) {
        return 0;
    }
    return v.score();
}

static int choose(void) {
    const char * wanted = getenv("GGML_CPU_VARIANT");
    if (wanted && *wanted) {
        for (int i = 0; i < N_VARIANTS; i++) {
            if (strcmp(VARIANTS[i].name, wanted) == 0 && usable_score(i) > 0) {
                return i;
            }
        }
    }
    int best = -1;
    int best_score = 0;
    for (int i = 0; i < N_VARIANTS; i++) {
        const int score = usable_score(i);
        if (score > best_score) {
            best = i;
            best_score = score;
        }
    }
    return best;
}

static int selected(void) {
    static const int chosen = choose();
    return chosen;
}

extern "C" int ggml_cpu_variant_count(void) { return N_VARIANTS; }

extern "C" const char * ggml_cpu_variant_name(int i) {
    return i >= 0 && i < N_VARIANTS ? VARIANTS[i].name : nullptr;
}

extern "C" int ggml_cpu_variant_score(int i) {
    return i >= 0 && i < N_VARIANTS ? usable_score(i) : 0;
}

extern "C" int ggml_cpu_variant_selected(void) { return selected(); }

// The registry's one call into the CPU backend. No variant can run only on a CPU below
// x86-64's baseline; callers check ggml_cpu_variant_selected() before loading a model.
extern "C" ggml_backend_reg_t ggml_backend_cpu_reg(void) {
    const int i = selected();
    return i < 0 ? nullptr : VARIANTS[i].reg();
}

"#;

const BASELINE_DISPATCHER: &str = r#"// Generated by whisper-rs-sys's build.rs: one CPU backend, built for the target's baseline.
extern "C" int ggml_cpu_variant_count(void) { return 1; }
extern "C" const char * ggml_cpu_variant_name(int i) { return i == 0 ? "baseline" : nullptr; }
extern "C" int ggml_cpu_variant_score(int i) { return i == 0 ? 1 : 0; }
extern "C" int ggml_cpu_variant_selected(void) { return 0; }
"#;

/// The archive `lib<name>.a` under `dir` (cmake puts them in per-target subdirectories).
fn find_archive(dir: &Path, name: &str) -> PathBuf {
    let file = format!("lib{name}.a");
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|f| f == file.as_str()) {
                return path;
            }
        }
    }
    panic!("{file} not found under {}", dir.display());
}

fn link_static(archive: &Path) {
    let dir = archive.parent().expect("archive has a directory");
    let name = archive.file_name().and_then(|f| f.to_str()).expect("archive name");
    let name = name.strip_prefix("lib").and_then(|n| n.strip_suffix(".a")).expect("lib*.a");
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=static={name}");
}

fn tool(var: &str, default: &str) -> String {
    println!("cargo:rerun-if-env-changed={var}");
    env::var(var).unwrap_or_else(|_| default.to_string())
}

fn run(command: &mut Command) {
    let status = command.status().unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(status.success(), "{command:?} failed: {status}");
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
