use std::process::ExitCode;

use zt_snapshot::state::names;
use zt_snapshot::{Snapshot, StateDir};

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
    let state = match StateDir::open(&paths.state_dir) {
        Ok(state) => state,
        Err(e) => {
            println!("state directory: {e}; directory users do not resolve");
            return ExitCode::FAILURE;
        }
    };
    let path = state.file_path(names::SNAPSHOT);
    match state.read_trusted(names::SNAPSHOT) {
        Ok(None) => {
            println!(
                "snapshot: none at {}; directory users do not resolve",
                path.display()
            );
            healthy = false;
        }
        Err(e) => {
            println!("snapshot: {e}; directory users do not resolve");
            healthy = false;
        }
        Ok(Some(bytes)) => match Snapshot::parse(&bytes) {
            Ok(s) => println!(
                "snapshot: generation {}, {} users, {} groups, content last changed {}",
                s.generation(),
                s.user_count(),
                s.group_count(),
                ago(s.synced_at())
            ),
            Err(e) => {
                println!("snapshot: {} is unreadable: {e}", path.display());
                healthy = false;
            }
        },
    }
    let st = load_status(&state);
    if st.last_attempt == 0 {
        println!("last sync: never");
        healthy = false;
    } else {
        match &st.last_error {
            None => println!("last sync: ok, {}", ago(st.last_attempt)),
            Some(e) => {
                println!("last sync: FAILED {}: {e}", ago(st.last_attempt));
                match st.last_success {
                    Some(t) => println!("last good sync: {}", ago(t)),
                    None => println!("last good sync: never"),
                }
                healthy = false;
            }
        }
    }
    if !st.skipped.is_empty() {
        println!("skipped: {} (see `zt-agent lookup NAME`)", st.skipped.len());
        for s in &st.skipped {
            println!("  {}: {}", s.email, s.reason);
        }
    }
    for p in &st.problems {
        println!("problem: {p}");
    }
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
