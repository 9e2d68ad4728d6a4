//! Why the published files cannot be read. Callers map this onto their own
//! status table (NSS, PAM, an agent message); `errno` is the NSS mapping's
//! input and never a claim that a user does not exist.

use std::ffi::c_int;
use std::fmt;

use zt_snapshot::FormatError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The state directory or the file does not exist.
    Missing,
    /// It exists but must not be trusted: owner, mode, type, a symlink.
    Untrusted(&'static str),
    /// A system call failed with this errno (open, fstat, mmap).
    Unreadable(c_int),
    /// The file is not a valid snapshot.
    Corrupt(FormatError),
    /// The reader cannot run on this thread right now (thread teardown, re-entry).
    Busy,
}

impl ReadError {
    /// The errno an NSS module reports with UNAVAIL: ENOENT for a missing
    /// file, EAGAIN for busy, EIO for everything that must not be used.
    pub fn errno(self) -> c_int {
        match self {
            ReadError::Missing => libc::ENOENT,
            ReadError::Busy => libc::EAGAIN,
            ReadError::Untrusted(_) | ReadError::Unreadable(_) | ReadError::Corrupt(_) => libc::EIO,
        }
    }
}

impl From<FormatError> for ReadError {
    fn from(e: FormatError) -> Self {
        ReadError::Corrupt(e)
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Missing => write!(f, "does not exist"),
            ReadError::Untrusted(why) => write!(f, "not trusted: {why}"),
            ReadError::Unreadable(e) => {
                write!(f, "unreadable: {}", std::io::Error::from_raw_os_error(*e))
            }
            ReadError::Corrupt(e) => write!(f, "{e}"),
            ReadError::Busy => write!(f, "reader busy on this thread"),
        }
    }
}

impl std::error::Error for ReadError {}
