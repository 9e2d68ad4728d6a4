//! nss_zt: glibc NSS module serving the zt snapshot (libnss_zt.so.2).
//!
//! This file holds only the `extern "C"` entry points glibc looks up by name
//! (`_nss_zt_<function>`), each a few lines over the tested Rust below:
//! `source` (the per-thread snapshot from zt-published, the trusted read path
//! shared with pam_zt and the agent), `lookup` (find + pack), `pack` (struct
//! passwd/group into the caller's buffer), `initgroups`, `enumerate`, `status`
//! (the one NSS code table) and `ffi` (raw arguments, and zt-published's panic
//! guard mapped to NSS codes).
//!
//! Every entry point runs under `ffi::guard`: a panic becomes UNAVAIL, never
//! unwinds into C, and prints nothing.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod enumerate;
pub mod ffi;
pub mod initgroups;
pub mod lookup;
pub mod pack;
pub mod source;
pub mod status;

use std::ffi::{c_char, c_int, c_long};

use libc::{gid_t, group, passwd, size_t, uid_t};

use crate::ffi::{buffer, c_name, guard, store};
use crate::source::with_snapshot;
pub use crate::status::NssStatus;

/// # Safety
/// glibc's contract: `name` is a C string, `pwd` a writable `struct passwd`,
/// `buffer` writable for `buflen` bytes, `errnop` a writable int.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _nss_zt_getpwnam_r(
    name: *const c_char,
    pwd: *mut passwd,
    buf: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> NssStatus {
    // SAFETY (all blocks in this function): the pointers come from glibc under
    // the contract documented above.
    unsafe {
        guard(errnop, || {
            let (name, buf) = (c_name(name)?, buffer(buf, buflen));
            let entry = with_snapshot(|s| lookup::passwd_by_name(s, name, buf))?;
            store(pwd, entry)
        })
    }
}

/// # Safety
/// As `_nss_zt_getpwnam_r`, without the name.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _nss_zt_getpwuid_r(
    uid: uid_t,
    pwd: *mut passwd,
    buf: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> NssStatus {
    // SAFETY: pointers from glibc, see the function's contract.
    unsafe {
        guard(errnop, || {
            let buf = buffer(buf, buflen);
            let entry = with_snapshot(|s| lookup::passwd_by_uid(s, uid, buf))?;
            store(pwd, entry)
        })
    }
}

/// # Safety
/// No pointers; unsafe only because it is an exported C symbol.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _nss_zt_setpwent(_stayopen: c_int) -> NssStatus {
    // SAFETY: a null errnop is accepted by `guard`.
    unsafe {
        guard(std::ptr::null_mut(), || {
            enumerate::with_cursor(&enumerate::PASSWD, |c| c.rewind())
        })
    }
}

/// # Safety
/// `pwd` a writable `struct passwd`, `buffer` writable for `buflen` bytes,
/// `errnop` a writable int.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _nss_zt_getpwent_r(
    pwd: *mut passwd,
    buf: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> NssStatus {
    // SAFETY: pointers from glibc, see the function's contract.
    unsafe {
        guard(errnop, || {
            let buf = buffer(buf, buflen);
            let entry = enumerate::with_cursor(&enumerate::PASSWD, |c| {
                c.next(|s| s.user_count(), |s, i| lookup::passwd_at(s, i, buf))
            })?;
            store(pwd, entry)
        })
    }
}

/// # Safety
/// No pointers; unsafe only because it is an exported C symbol.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _nss_zt_endpwent() -> NssStatus {
    // SAFETY: a null errnop is accepted by `guard`.
    unsafe {
        guard(std::ptr::null_mut(), || {
            enumerate::with_cursor(&enumerate::PASSWD, |c| {
                c.close();
                Ok(())
            })
        })
    }
}

/// # Safety
/// `name` is a C string, `grp` a writable `struct group`, `buffer` writable
/// for `buflen` bytes, `errnop` a writable int.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _nss_zt_getgrnam_r(
    name: *const c_char,
    grp: *mut group,
    buf: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> NssStatus {
    // SAFETY: pointers from glibc, see the function's contract.
    unsafe {
        guard(errnop, || {
            let (name, buf) = (c_name(name)?, buffer(buf, buflen));
            let entry = with_snapshot(|s| lookup::group_by_name(s, name, buf))?;
            store(grp, entry)
        })
    }
}

/// # Safety
/// As `_nss_zt_getgrnam_r`, without the name.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _nss_zt_getgrgid_r(
    gid: gid_t,
    grp: *mut group,
    buf: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> NssStatus {
    // SAFETY: pointers from glibc, see the function's contract.
    unsafe {
        guard(errnop, || {
            let buf = buffer(buf, buflen);
            let entry = with_snapshot(|s| lookup::group_by_gid(s, gid, buf))?;
            store(grp, entry)
        })
    }
}

/// # Safety
/// No pointers; unsafe only because it is an exported C symbol.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _nss_zt_setgrent(_stayopen: c_int) -> NssStatus {
    // SAFETY: a null errnop is accepted by `guard`.
    unsafe {
        guard(std::ptr::null_mut(), || {
            enumerate::with_cursor(&enumerate::GROUP, |c| c.rewind())
        })
    }
}

/// # Safety
/// `grp` a writable `struct group`, `buffer` writable for `buflen` bytes,
/// `errnop` a writable int.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _nss_zt_getgrent_r(
    grp: *mut group,
    buf: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> NssStatus {
    // SAFETY: pointers from glibc, see the function's contract.
    unsafe {
        guard(errnop, || {
            let buf = buffer(buf, buflen);
            let entry = enumerate::with_cursor(&enumerate::GROUP, |c| {
                c.next(|s| s.group_count(), |s, i| lookup::group_at(s, i, buf))
            })?;
            store(grp, entry)
        })
    }
}

/// # Safety
/// No pointers; unsafe only because it is an exported C symbol.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _nss_zt_endgrent() -> NssStatus {
    // SAFETY: a null errnop is accepted by `guard`.
    unsafe {
        guard(std::ptr::null_mut(), || {
            enumerate::with_cursor(&enumerate::GROUP, |c| {
                c.close();
                Ok(())
            })
        })
    }
}

/// # Safety
/// glibc's internal_getgrouplist contract: `user` a C string; `start`, `size`
/// writable longs with 0 <= *start <= *size; `*groupsp` a malloc'ed array of
/// `*size` gids (the first `*start` in use); `errnop` a writable int.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _nss_zt_initgroups_dyn(
    user: *const c_char,
    group: gid_t,
    start: *mut c_long,
    size: *mut c_long,
    groupsp: *mut *mut gid_t,
    limit: c_long,
    errnop: *mut c_int,
) -> NssStatus {
    // SAFETY: pointers from glibc, see the function's contract.
    unsafe {
        guard(errnop, || {
            let user = c_name(user)?;
            let mut list = initgroups::CallerGids::new(start, size, groupsp)?;
            with_snapshot(|s| initgroups::for_user(s, user, group, &mut list, limit))
        })
    }
}

/// `Err(e)` of a result whose Ok type need not be Debug (libc structs are not).
#[cfg(test)]
pub(crate) fn fail<T, E>(r: Result<T, E>) -> E {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}
