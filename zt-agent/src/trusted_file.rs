//! Files the agent acts on that an attacker must not be able to change (the
//! config decides who logs in and who gets root) or read (secrets): checked on
//! the opened file descriptor, so a file swapped after the check is not read.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// agent.toml: owned by root (or the user running the agent), not writable
    /// by group or others.
    Config,
    /// A credential (client secret, private key): as Config, and not readable by others.
    Secret,
}

/// Reads `path` after checking who may change (and, for secrets, read) it.
/// The error says what is wrong and how to fix it.
pub fn read(path: &Path, kind: Kind) -> Result<String, String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let meta = f
        .metadata()
        .map_err(|e| format!("{}: cannot stat: {e}", path.display()))?;
    check(&meta, kind, effective_uid()).map_err(|why| format!("{}: {why}", path.display()))?;
    let mut text = String::new();
    f.read_to_string(&mut text)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    Ok(text)
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The ownership and mode rules, on metadata (pure, for tests).
pub fn check(meta: &std::fs::Metadata, kind: Kind, euid: u32) -> Result<(), String> {
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(format!(
            "owned by uid {}, not root: refusing to use it (chown root:root it)",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "mode {mode:04o} lets group or others change it: refusing to use it (chmod go-w it)"
        ));
    }
    if kind == Kind::Secret && mode & 0o004 != 0 {
        return Err(format!(
            "mode {mode:04o} lets every user read this secret: refusing to use it (chmod o-r it)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file_with(mode: u32, owner: Option<u32>) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("agent.toml");
        std::fs::write(&p, "x = 1\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&p, Some(uid), None).unwrap();
        }
        (d, p)
    }

    #[test]
    fn a_file_others_can_change_is_refused() {
        let (_d, p) = file_with(0o644, None);
        assert_eq!(read(&p, Kind::Config).unwrap(), "x = 1\n");
        for mode in [0o664, 0o646, 0o666] {
            let (_d, p) = file_with(mode, None);
            let e = read(&p, Kind::Config).unwrap_err();
            assert!(e.contains("group or others change it"), "{e}");
        }
    }

    #[test]
    fn a_world_readable_secret_is_refused() {
        let (_d, p) = file_with(0o640, None);
        assert!(read(&p, Kind::Secret).is_ok());
        let (_d, p) = file_with(0o644, None);
        let e = read(&p, Kind::Secret).unwrap_err();
        assert!(e.contains("every user read this secret"), "{e}");
    }

    #[test]
    fn a_file_owned_by_someone_else_is_refused() {
        if effective_uid() != 0 {
            return; // chown needs root; the test suite runs as root
        }
        let (_d, p) = file_with(0o644, Some(65534));
        let e = read(&p, Kind::Config).unwrap_err();
        assert!(e.contains("owned by uid 65534"), "{e}");
        // and AgentConfig::load says so, naming the file
        let e = crate::config::AgentConfig::load(&p).unwrap_err().0;
        assert!(e.contains("agent.toml: owned by uid 65534"), "{e}");
    }
}
