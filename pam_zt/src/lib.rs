//! pam_zt: the Linux-PAM module of zt (`pam_zt.so`).
//!
//! - auth: a Cloudflare Access or OIDC token (from the conversation or
//!   PAM_AUTHTOK) verified against the issuer keys the agent publishes in the
//!   root-only private file, and matched with the directory user PAM_USER.
//!   An answer that is not a token is left to the next module (PAM_IGNORE).
//! - account: host login policy for directory users (login group, offline
//!   limit); local users are PAM_IGNORE.
//! - session: the home directory on first login.
//! - every attempt: one audit record to syslog (authpriv) and
//!   /var/log/zt/auth.jsonl.
//!
//! This file holds only the `extern "C"` entry points libpam looks up by
//! name, each a few lines over `stages` (tested with a mock handle). Every
//! one runs under zt-published's guard: a panic becomes PAM_SYSTEM_ERR,
//! never unwinds into sshd/sudo/su, and prints nothing. The module never
//! writes to stdout/stderr.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod account;
pub mod args;
pub mod audit;
pub mod auth;
pub mod device;
pub mod directory;
pub mod ffi;
pub mod handler;
pub mod home;
pub mod live;
pub mod sshkey;
pub mod stages;
pub mod status;
pub mod token;

use std::ffi::{c_char, c_int};
use std::path::Path;

use crate::ffi::{Handle, PamHandleT};
use crate::stages::{PASSWD, Published};
use crate::status::Failure;

/// The agent's control-socket client for key refreshes.
const REFRESH: live::RefreshFn = zt_published::control::request_key_refresh;

/// Runs `body` with the handle and the arguments under the guard.
///
/// # Safety
/// libpam's contract: `pamh` is the live handle of this call and `argv`
/// holds `argc` C strings.
unsafe fn run(
    pamh: *mut PamHandleT,
    argc: c_int,
    argv: *const *const c_char,
    body: impl FnOnce(&mut Handle, &[&str]) -> c_int,
) -> c_int {
    let r = zt_published::guard(|| {
        // SAFETY: per this function's contract.
        let mut handle = unsafe { Handle::new(pamh) }?;
        // SAFETY: per this function's contract.
        let argv = unsafe { ffi::args(argc, argv) }?;
        Ok::<c_int, Failure>(body(&mut handle, &argv))
    });
    r.unwrap_or_else(|f| f.code())
}

/// # Safety
/// Called by libpam with a live handle and `argc` C strings in `argv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_authenticate(
    pamh: *mut PamHandleT,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam's contract, see above.
    unsafe {
        run(pamh, argc, argv, |h, a| {
            stages::authenticate(h, a, &Published(REFRESH), stages::now())
        })
    }
}

/// # Safety
/// As `pam_sm_authenticate`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_acct_mgmt(
    pamh: *mut PamHandleT,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam's contract.
    unsafe {
        run(pamh, argc, argv, |h, a| {
            stages::account(h, a, &Published(REFRESH), Path::new(PASSWD), stages::now())
        })
    }
}

/// # Safety
/// As `pam_sm_authenticate`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_open_session(
    pamh: *mut PamHandleT,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam's contract.
    unsafe {
        run(pamh, argc, argv, |h, a| {
            stages::open_session(h, a, &Published(REFRESH), Path::new(PASSWD), stages::now())
        })
    }
}

/// # Safety
/// As `pam_sm_authenticate`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_setcred(
    pamh: *mut PamHandleT,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam's contract.
    unsafe { run(pamh, argc, argv, |_, _| stages::setcred()) }
}

/// # Safety
/// As `pam_sm_authenticate`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_close_session(
    pamh: *mut PamHandleT,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam's contract.
    unsafe { run(pamh, argc, argv, |_, _| stages::close_session()) }
}

/// # Safety
/// As `pam_sm_authenticate`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_chauthtok(
    pamh: *mut PamHandleT,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam's contract.
    unsafe { run(pamh, argc, argv, |_, _| stages::chauthtok()) }
}

#[cfg(test)]
mod tests;
