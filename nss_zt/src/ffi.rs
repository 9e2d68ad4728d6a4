//! The C boundary: turning glibc's raw arguments into Rust values, and every
//! call's outcome (including a panic) into an NSS status and errno.

use std::ffi::{CStr, c_char, c_int};

use crate::status::{Failure, NssStatus};

/// Runs one entry point's body under zt-published's panic guard (a panic is
/// UNAVAIL, EIO, and prints nothing), stores the errno of a failure in
/// `*errnop` (left alone on success), returns the status.
///
/// # Safety
/// `errnop` must be null or valid for writing a `c_int`.
#[inline]
pub unsafe fn guard(errnop: *mut c_int, body: impl FnOnce() -> Result<(), Failure>) -> NssStatus {
    match zt_published::guard(body) {
        Ok(()) => NssStatus::Success,
        Err(failure) => {
            let (status, errno) = failure.status();
            if !errnop.is_null() {
                // SAFETY: non-null, and valid for writes per this function's contract.
                unsafe { *errnop = errno };
            }
            status
        }
    }
}

/// The name glibc asks for, as bytes. A null pointer finds nothing.
///
/// # Safety
/// `name` must be null or a NUL-terminated string that outlives `'a`.
pub unsafe fn c_name<'a>(name: *const c_char) -> Result<&'a [u8], Failure> {
    if name.is_null() {
        return Err(Failure::NotFound);
    }
    // SAFETY: non-null and NUL-terminated per this function's contract.
    Ok(unsafe { CStr::from_ptr(name) }.to_bytes())
}

/// The caller's buffer as a byte slice (empty if null).
///
/// # Safety
/// `buffer` must be null or valid for writes of `len` bytes for `'a`, and not
/// otherwise accessed during `'a`.
pub unsafe fn buffer<'a>(buffer: *mut c_char, len: libc::size_t) -> &'a mut [u8] {
    if buffer.is_null() {
        return &mut [];
    }
    let len = len.min(isize::MAX as usize);
    // SAFETY: non-null and valid for len bytes per this function's contract;
    // any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts_mut(buffer.cast::<u8>(), len) }
}

/// Stores a result struct for the caller.
///
/// # Safety
/// `out` must be null or valid for writing a `T`.
pub unsafe fn store<T>(out: *mut T, value: T) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::Unavail(libc::EINVAL));
    }
    // SAFETY: non-null and valid for writes per this function's contract;
    // `write` does not read or drop the (possibly uninitialised) old value.
    unsafe { out.write(value) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_becomes_unavail_eio() {
        let mut errno = 0;
        // SAFETY: test: errno is a valid local.
        let s = unsafe { guard(&mut errno, || panic!("boom")) };
        assert_eq!((s, errno), (NssStatus::Unavail, libc::EIO));
    }

    #[test]
    fn success_leaves_errno_alone_failures_set_it() {
        let mut errno = 1234;
        // SAFETY: test: errno is a valid local.
        unsafe {
            assert_eq!(guard(&mut errno, || Ok(())), NssStatus::Success);
            assert_eq!(errno, 1234);
            assert_eq!(
                guard(&mut errno, || Err(Failure::Range)),
                NssStatus::TryAgain
            );
            assert_eq!(errno, libc::ERANGE);
            assert_eq!(
                guard(&mut errno, || Err(Failure::NotFound)),
                NssStatus::NotFound
            );
            assert_eq!(errno, libc::ENOENT);
            assert_eq!(
                guard(std::ptr::null_mut(), || Err(Failure::NotFound)),
                NssStatus::NotFound
            );
        }
    }

    #[test]
    fn null_arguments_are_handled() {
        // SAFETY: test: null pointers are accepted by contract.
        unsafe {
            assert_eq!(c_name(std::ptr::null()), Err(Failure::NotFound));
            assert!(buffer(std::ptr::null_mut(), 100).is_empty());
            assert_eq!(
                store::<u32>(std::ptr::null_mut(), 1),
                Err(Failure::Unavail(libc::EINVAL))
            );
        }
    }
}
