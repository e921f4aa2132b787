//! UnixFS: Kubo-exact file import (chunking and the balanced DAG) and verified export.

mod profile;

pub use profile::{Profile, UnknownProfile};
