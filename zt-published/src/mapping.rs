//! A read-only, shared mapping of a whole file.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::ReadError;

/// A read-only, shared mapping of a file, unmapped on drop. Only ever made of
/// files that passed the trust checks (`trust`), which the agent never
/// modifies after publication.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and of an immutable file; reading it from
// any thread is fine, and munmap (on drop) may be called from any thread.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` read-only.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> Result<Mapping, ReadError> {
        if len == 0 {
            return Err(ReadError::Untrusted("empty file"));
        }
        // SAFETY: a fresh mapping chosen by the kernel (addr NULL) cannot alias
        // any Rust object; the arguments are plain values and fd is open.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(ReadError::Unreadable(crate::sys::errno()));
        }
        NonNull::new(p.cast::<u8>())
            .map(|ptr| Mapping { ptr, len })
            .ok_or(ReadError::Unreadable(libc::EIO))
    }

    #[inline]
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is a live PROT_READ mapping owned by self (only
        // Drop unmaps it). The file behind it is root-owned and not writable
        // by group/other, in a directory with the same checks (verified before
        // mapping), and the agent never modifies a published snapshot (it
        // renames a new file over it), so the bytes do not change while
        // borrowed. Only root truncating the file could break this (SIGBUS),
        // which the publication protocol never does.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The first 8 bytes as a u64, read atomically: the generation counter,
    /// the one value the agent updates in place.
    #[inline]
    pub(crate) fn load_u64(&self) -> u64 {
        if self.len < 8 {
            return 0;
        }
        let p = self.ptr.as_ptr().cast::<u64>();
        // SAFETY: p is the start of a live mapping, so page-aligned (aligned
        // for u64) and valid for 8 bytes (len >= 8, and the agent never
        // truncates the file). The only writer is the kernel on the agent's
        // behalf (pwrite); we only ever load, and an atomic load of an aligned
        // u64 is a plain load on x86_64/aarch64, so the read-only mapping is
        // fine. A torn value (pwrite is not guaranteed to be a single store)
        // only makes a reader refresh once more: the value is a "something
        // changed" signal, never data.
        unsafe { AtomicU64::from_ptr(p) }.load(Ordering::Acquire)
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing borrows the
        // bytes any more (borrows of `self` have ended).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
