//! The libc calls this crate makes, each behind a safe function.

use std::ffi::{CStr, c_int};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub(crate) fn errno() -> c_int {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// open(2) of a directory, refusing a symlink as the last component.
pub(crate) fn open_dir(path: &CStr) -> Result<OwnedFd, c_int> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: path is a valid NUL-terminated string; open has no other preconditions.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    owned(fd)
}

/// openat(2) of a file in `dir` for reading, refusing a symlink. O_NONBLOCK:
/// if a FIFO sits at the name, open must not hang; fstat then refuses it.
pub(crate) fn open_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, c_int> {
    let flags =
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: dir is an open fd; name is a valid NUL-terminated string.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
    owned(fd)
}

fn owned(fd: c_int) -> Result<OwnedFd, c_int> {
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: fd was just returned by open/openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn fstat(fd: BorrowedFd<'_>) -> Result<libc::stat, c_int> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fd is open; st is a writable stat buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(errno());
    }
    // SAFETY: fstat succeeded, so it initialised st.
    Ok(unsafe { st.assume_init() })
}

/// fstatat(2) with AT_SYMLINK_NOFOLLOW: a symlink is reported as one.
pub(crate) fn fstat_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<libc::stat, c_int> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: dir is open; name is NUL-terminated; st is a writable stat buffer.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(errno());
    }
    // SAFETY: fstatat succeeded, so it initialised st.
    Ok(unsafe { st.assume_init() })
}

/// Seconds on CLOCK_MONOTONIC_COARSE: answered by the vDSO, no system call.
#[inline]
pub(crate) fn coarse_seconds() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
        // Cannot happen on Linux; forcing a recheck is the safe answer.
        return i64::MAX;
    }
    ts.tv_sec
}
