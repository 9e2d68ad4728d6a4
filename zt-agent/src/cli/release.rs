//! `zt-agent release NAME`: frees a held name. A name stays with the person who
//! held it through absences and renames (see identity/holders.rs); only an admin
//! hands it to someone else, with this command. Ids are never released.
//!
//! A name whose holder is still in the published snapshot is not released:
//! every sync re-remembers the names it publishes, so the release would be
//! silently undone at the next sync. The holder must leave the directory (or
//! the login groups, or get another name through `[users.name_overrides]`) and
//! a sync must publish that first; then the name can be released.

use std::process::ExitCode;

use zt_snapshot::StateDir;
use zt_snapshot::state::{modes, names};

use zt_published::ReadError;

use crate::sync::{self, Paths};

pub fn release(paths: &Paths, name: &str) -> ExitCode {
    match release_name(paths, name) {
        Ok(Some(holder)) => {
            crate::say!(
                "released {name:?} (held by {holder:?}); the next sync may give it to someone else"
            );
            ExitCode::SUCCESS
        }
        Ok(None) => {
            crate::say!("{name:?} is not held by anyone");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!("release {name:?}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Removes `name` from ids.json under the state lock; returns its holder.
/// Refuses (Err) while the name is still published.
pub fn release_name(paths: &Paths, name: &str) -> Result<Option<String>, String> {
    let state = StateDir::open(&paths.state_dir).map_err(|e| e.to_string())?;
    // under the lock no sync can publish between the check and the write
    let _lock = state.lock().map_err(|e| e.to_string())?;
    let mut ids = sync::load_ids(&state)?;
    let Some(holder) = ids.release_name(name) else {
        return Ok(None);
    };
    if let Some(uid) = published_uid(paths, name)? {
        return Err(format!(
            "not released: {name:?} is still published (uid {uid}, held by {holder:?}), and the \
             next sync would give it back to its holder. Remove the holder from the directory \
             or its login groups (or give them another name in [users.name_overrides]), run \
             `zt-agent sync --once`, then release {name:?}"
        ));
    }
    let text = serde_json::to_vec_pretty(&ids).map_err(|e| e.to_string())?;
    state
        .write_atomic(names::IDS, &text, modes::PRIVATE)
        .map_err(|e| format!("writing {}: {e}", state.file_path(names::IDS).display()))?;
    Ok(Some(holder))
}

/// The uid `name` has in the published snapshot, read through the same trusted
/// path as NSS; no snapshot yet means nothing is published. Any other failure
/// refuses the release: we cannot tell whether the next sync would undo it.
fn published_uid(paths: &Paths, name: &str) -> Result<Option<u32>, String> {
    let cannot = |e: &dyn std::fmt::Display| {
        format!(
            "not released: cannot read the published snapshot in {} to check that {name:?} is \
             no longer published: {e}",
            paths.state_dir.display()
        )
    };
    let published = match zt_published::open_pair(&paths.state_dir) {
        Ok(p) => p,
        Err(ReadError::Missing) => return Ok(None),
        Err(e) => return Err(cannot(&e)),
    };
    let snapshot = published.snapshot().map_err(|e| cannot(&e))?;
    let user = snapshot
        .user_by_name(name.as_bytes())
        .map_err(|e| cannot(&e))?;
    Ok(user.map(|u| u.uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_frees_only_the_name_and_keeps_every_id() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            state_dir: dir.path().to_path_buf(),
            ..Paths::default()
        };
        // an unversioned ids.json from an earlier release
        std::fs::write(
            dir.path().join("ids.json"),
            r#"{"users": {"u-alice": 1879048200}, "groups": {}, "names": {"alice": "u-alice"}}"#,
        )
        .unwrap();
        assert_eq!(
            release_name(&paths, "alice").unwrap().as_deref(),
            Some("u-alice")
        );
        assert_eq!(release_name(&paths, "alice").unwrap(), None);
        let ids = sync::load_ids(&StateDir::open(dir.path()).unwrap()).unwrap();
        assert!(ids.names.is_empty());
        assert_eq!(
            ids.users["u-alice"], 1_879_048_200,
            "ids are never released"
        );
        assert_eq!(ids.version, crate::identity::holders::FORMAT_VERSION);
    }

    /// Sync re-remembers every published name: releasing one whose holder is
    /// still published would be silently undone, so it is refused, and
    /// allowed once the holder is no longer published.
    #[test]
    fn a_name_still_published_is_not_released() {
        use zt_published::testing::{TempStateDir, content};
        let dir = TempStateDir::new("release");
        let paths = Paths {
            state_dir: dir.path.clone(),
            ..Paths::default()
        };
        std::fs::write(
            dir.file("ids.json"),
            r#"{"users": {"oid-alice": 1879048200}, "groups": {},
                "names": {"alice": "oid-alice", "bob": "oid-bob"}}"#,
        )
        .unwrap();
        dir.publish(&content(1, &[("alice", 1_879_048_200)]));
        let e = release_name(&paths, "alice").unwrap_err();
        assert!(
            e.contains("\"alice\" is still published (uid 1879048200, held by \"oid-alice\")")
                && e.contains("sync --once"),
            "{e}"
        );
        let ids = sync::load_ids(&StateDir::open(&dir.path).unwrap()).unwrap();
        assert_eq!(ids.names["alice"], "oid-alice", "ids.json is untouched");
        // bob is held but not published (absent or disabled): released
        assert_eq!(
            release_name(&paths, "bob").unwrap().as_deref(),
            Some("oid-bob")
        );
        // once a sync no longer publishes alice, her name can go too
        dir.publish(&content(2, &[]));
        assert_eq!(
            release_name(&paths, "alice").unwrap().as_deref(),
            Some("oid-alice")
        );
    }
}
