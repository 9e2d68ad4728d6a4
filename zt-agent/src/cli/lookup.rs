//! `zt-agent lookup alice` / `alice@example.com` / `1879048200`: what NSS
//! answers from the snapshot, and if nothing, why.

use std::path::Path;
use std::process::ExitCode;

use zt_snapshot::{Pair, Snapshot, StateDir, User};

use crate::config::AgentConfig;
use crate::identity::local::LocalAccounts;
use crate::resolve::{self, Skip};
use crate::sync::{self, Paths};

fn show(s: &Snapshot<'_>, pair: Option<&Pair<'_>>, u: &User<'_>, local: &LocalAccounts) {
    let t = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    crate::say!(
        "{}:*:{}:{}:{}:{}:{}",
        t(u.name),
        u.uid,
        u.gid,
        t(u.gecos),
        t(u.home),
        t(u.shell)
    );
    match pair.map(|p| p.private.user(u.index)) {
        Some(Ok(private)) => {
            crate::say!("  email {}  idp id {}", t(private.email), t(private.idp_id))
        }
        _ => crate::say!("  (email and IdP id are in the root-only private file: run as root)"),
    }
    let mut groups = vec![format!("{}({})", t(u.name), u.gid)];
    for gid in u.groups.iter() {
        // a gid the snapshot has no group for is a local group granted by
        // [[local_groups]]
        let name = s.group_by_gid(gid).ok().flatten().map_or_else(
            || {
                local
                    .gid_by_group
                    .iter()
                    .find(|(_, g)| **g == gid)
                    .map_or("?".into(), |(n, _)| format!("{n}, local"))
            },
            |g| t(g.name),
        );
        groups.push(format!("{name}({gid})"));
    }
    crate::say!("  groups {}", groups.join(" "));
}

fn matches(s: &Skip, key: &str) -> bool {
    s.id == key || s.email.eq_ignore_ascii_case(key) || s.name.as_deref() == Some(key)
}

pub fn lookup(config_path: &Path, paths: &Paths, key: &str) -> ExitCode {
    let local = LocalAccounts::load(&paths.host_root).unwrap_or_default();
    if local.user_names.contains(key) {
        crate::say!("{key}: a local account (from /etc/passwd; local accounts always win over zt)");
        return ExitCode::SUCCESS;
    }
    // Through the trusted read path (owner/mode/symlink checks), as NSS reads it.
    if let Ok(published) = zt_published::open_pair(&paths.state_dir)
        && let Ok(s) = published.snapshot()
    {
        let pair = published.pair().ok();
        let found = match key.parse::<u32>() {
            Ok(uid) => s.user_by_uid(uid),
            Err(_) if key.contains('@') => match &pair {
                Some(pair) => pair
                    .user_by_email(key.to_ascii_lowercase().as_bytes())
                    .map(|f| f.map(|(u, _)| u)),
                None => {
                    crate::say!("{key}: looking up by email needs the private file (run as root)");
                    Ok(None)
                }
            },
            Err(_) => s.user_by_name(key.as_bytes()),
        };
        if let Ok(Some(u)) = found {
            show(&s, pair.as_ref(), &u, &local);
            return ExitCode::SUCCESS;
        }
    }
    // Not in the snapshot: the last sync's notable skips, then a dry run against
    // the directory as it is now, which knows every reason.
    let state = StateDir::open(&paths.state_dir);
    let st = state.as_ref().map(sync::load_status).unwrap_or_default();
    if let Some(s) = st.skipped.iter().find(|s| matches(s, key)) {
        crate::say!("{key}: skipped ({}): {}", s.email, s.reason);
        return ExitCode::from(2);
    }
    let dry_run = AgentConfig::load(config_path)
        .map_err(|e| e.to_string())
        .and_then(|c| {
            let state = state.as_ref().map_err(|e| e.to_string())?;
            let read = sync::load_directory(&c, Some(state)).map_err(|e| e.to_string())?;
            let ids = sync::load_ids(state)?;
            // a fleet host resolves as its sync does: the fleet's names and ids
            if let Some(published) = &read.fleet {
                return Ok(crate::fleet::host::resolve(
                    &c,
                    &read.directory,
                    &local,
                    published,
                    &ids,
                ));
            }
            Ok(resolve::resolve(&c, &read.directory, &local, &ids))
        });
    match dry_run {
        Ok(r) => match r.skipped.iter().find(|s| matches(s, key)) {
            Some(s) => crate::say!("{key}: skipped ({}): {}", s.email, s.reason),
            None if r
                .content
                .users
                .iter()
                .any(|u| u.name == key || u.email == key) =>
            {
                crate::say!(
                    "{key}: in the directory and allowed here, but not yet in the snapshot: run `zt-agent sync --once`"
                )
            }
            None => crate::say!("{key}: not in the directory"),
        },
        Err(e) => crate::say!("{key}: not in the snapshot (cannot check the directory: {e})"),
    }
    ExitCode::from(2)
}
