//! Every integration test of this crate, in one binary: each file below is a module, so the
//! test binary links the world once instead of once per file (ripgrep's layout).

mod clap;
mod common;
mod hub;
mod llava;
mod real_vision;
mod skills;
mod sources;
mod speech;
mod vision;
mod wav2vec2;
mod worker;
mod xclip;
