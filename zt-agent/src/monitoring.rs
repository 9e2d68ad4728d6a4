//! Health the way monitoring reads it: `zt-agent status --json`, and a
//! node_exporter textfile (`[monitoring] textfile`) rewritten after every sync.
//! Both come from one [`Health`] so they never disagree with each other, and
//! it judges health exactly as `zt-agent status` does.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::outcome::Completed;
use crate::status::now;
use crate::sync::load_status;

/// `[monitoring]` in agent.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringConfig {
    /// A node_exporter textfile collector file, e.g.
    /// /var/lib/prometheus/node-exporter/zt.prom.
    pub textfile: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    pub generation: u64,
    pub users: u64,
    pub groups: u64,
    /// When the published content last changed (unix seconds).
    pub content_changed_at: u64,
}

/// What `status --json` prints. Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// Everything below is as it should be (`zt-agent status` exits 0).
    pub healthy: bool,
    pub snapshot: Option<SnapshotInfo>,
    /// Why there is no usable snapshot.
    pub snapshot_error: Option<String>,
    pub last_attempt: Option<u64>,
    pub last_success: Option<u64>,
    pub last_error: Option<String>,
    /// Why this host's directory data may be stale (no good sync for three intervals).
    pub frozen: Option<String>,
    /// Removals of people missing from the directory wait for `sync --force`.
    pub held_back: bool,
    pub sudo_rules: u64,
    pub sudo_error: Option<String>,
    /// Directory entries left out (collisions, bad names), see `status`.
    pub skipped: u64,
    pub problems: Vec<String>,
    /// A fleet host: the document it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetInfo>,
}

/// The fleet document a host holds (times in unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetInfo {
    pub serial: u64,
    pub published_at: u64,
    pub valid_until: u64,
}

pub fn health(state_dir: &Path) -> Health {
    let (snapshot, snapshot_error) = match zt_published::open_pair(state_dir) {
        Ok(pair) => match pair.snapshot() {
            Ok(s) => (
                Some(SnapshotInfo {
                    generation: s.generation(),
                    users: s.user_count() as u64,
                    groups: s.group_count() as u64,
                    content_changed_at: s.synced_at(),
                }),
                None,
            ),
            Err(e) => (None, Some(e.to_string())),
        },
        Err(e) => (None, Some(e.to_string())),
    };
    let st = zt_snapshot::StateDir::open(state_dir)
        .map(|s| load_status(&s))
        .unwrap_or_default();
    let last_attempt = (st.last_attempt != 0).then_some(st.last_attempt);
    let frozen = last_attempt.and_then(|_| crate::status::frozen(&st, now()));
    let held_back = st.outcome == Some(Ok(Completed::HeldBack));
    let sudo_error = st.sudo.as_ref().and_then(|s| s.error.clone());
    let healthy = snapshot.is_some()
        && last_attempt.is_some()
        && st.last_error.is_none()
        && frozen.is_none()
        && !held_back
        && sudo_error.is_none();
    Health {
        healthy,
        snapshot,
        snapshot_error,
        last_attempt,
        last_success: st.last_success,
        last_error: st.last_error.clone(),
        frozen,
        held_back,
        sudo_rules: st.sudo.as_ref().map_or(0, |s| s.rules as u64),
        sudo_error,
        skipped: st.skipped.len() as u64,
        problems: st.problems.clone(),
        fleet: zt_snapshot::StateDir::open(state_dir)
            .ok()
            .and_then(|s| crate::fleet::fetch::held_record(&s))
            .map(|h| FleetInfo {
                serial: h.serial,
                published_at: h.published_at,
                valid_until: h.valid_until,
            }),
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped
/// (the text exposition format); other control characters become spaces.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The node_exporter textfile (Prometheus text format).
pub fn prometheus(h: &Health) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    };
    metric(
        "zt_healthy",
        "1 when zt-agent status would exit 0.",
        u8::from(h.healthy).to_string(),
    );
    metric(
        "zt_last_successful_sync_timestamp_seconds",
        "When the last sync succeeded (0: never).",
        h.last_success.unwrap_or(0).to_string(),
    );
    metric(
        "zt_last_sync_attempt_timestamp_seconds",
        "When the last sync was tried (0: never).",
        h.last_attempt.unwrap_or(0).to_string(),
    );
    metric(
        "zt_last_sync_failed",
        "1 when the last sync failed (the last good snapshot stays in force).",
        u8::from(h.last_error.is_some()).to_string(),
    );
    let snap = h.snapshot.as_ref();
    metric(
        "zt_users",
        "Directory users served.",
        snap.map_or(0, |s| s.users).to_string(),
    );
    metric(
        "zt_groups",
        "Directory groups served.",
        snap.map_or(0, |s| s.groups).to_string(),
    );
    metric(
        "zt_snapshot_generation",
        "Generation of the published snapshot (0: none).",
        snap.map_or(0, |s| s.generation).to_string(),
    );
    metric(
        "zt_skipped_entries",
        "Directory entries left out.",
        h.skipped.to_string(),
    );
    metric(
        "zt_frozen",
        "1 when no good sync for three intervals.",
        u8::from(h.frozen.is_some()).to_string(),
    );
    metric(
        "zt_removals_held_back",
        "1 when removals wait for sync --force.",
        u8::from(h.held_back).to_string(),
    );
    metric(
        "zt_sudo_rules",
        "Rules in /etc/sudoers.d/zt.",
        h.sudo_rules.to_string(),
    );
    if let Some(f) = &h.fleet {
        metric(
            "zt_fleet_document_serial",
            "Serial of the fleet document this host holds.",
            f.serial.to_string(),
        );
        metric(
            "zt_fleet_document_published_timestamp_seconds",
            "When the held fleet document was published.",
            f.published_at.to_string(),
        );
        metric(
            "zt_fleet_document_valid_until_timestamp_seconds",
            "When the held fleet document expires (then syncs fail as unavailable).",
            f.valid_until.to_string(),
        );
    }
    if let Some(e) = &h.last_error {
        out.push_str(&format!(
            "# HELP zt_last_sync_error_info The last sync's error.\n# TYPE zt_last_sync_error_info gauge\nzt_last_sync_error_info{{error=\"{}\"}} 1\n",
            label(e)
        ));
    }
    out
}

/// Writes the textfile atomically (node_exporter must never read half of
/// one): a temp file in the same directory, fsync, rename; 0644.
///
/// The directory is usually writable by others (node_exporter's user, its
/// admins), and this runs as root: everything goes through a directory fd,
/// the temp file has a random name and is created with O_EXCL|O_NOFOLLOW (a
/// planted file or symlink makes the create fail instead of root writing
/// through it to, say, /etc/sudoers.d/zt), and a symlink at the target name
/// is refused rather than replaced (the admin meant a file there).
pub fn write_textfile(path: &Path, h: &Health) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::io::{Error, ErrorKind};
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;

    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else {
        return Err(Error::new(ErrorKind::InvalidInput, "no file name"));
    };
    let cstr = |b: &[u8]| CString::new(b).map_err(|_| Error::from(ErrorKind::InvalidInput));
    let dir_c = cstr(dir.as_os_str().as_bytes())?;
    let name_c = cstr(name.as_bytes())?;
    // SAFETY: a valid C string; the fd is owned below.
    let dfd = unsafe {
        libc::open(
            dir_c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if dfd < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: dfd is a fresh fd nobody else owns.
    let dfd = unsafe { OwnedFd::from_raw_fd(dfd) };
    let dirfd = std::os::fd::AsRawFd::as_raw_fd(&dfd);

    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, C string and stat buffer.
    let rc = unsafe { libc::fstatat(dirfd, name_c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if rc == 0 && st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(Error::other(format!(
            "{} is a symlink; refusing to replace it",
            path.display()
        )));
    }

    let mut tmp = None;
    for _ in 0..8 {
        let mut rnd = [0u8; 8];
        // SAFETY: writes at most rnd.len() bytes into rnd.
        let got = unsafe { libc::getrandom(rnd.as_mut_ptr().cast(), rnd.len(), 0) };
        if got != rnd.len() as isize {
            return Err(Error::last_os_error());
        }
        // node_exporter reads only *.prom: the temp file is never collected
        let tmp_name = format!(
            ".{}.{:016x}.zt-tmp",
            name.to_string_lossy(),
            u64::from_ne_bytes(rnd)
        );
        let tmp_c = cstr(tmp_name.as_bytes())?;
        // SAFETY: valid fd and C string.
        let fd = unsafe {
            libc::openat(
                dirfd,
                tmp_c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd >= 0 {
            // SAFETY: fd is a fresh fd nobody else owns.
            tmp = Some((tmp_c, unsafe { std::fs::File::from_raw_fd(fd) }));
            break;
        }
        let e = Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    let Some((tmp_c, mut f)) = tmp else {
        return Err(Error::other("no free temp file name (8 tries)"));
    };
    let result = (|| {
        // 0644 whatever the umask: node_exporter runs as its own user
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        f.write_all(prometheus(h).as_bytes())?;
        f.sync_all()?;
        // SAFETY: valid fd and C strings; rename replaces the entry itself,
        // never a symlink's target.
        if unsafe { libc::renameat(dirfd, tmp_c.as_ptr(), dirfd, name_c.as_ptr()) } != 0 {
            return Err(Error::last_os_error());
        }
        Ok(())
    })();
    if result.is_err() {
        // SAFETY: valid fd and C string.
        unsafe { libc::unlinkat(dirfd, tmp_c.as_ptr(), 0) };
    }
    result
}

/// After a sync: rewrite the textfile, if one is configured. A failure is
/// logged; monitoring never stops a sync.
pub fn after_sync(config: &MonitoringConfig, state_dir: &Path) {
    if let Some(path) = &config.textfile
        && let Err(e) = write_textfile(path, &health(state_dir))
    {
        tracing::warn!("[monitoring] textfile {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Health {
        Health {
            healthy: false,
            snapshot: Some(SnapshotInfo {
                generation: 7,
                users: 42,
                groups: 5,
                content_changed_at: 1_700_000_000,
            }),
            snapshot_error: None,
            last_attempt: Some(1_700_000_100),
            last_success: Some(1_700_000_000),
            last_error: Some("directory unavailable: \"x\"\nback\\slash".into()),
            frozen: None,
            held_back: false,
            sudo_rules: 2,
            sudo_error: None,
            skipped: 3,
            problems: vec![],
            fleet: None,
        }
    }

    #[test]
    fn textfile_carries_the_numbers_and_an_escaped_error() {
        let text = prometheus(&sample());
        for line in [
            "zt_healthy 0",
            "zt_last_successful_sync_timestamp_seconds 1700000000",
            "zt_users 42",
            "zt_groups 5",
            "zt_skipped_entries 3",
            "zt_last_sync_failed 1",
            "zt_sudo_rules 2",
            r#"zt_last_sync_error_info{error="directory unavailable: \"x\"\nback\\slash"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
        // every sample line is `name{labels} value`: one per metric, no stray newline
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 12);
    }

    #[test]
    fn a_fleet_host_shows_its_documents_age_and_expiry() {
        let mut h = sample();
        assert!(!prometheus(&h).contains("zt_fleet"));
        h.fleet = Some(FleetInfo {
            serial: 9,
            published_at: 1_700_000_050,
            valid_until: 1_700_600_050,
        });
        let text = prometheus(&h);
        for line in [
            "zt_fleet_document_serial 9",
            "zt_fleet_document_published_timestamp_seconds 1700000050",
            "zt_fleet_document_valid_until_timestamp_seconds 1700600050",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
    }

    #[test]
    fn no_error_no_error_metric() {
        let mut h = sample();
        h.last_error = None;
        assert!(!prometheus(&h).contains("zt_last_sync_error_info"));
    }

    #[test]
    fn textfile_is_replaced_whole() {
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join("zt.prom");
        std::fs::write(&path, "old").expect("write");
        write_textfile(&path, &sample()).expect("write textfile");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            prometheus(&sample())
        );
        let names: Vec<_> = std::fs::read_dir(d.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("zt.prom")],
            "no temp file left"
        );
    }

    #[test]
    fn textfile_never_writes_through_a_symlink() {
        use std::os::unix::fs::{MetadataExt, symlink};
        let d = tempfile::tempdir().expect("tempdir");
        let victim = d.path().join("sudoers-zt");
        std::fs::write(&victim, "precious\n").expect("write");
        // the old fixed temp name, planted: no longer used, never followed
        symlink(&victim, d.path().join(".zt.prom.zt-tmp")).expect("symlink");
        let path = d.path().join("zt.prom");
        write_textfile(&path, &sample()).expect("write textfile");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("read"),
            "precious\n"
        );
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        assert!(meta.is_file());
        assert_eq!(meta.mode() & 0o7777, 0o644);
        // a symlink at the target name itself is refused, its target untouched
        std::fs::remove_file(&path).expect("rm");
        symlink(&victim, &path).expect("symlink");
        let e = write_textfile(&path, &sample()).expect_err("symlinked target");
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("read"),
            "precious\n"
        );
        assert!(
            std::fs::symlink_metadata(&path)
                .expect("stat")
                .file_type()
                .is_symlink()
        );
        // no temp file left behind by either write
        let temps = std::fs::read_dir(d.path())
            .expect("dir")
            .filter(|e| {
                let n = e.as_ref().expect("entry").file_name();
                let n = n.to_string_lossy();
                n.ends_with(".zt-tmp") && n != ".zt.prom.zt-tmp"
            })
            .count();
        assert_eq!(temps, 0);
    }

    #[test]
    fn an_empty_state_dir_is_unhealthy() {
        let d = tempfile::tempdir().expect("tempdir");
        let h = health(d.path());
        assert!(!h.healthy);
        assert_eq!(h.snapshot, None);
        assert!(h.snapshot_error.is_some());
        assert_eq!(h.last_attempt, None);
    }
}
