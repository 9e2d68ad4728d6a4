//! One sync: directory -> rules -> snapshot, published only if everything
//! worked. Any failure leaves the last good snapshot in force and says why.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use zt_snapshot::{Content, GroupEntry, Snapshot, UserEntry};

use crate::config::{AgentConfig, DirectoryKind};
use crate::directory::{Directory, file};
use crate::identity::local::LocalAccounts;
use crate::publish::{self, StateLock};
use crate::resolve::{self, IdState, Resolution, hold_back};
use crate::status::{self, Status};

/// Where the agent keeps its state and finds the host's account files.
#[derive(Debug, Clone)]
pub struct Paths {
    /// /var/lib/zt: snapshot, generation, ids.json, status.json.
    pub state_dir: PathBuf,
    /// "/" normally: the root under which etc/passwd and etc/group are read.
    pub host_root: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            state_dir: PathBuf::from("/var/lib/zt"),
            host_root: PathBuf::from("/"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub changed: bool,
    pub generation: u64,
    pub users: usize,
    pub groups: usize,
    pub resolution: Resolution,
}

pub fn load_directory(config: &AgentConfig) -> Result<Directory, String> {
    match config.directory.kind {
        DirectoryKind::File => {
            let path = config
                .directory
                .path
                .as_deref()
                .ok_or("[directory] has no path")?;
            file::load(path)
        }
    }
}

pub fn load_ids(dir: &Path) -> Result<IdState, String> {
    let path = dir.join("ids.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}:{}:{}: {e} (refusing to sync: uids must never be reassigned)",
                path.display(),
                e.line(),
                e.column()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(IdState::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

pub fn load_status(dir: &Path) -> Status {
    std::fs::read_to_string(dir.join("status.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Runs one sync under the state lock and records the outcome in status.json.
pub fn sync(config: &AgentConfig, paths: &Paths, force: bool) -> Result<Report, String> {
    publish::ensure_state_dir(&paths.state_dir)
        .map_err(|e| format!("{}: {e}", paths.state_dir.display()))?;
    let lock = StateLock::acquire(&paths.state_dir).map_err(|e| format!("lock: {e}"))?;
    if let Err(e) = publish::remove_stale_temp_files(&paths.state_dir, &lock) {
        tracing::warn!("cannot clean {}: {e}", paths.state_dir.display());
    }
    let previous_status = load_status(&paths.state_dir);
    let result = sync_locked(config, paths, force);
    let mut st = previous_status.clone();
    st.last_attempt = status::now();
    match &result {
        Ok(r) => {
            st.last_success = Some(st.last_attempt);
            st.last_error = None;
            st.users = r.users;
            st.groups = r.groups;
            st.skipped = r
                .resolution
                .skipped
                .iter()
                .filter(|s| s.notable)
                .cloned()
                .collect();
            st.problems = r.resolution.problems.clone();
            log_news(&previous_status, &st);
        }
        Err(e) => st.last_error = Some(e.clone()),
    }
    let text = serde_json::to_vec_pretty(&st).map_err(|e| e.to_string())?;
    if let Err(e) = publish::write_atomic(&paths.state_dir, "status.json", &text, 0o600) {
        tracing::warn!("cannot write status.json: {e}");
    }
    result
}

/// Logs skips and problems once, when they first appear, not every minute.
fn log_news(before: &Status, now: &Status) {
    let old: HashSet<(&str, &str)> = before
        .skipped
        .iter()
        .map(|s| (s.id.as_str(), s.reason.as_str()))
        .collect();
    for s in &now.skipped {
        if !old.contains(&(s.id.as_str(), s.reason.as_str())) {
            tracing::warn!("skipped {:?} ({:?}): {}", s.email, s.id, s.reason);
        }
    }
    for p in now.problems.iter().filter(|p| !before.problems.contains(p)) {
        tracing::warn!("directory: {p}");
    }
}

fn sync_locked(config: &AgentConfig, paths: &Paths, force: bool) -> Result<Report, String> {
    let dir = &paths.state_dir;
    let directory = load_directory(config)?;
    let local = LocalAccounts::load(&paths.host_root).map_err(|e| {
        format!(
            "cannot read the host's {}etc/passwd or group: {e}",
            paths.host_root.display()
        )
    })?;
    let ids_on_disk = load_ids(dir)?;
    let mut ids = ids_on_disk.clone();
    let previous = std::fs::read(dir.join("snapshot")).ok();
    let previous_view = previous.as_deref().and_then(|b| match Snapshot::parse(b) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("the current snapshot is unreadable and will be replaced: {e}");
            None
        }
    });

    if let Some(prev) = &previous_view {
        remember_published_ids(prev, &mut ids);
    }
    let mut resolution = resolve::resolve(config, &directory, &local, &ids);

    if let Some(prev) = &previous_view {
        let published = published_content(prev);
        let limit = config.directory.max_removal_percent;
        if let Some(held) =
            hold_back::hold_back_removals(&mut resolution, &published, &directory, limit, force)
        {
            tracing::warn!("{}", held.message());
            resolution.problems.push(held.message());
        }
    }

    // Unchanged content keeps its generation: readers have nothing to reload.
    // Build once with the previous stamp, compare, and restamp if it changed.
    let (prev_gen, prev_synced) = previous_view
        .as_ref()
        .map_or((0, 0), |s| (s.generation(), s.synced_at()));
    resolution.content.generation = prev_gen;
    resolution.content.synced_at = prev_synced;
    let mut bytes = zt_snapshot::build(&resolution.content)
        .map_err(|e| format!("cannot build snapshot: {e}"))?;
    let changed = previous.as_deref() != Some(bytes.as_slice());
    if changed {
        // never reuse a generation readers may have acted on, even if the
        // snapshot it belonged to is now unreadable
        let announced = publish::read_generation(dir).unwrap_or(0);
        resolution.content.generation = prev_gen.max(announced) + 1;
        resolution.content.synced_at = status::now();
        zt_snapshot::restamp(
            &mut bytes,
            resolution.content.generation,
            resolution.content.synced_at,
        );
    }
    Snapshot::parse(&bytes)
        .and_then(|s| s.verify_all())
        .map_err(|e| format!("refusing to publish a snapshot that does not read back: {e}"))?;

    // ids first: any uid a reader can see is already remembered.
    if resolution.ids != ids_on_disk {
        let text = serde_json::to_vec_pretty(&resolution.ids).map_err(|e| e.to_string())?;
        publish::write_atomic(dir, "ids.json", &text, 0o600)
            .map_err(|e| format!("writing ids.json: {e}"))?;
    }
    if changed {
        publish::publish_snapshot(dir, &bytes, resolution.content.generation)
            .map_err(|e| format!("publishing snapshot: {e}"))?;
        tracing::info!(
            "published snapshot generation {}: {} users, {} groups",
            resolution.content.generation,
            resolution.content.users.len(),
            resolution.content.groups.len()
        );
    } else if publish::read_generation(dir) != Some(prev_gen) {
        // an agent that died between rename and generation write is caught up here
        let _ = publish::write_generation(dir, prev_gen);
    }
    Ok(Report {
        changed,
        generation: resolution.content.generation,
        users: resolution.content.users.len(),
        groups: resolution.content.groups.len(),
        resolution,
    })
}

/// Every id and name the published snapshot shows is handed out: if ids.json was
/// lost or is behind, take them from the snapshot so nobody's uid or name moves.
fn remember_published_ids(prev: &Snapshot<'_>, ids: &mut IdState) {
    for u in (0..prev.user_count()).filter_map(|i| prev.user(i).ok()) {
        if let (Ok(id), Ok(name)) = (std::str::from_utf8(u.idp_id), std::str::from_utf8(u.name)) {
            ids.users.entry(id.to_string()).or_insert(u.uid);
            ids.names.entry(name.to_string()).or_insert(id.to_string());
        }
    }
    for g in (0..prev.group_count()).filter_map(|i| prev.group(i).ok()) {
        if let Ok(id) = std::str::from_utf8(g.idp_id)
            && !id.is_empty()
        {
            ids.groups.entry(id.to_string()).or_insert(g.gid);
        }
    }
}

/// The previous snapshot as plain values, for holding back removals: every
/// user (name, uid, gid, gecos, home, shell, email, IdP id) and every group with
/// its flags and member names. Unreadable records are left out.
fn published_content(prev: &Snapshot<'_>) -> Content {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let users = (0..prev.user_count())
        .filter_map(|i| prev.user(i).ok())
        .map(|u| UserEntry {
            name: text(u.name),
            uid: u.uid,
            gid: u.gid,
            gecos: text(u.gecos),
            home: text(u.home),
            shell: text(u.shell),
            email: text(u.email),
            idp_id: text(u.idp_id),
        })
        .collect();
    let groups = (0..prev.group_count())
        .filter_map(|i| prev.group(i).ok())
        .map(|g| GroupEntry {
            name: text(g.name),
            gid: g.gid,
            flags: g.flags,
            idp_id: text(g.idp_id),
            members: g
                .members
                .iter()
                .filter_map(|m| prev.user_name(m as usize).ok().map(text))
                .collect(),
        })
        .collect();
    Content {
        generation: prev.generation(),
        synced_at: prev.synced_at(),
        users,
        groups,
    }
}
