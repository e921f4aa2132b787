//! Every integration test of this crate, in one binary: each file below is a module, so the
//! test binary links the world once instead of once per file (ripgrep's layout).

mod faults;
mod protocols;
mod templates;
