use std::process::ExitCode;

use zt_published::ReadError;
use zt_snapshot::StateDir;

use crate::status::now;
use crate::sync::{Paths, load_status};

fn ago(t: u64) -> String {
    let s = now().saturating_sub(t);
    match s {
        0..120 => format!("{s} s ago"),
        120..7200 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// Exit 0 when a snapshot is in force and the last sync worked; 1 otherwise
/// (usable from monitoring).
pub fn status(paths: &Paths) -> ExitCode {
    let mut healthy = true;
    let path = paths.state_dir.join(zt_published::files::SNAPSHOT);
    // Through the trusted read path (owner/mode/symlink checks), as NSS reads it.
    match zt_published::open_pair(&paths.state_dir) {
        Err(ReadError::Missing) => {
            crate::say!(
                "snapshot: none at {}; directory users do not resolve",
                path.display()
            );
            healthy = false;
        }
        Err(e) => {
            crate::say!(
                "snapshot: {} is unusable ({e}); directory users do not resolve",
                path.display()
            );
            healthy = false;
        }
        Ok(published) => match published.snapshot() {
            Ok(s) => crate::say!(
                "snapshot: generation {}, {} users, {} groups, content last changed {}",
                s.generation(),
                s.user_count(),
                s.group_count(),
                ago(s.synced_at())
            ),
            Err(e) => {
                crate::say!("snapshot: {} is unreadable: {e}", path.display());
                healthy = false;
            }
        },
    }
    // status.json is root-only: read it through the same trusted directory
    let st = StateDir::open(&paths.state_dir)
        .map(|state| load_status(&state))
        .unwrap_or_default();
    if st.last_attempt == 0 {
        crate::say!("last sync: never");
        healthy = false;
    } else {
        match &st.last_error {
            None => crate::say!("last sync: ok, {}", ago(st.last_attempt)),
            Some(e) => {
                crate::say!("last sync: FAILED {}: {e}", ago(st.last_attempt));
                match st.last_success {
                    Some(t) => crate::say!("last good sync: {}", ago(t)),
                    None => crate::say!("last good sync: never"),
                }
                healthy = false;
            }
        }
    }
    if let Some(line) = StateDir::open(&paths.state_dir)
        .ok()
        .and_then(|state| crate::fleet::fetch::held_line(&state, now()))
    {
        crate::say!("{line}");
    }
    if let Some(why) = crate::status::frozen(&st, now())
        && st.last_attempt != 0
    {
        crate::say!("FROZEN: {why}");
        healthy = false;
    }
    if st.outcome == Some(Ok(crate::outcome::Completed::HeldBack)) {
        crate::say!(
            "HELD BACK: removals of people missing from the directory wait for an admin \
             (see the problem below; `zt-agent sync --once --force` applies them)"
        );
        healthy = false;
    }
    if let Some(sudo) = &st.sudo {
        if let Some(e) = &sudo.error {
            crate::say!("SUDO RULES NOT UPDATED: {e}");
            healthy = false;
        } else if sudo.rules > 0 {
            crate::say!(
                "sudo: {} rules in {}",
                sudo.rules,
                paths
                    .sudoers
                    .dir
                    .join(crate::sudo::install::FILE_NAME)
                    .display()
            );
        }
        for p in &sudo.problems {
            crate::say!("sudo problem: {p}");
        }
    }
    if !st.skipped.is_empty() {
        crate::say!("skipped: {} (see `zt-agent lookup NAME`)", st.skipped.len());
        for s in &st.skipped {
            crate::say!("  {}: {}", s.email, s.reason);
        }
    }
    for p in &st.problems {
        crate::say!("problem: {p}");
    }
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `status --json`: the same verdict as [`status`], as one JSON object.
pub fn status_json(paths: &Paths) -> ExitCode {
    let health = crate::monitoring::health(&paths.state_dir);
    match serde_json::to_string_pretty(&health) {
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("zt-agent status --json: {e}");
            return ExitCode::FAILURE;
        }
    }
    if health.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
