//! The zt snapshot: the one file zt-agent writes and nss_zt / pam_zt read.
//!
//! `format` is the byte layout, `writer` builds it (agent side), `reader` is a
//! bounds-checked view that survives any input (module side). This crate has no
//! dependencies and no `unsafe`: mapping the file is the caller's business.

pub mod format;
pub mod reader;
pub mod writer;

pub use format::{GENERATION_PATH, SNAPSHOT_PATH};
pub use reader::{FormatError, Group, Layout, Snapshot, User};
pub use writer::{BuildError, Content, GroupEntry, UserEntry, build, restamp};
