//! Trusted opening: the state directory, then files relative to it.
//!
//! The directory is opened with `O_DIRECTORY|O_NOFOLLOW` and must be a
//! directory owned by the configured owner (root) that group and others cannot
//! write. Files are opened relative to that fd (`openat`, `O_NOFOLLOW`) and
//! must be regular, owned by the owner and not writable by group or others;
//! rechecks use `fstatat(AT_SYMLINK_NOFOLLOW)` on the same fd, so a symlink
//! anywhere we look is refused, never followed. The directory fd is held only
//! while opening or rechecking, never between lookups: no descriptor of ours
//! lives in the host process for a daemon's close-all loop to pull away.

use std::ffi::{CStr, c_int};
use std::os::fd::{AsFd, OwnedFd};

use zt_snapshot::{Layout, Snapshot};

use crate::error::ReadError;
use crate::files::Config;
use crate::mapping::Mapping;
use crate::sys;

/// The smallest file that can be a snapshot (its header).
pub(crate) const MIN_SNAPSHOT_LEN: usize = zt_snapshot::format::HEADER_LEN;
pub(crate) const GENERATION_LEN: usize = 8;

/// Which file: a mapping is kept while the name still points at the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: libc::dev_t,
    ino: libc::ino_t,
}

impl FileId {
    fn of(st: &libc::stat) -> FileId {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

fn open_error(e: c_int) -> ReadError {
    match e {
        libc::ENOENT => ReadError::Missing,
        libc::ELOOP => ReadError::Untrusted("a symlink"),
        libc::ENOTDIR => ReadError::Untrusted("not a directory"),
        e => ReadError::Unreadable(e),
    }
}

fn owned_and_not_shared(st: &libc::stat, owner: libc::uid_t) -> Result<(), ReadError> {
    if st.st_uid != owner {
        return Err(ReadError::Untrusted("wrong owner"));
    }
    if st.st_mode & (libc::S_IWGRP | libc::S_IWOTH) != 0 {
        return Err(ReadError::Untrusted("writable by group or others"));
    }
    Ok(())
}

pub(crate) const NOT_A_REAL_DIR: &str = "a symlink or not a directory";

/// A directory we may trust: a directory, owned by `owner`, not group/other writable.
fn dir_trusted(st: &libc::stat, owner: libc::uid_t) -> Result<(), ReadError> {
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(ReadError::Untrusted("not a directory"));
    }
    owned_and_not_shared(st, owner)
}

/// A file we may trust: a regular file owned by `owner`, not writable by
/// group or others, at least `min_len` bytes. Returns its length.
fn file_trusted(st: &libc::stat, owner: libc::uid_t, min_len: usize) -> Result<usize, ReadError> {
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(ReadError::Untrusted("not a regular file"));
    }
    owned_and_not_shared(st, owner)?;
    let len = usize::try_from(st.st_size).map_err(|_| ReadError::Untrusted("bad size"))?;
    if len < min_len {
        return Err(ReadError::Untrusted("too short"));
    }
    Ok(len)
}

/// An open state directory that passed the checks. Hold it only while
/// opening or rechecking files; drop it before returning to the caller's code.
pub struct TrustedDir {
    fd: OwnedFd,
    owner: libc::uid_t,
}

impl TrustedDir {
    /// Opens `path` (`O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC`) and checks it with
    /// fstat: a directory owned by `owner`, not group/other writable.
    pub fn open(path: &CStr, owner: libc::uid_t) -> Result<TrustedDir, ReadError> {
        // With O_DIRECTORY, Linux reports a symlink as ENOTDIR, not ELOOP.
        let fd = sys::open_dir(path).map_err(|e| match e {
            libc::ENOTDIR | libc::ELOOP => ReadError::Untrusted(NOT_A_REAL_DIR),
            e => open_error(e),
        })?;
        let st = sys::fstat(fd.as_fd()).map_err(ReadError::Unreadable)?;
        dir_trusted(&st, owner)?;
        Ok(TrustedDir { fd, owner })
    }

    /// Opens `name` in the directory and maps it whole, after the file checks.
    pub fn map(&self, name: &CStr, min_len: usize) -> Result<Mapping, ReadError> {
        self.map_file(name, min_len).map(|(map, _)| map)
    }

    /// As `map`, and says which file it was.
    pub(crate) fn map_file(
        &self,
        name: &CStr,
        min_len: usize,
    ) -> Result<(Mapping, FileId), ReadError> {
        let fd = sys::open_at(self.fd.as_fd(), name).map_err(open_error)?;
        let st = sys::fstat(fd.as_fd()).map_err(ReadError::Unreadable)?;
        let len = file_trusted(&st, self.owner, min_len)?;
        let map = Mapping::new(fd.as_fd(), len)?;
        Ok((map, FileId::of(&st)))
    }

    /// Is `name` still the file `id`, and still trusted? `fstatat` without
    /// following a symlink: a symlink put in its place is not trusted.
    pub(crate) fn still(&self, name: &CStr, id: FileId, min_len: usize) -> Result<bool, ReadError> {
        let st = sys::fstat_at(self.fd.as_fd(), name).map_err(open_error)?;
        if FileId::of(&st) != id {
            return Ok(false);
        }
        file_trusted(&st, self.owner, min_len)?;
        Ok(true)
    }

    /// Maps and parses the snapshot `name`.
    pub(crate) fn pin(&self, name: &CStr) -> Result<Pinned, ReadError> {
        let (map, id) = self.map_file(name, MIN_SNAPSHOT_LEN)?;
        let layout = Snapshot::parse(map.bytes())?.layout();
        Ok(Pinned { map, layout, id })
    }
}

/// A validated, mapped snapshot and which file it is.
pub struct Pinned {
    pub(crate) map: Mapping,
    layout: Layout,
    pub(crate) id: FileId,
}

impl Pinned {
    /// A view over the mapping (constant time: reuses the cached layout).
    #[inline]
    pub fn snapshot(&self) -> Result<Snapshot<'_>, ReadError> {
        Snapshot::with_layout(self.map.bytes(), self.layout)
            .ok_or(ReadError::Untrusted("layout does not fit the mapping"))
    }
}

/// Opens the state directory and maps the snapshot in it, with every check:
/// for a pinned view held across calls (enumeration).
pub fn open_snapshot(cfg: &Config) -> Result<Pinned, ReadError> {
    TrustedDir::open(cfg.dir, cfg.owner)?.pin(cfg.snapshot)
}

/// The mapped generation file.
pub(crate) struct GenerationMap {
    map: Mapping,
    pub(crate) id: FileId,
}

impl GenerationMap {
    pub(crate) fn open(dir: &TrustedDir, name: &CStr) -> Result<GenerationMap, ReadError> {
        let (map, id) = dir.map_file(name, GENERATION_LEN)?;
        Ok(GenerationMap { map, id })
    }

    /// The generation the agent published last.
    #[inline]
    pub(crate) fn load(&self) -> u64 {
        self.map.load_u64()
    }
}
