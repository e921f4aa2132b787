#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(clippy::all)]
#![allow(unnecessary_transmutes)]

// The bindings as published with whisper-rs-sys 0.15.0 (generated from the same headers).
include!("bindings.rs");

// The CPU variant dispatcher this copy adds (`build.rs` generates it). On x86-64 Linux ggml's
// CPU backend is linked in several instruction-set variants; the first use of the backend
// picks the best one the running CPU (and its OS) supports, by ggml's own feature score.
extern "C" {
    /// How many CPU backend variants are linked in.
    pub fn ggml_cpu_variant_count() -> ::std::os::raw::c_int;
    /// The name of variant `index` (`x64`, `haswell`, `skylakex`, …), or null past the end.
    pub fn ggml_cpu_variant_name(index: ::std::os::raw::c_int) -> *const ::std::os::raw::c_char;
    /// ggml's score of variant `index` on this CPU: 0 where the CPU lacks one of its
    /// instruction sets (or the OS does not enable their registers), higher is better.
    pub fn ggml_cpu_variant_score(index: ::std::os::raw::c_int) -> ::std::os::raw::c_int;
    /// The variant the backend uses (choosing it on first call), or -1 where none can run.
    pub fn ggml_cpu_variant_selected() -> ::std::os::raw::c_int;
}
