//! NSS status codes and the one error type the module's Rust code returns.
//!
//! glibc's contract (nss.h): SUCCESS leaves `*errnop` alone; NOTFOUND means
//! "no such entry" (errno ENOENT); UNAVAIL means "this source cannot answer"
//! (no usable snapshot); TRYAGAIN with ERANGE asks glibc to retry with a larger
//! buffer, with ENOMEM reports an allocation failure.

use std::ffi::c_int;

use zt_published::{FromPanic, ReadError};
use zt_snapshot::FormatError;

use crate::pack::PackError;

/// `enum nss_status` from glibc's nss.h (an `int` in the C ABI).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NssStatus {
    TryAgain = -2,
    Unavail = -1,
    NotFound = 0,
    Success = 1,
}

/// Why a call did not succeed; each maps to exactly one (status, errno) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No such user or group, or the end of an enumeration.
    NotFound,
    /// No usable snapshot (missing, wrong owner, corrupt) or the module cannot
    /// run right now (thread teardown, re-entry, enumeration lock taken).
    Unavail(c_int),
    /// The caller's buffer is too small; glibc retries with a larger one.
    Range,
    /// realloc failed in initgroups_dyn.
    NoMem,
}

/// The snapshot file does not exist.
pub const MISSING: Failure = Failure::Unavail(libc::ENOENT);
/// The snapshot exists but must not be used (owner, mode, type, contents).
pub const UNUSABLE: Failure = Failure::Unavail(libc::EIO);
/// The module cannot run on this thread right now (teardown, re-entry, lock held).
pub const BUSY: Failure = Failure::Unavail(libc::EAGAIN);

impl Failure {
    /// The status to return and the errno to store in `*errnop`.
    pub fn status(self) -> (NssStatus, c_int) {
        match self {
            Failure::NotFound => (NssStatus::NotFound, libc::ENOENT),
            Failure::Unavail(errno) => (NssStatus::Unavail, errno),
            Failure::Range => (NssStatus::TryAgain, libc::ERANGE),
            Failure::NoMem => (NssStatus::TryAgain, libc::ENOMEM),
        }
    }
}

impl From<FormatError> for Failure {
    /// A corrupt snapshot is "unavailable", never "not found": glibc must not
    /// conclude that a user does not exist because a file is damaged.
    fn from(_: FormatError) -> Self {
        UNUSABLE
    }
}

impl From<ReadError> for Failure {
    /// Missing is ENOENT, busy EAGAIN, anything untrusted or corrupt EIO: all
    /// UNAVAIL, never NOTFOUND.
    fn from(e: ReadError) -> Self {
        Failure::Unavail(e.errno())
    }
}

impl FromPanic for Failure {
    /// A panic caught at the boundary.
    fn from_panic() -> Self {
        UNUSABLE
    }
}

impl From<PackError> for Failure {
    fn from(e: PackError) -> Self {
        match e {
            PackError::Range => Failure::Range,
            PackError::Corrupt => UNUSABLE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_glibc() {
        assert_eq!(NssStatus::TryAgain as c_int, -2);
        assert_eq!(NssStatus::Unavail as c_int, -1);
        assert_eq!(NssStatus::NotFound as c_int, 0);
        assert_eq!(NssStatus::Success as c_int, 1);
        assert_eq!(
            std::mem::size_of::<NssStatus>(),
            std::mem::size_of::<c_int>()
        );
    }

    #[test]
    fn failures_map_to_status_and_errno() {
        assert_eq!(
            Failure::NotFound.status(),
            (NssStatus::NotFound, libc::ENOENT)
        );
        assert_eq!(MISSING.status(), (NssStatus::Unavail, libc::ENOENT));
        assert_eq!(UNUSABLE.status(), (NssStatus::Unavail, libc::EIO));
        assert_eq!(Failure::Range.status(), (NssStatus::TryAgain, libc::ERANGE));
        assert_eq!(Failure::NoMem.status(), (NssStatus::TryAgain, libc::ENOMEM));
        let corrupt = FormatError {
            what: "x",
            offset: 0,
        };
        assert_eq!(Failure::from(corrupt), UNUSABLE);
        assert_eq!(Failure::from(ReadError::Missing), MISSING);
        assert_eq!(Failure::from(ReadError::Busy), BUSY);
        assert_eq!(Failure::from(ReadError::Untrusted("x")), UNUSABLE);
        assert_eq!(Failure::from(ReadError::Unreadable(libc::EACCES)), UNUSABLE);
        assert_eq!(Failure::from(ReadError::Corrupt(corrupt)), UNUSABLE);
        assert_eq!(Failure::from_panic(), UNUSABLE);
    }
}
