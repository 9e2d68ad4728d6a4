//! `zt-agent principals USER` (sshd's `AuthorizedPrincipalsCommand`, given
//! `%u`) and `zt-agent keys USER` (`AuthorizedKeysCommand`, given `%u`).
//!
//! Both read only the published pair through the trusted read path (no
//! configuration, no directory): they work with the agent stopped, and as the
//! unprivileged `zt` user when the private file is 0640 root:zt. Anything
//! unknown, and any error, prints nothing and exits 0 (sshd then refuses);
//! errors go to stderr, which sshd logs.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use zt_snapshot::{FormatError, Pair};

/// The principals that may log in as `account`, one per line.
pub fn principals(state_dir: &Path, account: &str) -> ExitCode {
    answer(state_dir, |pair| {
        Ok(principals_of(pair, account.as_bytes())?
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect())
    })
}

/// The directory's public keys of `account`, one per line.
pub fn keys(state_dir: &Path, account: &str) -> ExitCode {
    answer(state_dir, |pair| {
        let mut out = Vec::new();
        if let Some(u) = pair.public.user_by_name(account.as_bytes())? {
            for k in pair.private.keys(u.index)?.iter() {
                push_line(&mut out, k?);
            }
        }
        Ok(out.into_iter().map(<[u8]>::to_vec).collect())
    })
}

fn answer(
    state_dir: &Path,
    lines: impl FnOnce(&Pair<'_>) -> Result<Vec<Vec<u8>>, FormatError>,
) -> ExitCode {
    let published = match zt_published::open_pair(state_dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("zt-agent: cannot read the published files: {e}");
            return ExitCode::SUCCESS;
        }
    };
    let pair = match published.pair() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("zt-agent: cannot read the published files: {e}");
            return ExitCode::SUCCESS;
        }
    };
    match lines(&pair) {
        Ok(lines) => {
            let mut text = Vec::new();
            for l in lines {
                text.extend_from_slice(&l);
                text.push(b'\n');
            }
            let _ = std::io::stdout().lock().write_all(&text);
        }
        Err(e) => eprintln!("zt-agent: the published private file is damaged: {e}"),
    }
    ExitCode::SUCCESS
}

/// A line is printed only if it cannot break sshd's line format.
fn push_line<'a>(out: &mut Vec<&'a [u8]>, s: &'a [u8]) {
    if !s.is_empty() && !s.iter().any(|&b| b < 0x20 || b == 0x7f) && !out.contains(&s) {
        out.push(s);
    }
}

/// A directory user's own principals, and for a shared account the principals
/// of every published member of its IdP groups.
pub fn principals_of<'a>(pair: &Pair<'a>, account: &[u8]) -> Result<Vec<&'a [u8]>, FormatError> {
    let mut out = Vec::new();
    if let Some(u) = pair.public.user_by_name(account)? {
        for p in pair.private.principals(u.index)?.iter() {
            push_line(&mut out, p?);
        }
    }
    if let Some(a) = pair.private.shared_account(account)? {
        for id in a.groups.iter() {
            let id = id?;
            if id.is_empty() {
                continue;
            }
            for gi in 0..pair.private.group_count() {
                if pair.private.group(gi)?.idp_id != id {
                    continue;
                }
                for m in pair.public.group(gi)?.members.iter() {
                    for p in pair.private.principals(m as usize)?.iter() {
                        push_line(&mut out, p?);
                    }
                }
            }
        }
    }
    Ok(out)
}
