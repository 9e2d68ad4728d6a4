//! One-shot reads of the published files for root readers: zt-agent's
//! read-only commands and (soon) pam_zt. Not thread-local and not cached:
//! open, check, map, use, drop.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use zt_snapshot::Snapshot;

use crate::error::ReadError;
use crate::files::SYSTEM;
use crate::trust::{Pinned, TrustedDir};

/// The published files, mapped after every trust check.
pub struct Published {
    snapshot: Pinned,
    // TODO(private companion): `private: Pinned` once the agent publishes the
    // root-only file (`files::PRIVATE`, 0600) next to the snapshot;
    // `open_pair` maps it from the same directory fd and checks that both
    // carry the same generation.
}

impl Published {
    /// The public snapshot: what NSS serves.
    pub fn snapshot(&self) -> Result<Snapshot<'_>, ReadError> {
        self.snapshot.snapshot()
    }
}

/// Opens `state_dir` trusted (root-owned, not group/other writable, not a
/// symlink) and maps the published files in it, relative to that fd.
///
/// Today that is the public snapshot only; the merge with the private
/// companion adds its view here (see the TODO on `Published`).
pub fn open_pair(state_dir: &Path) -> Result<Published, ReadError> {
    open_pair_owned_by(state_dir, 0)
}

/// `open_pair` with another required owner (tests that do not run as root).
pub fn open_pair_owned_by(state_dir: &Path, owner: libc::uid_t) -> Result<Published, ReadError> {
    let dir = CString::new(state_dir.as_os_str().as_bytes())
        .map_err(|_| ReadError::Unreadable(libc::EINVAL))?;
    let dir = TrustedDir::open(&dir, owner)?;
    let snapshot = dir.pin(SYSTEM.snapshot)?;
    Ok(Published { snapshot })
}
