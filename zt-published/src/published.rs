//! One-shot reads of the published files for root readers: zt-agent's
//! read-only commands and (soon) pam_zt. Not thread-local and not cached:
//! open, check, map, use, drop.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use zt_snapshot::{Pair, Private, Snapshot};

use crate::error::ReadError;
use crate::files::{PRIVATE_C, SYSTEM};
use crate::mapping::Mapping;
use crate::trust::{Pinned, TrustedDir};

/// The published files, mapped after every trust check.
pub struct Published {
    snapshot: Pinned,
    /// The root-only companion, or why it could not be mapped (it is 0600, so
    /// an ordinary user gets "unreadable"; an older agent may not write it).
    private: Result<Mapping, ReadError>,
}

impl Published {
    /// The public snapshot: what NSS serves.
    pub fn snapshot(&self) -> Result<Snapshot<'_>, ReadError> {
        self.snapshot.snapshot()
    }

    /// The public snapshot with its private twin (emails, IdP ids, login
    /// flags), refused unless both are from the same publication: same
    /// generation, same counts. A reader that sees a publish in progress (the
    /// agent renames the private file first) gets Corrupt and may open again.
    pub fn pair(&self) -> Result<Pair<'_>, ReadError> {
        let private = self.private.as_ref().map_err(|e| *e)?;
        let private = Private::parse(private.bytes())?;
        Ok(Pair::new(self.snapshot()?, private)?)
    }
}

/// Opens `state_dir` trusted (root-owned, not group/other writable, not a
/// symlink) and maps the public snapshot and the private companion in it,
/// relative to that fd. Only the public snapshot is required; `pair` says
/// why the private part is missing.
pub fn open_pair(state_dir: &Path) -> Result<Published, ReadError> {
    open_pair_owned_by(state_dir, 0)
}

/// `open_pair` with another required owner (tests that do not run as root).
pub fn open_pair_owned_by(state_dir: &Path, owner: libc::uid_t) -> Result<Published, ReadError> {
    let dir = CString::new(state_dir.as_os_str().as_bytes())
        .map_err(|_| ReadError::Unreadable(libc::EINVAL))?;
    let dir = TrustedDir::open(&dir, owner)?;
    let snapshot = dir.pin(SYSTEM.snapshot)?;
    let private = dir.map(PRIVATE_C, zt_snapshot::format::HEADER_LEN);
    Ok(Published { snapshot, private })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TempStateDir, content};

    #[test]
    fn the_pair_is_read_only_when_both_files_match() {
        let d = TempStateDir::new("pair");
        let c = content(3, &[("alice", 1_500_001)]);
        // SAFETY: geteuid cannot fail.
        let owner = unsafe { libc::geteuid() };
        let state = zt_snapshot::StateDir::open_or_create_owned_by(&d.path, owner).unwrap();
        let mut built = zt_snapshot::build(&c).unwrap();
        built.restamp(3, 1);
        state.publish(&built).unwrap();
        let p = open_pair_owned_by(&d.path, owner).unwrap();
        let pair = p.pair().unwrap();
        let (user, private) = pair.user_by_email(b"alice@example.com").unwrap().unwrap();
        assert_eq!(
            (user.name, private.idp_id),
            (&b"alice"[..], &b"oid-alice"[..])
        );

        // a private file from another publication is refused, never mixed in
        let mut other = zt_snapshot::build(&content(4, &[("bob", 1_500_002)])).unwrap();
        other.restamp(4, 1);
        state
            .write_atomic(zt_snapshot::state::names::PRIVATE, &other.private, 0o600)
            .unwrap();
        let p = open_pair_owned_by(&d.path, owner).unwrap();
        assert!(matches!(p.pair(), Err(ReadError::Corrupt(_))));
        assert!(p.snapshot().is_ok(), "the public part still reads");

        // no private file: the public part reads, the pair says it is missing
        std::fs::remove_file(d.file("private")).unwrap();
        let p = open_pair_owned_by(&d.path, owner).unwrap();
        assert_eq!(p.pair().err(), Some(ReadError::Missing));
    }
}
