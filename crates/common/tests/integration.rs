//! Every integration test of this crate, in one binary: each file below is a module, so the
//! test binary links the world once instead of once per file (ripgrep's layout).

mod cache;
mod keyring;
mod parsers;
mod secrets;
mod store;
mod tree;
mod unixfs_kubo;
