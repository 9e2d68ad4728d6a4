//! `zt-agent release NAME`: frees a held name. A name stays with the person who
//! held it through absences and renames (see identity/holders.rs); only an admin
//! hands it to someone else, with this command. Ids are never released.

use std::process::ExitCode;

use zt_snapshot::StateDir;
use zt_snapshot::state::{modes, names};

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
pub fn release_name(paths: &Paths, name: &str) -> Result<Option<String>, String> {
    let state = StateDir::open(&paths.state_dir).map_err(|e| e.to_string())?;
    let _lock = state.lock().map_err(|e| e.to_string())?;
    let mut ids = sync::load_ids(&state)?;
    let Some(holder) = ids.release_name(name) else {
        return Ok(None);
    };
    let text = serde_json::to_vec_pretty(&ids).map_err(|e| e.to_string())?;
    state
        .write_atomic(names::IDS, &text, modes::PRIVATE)
        .map_err(|e| format!("writing {}: {e}", state.file_path(names::IDS).display()))?;
    Ok(Some(holder))
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
}
