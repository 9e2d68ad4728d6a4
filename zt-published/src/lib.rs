//! zt-published: the published files, trusted and mapped.
//!
//! The one read path shared by everything that reads what zt-agent publishes
//! in the state directory (/var/lib/zt): nss_zt (in every process), pam_zt
//! (as root inside sshd, sudo, su) and the agent's read-only commands.
//!
//! - `files`: the state directory and its file names, and `Config` (where to
//!   read, who must own it, how often to recheck).
//! - `trust`: the state directory opened with `O_DIRECTORY|O_NOFOLLOW` and
//!   checked with fstat (root-owned, not group/other writable, a directory);
//!   files opened relative to it with `O_NOFOLLOW|O_NONBLOCK` and checked the
//!   same way (regular, root-owned, not group/other writable), then mapped.
//! - `source`: the per-thread `Source` whose warm path is one atomic load of
//!   the mapped generation file plus a vDSO clock read, no system call.
//! - `published`: a one-shot, not thread-local view for root readers
//!   (`open_pair`).
//! - `guard`: the catch_unwind wrapper every C entry point runs under, generic
//!   over the caller's failure type (`FromPanic`), with a silent panic hook.
//!
//! `unsafe` appears only at libc calls and around the mapping.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod control;
pub mod device;
pub mod error;
pub mod files;
pub mod guard;
pub mod mapping;
pub mod published;
pub mod source;
mod sys;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trust;

pub use error::ReadError;
pub use files::{Config, SYSTEM};
pub use guard::{FromPanic, guard};
pub use mapping::Mapping;
pub use published::{Published, open_pair};
pub use source::{Source, with_snapshot};
pub use trust::{Pinned, TrustedDir, open_snapshot};
