//! One sync: directory -> rules -> snapshot, published only if everything
//! worked. Any failure leaves the last good snapshot in force and says why.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use zt_snapshot::format::group_flags;
use zt_snapshot::state::{modes, names};
use zt_snapshot::{
    Content, GroupEntry, LocalGrantEntry, Pair, PolicyEntry, Snapshot, StateDir, UserEntry,
};

use crate::config::{AgentConfig, DirectorySource};
use crate::directory::error::{DirectoryError, DirectoryFailure};
use crate::directory::{Directory, entra, file, google, keycloak, okta, scim};
use crate::identity::local::LocalAccounts;
use crate::keys;
use crate::outcome::{Completed, SyncError};
use crate::resolve::{self, IdState, Resolution, grants, hold_back};
use crate::status::{self, Status, SudoStatus};
use crate::sudo;

/// Where the agent keeps its state and finds the host's account files.
#[derive(Debug, Clone)]
pub struct Paths {
    /// /var/lib/zt: snapshot, private, generation, ids.json, status.json.
    pub state_dir: PathBuf,
    /// "/" normally: the root under which etc/passwd and etc/group are read.
    pub host_root: PathBuf,
    /// Where `[[sudo]]` rules are installed (/etc/sudoers.d/zt).
    pub sudoers: sudo::install::Target,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            state_dir: PathBuf::from("/var/lib/zt"),
            host_root: PathBuf::from("/"),
            sudoers: sudo::install::Target::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub completed: Completed,
    pub changed: bool,
    pub generation: u64,
    pub users: usize,
    pub groups: usize,
    pub resolution: Resolution,
}

/// A directory read, with the connector's state to save once it is used
/// (Graph delta links): written under the state lock by [`sync`].
#[derive(Debug)]
pub struct DirectoryRead {
    pub directory: Directory,
    /// (state file name, bytes), written in this order.
    pub save: Vec<(&'static str, Vec<u8>)>,
    /// A fleet host: the fleet's names and ids, taken as given.
    pub fleet: Option<crate::fleet::host::Published>,
}

/// Reads the configured directory. `state`: where connectors find what they
/// saved last time (none: they start from scratch).
pub fn load_directory(
    config: &AgentConfig,
    state: Option<&StateDir>,
) -> Result<DirectoryRead, DirectoryError> {
    let plain = |directory| DirectoryRead {
        directory,
        save: Vec::new(),
        fleet: None,
    };
    match &config.directory.source {
        DirectorySource::File { path } => file::load(path).map(plain),
        DirectorySource::Unchecked => Err(DirectoryError::new(
            DirectoryFailure::Malformed,
            "[directory] was not checked (AgentConfig::parse)",
        )),
        DirectorySource::Scim(source) => {
            let http = directory_http(config)?;
            let mut api = scim::connect(&http, source)?;
            let read = scim::read(&mut api, &source.url, &configured_group_ids(config));
            log_requests("scim", api.requests, read.as_ref());
            read.map(plain)
        }
        DirectorySource::Entra(source) => {
            let http = directory_http(config)?;
            let mut api = entra::connect(&http, source)?;
            // an unreadable or untrusted state file: start from scratch
            let saved = state.and_then(|s| {
                s.read_trusted(names::ENTRA_DELTA).unwrap_or_else(|e| {
                    tracing::warn!("{e}; Graph will be read from scratch");
                    None
                })
            });
            let read = entra::read(
                &mut api,
                source,
                &configured_group_ids(config),
                saved.as_deref(),
            );
            log_requests("entra", api.requests, read.as_ref().map(|r| &r.0));
            let (directory, delta) = read?;
            let bytes = serde_json::to_vec(&delta).map_err(|e| {
                DirectoryError::new(DirectoryFailure::Malformed, format!("delta state: {e}"))
            })?;
            Ok(DirectoryRead {
                directory,
                save: vec![(names::ENTRA_DELTA, bytes)],
                fleet: None,
            })
        }
        DirectorySource::Fleet(source) => {
            let fetched = crate::fleet::fetch::read(config, source, state)?;
            let (directory, published) = crate::fleet::host::split(fetched.document);
            Ok(DirectoryRead {
                directory,
                save: fetched.save,
                fleet: Some(published),
            })
        }
        DirectorySource::Okta(source) => {
            let http = directory_http(config)?;
            let mut api = okta::connect(&http, source)?;
            let read = okta::read(&mut api, source, &configured_group_ids(config));
            log_requests("okta", api.requests, read.as_ref());
            read.map(plain)
        }
        DirectorySource::Google(source) => {
            let http = directory_http(config)?;
            let mut api = google::connect(&http, source)?;
            let read = google::read(&mut api, source, &configured_group_ids(config));
            log_requests("google", api.requests, read.as_ref());
            read.map(plain)
        }
        DirectorySource::Keycloak(source) => {
            let http = directory_http(config)?;
            let mut api = keycloak::connect(&http, source)?;
            let read = keycloak::read(&mut api, source, &configured_group_ids(config));
            log_requests("keycloak", api.requests, read.as_ref());
            read.map(plain)
        }
    }
}

/// Only these groups (and what is nested in them) are read: never the tenant.
fn configured_group_ids(config: &AgentConfig) -> Vec<String> {
    config
        .groups
        .iter()
        .map(|g| g.id.get_ref().clone())
        .collect()
}

fn directory_http(config: &AgentConfig) -> Result<crate::http::Http, DirectoryError> {
    crate::http::Http::new(&config.http)
        .map_err(|e| DirectoryError::new(DirectoryFailure::Unavailable, e))
}

fn log_requests(kind: &str, requests: u64, read: Result<&Directory, &DirectoryError>) {
    match read {
        Ok(d) => tracing::info!(
            "{kind}: read {} people and {} groups in {requests} requests",
            d.users.len(),
            d.groups.len()
        ),
        Err(e) => tracing::warn!("{kind}: {e} (after {requests} requests)"),
    }
}

/// Reads ids.json through the trusted directory: a forged or symlinked file
/// is refused, never used to hand out ids.
pub fn load_ids(state: &StateDir) -> Result<IdState, String> {
    let path = state.file_path(names::IDS);
    match state.read_trusted(names::IDS) {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{}:{}:{}: {e} (refusing to sync: uids must never be reassigned)",
                path.display(),
                e.line(),
                e.column()
            )
        }),
        Ok(None) => Ok(IdState::default()),
        Err(e) => Err(format!(
            "{e} (refusing to sync: uids must never be reassigned)"
        )),
    }
}

pub fn load_status(state: &StateDir) -> Status {
    state
        .read_trusted(names::STATUS)
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or_default()
}

/// Runs one sync: fetches the issuers' keys, then, under the state lock,
/// reads the directory, publishes, and records the outcome in status.json.
pub fn sync(config: &AgentConfig, paths: &Paths, force: bool) -> Result<Report, SyncError> {
    // the network first, outside the lock: a slow key server must not hold
    // up `sync --once`
    let fetched = keys::fetch_all(config);
    sync_fetched(config, paths, force, &fetched)
}

/// `sync` with the issuers' keys already fetched (`keys::fetch_all`).
pub fn sync_fetched(
    config: &AgentConfig,
    paths: &Paths,
    force: bool,
    fetched: &[keys::Fetched],
) -> Result<Report, SyncError> {
    let state =
        StateDir::open_or_create(&paths.state_dir).map_err(|e| SyncError::host(e.to_string()))?;
    // Read before taking the lock: an IdP that is slow or throttling us (a
    // read can take minutes of retries) must not hold up the login-time key
    // refresh, which publishes under the same lock.
    let directory = caught("reading the directory", || {
        load_directory(config, Some(&state)).map_err(SyncError::from)
    });
    let lock = state.lock().map_err(|e| SyncError::host(e.to_string()))?;
    if let Err(e) = state.remove_stale_temp_files(&lock) {
        tracing::warn!("cannot clean up temp files: {e}");
    }
    let previous_status = load_status(&state);
    let result = directory.and_then(|read| {
        // A fleet document was checked against the held serial before the
        // lock: another sync (the daemon and a `sync --once`) may have taken
        // a newer one since. Never go back.
        if let Some(fleet) = &read.fleet
            && let Some(held) = crate::fleet::fetch::held_record(&state)
            && fleet.serial < held.serial
        {
            return Err(SyncError::from(DirectoryError::new(
                DirectoryFailure::Malformed,
                format!(
                    "fleet document serial {} refused: serial {} was taken meanwhile (a rollback)",
                    fleet.serial, held.serial
                ),
            )));
        }
        // What the IdP told is saved whatever the publish does: it mirrors
        // the IdP, not the snapshot, and the next read continues from it.
        for (name, bytes) in &read.save {
            if let Err(e) = state.write_atomic(name, bytes, modes::PRIVATE) {
                tracing::warn!("cannot save {name}: {e}; the next read starts from scratch");
            }
        }
        // the publisher resolves the same directory for the fleet after its own sync
        let for_fleet = config
            .publish_target
            .as_ref()
            .map(|_| read.directory.clone());
        let report = caught("the sync", || {
            sync_locked(
                config,
                paths,
                &state,
                force,
                fetched,
                read.directory,
                read.fleet.as_ref(),
            )
        })?;
        if let (Some(target), Some(directory)) = (&config.publish_target, for_fleet) {
            caught("the fleet publication", || {
                crate::fleet::publish::publish(config, target, &state, &directory, fetched)
                    .map_err(|e| SyncError::host(format!("fleet publication failed: {e}")))
            })?;
        }
        Ok(report)
    });
    let mut st = previous_status.clone();
    st.last_attempt = status::now();
    st.sync_interval_secs = Some(config.directory.sync_interval.as_secs());
    st.outcome = Some(result.as_ref().map(|r| r.completed).map_err(|e| e.kind));
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
        Err(e) => st.last_error = Some(e.message.clone()),
    }
    // After every attempt, good or failed, from what is published now. Past
    // max_offline (a failed attempt) the IdP's say-so is stale: the grants
    // and the sudo rules it gave are withdrawn until a sync works again.
    // The published pair is read once for both: whether the host is
    // offline, and which groups sudo's %names stand for (a withdrawal below
    // republishes the same groups).
    let (offline, published) = {
        let public = state.read_trusted(names::SNAPSHOT).ok().flatten();
        let private = state.read_trusted(names::PRIVATE).ok().flatten();
        let pair = match (&public, &private) {
            (Some(a), Some(b)) => Pair::parse(a, b).ok(),
            _ => None,
        };
        (
            pair.as_ref()
                .and_then(|p| offline_reason(config, &state, p.private.synced_at())),
            sudo::published_groups(pair.as_ref()),
        )
    };
    if let Some(why) = &offline
        && let Err(e) = republish_locked(config, paths, &state, &[], true)
    {
        tracing::error!("{why}, but the local group grants could not be withdrawn: {e}");
    }
    st.sudo = Some(apply_sudo(config, paths, &published, offline.as_deref()));
    let text = serde_json::to_vec_pretty(&st).map_err(|e| SyncError::host(e.to_string()))?;
    if let Err(e) = state.write_atomic(names::STATUS, &text, modes::PRIVATE) {
        tracing::warn!("cannot write status.json: {e}");
    }
    result
}

/// Runs `f`, turning a panic in it (a bug, or an IdP answer nothing
/// foresaw) into a failed sync, so that what follows every attempt (status,
/// the max_offline withdrawal of sudo rules and grants) still runs. The
/// daemon also guards the whole sync, as a last resort.
pub fn caught<T>(what: &str, f: impl FnOnce() -> Result<T, SyncError>) -> Result<T, SyncError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(SyncError::host(format!("{what} panicked: {why}")))
    })
}

/// Republishes the current pair with fresh issuer keys only: a key refresh
/// at login time, which never reads the directory. Users and groups
/// are the published ones (rebuilt from the pair); the header's `synced_at`
/// keeps its value and the heartbeat is not written, because the directory
/// was not synced: `max_offline` must not be extended by a key refresh.
/// Waits at most `lock_wait` for the state lock (`None`: as long as it
/// takes). Returns the generation published (unchanged when the keys are),
/// or `None` when the lock stayed busy (a sync running, nothing published).
pub fn publish_keys_only(
    config: &AgentConfig,
    paths: &Paths,
    fetched: &[keys::Fetched],
    lock_wait: Option<std::time::Duration>,
) -> Result<Option<u64>, SyncError> {
    let state =
        StateDir::open_or_create(&paths.state_dir).map_err(|e| SyncError::host(e.to_string()))?;
    let Some(_lock) = state
        .lock_within(lock_wait)
        .map_err(|e| SyncError::host(e.to_string()))?
    else {
        return Ok(None);
    };
    republish_locked(config, paths, &state, fetched, false).map(Some)
}

/// Republishes the current pair (users and groups as published, `synced_at`
/// kept, no heartbeat) with the issuers' keys from `fetched` (the previous
/// ones where `fetched` has none), config-made parts as the config says now,
/// and the local group grants unless `withdraw_grants` or the host is past
/// `max_offline`. Returns the generation in force afterwards. The caller
/// holds the state lock.
fn republish_locked(
    config: &AgentConfig,
    paths: &Paths,
    state: &StateDir,
    fetched: &[keys::Fetched],
    withdraw_grants: bool,
) -> Result<u64, SyncError> {
    let read = |name| {
        state
            .read_trusted(name)
            .map_err(|e| SyncError::host(e.to_string()))?
            .ok_or_else(|| SyncError::host(format!("no {name} published yet")))
    };
    let public = read(names::SNAPSHOT)?;
    let private = read(names::PRIVATE)?;
    let pair = Pair::parse(&public, &private)
        .map_err(|e| SyncError::host(format!("the published pair is unusable: {e}")))?;
    let grants =
        !withdraw_grants && offline_reason(config, state, pair.private.synced_at()).is_none();
    let mut content = published_pair_content(&pair);
    content.issuers = keys::issuer_entries(config, fetched, Some(&pair.private));
    content.shared_accounts = crate::resolve::Policy::from_config(config).shared_accounts;
    content.policy = PolicyEntry {
        max_offline_secs: config.max_offline_secs(),
    };
    // withdrawing grants needs nothing from the account files
    let zt_gid = if grants {
        let local = LocalAccounts::load(&paths.host_root).map_err(|e| {
            SyncError::host(format!(
                "cannot read the host's account files under {}: {e}",
                paths.host_root.join("etc").display()
            ))
        })?;
        // grants are configuration too: recomputed, as a sync would
        content.local_grants = local_grants(config, paths, &local, &content).0;
        local.zt_gid
    } else {
        crate::identity::local::zt_gid(&paths.host_root)
    };
    let (generation, synced_at) = (pair.generation(), pair.public.synced_at());
    let mut built = zt_snapshot::build(&content)
        .map_err(|e| SyncError::host(format!("cannot build snapshot: {e}")))?;
    if built.private == private && built.public == public {
        return Ok(generation);
    }
    let announced = state.read_generation().ok().flatten().unwrap_or(0);
    let next = generation.max(announced) + 1;
    built.restamp(next, synced_at);
    Pair::parse(&built.public, &built.private)
        .and_then(|p| p.verify_all())
        .map_err(|e| {
            SyncError::host(format!(
                "refusing to publish a snapshot that does not read back: {e}"
            ))
        })?;
    state
        .publish_for(&built, zt_gid)
        .map_err(|e| SyncError::host(format!("publishing snapshot: {e}")))?;
    tracing::info!(
        "published generation {next} without reading the directory ({})",
        if grants {
            "issuer keys"
        } else {
            "local group grants withdrawn: offline past max_offline"
        }
    );
    Ok(next)
}

/// Why this host is past `[login] max_offline`, if it is: measured as pam_zt
/// measures it (the later of the heartbeat and the published private file's
/// `synced_at`).
fn offline_reason(config: &AgentConfig, state: &StateDir, synced_at: u64) -> Option<String> {
    let limit = config.max_offline_secs();
    if limit == 0 {
        return None;
    }
    let last = zt_snapshot::last_good_sync(state.read_last_good_sync().ok().flatten(), synced_at);
    let age = status::now().saturating_sub(last);
    (age > limit).then(|| {
        format!("the last good sync was {age} s ago, past [login] max_offline ({limit} s)")
    })
}

/// `[[local_groups]]` for the groups `content` publishes, and the grants refused.
fn local_grants(
    config: &AgentConfig,
    paths: &Paths,
    local: &LocalAccounts,
    content: &Content,
) -> (Vec<LocalGrantEntry>, Vec<String>) {
    if config.local_group_rules.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let published: HashMap<&str, u32> = content
        .groups
        .iter()
        .filter(|g| !g.idp_id.is_empty())
        .map(|g| (g.idp_id.as_str(), g.gid))
        .collect();
    let in_sudoers = grants::sudoers_groups(
        &paths.host_root.join("etc/sudoers"),
        &paths.sudoers.dir,
        sudo::install::FILE_NAME,
    );
    let served: HashSet<u32> = content.groups.iter().map(|g| g.gid).collect();
    grants::grants(
        &config.local_group_rules,
        local,
        &in_sudoers,
        &published,
        &served,
    )
}

/// Installs the `[[sudo]]` rules for the groups published now; none past
/// `max_offline` (`offline`). Called with the state lock held.
fn apply_sudo(
    config: &AgentConfig,
    paths: &Paths,
    published: &HashMap<String, String>,
    offline: Option<&str>,
) -> SudoStatus {
    let installed_rules = || sudo::install::installed_rule_count(&paths.sudoers);
    // the case-clash check needs /etc/group: without it, change nothing
    let local = match LocalAccounts::load(&paths.host_root) {
        Ok(l) => l,
        // withdrawing every rule needs no check
        Err(_) if offline.is_some() => LocalAccounts::default(),
        Err(e) => {
            return SudoStatus {
                rules: installed_rules(),
                error: Some(format!(
                    "cannot read the host's account files under {} ({e}); the installed rules \
                     stay as they are",
                    paths.host_root.join("etc").display()
                )),
                problems: Vec::new(),
            };
        }
    };
    let report = sudo::apply(
        config,
        published,
        &local.group_names,
        offline,
        &paths.sudoers,
    );
    let mut problems = report.problems;
    let rules = installed_rules();
    if rules > 0 {
        let sudo_conf = paths.host_root.join("etc/sudo.conf");
        if !sudo::group_source_dynamic(&sudo_conf) {
            problems.push(sudo::group_source_problem(&sudo_conf));
        }
        let main = paths.host_root.join("etc/sudoers");
        if !sudo::includes_dir(&main, &paths.sudoers.dir) {
            problems.push(format!(
                "{} has no \"@includedir {}\" line: sudo does not read the rules zt installs",
                main.display(),
                paths.sudoers.dir.display()
            ));
        }
    }
    SudoStatus {
        rules,
        error: report.outcome.err(),
        problems,
    }
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

fn sync_locked(
    config: &AgentConfig,
    paths: &Paths,
    state: &StateDir,
    force: bool,
    fetched: &[keys::Fetched],
    directory: Directory,
    fleet: Option<&crate::fleet::host::Published>,
) -> Result<Report, SyncError> {
    let local = LocalAccounts::load(&paths.host_root).map_err(|e| {
        SyncError::host(format!(
            "cannot read the host's {}etc/passwd or group: {e}",
            paths.host_root.display()
        ))
    })?;
    let mut ids = load_ids(state).map_err(SyncError::host)?;
    // A fingerprint, not a copy, of what ids.json holds: at 100,000 people a
    // copy is 17 MB held through the whole sync.
    let ids_on_disk = fingerprint(&ids);
    // An untrusted file (symlink, foreign owner) counts as absent: it is
    // replaced, never read.
    let read_previous = |name| {
        state.read_trusted(name).unwrap_or_else(|e| {
            tracing::warn!("{e}; it will be replaced");
            None
        })
    };
    let previous = read_previous(names::SNAPSHOT);
    let previous_private = read_previous(names::PRIVATE);
    let previous_view = previous.as_deref().and_then(|b| match Snapshot::parse(b) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("the current snapshot is unreadable and will be replaced: {e}");
            None
        }
    });
    // Parsed once: the pair check, the keys kept while a fetch fails and the
    // generation of an orphaned private file all read this view.
    let previous_private_parsed = previous_private.as_deref().map(zt_snapshot::Private::parse);
    let previous_private_view = previous_private_parsed.and_then(Result::ok);
    // IdP ids live in the private twin; without a matching twin the previous
    // pair cannot vouch for ids or removals.
    let previous_pair = previous_view.and_then(|public| {
        let private = previous_private_parsed?;
        match private.and_then(|p| Pair::new(public, p)) {
            Ok(pair) => Some(pair),
            Err(e) => {
                tracing::warn!("the current private file is unusable and will be replaced: {e}");
                None
            }
        }
    });

    if let Some(prev) = &previous_pair {
        remember_published_ids(prev, &mut ids);
    }
    let mut resolution = match fleet {
        // the fleet's ids, taken as given where they move nothing this host
        // handed out before: nothing is allocated here
        Some(published) => crate::fleet::host::resolve(config, &directory, &local, published, &ids),
        None => resolve::resolve(config, &directory, &local, &ids),
    };

    // What readers may be serving now. With a matching twin, the pair says it
    // all; without one (an agent killed between the two renames, a lost or
    // damaged private file) the public snapshot still lists who is published,
    // and ids.json (written before every publish) names their IdP ids: the
    // mass-removal guard must not switch off just because the twin is gone.
    let published_before = match (&previous_pair, &previous_view) {
        (Some(pair), _) => Some(published_pair_content(pair)),
        (None, Some(public)) => Some(published_content_from_ids(public, &ids, config)),
        (None, None) => None,
    };
    let mut held_back = None;
    if let Some(published) = &published_before {
        let limit = config.directory.max_removal_percent;
        held_back =
            hold_back::hold_back_removals(&mut resolution, published, &directory, limit, force);
        if let Some(held) = &held_back {
            tracing::warn!("{}", held.message());
            resolution.problems.push(held.message());
        }
    }
    // Both are as large as the directory (100,000 people: ~90 MB) and done
    // with: let them go before the build, the sync's peak.
    drop(published_before);
    drop(directory);

    // Issuers and policy are configuration, not directory: added here. A
    // private file that is not the public one's twin still holds the keys
    // last fetched, good enough to keep while a fetch fails.
    let from_fleet;
    let fetched = match fleet {
        Some(published) => {
            from_fleet = crate::fleet::host::issuer_keys(fetched, published);
            &from_fleet[..]
        }
        None => fetched,
    };
    resolution.content.issuers =
        keys::issuer_entries(config, fetched, previous_private_view.as_ref());
    resolution.content.policy = PolicyEntry {
        max_offline_secs: config.max_offline_secs(),
    };
    let (grants, grant_problems) = local_grants(config, paths, &local, &resolution.content);
    resolution.content.local_grants = grants;
    resolution.problems.extend(grant_problems);

    // Unchanged content keeps its generation: readers have nothing to reload.
    // Build once with the previous stamp, compare, and restamp if it changed.
    let (prev_gen, prev_synced) = previous_view
        .as_ref()
        .map_or((0, 0), |s| (s.generation(), s.synced_at()));
    // ...nor the generation an orphaned private file carries (a kill between
    // the renames leaves one newer than the public snapshot)
    let orphan_gen = previous_private_view.map_or(0, |p| p.generation());
    // The previous files (31 MB at 100,000 people) are compared by digest so
    // they need not stay in memory through the build, the sync's peak.
    let digest = |b: &[u8]| -> [u8; 32] { <sha2::Sha256 as sha2::Digest>::digest(b).into() };
    let previous_digests = (
        previous.as_deref().map(digest),
        previous_private.as_deref().map(digest),
    );
    drop((previous, previous_private));
    resolution.content.generation = prev_gen;
    resolution.content.synced_at = prev_synced;
    let mut built = zt_snapshot::build(&resolution.content)
        .map_err(|e| SyncError::host(format!("cannot build snapshot: {e}")))?;
    // Either file changing makes a new generation: the pair is one publication.
    let changed = previous_digests != (Some(digest(&built.public)), Some(digest(&built.private)));
    let announced = || state.read_generation().ok().flatten();
    if changed {
        // never reuse a generation readers may have acted on, even if the
        // snapshot it belonged to is now unreadable
        resolution.content.generation = prev_gen.max(announced().unwrap_or(0)).max(orphan_gen) + 1;
        resolution.content.synced_at = status::now();
        built.restamp(resolution.content.generation, resolution.content.synced_at);
    }
    Pair::parse(&built.public, &built.private)
        .and_then(|p| p.verify_all())
        .map_err(|e| {
            SyncError::host(format!(
                "refusing to publish a snapshot that does not read back: {e}"
            ))
        })?;

    // ids first: any uid a reader can see is already remembered.
    if fingerprint(&resolution.ids) != ids_on_disk {
        let text = serde_json::to_vec_pretty(&resolution.ids)
            .map_err(|e| SyncError::host(e.to_string()))?;
        state
            .write_atomic(names::IDS, &text, modes::PRIVATE)
            .map_err(|e| SyncError::host(format!("writing ids.json: {e}")))?;
    }
    if changed {
        state
            .publish_for(&built, local.zt_gid)
            .map_err(|e| SyncError::host(format!("publishing snapshot: {e}")))?;
        tracing::info!(
            "published snapshot generation {}: {} users, {} groups",
            resolution.content.generation,
            resolution.content.users.len(),
            resolution.content.groups.len()
        );
    } else if announced() != Some(prev_gen)
        && let Err(e) = state.write_generation(prev_gen)
    {
        // an agent that died between rename and generation write is caught up here
        tracing::warn!("cannot announce generation {prev_gen}: {e}");
    }
    // the heartbeat: pam_zt's max_offline counts from the last good sync,
    // changed or not
    if let Err(e) = state.write_last_good_sync(status::now()) {
        tracing::warn!("cannot record the sync time: {e}");
    }
    Ok(Report {
        completed: match (&held_back, changed) {
            (Some(_), _) => Completed::HeldBack,
            (None, true) => Completed::Published,
            (None, false) => Completed::Unchanged,
        },
        changed,
        generation: resolution.content.generation,
        users: resolution.content.users.len(),
        groups: resolution.content.groups.len(),
        resolution,
    })
}

/// SHA-256 of the ids' JSON form, streamed (no buffer of the whole text).
fn fingerprint(ids: &IdState) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    // writing into a hasher cannot fail; a serialisation error would make
    // the fingerprints differ, and ids.json is then simply rewritten
    let _ = serde_json::to_writer(&mut h, ids);
    h.finalize().into()
}

/// Every id and name the published pair shows is handed out: if ids.json was
/// lost or is behind, take them from the pair (uid and name from the public
/// file, IdP id from its private twin, same index) so nobody's uid or name moves.
fn remember_published_ids(prev: &Pair<'_>, ids: &mut IdState) {
    for i in 0..prev.public.user_count() {
        if let (Ok(u), Ok(p)) = (prev.public.user(i), prev.private.user(i))
            && let (Ok(id), Ok(name)) = (std::str::from_utf8(p.idp_id), std::str::from_utf8(u.name))
        {
            ids.users.entry(id.to_string()).or_insert(u.uid);
            ids.names.entry(name.to_string()).or_insert(id.to_string());
        }
    }
    for i in 0..prev.public.group_count() {
        if let (Ok(g), Ok(p)) = (prev.public.group(i), prev.private.group(i))
            && let Ok(id) = std::str::from_utf8(p.idp_id)
            && !id.is_empty()
        {
            ids.groups.entry(id.to_string()).or_insert(g.gid);
        }
    }
}

/// The published public snapshot as plain values, for holding back removals,
/// with what only the private side knows supplied per record: `person(index,
/// uid)` gives a user's email and IdP id (None leaves the user out), `group(index,
/// gid)` a group's flags and IdP id. Unreadable records are left out.
fn published_content(
    public: &Snapshot<'_>,
    person: impl Fn(usize, u32) -> Option<Person>,
    group: impl Fn(usize, u32) -> Option<(u32, String)>,
) -> Content {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let users = (0..public.user_count())
        .filter_map(|i| public.user(i).ok())
        .filter_map(|u| {
            let Person {
                email,
                idp_id,
                principals,
                ssh_keys,
            } = person(u.index, u.uid)?;
            Some(UserEntry {
                name: text(u.name),
                uid: u.uid,
                gid: u.gid,
                gecos: text(u.gecos),
                home: text(u.home),
                shell: text(u.shell),
                email,
                idp_id,
                principals,
                ssh_keys,
            })
        })
        .collect();
    let groups = (0..public.group_count())
        .filter_map(|i| public.group(i).ok())
        .filter_map(|g| {
            let (flags, idp_id) = group(g.index, g.gid)?;
            Some(GroupEntry {
                name: text(g.name),
                gid: g.gid,
                flags,
                idp_id,
                members: g
                    .members
                    .iter()
                    .filter_map(|m| public.user_name(m as usize).ok().map(text))
                    .collect(),
            })
        })
        .collect();
    Content {
        generation: public.generation(),
        synced_at: public.synced_at(),
        users,
        groups,
        ..Content::default()
    }
}

/// What only the private side knows about a published user.
struct Person {
    email: String,
    idp_id: String,
    principals: Vec<String>,
    ssh_keys: Vec<String>,
}

/// The previous pair: emails, IdP ids, SSH principals and keys, flags and
/// shared accounts from the private twin.
fn published_pair_content(prev: &Pair<'_>) -> Content {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let private = &prev.private;
    let list = |l: Result<zt_snapshot::StrList<'_>, _>| -> Vec<String> {
        l.map(|l| l.iter().filter_map(|s| s.ok().map(text)).collect())
            .unwrap_or_default()
    };
    let mut content = published_content(
        &prev.public,
        |i, _| {
            private.user(i).ok().map(|p| Person {
                email: text(p.email),
                idp_id: text(p.idp_id),
                principals: list(private.principals(i)),
                ssh_keys: list(private.keys(i)),
            })
        },
        |i, _| private.group(i).ok().map(|p| (p.flags, text(p.idp_id))),
    );
    content.shared_accounts = (0..private.shared_account_count())
        .filter_map(|i| private.shared_account_at(i).ok())
        .map(|a| zt_snapshot::SharedAccountEntry {
            name: text(a.name),
            groups: list(Ok(a.groups)),
        })
        .collect();
    content
}

/// The published public snapshot when its private twin is missing or does not
/// match: IdP ids come from ids.json (uid -> person, gid -> group; written
/// before every publish), login flags from the config. Users whose uid ids.json
/// does not know cannot be told apart from newcomers and are left out. Emails
/// are unknown here: a kept entry has none until the directory has the person
/// again.
fn published_content_from_ids(
    public: &Snapshot<'_>,
    ids: &IdState,
    config: &AgentConfig,
) -> Content {
    let person_by_uid: std::collections::HashMap<u32, &str> = ids
        .users
        .iter()
        .map(|(id, uid)| (*uid, id.as_str()))
        .collect();
    let group_by_gid: std::collections::HashMap<u32, &str> = ids
        .groups
        .iter()
        .map(|(id, gid)| (*gid, id.as_str()))
        .collect();
    let login: HashSet<&str> = config
        .groups
        .iter()
        .filter(|g| g.login)
        .map(|g| g.id.get_ref().as_str())
        .collect();
    published_content(
        public,
        |_, uid| {
            Some(Person {
                email: String::new(),
                idp_id: person_by_uid.get(&uid)?.to_string(),
                principals: Vec::new(),
                ssh_keys: Vec::new(),
            })
        },
        |_, gid| {
            let idp_id = group_by_gid.get(&gid).copied().unwrap_or_default();
            let flags = if login.contains(idp_id) {
                group_flags::LOGIN
            } else {
                0
            };
            Some((flags, idp_id.to_string()))
        },
    )
}
