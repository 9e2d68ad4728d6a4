//! zt-agent: the only part of zt that reads the config and talks to the
//! directory. It turns people and groups into the snapshot that nss_zt reads.
//!
//! config -> directory (a source) -> resolve (identity rules, uid/gid) ->
//! sync (build, verify, publish atomically) -> sudo (the sudoers drop-in) ->
//! status for the CLI.

pub mod cli;
pub mod config;
pub mod control;
pub mod device;
pub mod directory;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod identity;
pub mod keys;
pub mod logging;
pub mod monitoring;
pub mod notify;
pub mod outcome;
pub mod resolve;
pub mod status;
pub mod sudo;
pub mod sync;
pub mod trusted_file;
