//! Every integration test of this crate, in one binary: each file below is a module, so the
//! test binary links the world once instead of once per file (ripgrep's layout).

mod cli_audio;
mod cli_backends;
mod cli_cache;
mod cli_config;
mod cli_cpu_levels;
mod cli_errors;
mod cli_hardware;
mod cli_models;
mod cli_secrets;
mod cli_storage;
mod cli_tiers;
mod cli_vision;
mod crash_points;
mod github;
mod github_errors;
mod github_registry;
mod hostile_input;
mod remote_tiers;
mod store_faults;
mod store_model;
mod store_processes;
