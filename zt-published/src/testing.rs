//! Test support (feature `testing`): a temporary state directory and a
//! publisher that behaves like the agent (temp file, fsync, rename, then the
//! generation bump). Panics freely: tests only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::{CStr, CString};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use zt_snapshot::{Content, GroupEntry, UserEntry};

use crate::files::{Config, GENERATION, PRIVATE, SNAPSHOT};

/// A temporary /var/lib/zt lookalike (0755, owned by the test's euid),
/// removed on drop.
pub struct TempStateDir {
    pub path: PathBuf,
}

impl Drop for TempStateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn leak(p: PathBuf) -> &'static CStr {
    Box::leak(
        CString::new(p.into_os_string().into_encoded_bytes())
            .unwrap()
            .into_boxed_c_str(),
    )
}

impl TempStateDir {
    pub fn new(tag: &str) -> TempStateDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("zt-state-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempStateDir { path }
    }

    /// A config for this directory, owned by the test's euid.
    pub fn config(&self, recheck_secs: i64) -> Config {
        Config {
            dir: leak(self.path.clone()),
            snapshot: leak(PathBuf::from(SNAPSHOT)),
            generation: leak(PathBuf::from(GENERATION)),
            // SAFETY: geteuid cannot fail.
            owner: unsafe { libc::geteuid() },
            recheck_secs,
        }
    }

    /// The agent's own publish protocol (`zt_snapshot::StateDir`) over this
    /// directory, owned by the test's euid.
    fn state(&self) -> zt_snapshot::StateDir {
        // SAFETY: geteuid cannot fail.
        let owner = unsafe { libc::geteuid() };
        zt_snapshot::StateDir::open_or_create_owned_by(&self.path, owner).unwrap()
    }

    fn built(content: &Content) -> zt_snapshot::Built {
        let mut built = zt_snapshot::build(content).unwrap();
        built.restamp(content.generation, content.synced_at);
        built
    }

    /// Publishes as the agent does: both files, then the generation bump.
    pub fn publish(&self, content: &Content) {
        self.state().publish(&Self::built(content)).unwrap();
    }

    /// As an agent killed after the renames and before the generation bump.
    pub fn publish_snapshot_only(&self, content: &Content) {
        let built = Self::built(content);
        let state = self.state();
        state
            .write_atomic(PRIVATE, &built.private, zt_snapshot::state::modes::PRIVATE)
            .unwrap();
        state
            .write_atomic(SNAPSHOT, &built.public, zt_snapshot::state::modes::PUBLIC)
            .unwrap();
    }

    /// The generation bump alone (in place, as the agent does it).
    pub fn write_generation(&self, generation: u64) {
        self.state().write_generation(generation).unwrap();
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

pub fn user(name: &str, uid: u32) -> UserEntry {
    UserEntry {
        name: name.into(),
        uid,
        gid: uid,
        gecos: format!("{name} gecos"),
        home: format!("/home/{name}"),
        shell: "/bin/bash".into(),
        email: format!("{name}@example.com"),
        idp_id: format!("oid-{name}"),
        principals: Vec::new(),
        ssh_keys: Vec::new(),
    }
}

/// A user private group.
pub fn upg(name: &str, gid: u32) -> GroupEntry {
    GroupEntry {
        name: name.into(),
        gid,
        flags: 1,
        idp_id: String::new(),
        members: vec![],
    }
}

/// Users with their private groups.
pub fn content(generation: u64, names: &[(&str, u32)]) -> Content {
    Content {
        generation,
        synced_at: 1_700_000_000,
        users: names.iter().map(|&(n, u)| user(n, u)).collect(),
        groups: names.iter().map(|&(n, u)| upg(n, u)).collect(),
        ..Content::default()
    }
}
