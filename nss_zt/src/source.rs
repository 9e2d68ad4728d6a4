//! Where lookups get their snapshot: a per-thread, memory-mapped view that
//! notices a newly published snapshot without a system call.
//!
//! Each thread keeps a `Source` in a thread-local: the mapping of the snapshot
//! (with its `Layout`, so a lookup need not re-read the section table), a
//! read-only mapping of the 8-byte generation file, the generation it last
//! acted on and a recheck deadline. A warm lookup does one atomic load from the
//! generation mapping and reads `CLOCK_MONOTONIC_COARSE` (vDSO): no system
//! call. When the generation changes, or every `recheck_secs` (which covers an
//! agent that died between rename and generation write, a deleted snapshot, a
//! generation file created later), it `stat`s the snapshot path and remaps only
//! if the file is a different one. Nothing is shared between threads, so there
//! are no locks on the lookup path and a forked child simply inherits the
//! parent thread's mappings.

use std::cell::RefCell;
use std::ffi::{CStr, c_int};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, Ordering};

use zt_snapshot::{Layout, Snapshot};

use crate::status::{BUSY, Failure, MISSING, UNUSABLE};

/// Where the files are and who must own them. The module uses `SYSTEM`; tests
/// point a `Source` at a temporary directory.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub snapshot: &'static CStr,
    pub generation: &'static CStr,
    /// The only uid allowed to own the files.
    pub owner: libc::uid_t,
    /// Seconds between unconditional rechecks of the snapshot path.
    pub recheck_secs: i64,
}

pub const SYSTEM: Config = Config {
    snapshot: c_path(&SNAPSHOT_PATH_Z),
    generation: c_path(&GENERATION_PATH_Z),
    owner: 0,
    recheck_secs: 5,
};

const SNAPSHOT_PATH_Z: [u8; zt_snapshot::SNAPSHOT_PATH.len() + 1] =
    nul_terminated(zt_snapshot::SNAPSHOT_PATH);
const GENERATION_PATH_Z: [u8; zt_snapshot::GENERATION_PATH.len() + 1] =
    nul_terminated(zt_snapshot::GENERATION_PATH);

/// The contract's path constants are `&str`; open(2) needs them NUL-terminated.
/// Built at compile time so the lookup path never allocates a CString.
const fn nul_terminated<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        out[i] = b[i];
        i += 1;
    }
    out
}

// Evaluated at compile time only: a path with an interior NUL fails the build.
#[allow(clippy::panic)]
const fn c_path(bytes: &'static [u8]) -> &'static CStr {
    match CStr::from_bytes_with_nul(bytes) {
        Ok(c) => c,
        Err(_) => panic!("snapshot path contains a NUL byte"),
    }
}

/// The smallest file that can be a snapshot (its header).
const MIN_SNAPSHOT_LEN: i64 = zt_snapshot::format::HEADER_LEN as i64;
const GENERATION_LEN: usize = 8;

/// A read-only, shared mapping of a whole file, unmapped on drop.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and of an immutable file; reading it from
// any thread is fine, and munmap (on drop) may be called from any thread.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` read-only.
    fn new(fd: &OwnedFd, len: usize) -> Result<Mapping, Failure> {
        if len == 0 {
            return Err(UNUSABLE);
        }
        // SAFETY: a fresh mapping chosen by the kernel (addr NULL) cannot alias
        // any Rust object; the arguments are plain values and fd is open.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(UNUSABLE);
        }
        NonNull::new(p.cast::<u8>())
            .map(|ptr| Mapping { ptr, len })
            .ok_or(UNUSABLE)
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is a live PROT_READ mapping owned by self (only
        // Drop unmaps it). The file behind it is root-owned and not writable
        // by group/other (checked before mapping), and the agent never modifies
        // a published snapshot (it renames a new file over it), so the bytes do
        // not change while borrowed. Only root truncating the file could break
        // this (SIGBUS), which the publication protocol never does.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing borrows the
        // bytes any more (borrows of `self` have ended).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A validated, mapped snapshot and which file it is.
pub struct Pinned {
    map: Mapping,
    layout: Layout,
    dev: libc::dev_t,
    ino: libc::ino_t,
}

impl Pinned {
    /// A view over the mapping (constant time: reuses the cached layout).
    pub fn snapshot(&self) -> Result<Snapshot<'_>, Failure> {
        Snapshot::with_layout(self.map.bytes(), self.layout).ok_or(UNUSABLE)
    }
}

fn errno() -> c_int {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// "Does not exist" is MISSING (ENOENT); anything else is UNUSABLE (EIO).
fn open_failure(e: c_int) -> Failure {
    if e == libc::ENOENT || e == libc::ENOTDIR {
        MISSING
    } else {
        UNUSABLE
    }
}

fn open_ro(path: &CStr) -> Result<OwnedFd, Failure> {
    // O_NONBLOCK: if something other than a regular file sits at the path (a
    // FIFO), open must not hang; fstat then refuses it.
    let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
    // SAFETY: path is a valid NUL-terminated string.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        return Err(open_failure(errno()));
    }
    // SAFETY: fd was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: &OwnedFd) -> Result<libc::stat, Failure> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fd is open; st is a writable stat buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(UNUSABLE);
    }
    // SAFETY: fstat succeeded, so it initialised st.
    Ok(unsafe { st.assume_init() })
}

fn stat(path: &CStr) -> Result<libc::stat, Failure> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: path is NUL-terminated; st is a writable stat buffer.
    if unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(open_failure(errno()));
    }
    // SAFETY: stat succeeded, so it initialised st.
    Ok(unsafe { st.assume_init() })
}

/// A file we may trust: a regular file owned by `owner`, not writable by
/// group or others, at least `min_len` bytes. Returns its length.
fn trusted(st: &libc::stat, owner: libc::uid_t, min_len: i64) -> Result<usize, Failure> {
    let regular = st.st_mode & libc::S_IFMT == libc::S_IFREG;
    let writable_by_others = st.st_mode & (libc::S_IWGRP | libc::S_IWOTH) != 0;
    if !regular || st.st_uid != owner || writable_by_others || st.st_size < min_len {
        return Err(UNUSABLE);
    }
    usize::try_from(st.st_size).map_err(|_| UNUSABLE)
}

/// Opens, checks, maps and parses the snapshot at `cfg.snapshot`.
pub fn open_snapshot(cfg: &Config) -> Result<Pinned, Failure> {
    let fd = open_ro(cfg.snapshot)?;
    let st = fstat(&fd)?;
    let len = trusted(&st, cfg.owner, MIN_SNAPSHOT_LEN)?;
    let map = Mapping::new(&fd, len)?;
    drop(fd);
    let layout = Snapshot::parse(map.bytes())?.layout();
    Ok(Pinned {
        map,
        layout,
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// The mapped generation file.
struct GenerationMap {
    map: Mapping,
    dev: libc::dev_t,
    ino: libc::ino_t,
}

impl GenerationMap {
    fn open(cfg: &Config) -> Result<GenerationMap, Failure> {
        let fd = open_ro(cfg.generation)?;
        let st = fstat(&fd)?;
        trusted(&st, cfg.owner, GENERATION_LEN as i64)?;
        let map = Mapping::new(&fd, GENERATION_LEN)?;
        Ok(GenerationMap {
            map,
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// The generation the agent published last.
    fn load(&self) -> u64 {
        let p = self.map.ptr.as_ptr().cast::<u64>();
        // SAFETY: p is the start of a live mapping, so page-aligned (aligned
        // for u64) and valid for 8 bytes (the file had >= 8 bytes when mapped;
        // the agent never truncates it). The only writer is the kernel on the
        // agent's behalf (pwrite); we only ever load, and an atomic load of an
        // aligned u64 is a plain load on x86_64/aarch64, so the read-only
        // mapping is fine. A torn value (pwrite is not guaranteed to be a single
        // store) only makes us refresh once more: we use the value as a
        // "something changed" signal, never as data.
        unsafe { AtomicU64::from_ptr(p) }.load(Ordering::Acquire)
    }
}

/// One thread's view of the published snapshot.
pub struct Source {
    cfg: Config,
    snap: Option<Pinned>,
    generation: Option<GenerationMap>,
    /// The published generation the current mapping was checked against.
    acted_on: u64,
    /// CLOCK_MONOTONIC_COARSE seconds; None = recheck on the next lookup.
    recheck_at: Option<i64>,
}

impl Source {
    pub const fn new(cfg: Config) -> Source {
        Source {
            cfg,
            snap: None,
            generation: None,
            acted_on: 0,
            recheck_at: None,
        }
    }

    /// The current snapshot, refreshed if the agent published a new one.
    pub fn current(&mut self) -> Result<Snapshot<'_>, Failure> {
        let now = coarse_seconds();
        let due = self.recheck_at.is_none_or(|at| now >= at);
        let published_changed = self
            .generation
            .as_ref()
            .is_some_and(|g| g.load() != self.acted_on);
        if due || published_changed || self.snap.is_none() {
            self.refresh(now, due)?;
        }
        self.snap.as_ref().ok_or(MISSING)?.snapshot()
    }

    fn refresh(&mut self, now: i64, due: bool) -> Result<(), Failure> {
        if due {
            self.refresh_generation();
            self.recheck_at = Some(now.saturating_add(self.cfg.recheck_secs));
        }
        // Read the published generation before looking at the snapshot path:
        // the agent renames first and bumps the generation second, so a value
        // read here is never newer than the file we are about to find.
        if let Some(g) = &self.generation {
            self.acted_on = g.load();
        }
        let result = self.refresh_snapshot();
        if result.is_err() {
            self.snap = None;
        }
        result
    }

    /// (Re)maps the generation file if it appeared or was replaced; drops the
    /// mapping if it is gone or no longer trusted.
    fn refresh_generation(&mut self) {
        let same = self
            .generation
            .as_ref()
            .is_some_and(|g| match stat(self.cfg.generation) {
                Ok(st) => {
                    (st.st_dev, st.st_ino) == (g.dev, g.ino)
                        && trusted(&st, self.cfg.owner, GENERATION_LEN as i64).is_ok()
                }
                Err(_) => false,
            });
        if !same {
            self.generation = GenerationMap::open(&self.cfg).ok();
        }
    }

    fn refresh_snapshot(&mut self) -> Result<(), Failure> {
        if let Some(p) = &self.snap {
            let st = stat(self.cfg.snapshot)?;
            // While we hold the mapping the old inode stays allocated, so its
            // number cannot have been reused by the new file.
            if (st.st_dev, st.st_ino) == (p.dev, p.ino) {
                trusted(&st, self.cfg.owner, MIN_SNAPSHOT_LEN)?;
                return Ok(());
            }
        }
        // Map the new file first, then drop the old mapping (munmap).
        self.snap = Some(open_snapshot(&self.cfg)?);
        Ok(())
    }
}

/// Seconds on CLOCK_MONOTONIC_COARSE: answered by the vDSO, no system call.
fn coarse_seconds() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
        // Cannot happen on Linux; forcing a recheck is the safe answer.
        return i64::MAX;
    }
    ts.tv_sec
}

thread_local! {
    static SOURCE: RefCell<Source> = const { RefCell::new(Source::new(SYSTEM)) };
}

/// Runs `f` over this thread's current snapshot. UNAVAIL (EAGAIN) if the
/// thread-local is gone (thread teardown) or already in use (re-entry).
pub fn with_snapshot<R>(f: impl FnOnce(&Snapshot<'_>) -> Result<R, Failure>) -> Result<R, Failure> {
    SOURCE
        .try_with(|cell| borrow_current(cell, f))
        .unwrap_or(Err(BUSY))
}

fn borrow_current<R>(
    cell: &RefCell<Source>,
    f: impl FnOnce(&Snapshot<'_>) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let mut source = cell.try_borrow_mut().map_err(|_| BUSY)?;
    let snap = source.current()?;
    f(&snap)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::lookup::tests::user;
    use std::ffi::CString;
    use std::io::Write;
    use std::os::unix::fs::{FileExt, PermissionsExt};
    use std::path::PathBuf;
    use zt_snapshot::{Content, GroupEntry};

    /// A temporary /var/lib/zt lookalike, removed on drop.
    pub struct Dir {
        pub path: PathBuf,
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }

    impl Dir {
        pub fn new(tag: &str) -> Dir {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("nss_zt-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }

        pub fn config(&self, recheck_secs: i64) -> Config {
            let leak = |p: PathBuf| -> &'static CStr {
                Box::leak(
                    CString::new(p.into_os_string().into_encoded_bytes())
                        .unwrap()
                        .into_boxed_c_str(),
                )
            };
            Config {
                snapshot: leak(self.path.join("snapshot")),
                generation: leak(self.path.join("generation")),
                // SAFETY: geteuid cannot fail.
                owner: unsafe { libc::geteuid() },
                recheck_secs,
            }
        }

        /// Publishes like the agent: temp file, fsync, rename, then the generation.
        pub fn publish(&self, content: &Content) {
            self.publish_snapshot_only(content);
            self.write_generation(content.generation);
        }

        pub fn publish_snapshot_only(&self, content: &Content) {
            let bytes = zt_snapshot::build(content).unwrap().public;
            let tmp = self.path.join(".snapshot.tmp");
            let mut f = std::fs::File::create(&tmp).unwrap();
            f.write_all(&bytes).unwrap();
            f.set_permissions(std::fs::Permissions::from_mode(0o644))
                .unwrap();
            f.sync_all().unwrap();
            std::fs::rename(&tmp, self.path.join("snapshot")).unwrap();
        }

        pub fn write_generation(&self, generation: u64) {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(self.path.join("generation"))
                .unwrap();
            f.set_permissions(std::fs::Permissions::from_mode(0o644))
                .unwrap();
            f.write_all_at(&generation.to_le_bytes(), 0).unwrap();
        }

        pub fn file(&self, name: &str) -> PathBuf {
            self.path.join(name)
        }
    }

    pub fn upg(name: &str, gid: u32) -> GroupEntry {
        GroupEntry {
            name: name.into(),
            gid,
            flags: 1,
            idp_id: String::new(),
            members: vec![],
        }
    }

    pub fn content(generation: u64, names: &[(&str, u32)]) -> Content {
        Content {
            generation,
            synced_at: 1_700_000_000,
            users: names.iter().map(|&(n, u)| user(n, u)).collect(),
            groups: names.iter().map(|&(n, u)| upg(n, u)).collect(),
        }
    }

    fn names_in(src: &mut Source) -> Result<Vec<String>, Failure> {
        let snap = src.current()?;
        (0..snap.user_count())
            .map(|i| Ok(String::from_utf8_lossy(snap.user(i)?.name).into_owned()))
            .collect()
    }

    #[test]
    fn c_paths_match_the_contract() {
        assert_eq!(
            SYSTEM.snapshot.to_str().unwrap(),
            zt_snapshot::SNAPSHOT_PATH
        );
        assert_eq!(
            SYSTEM.generation.to_str().unwrap(),
            zt_snapshot::GENERATION_PATH
        );
        assert_eq!(SYSTEM.owner, 0);
    }

    #[test]
    fn missing_snapshot_is_unavail_enoent_and_retried_every_lookup() {
        let d = Dir::new("missing");
        let mut src = Source::new(d.config(3600));
        assert_eq!(names_in(&mut src).unwrap_err(), MISSING);
        assert_eq!(names_in(&mut src).unwrap_err(), MISSING);
        // Appears later: the very next lookup finds it (no cached absence).
        d.publish(&content(1, &[("alice", 1_500_001)]));
        assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
    }

    #[test]
    fn new_generation_is_seen_on_next_lookup() {
        let d = Dir::new("gen");
        d.publish(&content(1, &[("alice", 1_500_001)]));
        let mut src = Source::new(d.config(3600));
        assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
        d.publish(&content(2, &[("alice", 1_500_001), ("bob", 1_500_002)]));
        assert_eq!(names_in(&mut src).unwrap(), ["alice", "bob"]);
    }

    #[test]
    fn without_generation_bump_the_old_mapping_stays_until_recheck() {
        let d = Dir::new("nobump");
        d.publish(&content(1, &[("alice", 1_500_001)]));
        let mut src = Source::new(d.config(3600));
        assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
        // An agent that crashed between rename and generation write.
        d.publish_snapshot_only(&content(2, &[("bob", 1_500_002)]));
        assert_eq!(
            names_in(&mut src).unwrap(),
            ["alice"],
            "no syscall, so no news yet"
        );
        // Recheck due (as after 5 s): the new file is found.
        src.recheck_at = Some(0);
        assert_eq!(names_in(&mut src).unwrap(), ["bob"]);
    }

    #[test]
    fn absent_generation_file_relies_on_recheck_and_is_mapped_later() {
        let d = Dir::new("nogenfile");
        d.publish_snapshot_only(&content(1, &[("alice", 1_500_001)]));
        let mut src = Source::new(d.config(3600));
        assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
        assert!(src.generation.is_none());
        d.publish(&content(2, &[("bob", 1_500_002)]));
        assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
        src.recheck_at = Some(0);
        assert_eq!(names_in(&mut src).unwrap(), ["bob"]);
        assert!(
            src.generation.is_some(),
            "generation file mapped at recheck time"
        );
        d.publish(&content(3, &[("carol", 1_500_003)]));
        assert_eq!(names_in(&mut src).unwrap(), ["carol"]);
    }

    #[test]
    fn deleted_snapshot_is_dropped_at_recheck() {
        let d = Dir::new("deleted");
        d.publish(&content(1, &[("alice", 1_500_001)]));
        let mut src = Source::new(d.config(0)); // recheck on every lookup
        assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
        std::fs::remove_file(d.file("snapshot")).unwrap();
        assert_eq!(names_in(&mut src).unwrap_err(), MISSING);
        assert!(src.snap.is_none());
    }

    #[test]
    fn unchanged_file_keeps_its_mapping() {
        let d = Dir::new("same");
        d.publish(&content(1, &[("alice", 1_500_001)]));
        let mut src = Source::new(d.config(0));
        let first = src.current().unwrap().layout();
        let p1 = src.snap.as_ref().unwrap().map.ptr;
        // Generation bumped without a new file: stat says same inode, mapping kept.
        d.write_generation(7);
        assert_eq!(src.current().unwrap().layout(), first);
        assert_eq!(src.snap.as_ref().unwrap().map.ptr, p1);
        assert_eq!(src.acted_on, 7);
    }

    #[test]
    fn group_or_world_writable_snapshot_is_refused() {
        let d = Dir::new("mode");
        d.publish(&content(1, &[("alice", 1_500_001)]));
        for mode in [0o664, 0o646] {
            std::fs::set_permissions(d.file("snapshot"), std::fs::Permissions::from_mode(mode))
                .unwrap();
            let mut src = Source::new(d.config(0));
            assert_eq!(names_in(&mut src).unwrap_err(), UNUSABLE, "mode {mode:o}");
        }
        // A mapping already held is dropped when a recheck sees the change.
        std::fs::set_permissions(d.file("snapshot"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let mut src = Source::new(d.config(0));
        assert!(names_in(&mut src).is_ok());
        std::fs::set_permissions(d.file("snapshot"), std::fs::Permissions::from_mode(0o666))
            .unwrap();
        assert_eq!(names_in(&mut src).unwrap_err(), UNUSABLE);
    }

    #[test]
    fn wrong_owner_is_refused() {
        let d = Dir::new("owner");
        d.publish(&content(1, &[("alice", 1_500_001)]));
        let mut cfg = d.config(0);
        cfg.owner = cfg.owner.wrapping_add(12345);
        assert_eq!(names_in(&mut Source::new(cfg)).unwrap_err(), UNUSABLE);
    }

    #[test]
    fn corrupt_short_or_odd_files_are_unavail() {
        let d = Dir::new("corrupt");
        let snap = d.file("snapshot");
        let cfg = d.config(0);
        std::fs::write(&snap, b"").unwrap();
        assert_eq!(names_in(&mut Source::new(cfg)).unwrap_err(), UNUSABLE);
        std::fs::write(&snap, [0x7fu8; 200]).unwrap();
        assert_eq!(names_in(&mut Source::new(cfg)).unwrap_err(), UNUSABLE);
        let mut bytes = zt_snapshot::build(&content(1, &[("alice", 1)]))
            .unwrap()
            .public;
        bytes.pop();
        std::fs::write(&snap, &bytes).unwrap();
        assert_eq!(names_in(&mut Source::new(cfg)).unwrap_err(), UNUSABLE);
        std::fs::remove_file(&snap).unwrap();
        std::fs::create_dir(&snap).unwrap();
        assert_eq!(names_in(&mut Source::new(cfg)).unwrap_err(), UNUSABLE);
        std::fs::remove_dir(&snap).unwrap();
        let fifo = CString::new(snap.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid path string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        assert_eq!(
            names_in(&mut Source::new(cfg)).unwrap_err(),
            UNUSABLE,
            "a FIFO must not hang open()"
        );
    }

    #[test]
    fn short_generation_file_is_ignored() {
        let d = Dir::new("shortgen");
        d.publish_snapshot_only(&content(1, &[("alice", 1_500_001)]));
        std::fs::write(d.file("generation"), [1u8, 2, 3]).unwrap();
        let mut src = Source::new(d.config(3600));
        assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
        assert!(src.generation.is_none());
    }

    #[test]
    fn reentry_is_busy_not_a_panic() {
        let d = Dir::new("reentry");
        d.publish(&content(1, &[("alice", 1_500_001)]));
        let cell = RefCell::new(Source::new(d.config(3600)));
        assert_eq!(borrow_current(&cell, |_| Ok(1)), Ok(1));
        assert_eq!(
            borrow_current(&cell, |_| borrow_current(&cell, |_| Ok(2))),
            Err(BUSY)
        );
    }
}
