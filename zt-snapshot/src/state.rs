//! The state directory (/var/lib/zt) and the publish protocol, in one place.
//!
//! Everything under the directory is trusted only while the directory deserves
//! it: root-owned, not group/other writable, not a symlink (checked with fstat
//! on the open directory fd). Every file is opened relative to that fd with
//! `O_NOFOLLOW`, so a symlink planted in the directory is never followed, and
//! read files must themselves be root-owned regular files that nobody else can
//! write. Modes are set with fchmod, never left to the umask: a service running
//! with `UMask=0077` still publishes a world-readable snapshot.
//!
//! Publication: `private` (0600) first, then `snapshot` (0644), each written to
//! a temp file, fsynced and renamed over the old one; then the 8-byte
//! `generation` file, which readers map once, is updated in place. Nothing
//! under the directory is ever edited in place except that counter: a
//! truncated mapped file is SIGBUS in every process that maps it.
//!
//! `unsafe` in this crate is confined to this module, at libc calls.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::format;
use crate::writer::Built;

/// Where zt-agent keeps its state and publishes the snapshot pair.
pub const STATE_DIR: &str = "/var/lib/zt";
/// The public snapshot, where nss_zt reads it.
pub const SNAPSHOT_PATH: &str = "/var/lib/zt/snapshot";
/// The root-only companion of the snapshot.
pub const PRIVATE_PATH: &str = "/var/lib/zt/private";
/// An 8-byte file holding the generation of the pair currently published.
/// Readers map it once and compare it with their snapshot's generation on every
/// lookup: one memory load, no system call, tells them a new snapshot exists.
pub const GENERATION_PATH: &str = "/var/lib/zt/generation";
/// An 8-byte file holding the unix seconds of the last *successful* sync
/// (changed or not): the agent's heartbeat, for `max_offline`.
pub const SYNCED_PATH: &str = "/var/lib/zt/synced";

/// File names inside the state directory.
pub mod names {
    pub const SNAPSHOT: &str = "snapshot";
    pub const PRIVATE: &str = "private";
    pub const GENERATION: &str = "generation";
    /// Unix seconds of the last successful sync, 8 bytes LE (0644).
    pub const SYNCED: &str = "synced";
    /// Every uid/gid (and later name) ever handed out; root only.
    pub const IDS: &str = "ids.json";
    /// The last sync's outcome for `zt-agent status`; root only.
    pub const STATUS: &str = "status.json";
    /// `kind = "entra"`: Graph delta links and what they have told so far
    /// (the configured groups and the tenant's people); root only.
    pub const ENTRA_DELTA: &str = "entra-delta.json";
    /// flock'ed by whoever writes (daemon or `sync --once`).
    pub const LOCK: &str = "lock";
}

/// The modes the agent publishes with.
pub mod modes {
    pub const DIR: u32 = 0o755;
    pub const PUBLIC: u32 = 0o644;
    pub const PRIVATE: u32 = 0o600;
    /// The private file when a reader group (the `zt` system group) may read it.
    pub const PRIVATE_GROUP_READABLE: u32 = 0o640;
}

/// What went wrong with the state directory, naming the path.
#[derive(Debug)]
pub enum StateError {
    /// The directory or a file in it must not be trusted; `why` says what is wrong.
    Untrusted { path: PathBuf, why: String },
    /// The caller asked for something the protocol forbids (a pair whose
    /// files carry different generations); nothing was written.
    Refused { path: PathBuf, why: String },
    /// A system call failed; `doing` says which step.
    Io {
        path: PathBuf,
        doing: &'static str,
        source: io::Error,
    },
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Untrusted { path, why } => {
                write!(f, "{}: not trusted: {why}", path.display())
            }
            StateError::Refused { path, why } => write!(f, "{}: {why}", path.display()),
            StateError::Io {
                path,
                doing,
                source,
            } => write!(f, "{}: {doing}: {source}", path.display()),
        }
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StateError::Io { source, .. } => Some(source),
            StateError::Untrusted { .. } | StateError::Refused { .. } => None,
        }
    }
}

/// The kind of inode a trust check expects.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Directory,
    RegularFile,
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fd is open for the duration of the call and st points to writable
    // memory of the right size; fstat fills it completely when it returns 0.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat returned 0, so it initialised the struct.
    Ok(unsafe { st.assume_init() })
}

/// Why `st` must not be trusted, if it must not.
fn distrust(st: &libc::stat, expect: Expect, owner: u32) -> Option<String> {
    let kind = st.st_mode & libc::S_IFMT;
    match expect {
        Expect::Directory if kind != libc::S_IFDIR => return Some("not a directory".into()),
        Expect::RegularFile if kind != libc::S_IFREG => return Some("not a regular file".into()),
        _ => {}
    }
    if st.st_uid != owner {
        return Some(format!(
            "owned by uid {}, must be owned by uid {owner}",
            st.st_uid
        ));
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o022 != 0 {
        return Some(format!(
            "mode {mode:04o} is group or other writable; only its owner may write it"
        ));
    }
    None
}

fn c_name(path: &Path) -> Result<CString, StateError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| StateError::Untrusted {
        path: path.to_path_buf(),
        why: "the path contains a NUL byte".into(),
    })
}

/// The state directory, opened and checked once; every file operation goes
/// through its fd.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    dir: OwnedFd,
    /// uid that must own the directory and its files: root, except in tests
    /// that cannot run as root.
    owner: u32,
}

/// The exclusive writer's lock on the state directory: a manual `sync --once`
/// and the daemon never interleave their writes. Released on drop.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateDir {
    /// Opens the state directory for reading (`zt-agent lookup`, `status`):
    /// it must exist and be trusted.
    pub fn open(path: &Path) -> Result<StateDir, StateError> {
        Self::open_as(path, 0, false)
    }

    /// Opens the agent's state directory, creating it 0755 (mode set explicitly,
    /// whatever the umask) if missing. An existing directory must already be
    /// trusted: it is never chmod'ed or chown'ed into trust, because a
    /// directory someone else could write may already hold their files.
    pub fn open_or_create(path: &Path) -> Result<StateDir, StateError> {
        Self::open_as(path, 0, true)
    }

    /// `open_or_create` for a directory owned by `owner` rather than root:
    /// for tests and development runs as an ordinary user. Never for a
    /// directory production readers trust.
    pub fn open_or_create_owned_by(path: &Path, owner: u32) -> Result<StateDir, StateError> {
        Self::open_as(path, owner, true)
    }

    fn open_as(path: &Path, owner: u32, create: bool) -> Result<StateDir, StateError> {
        let c = c_name(path)?;
        let io_err = |doing, source| StateError::Io {
            path: path.to_path_buf(),
            doing,
            source,
        };
        let mut created = false;
        if create {
            // SAFETY: c is a NUL-terminated path that lives through the call.
            let rc = unsafe { libc::mkdir(c.as_ptr(), modes::DIR as libc::mode_t) };
            if rc == 0 {
                created = true;
            } else {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(io_err("creating the state directory", e));
                }
            }
        }
        // SAFETY: c is a NUL-terminated path that lives through the call; the
        // returned fd (if any) is owned by nobody else.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ELOOP) => StateError::Untrusted {
                    path: path.to_path_buf(),
                    why: "is a symlink; the state directory must be a real directory".into(),
                },
                Some(libc::ENOTDIR) => StateError::Untrusted {
                    path: path.to_path_buf(),
                    why: "not a directory (or a symlink)".into(),
                },
                _ => io_err("opening the state directory", e),
            });
        }
        // SAFETY: open returned a fresh fd that nothing else owns.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        let st = fstat(&dir).map_err(|e| io_err("fstat", e))?;
        if let Some(why) = distrust(&st, Expect::Directory, owner) {
            return Err(StateError::Untrusted {
                path: path.to_path_buf(),
                why: format!("{why} (fix its owner and mode by hand; zt will not)"),
            });
        }
        // Every process's NSS module must be able to reach the snapshot. A
        // directory we just made (umask may have narrowed it) or a trusted one
        // that others cannot enter is set to exactly 0755.
        let mode = st.st_mode & 0o7777;
        if created || mode & 0o555 != 0o555 {
            // SAFETY: fchmod on an fd we own.
            if unsafe { libc::fchmod(dir.as_raw_fd(), modes::DIR as libc::mode_t) } != 0 {
                return Err(io_err("setting mode 0755", io::Error::last_os_error()));
            }
        }
        Ok(StateDir {
            path: path.to_path_buf(),
            dir,
            owner,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path/name`, for messages.
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn io_err(&self, name: &str, doing: &'static str, source: io::Error) -> StateError {
        StateError::Io {
            path: self.file_path(name),
            doing,
            source,
        }
    }

    /// openat relative to the directory fd; `O_NOFOLLOW | O_CLOEXEC` always.
    fn openat(&self, name: &str, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
        let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: the directory fd is owned by self and open; c is a
        // NUL-terminated name that lives through the call.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: openat returned a fresh fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn unlinkat(&self, name: &str) -> io::Result<()> {
        let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: directory fd owned by self; c lives through the call.
        if unsafe { libc::unlinkat(self.dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn renameat(&self, from: &str, to: &str) -> io::Result<()> {
        let from = CString::new(from).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let to = CString::new(to).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let d = self.dir.as_raw_fd();
        // SAFETY: directory fd owned by self; both names live through the call.
        if unsafe { libc::renameat(d, from.as_ptr(), d, to.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        // SAFETY: fsync on an fd we own.
        if unsafe { libc::fsync(self.dir.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads `name` if it is a regular file owned by the directory's owner that
    /// nobody else can write. `Ok(None)` when it does not exist; a symlink or
    /// any other file is an error, never followed or read.
    pub fn read_trusted(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        // O_NONBLOCK: a FIFO planted under the name cannot hang the open.
        let fd = match self.openat(name, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(StateError::Untrusted {
                    path: self.file_path(name),
                    why: "is a symlink".into(),
                });
            }
            Err(e) => return Err(self.io_err(name, "opening", e)),
        };
        let st = fstat(&fd).map_err(|e| self.io_err(name, "fstat", e))?;
        if let Some(why) = distrust(&st, Expect::RegularFile, self.owner) {
            return Err(StateError::Untrusted {
                path: self.file_path(name),
                why,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(st.st_size).unwrap_or(0));
        File::from(fd)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io_err(name, "reading", e))?;
        Ok(Some(bytes))
    }

    /// Atomically replaces `name` with `bytes`, with exactly `mode`: a temp file
    /// created O_EXCL|O_NOFOLLOW, fchmod'ed, written, fsynced, renamed over
    /// `name`, then the directory fsynced. Readers see the old file or the new
    /// one, never a part.
    pub fn write_atomic(&self, name: &str, bytes: &[u8], mode: u32) -> Result<(), StateError> {
        self.write_atomic_as(name, bytes, mode, None)
    }

    /// `write_atomic`, with the temp file's group set to `gid` (fchown, before
    /// the rename) when given: the file appears with its group already right.
    pub fn write_atomic_as(
        &self,
        name: &str,
        bytes: &[u8],
        mode: u32,
        gid: Option<u32>,
    ) -> Result<(), StateError> {
        let tmp = format!(".{name}.tmp.{}", std::process::id());
        // Ours from an earlier run with the same pid (cleanup normally got it).
        let _ = self.unlinkat(&tmp);
        let result = (|| {
            let fd = self
                .openat(&tmp, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, mode)
                .map_err(|e| self.io_err(&tmp, "creating", e))?;
            if let Some(gid) = gid {
                // SAFETY: fchown on an fd we own; -1 keeps the owner.
                if unsafe { libc::fchown(fd.as_raw_fd(), u32::MAX, gid) } != 0 {
                    return Err(self.io_err(
                        &tmp,
                        "setting its group",
                        std::io::Error::last_os_error(),
                    ));
                }
            }
            let mut f = File::from(fd);
            // the umask may have narrowed the mode; readers in every process need it exact
            f.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(|e| self.io_err(&tmp, "setting its mode", e))?;
            f.write_all(bytes)
                .map_err(|e| self.io_err(&tmp, "writing", e))?;
            f.sync_all().map_err(|e| self.io_err(&tmp, "fsync", e))?;
            self.renameat(&tmp, name)
                .map_err(|e| self.io_err(name, "renaming the temp file over it", e))?;
            self.sync_dir()
                .map_err(|e| self.io_err(".", "fsync of the directory", e))
        })();
        if result.is_err() {
            let _ = self.unlinkat(&tmp);
        }
        result
    }

    /// Publishes a built pair: the private file first (so a reader that sees
    /// the new public snapshot finds its twin), then the public snapshot, then
    /// the generation that tells every running reader to pick them up.
    pub fn publish(&self, built: &Built) -> Result<(), StateError> {
        self.publish_for(built, None)
    }

    /// `publish`, with the private file readable by group `reader_gid` when
    /// given (0640 root:that group; the `zt` system group that sshd's
    /// `AuthorizedPrincipalsCommandUser` runs as), else 0600. Readers' trust
    /// check is unchanged: owned by root, writable by nobody else.
    pub fn publish_for(&self, built: &Built, reader_gid: Option<u32>) -> Result<(), StateError> {
        let generation = built.generation();
        let private_generation = built
            .private
            .get(24..32)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes);
        if built.public.len() < format::HEADER_LEN || private_generation != Some(generation) {
            return Err(StateError::Refused {
                path: self.file_path(names::PRIVATE),
                why: "refusing to publish a pair whose generations differ".into(),
            });
        }
        let private_mode = if reader_gid.is_some() {
            modes::PRIVATE_GROUP_READABLE
        } else {
            modes::PRIVATE
        };
        self.write_atomic_as(names::PRIVATE, &built.private, private_mode, reader_gid)?;
        self.write_atomic(names::SNAPSHOT, &built.public, modes::PUBLIC)?;
        self.write_generation(generation)
    }

    /// Writes an 8-byte counter file in place when it is a trusted regular
    /// file of at least 8 bytes, else replaces it atomically (0644).
    fn write_u64_in_place(&self, name: &str, value: u64) -> Result<(), StateError> {
        if let Ok(fd) = self.openat(name, libc::O_WRONLY | libc::O_NONBLOCK, 0)
            && let Ok(st) = fstat(&fd)
            && distrust(&st, Expect::RegularFile, self.owner).is_none()
            && st.st_size >= 8
        {
            let f = File::from(fd);
            return f
                .write_all_at(&value.to_le_bytes(), 0)
                .map_err(|e| self.io_err(name, "updating in place", e));
        }
        self.write_atomic(name, &value.to_le_bytes(), modes::PUBLIC)
    }

    /// Announces `generation`. Readers map the generation file once, so it is
    /// updated in place, but only when it is a trusted regular file of at
    /// least 8 bytes: a symlink, a file someone else owns or can write, or a
    /// short file is replaced atomically instead (never written through).
    pub fn write_generation(&self, generation: u64) -> Result<(), StateError> {
        self.write_u64_in_place(names::GENERATION, generation)
    }

    /// The generation last announced; `Ok(None)` if there is no generation file
    /// or it is shorter than 8 bytes.
    pub fn read_generation(&self) -> Result<Option<u64>, StateError> {
        self.read_u64(names::GENERATION)
    }

    /// Records the unix seconds of a successful sync (the heartbeat), after
    /// every one, whether or not the content changed; same in-place rules as
    /// the generation file.
    pub fn write_last_good_sync(&self, unix_secs: u64) -> Result<(), StateError> {
        self.write_u64_in_place(names::SYNCED, unix_secs)
    }

    /// The heartbeat; `Ok(None)` if missing or shorter than 8 bytes. The last
    /// good sync is the later of this and the private file's `synced_at`
    /// ([`last_good_sync`]).
    pub fn read_last_good_sync(&self) -> Result<Option<u64>, StateError> {
        self.read_u64(names::SYNCED)
    }

    fn read_u64(&self, name: &str) -> Result<Option<u64>, StateError> {
        Ok(self
            .read_trusted(name)?
            .and_then(|b| b.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()))
            .map(u64::from_le_bytes))
    }

    /// Takes the writer's lock (blocking until a concurrent writer is done).
    pub fn lock(&self) -> Result<StateLock, StateError> {
        self.lock_within(None).and_then(|l| {
            l.ok_or_else(|| self.io_err(names::LOCK, "flock", io::ErrorKind::WouldBlock.into()))
        })
    }

    /// Takes the writer's lock, waiting at most `wait` (`None`: as long as it
    /// takes); `Ok(None)` when a concurrent writer still holds it then.
    pub fn lock_within(
        &self,
        wait: Option<std::time::Duration>,
    ) -> Result<Option<StateLock>, StateError> {
        let name = names::LOCK;
        let fd = self
            .openat(name, libc::O_RDWR | libc::O_CREAT, modes::PRIVATE)
            .map_err(|e| self.io_err(name, "opening the lock file", e))?;
        let st = fstat(&fd).map_err(|e| self.io_err(name, "fstat", e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(StateError::Untrusted {
                path: self.file_path(name),
                why: "not a regular file".into(),
            });
        }
        let deadline = wait.map(|w| std::time::Instant::now() + w);
        let op = if wait.is_some() {
            libc::LOCK_EX | libc::LOCK_NB
        } else {
            libc::LOCK_EX
        };
        loop {
            // SAFETY: flock on an fd we own for the duration of the call.
            if unsafe { libc::flock(fd.as_raw_fd(), op) } == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            match (e.raw_os_error(), deadline) {
                (Some(libc::EINTR), _) => continue,
                (Some(libc::EWOULDBLOCK), Some(d)) => {
                    if std::time::Instant::now() >= d {
                        return Ok(None);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                _ => return Err(self.io_err(name, "flock", e)),
            }
        }
        Ok(Some(StateLock {
            _file: File::from(fd),
        }))
    }

    /// Removes temp files an interrupted writer left behind. Needs the lock, or
    /// a concurrent writer's file in progress could go. Returns how many.
    pub fn remove_stale_temp_files(&self, _held: &StateLock) -> Result<usize, StateError> {
        // Listing by path is fine: only names come from it, and each unlink is
        // relative to the trusted fd.
        let entries = std::fs::read_dir(&self.path)
            .map_err(|e| self.io_err(".", "listing the directory", e))?;
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') && name.contains(".tmp.") && self.unlinkat(name).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The last good sync as readers (pam_zt) take it: the later of the
/// heartbeat file and the private file's `synced_at`.
pub fn last_good_sync(heartbeat: Option<u64>, private_synced_at: u64) -> u64 {
    heartbeat.unwrap_or(0).max(private_synced_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    const NOBODY: u32 = 65534;

    fn state() -> (tempfile::TempDir, StateDir) {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open_or_create(&t.path().join("zt")).unwrap();
        (t, s)
    }

    fn untrusted(r: Result<impl std::fmt::Debug, StateError>) -> String {
        match r {
            Err(e @ StateError::Untrusted { .. }) => e.to_string(),
            other => panic!("expected Untrusted, got {other:?}"),
        }
    }

    #[test]
    fn creates_the_directory_0755() {
        let (t, s) = state();
        let m = std::fs::metadata(t.path().join("zt")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o755);
        assert_eq!(s.path(), t.path().join("zt"));
    }

    #[test]
    fn a_user_owned_state_dir_is_refused_and_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("zt");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
        let msg = untrusted(StateDir::open_or_create(&dir));
        assert!(msg.contains("owned by uid 65534"), "{msg}");
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
        assert_eq!(
            std::fs::metadata(&dir).unwrap().uid(),
            NOBODY,
            "not chowned"
        );
    }

    #[test]
    fn a_group_writable_state_dir_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("zt");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o775)).unwrap();
        let msg = untrusted(StateDir::open_or_create(&dir));
        assert!(msg.contains("group or other writable"), "{msg}");
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o775, "not chmod'ed into trust");
    }

    #[test]
    fn a_symlinked_state_dir_is_refused() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("real")).unwrap();
        std::os::unix::fs::symlink(t.path().join("real"), t.path().join("zt")).unwrap();
        let msg = untrusted(StateDir::open_or_create(&t.path().join("zt")));
        assert!(msg.contains("symlink"), "{msg}");
    }

    #[test]
    fn a_symlinked_generation_is_replaced_never_written_through() {
        let (t, s) = state();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"precious bytes").unwrap();
        std::os::unix::fs::symlink(&victim, s.file_path(names::GENERATION)).unwrap();
        s.write_generation(7).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious bytes");
        let g = s.file_path(names::GENERATION);
        assert!(std::fs::symlink_metadata(&g).unwrap().is_file());
        assert_eq!(s.read_generation().unwrap(), Some(7));
    }

    #[test]
    fn a_forged_ids_json_is_refused() {
        let (_t, s) = state();
        let ids = s.file_path(names::IDS);
        std::fs::write(&ids, b"{}").unwrap();
        std::os::unix::fs::chown(&ids, Some(NOBODY), None).unwrap();
        let msg = untrusted(s.read_trusted(names::IDS));
        assert!(msg.contains("owned by uid 65534"), "{msg}");
        assert!(msg.contains("ids.json"), "{msg}");
    }

    #[test]
    fn a_world_writable_or_symlinked_file_is_refused() {
        let (t, s) = state();
        let ids = s.file_path(names::IDS);
        std::fs::write(&ids, b"{}").unwrap();
        std::fs::set_permissions(&ids, std::fs::Permissions::from_mode(0o666)).unwrap();
        untrusted(s.read_trusted(names::IDS));
        std::fs::write(t.path().join("elsewhere"), b"{}").unwrap();
        std::os::unix::fs::symlink(t.path().join("elsewhere"), s.file_path(names::STATUS)).unwrap();
        let msg = untrusted(s.read_trusted(names::STATUS));
        assert!(msg.contains("symlink"), "{msg}");
    }

    #[test]
    fn a_missing_file_is_none_not_an_error() {
        let (_t, s) = state();
        assert_eq!(s.read_trusted(names::SNAPSHOT).unwrap(), None);
        assert_eq!(s.read_generation().unwrap(), None);
    }

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let (_t, s) = state();
        s.write_atomic("f", b"one", 0o644).unwrap();
        s.write_atomic("f", b"two", 0o600).unwrap();
        assert_eq!(s.read_trusted("f").unwrap().unwrap(), b"two");
        let m = std::fs::metadata(s.file_path("f")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(s.path()).unwrap().count(),
            1,
            "no temp left"
        );
    }

    #[test]
    fn generation_is_updated_in_place_once_it_exists() {
        let (_t, s) = state();
        s.write_generation(1).unwrap();
        let ino = std::fs::metadata(s.file_path(names::GENERATION))
            .unwrap()
            .ino();
        s.write_generation(2).unwrap();
        let m = std::fs::metadata(s.file_path(names::GENERATION)).unwrap();
        assert_eq!(m.ino(), ino);
        assert_eq!(m.mode() & 0o777, 0o644);
        assert_eq!(s.read_generation().unwrap(), Some(2));
    }

    #[test]
    fn the_heartbeat_is_written_in_place_and_read_back() {
        let (t, s) = state();
        assert_eq!(s.read_last_good_sync().unwrap(), None);
        s.write_last_good_sync(1_700_000_000).unwrap();
        let path = s.file_path(names::SYNCED);
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(m.mode() & 0o777, 0o644);
        s.write_last_good_sync(1_700_000_060).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), m.ino(), "in place");
        assert_eq!(s.read_last_good_sync().unwrap(), Some(1_700_000_060));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            1_700_000_060u64.to_le_bytes()
        );
        // a symlink is replaced, never written through
        std::fs::remove_file(&path).unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"precious bytes").unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        s.write_last_good_sync(5).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious bytes");
        assert_eq!(s.read_last_good_sync().unwrap(), Some(5));
    }

    #[test]
    fn last_good_sync_is_the_later_of_heartbeat_and_synced_at() {
        assert_eq!(last_good_sync(None, 10), 10);
        assert_eq!(last_good_sync(Some(20), 10), 20);
        assert_eq!(last_good_sync(Some(5), 10), 10);
    }

    #[test]
    fn a_short_generation_file_is_replaced() {
        let (_t, s) = state();
        std::fs::write(s.file_path(names::GENERATION), b"123").unwrap();
        assert_eq!(s.read_generation().unwrap(), None);
        s.write_generation(5).unwrap();
        assert_eq!(s.read_generation().unwrap(), Some(5));
    }

    #[test]
    fn leftover_temp_files_are_removed() {
        let (_t, s) = state();
        std::fs::write(s.file_path(".snapshot.tmp.123"), b"half").unwrap();
        std::fs::write(s.file_path(names::SNAPSHOT), b"keep").unwrap();
        let lock = s.lock().unwrap();
        assert_eq!(s.remove_stale_temp_files(&lock).unwrap(), 1);
        let mut left: Vec<_> = std::fs::read_dir(s.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != names::LOCK)
            .collect();
        left.sort();
        assert_eq!(left, [names::SNAPSHOT]);
    }

    #[test]
    fn publish_writes_the_pair_then_the_generation() {
        let (_t, s) = state();
        let mut built = crate::build(&crate::Content::default()).unwrap();
        built.restamp(3, 1_700_000_000);
        s.publish(&built).unwrap();
        let public = s.read_trusted(names::SNAPSHOT).unwrap().unwrap();
        let private = s.read_trusted(names::PRIVATE).unwrap().unwrap();
        let pair = crate::Pair::parse(&public, &private).unwrap();
        assert_eq!(pair.generation(), 3);
        assert_eq!(s.read_generation().unwrap(), Some(3));
        let mode = |n| std::fs::metadata(s.file_path(n)).unwrap().mode() & 0o777;
        assert_eq!(mode(names::SNAPSHOT), 0o644);
        assert_eq!(mode(names::PRIVATE), 0o600);
    }

    #[test]
    fn a_pair_with_different_generations_is_not_published() {
        let (_t, s) = state();
        let mut built = crate::build(&crate::Content::default()).unwrap();
        crate::restamp(&mut built.private, 9, 0);
        assert!(matches!(s.publish(&built), Err(StateError::Refused { .. })));
        assert_eq!(s.read_trusted(names::SNAPSHOT).unwrap(), None);
    }
}
