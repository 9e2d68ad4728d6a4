//! The account stage: host login policy for directory users. It runs for
//! every login method (keys, certificates, tokens, passwords), so this is
//! where the policy holds for all of them.
//!
//! Decisions, in order:
//! 1. A name in /etc/passwd is a local account: PAM_IGNORE. Local accounts
//!    always win (nsswitch `files zt`) and the agent never publishes a name
//!    that clashes with one, so this needs no snapshot: root and break-glass
//!    accounts keep working when the snapshot is missing or broken.
//! 2. No snapshot that opens: if NSS still resolves the name, PAM_IGNORE.
//!    nss_zt reads the same file and answers nothing without it, so the
//!    account came from another source (sssd, LDAP, winbind, extrausers)
//!    and its own modules decide; refusing it here would lock those users
//!    out of every host where zt is installed but not (yet) synced, since
//!    the profile says `account required pam_zt.so`. A name NSS does not
//!    resolve (a zt user while the snapshot is gone) gets
//!    PAM_AUTHINFO_UNAVAIL: nothing can vouch for it, so it must never be
//!    success. A snapshot that opens but whose private file is unusable
//!    stays PAM_AUTHINFO_UNAVAIL (the public part says whose name it is).
//! 3. Not in the snapshot: PAM_IGNORE (another source's user, e.g. sssd).
//! 4. In the snapshot but in no login group: PAM_PERM_DENIED. The agent only
//!    publishes enabled users of login groups, so this is a second check of
//!    the private file's group flags.
//! 5. The last good sync is older than `login.max_offline`: PAM_PERM_DENIED,
//!    "offline for too long" (the user keeps resolving, so files keep their
//!    owner, but cannot log in).

use std::path::Path;

use crate::directory::{DirUser, Directory};
use crate::status::Failure;

pub fn account<D: Directory>(
    user: &[u8],
    is_local: impl FnOnce(&[u8]) -> bool,
    open: impl FnOnce() -> Result<D, Failure>,
    resolves: impl FnOnce(&[u8]) -> bool,
    now: u64,
) -> Result<DirUser, Failure> {
    if is_local(user) {
        return Err(Failure::Ignore("local user"));
    }
    let dir = match open() {
        Ok(dir) => dir,
        Err(_) if resolves(user) => {
            return Err(Failure::Ignore(
                "no usable snapshot; the name resolves through another NSS source",
            ));
        }
        Err(f) => return Err(f),
    };
    let Some(u) = dir.user_by_name(user)? else {
        return Err(Failure::Ignore("not a directory user"));
    };
    if !u.in_login_group {
        return Err(Failure::Denied("not in a login group".into()));
    }
    let limit = dir.max_offline_secs()?;
    if limit > 0 {
        let age = now.saturating_sub(dir.last_good_sync()?);
        if age > limit {
            return Err(Failure::Denied(format!(
                "offline for too long (last good sync {age} s ago, limit {limit} s)"
            )));
        }
    }
    Ok(u)
}

/// Does NSS resolve `name` (getpwnam_r, every source in nsswitch.conf)?
/// Asked only when no snapshot opens, when nss_zt answers nothing, so a
/// yes comes from another source. Errors (ERANGE past 1 MiB, I/O) count
/// as no: then the name is refused, as before.
pub fn resolves_in_nss(name: &[u8]) -> bool {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return false;
    };
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: an all-zero passwd is a valid value to be overwritten.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and buf's length is
        // passed; result points into pw or is null.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        return rc == 0 && !result.is_null();
    }
}

/// Is `name` in the passwd file? Read directly, not through getpwnam: NSS
/// would ask nss_zt too, which is exactly the question. An unreadable file
/// counts as "not local" (then the snapshot must vouch for the name).
pub fn in_passwd_file(path: &Path, name: &[u8]) -> bool {
    let Ok(text) = std::fs::read(path) else {
        return false;
    };
    text.split(|&b| b == b'\n')
        .any(|line| line.split(|&b| b == b':').next() == Some(name) && !name.is_empty())
}
