//! `zt-agent lookup alice` / `alice@example.com` / `1879048200`: what NSS
//! answers from the snapshot, and if nothing, why. Emails and IdP ids come
//! from the root-only private file: as another user only names and ids resolve.

use std::path::Path;
use std::process::ExitCode;

use zt_snapshot::state::names;
use zt_snapshot::{Pair, Private, PrivateUser, Snapshot, StateDir, User};

use crate::config::AgentConfig;
use crate::identity::local::LocalAccounts;
use crate::resolve::{self, Skip};
use crate::sync::{self, Paths};

fn show(s: &Snapshot<'_>, u: &User<'_>, private: Option<&PrivateUser<'_>>) {
    let t = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    println!(
        "{}:*:{}:{}:{}:{}:{}",
        t(u.name),
        u.uid,
        u.gid,
        t(u.gecos),
        t(u.home),
        t(u.shell)
    );
    match private {
        Some(p) => println!("  email {}  idp id {}", t(p.email), t(p.idp_id)),
        None => println!("  email and idp id: in the private file (root only)"),
    }
    let mut groups = vec![format!("{}({})", t(u.name), u.gid)];
    for gid in u.groups.iter() {
        let name = s
            .group_by_gid(gid)
            .ok()
            .flatten()
            .map_or("?".into(), |g| t(g.name));
        groups.push(format!("{name}({gid})"));
    }
    println!("  groups {}", groups.join(" "));
}

fn matches(s: &Skip, key: &str) -> bool {
    s.id == key || s.email.eq_ignore_ascii_case(key) || s.name.as_deref() == Some(key)
}

pub fn lookup(config_path: &Path, paths: &Paths, key: &str) -> ExitCode {
    let local = LocalAccounts::load(&paths.host_root).unwrap_or_default();
    if local.user_names.contains(key) {
        println!("{key}: a local account (from /etc/passwd; local accounts always win over zt)");
        return ExitCode::SUCCESS;
    }
    let state = match StateDir::open(&paths.state_dir) {
        Ok(state) => state,
        Err(e) => {
            println!("{key}: cannot read the state directory: {e}");
            return ExitCode::from(2);
        }
    };
    let public = state.read_trusted(names::SNAPSHOT).ok().flatten();
    // Unreadable as an ordinary user (0600): then only public lookups work.
    let private = state.read_trusted(names::PRIVATE).ok().flatten();
    if let Some(s) = public.as_deref().and_then(|b| Snapshot::parse(b).ok()) {
        let pair = private
            .as_deref()
            .and_then(|b| Private::parse(b).ok())
            .and_then(|p| Pair::new(s, p).ok());
        let found = match key.parse::<u32>() {
            Ok(uid) => s.user_by_uid(uid),
            Err(_) if key.contains('@') => match &pair {
                Some(pair) => pair
                    .user_by_email(key.to_ascii_lowercase().as_bytes())
                    .map(|f| f.map(|(u, _)| u)),
                None => {
                    println!("{key}: looking up by email needs the private file (run as root)");
                    Ok(None)
                }
            },
            Err(_) => s.user_by_name(key.as_bytes()),
        };
        if let Ok(Some(u)) = found {
            let private_user = pair.and_then(|p| p.private.user(u.index).ok());
            show(&s, &u, private_user.as_ref());
            return ExitCode::SUCCESS;
        }
    }
    // Not in the snapshot: the last sync's notable skips, then a dry run against
    // the directory as it is now, which knows every reason.
    let st = sync::load_status(&state);
    if let Some(s) = st.skipped.iter().find(|s| matches(s, key)) {
        println!("{key}: skipped ({}): {}", s.email, s.reason);
        return ExitCode::from(2);
    }
    let dry_run = AgentConfig::load(config_path)
        .map_err(|e| e.to_string())
        .and_then(|c| {
            let d = sync::load_directory(&c)?;
            let ids = sync::load_ids(&state)?;
            Ok(resolve::resolve(&c, &d, &local, &ids))
        });
    match dry_run {
        Ok(r) => match r.skipped.iter().find(|s| matches(s, key)) {
            Some(s) => println!("{key}: skipped ({}): {}", s.email, s.reason),
            None if r
                .content
                .users
                .iter()
                .any(|u| u.name == key || u.email == key) =>
            {
                println!(
                    "{key}: in the directory and allowed here, but not yet in the snapshot: run `zt-agent sync --once`"
                )
            }
            None => println!("{key}: not in the directory"),
        },
        Err(e) => println!("{key}: not in the snapshot (cannot check the directory: {e})"),
    }
    ExitCode::from(2)
}
