//! The zt snapshot: the files zt-agent publishes and nss_zt / pam_zt read.
//!
//! `format` is the byte layout of the public snapshot and its private twin,
//! `writer` builds both from one model (agent side), `reader` has the
//! bounds-checked views that survive any input (module side), and `state` owns
//! the state directory: file names, trust checks and the publish protocol.
//! `unsafe` appears only in `state`, at libc calls.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod reader;
pub mod state;
pub mod writer;

pub use format::{GENERATION_PATH, PRIVATE_PATH, SNAPSHOT_PATH};
pub use reader::{
    FormatError, Group, Issuer, IssuerKey, Layout, Pair, Policy, Private, PrivateGroup,
    PrivateUser, SharedAccount, Snapshot, StrList, User,
};
pub use state::{StateDir, StateError, StateLock, last_good_sync};
pub use writer::{
    BuildError, Built, Content, GroupEntry, IssuerEntry, KeyEntry, LocalGrantEntry, PolicyEntry,
    SharedAccountEntry, UserEntry, build, restamp,
};
