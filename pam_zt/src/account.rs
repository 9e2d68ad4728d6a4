//! The account stage: host login policy for directory users. It runs for
//! every login method (keys, certificates, tokens, passwords), so this is
//! where the policy holds for all of them.
//!
//! Decisions, in order:
//! 1. A name in /etc/passwd is a local account: PAM_IGNORE. Local accounts
//!    always win (nsswitch `files zt`) and the agent never publishes a name
//!    that clashes with one, so this needs no snapshot: root and break-glass
//!    accounts keep working when the snapshot is missing or broken.
//! 2. No usable snapshot (or no private file): PAM_AUTHINFO_UNAVAIL. The
//!    name is not local and nothing can vouch for it; it must never be
//!    success (and PAM_IGNORE could let a permissive stack pass it).
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
    now: u64,
) -> Result<DirUser, Failure> {
    if is_local(user) {
        return Err(Failure::Ignore("local user"));
    }
    let dir = open()?;
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
