//! Writing security-relevant files: root-owned, complete or not at all.
//! Readers never see a half-written file: write a temp file in the same
//! directory, fsync, rename over the old one, fsync the directory.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Atomically replaces `dir/name` with `bytes`, mode `mode`.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // the umask may have narrowed the mode; readers in every process need it exact
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Publishes a snapshot: the file first, then the generation file that tells
/// every running reader to pick it up on its next lookup.
pub fn publish_snapshot(dir: &Path, bytes: &[u8], generation: u64) -> std::io::Result<()> {
    write_atomic(dir, "snapshot", bytes, 0o644)?;
    write_generation(dir, generation)
}

/// Readers map the generation file once, so it is updated in place (never
/// replaced) once it exists.
pub fn write_generation(dir: &Path, generation: u64) -> std::io::Result<()> {
    let path = dir.join("generation");
    match OpenOptions::new().write(true).open(&path) {
        Ok(f) if f.metadata()?.len() >= 8 => f.write_all_at(&generation.to_le_bytes(), 0),
        _ => write_atomic(dir, "generation", &generation.to_le_bytes(), 0o644),
    }
}

/// The generation last announced, if the generation file is readable.
pub fn read_generation(dir: &Path) -> Option<u64> {
    let bytes = std::fs::read(dir.join("generation")).ok()?;
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// Makes sure the state directory exists and is not writable by others.
pub fn ensure_state_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.permissions().mode() & 0o022 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// Removes temp files an interrupted agent left behind. Call with the
/// `StateLock` held, or a concurrent agent's file in progress could go.
pub fn remove_stale_temp_files(dir: &Path, _held: &StateLock) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp.") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Holds an exclusive lock on the state directory, so a manual `sync --once`
/// and the daemon never interleave their writes.
pub struct StateLock(#[allow(dead_code)] File);

impl StateLock {
    pub fn acquire(dir: &Path) -> std::io::Result<StateLock> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join("lock"))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own for the duration of the call.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(StateLock(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let d = tempfile::tempdir().unwrap();
        write_atomic(d.path(), "f", b"one", 0o644).unwrap();
        write_atomic(d.path(), "f", b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(d.path().join("f")).unwrap(), b"two");
        let mode = std::fs::metadata(d.path().join("f"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp file left behind"
        );
    }

    #[test]
    fn leftover_temp_files_are_removed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".snapshot.tmp.123"), b"half").unwrap();
        std::fs::write(d.path().join("snapshot"), b"keep").unwrap();
        let lock = StateLock::acquire(d.path()).unwrap();
        remove_stale_temp_files(d.path(), &lock).unwrap();
        let left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let mut left: Vec<_> = left.into_iter().filter(|n| n != "lock").collect();
        left.sort();
        assert_eq!(left, ["snapshot"]);
    }

    #[test]
    fn generation_is_updated_in_place() {
        let d = tempfile::tempdir().unwrap();
        write_generation(d.path(), 1).unwrap();
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(d.path().join("generation"))
            .unwrap()
            .ino();
        write_generation(d.path(), 2).unwrap();
        assert_eq!(
            std::fs::metadata(d.path().join("generation"))
                .unwrap()
                .ino(),
            ino
        );
        assert_eq!(
            std::fs::read(d.path().join("generation")).unwrap(),
            2u64.to_le_bytes()
        );
    }
}
