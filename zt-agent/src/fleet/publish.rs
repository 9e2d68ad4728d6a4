//! The publisher: after its own sync, the agent resolves the directory once
//! for the whole fleet (every configured group counts, no host's local
//! accounts), allocates ids with the usual persistence rules in a state file
//! of their own (`fleet-ids.json`), and publishes a signed document when the
//! content changed or half its validity has passed.
//!
//! Publishing is atomic for readers: the object goes under a new, unique name
//! (`objects/<serial>-<sha256 prefix>.ztf`), then the small pointer
//! (`current.json`) that names it is renamed into place. The pointer's mtime is
//! set to at least one second after the previous pointer's, so a web server's
//! ETag/Last-Modified (nginx: mtime seconds and size) changes with every
//! publication. Objects no pointer has named for [`KEEP_OBJECTS`] are removed
//! (a host may be downloading one).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zt_snapshot::StateDir;
use zt_snapshot::format::group_flags;
use zt_snapshot::state::modes;

use super::document::{self, Document, Group, IssuerKey, Person};
use super::{Location, OBJECTS, POINTER, PublishTarget};
use crate::config::AgentConfig;
use crate::directory::Directory;
use crate::directory::nesting::Nesting;
use crate::identity::local::LocalAccounts;
use crate::keys;
use crate::resolve::{self, IdState, Policy};

/// The fleet's ids: never the publisher's own ids.json (its own host has
/// local accounts the fleet must not depend on).
pub const FLEET_IDS: &str = "fleet-ids.json";
/// The last publication: serial, content digest, times.
pub const PUBLISHED: &str = "fleet-published.json";
/// An object no pointer names any more stays this long.
pub const KEEP_OBJECTS: Duration = Duration::from_secs(3600);
/// Pointer format.
pub const POINTER_FORMAT: u32 = 1;

/// The small file that names the current object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pointer {
    pub format: u32,
    pub serial: u64,
    /// Relative to the pointer: "objects/<serial>-<hash>.ztf".
    pub object: String,
    /// Hex SHA-256 of the whole object.
    pub sha256: String,
    pub size: u64,
    pub published_at: u64,
    pub valid_until: u64,
    /// SHA-256 of the document's content without serial and times: a second
    /// publisher with the same directory sees that it has nothing to add.
    #[serde(default)]
    pub content: String,
    /// The signer's public key (base64): a publisher whose key changed
    /// publishes again, even when the content is the same.
    #[serde(default)]
    pub key: String,
    /// Ed25519 signature of the fields above (`super::pointer`), base64.
    #[serde(default)]
    pub sig: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Published {
    serial: u64,
    /// SHA-256 of the document's content without serial and times.
    content: String,
    published_at: u64,
    valid_until: u64,
    object: String,
}

/// What one publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// A new document went out (false: the content was unchanged and still valid).
    pub published: bool,
    pub serial: u64,
    pub people: usize,
    pub groups: usize,
    pub object_bytes: u64,
    pub valid_until: u64,
}

/// Where documents go.
pub trait Destination {
    /// The pointer there now, if any (another publisher's, or ours).
    fn read_pointer(&self) -> Result<Option<(Pointer, SystemTime)>, String>;
    /// Writes an object under `name` (a new, unique name).
    fn put_object(&self, name: &str, bytes: &[u8]) -> Result<(), String>;
    /// An object as served (at most `limit` bytes).
    fn get_object(&self, name: &str, limit: u64) -> Result<Vec<u8>, String>;
    /// Replaces the pointer; `not_before`: its mtime is at least this.
    fn put_pointer(&self, bytes: &[u8], not_before: Option<SystemTime>) -> Result<(), String>;
    /// Removes objects older than `KEEP_OBJECTS` whose names are not in `keep`.
    fn prune(&self, keep: &HashSet<String>) -> Result<usize, String>;
    /// Marks an object as replaced now, where the store can (a folder: its
    /// mtime), so pruning counts from its replacement, not its creation.
    fn retire(&self, _name: &str) {}
}

/// A folder a web server serves.
pub struct Folder {
    pub root: PathBuf,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` to `path` through a unique temp file in the same folder:
/// mode 0644 (the web server reads it), fsync, optional mtime, rename, fsync
/// of the folder.
fn write_replace(path: &Path, bytes: &[u8], mtime: Option<SystemTime>) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = dir.join(format!(".{name}.tmp.{}.{nanos}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| format!("{}: cannot create: {e}", tmp.display()))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
            .and_then(|()| f.write_all(bytes))
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
        if let Some(t) = mtime {
            f.set_modified(t)
                .map_err(|e| format!("{}: cannot set its time: {e}", tmp.display()))?;
        }
        std::fs::rename(&tmp, path)
            .map_err(|e| format!("{}: cannot rename into place: {e}", path.display()))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("{}: fsync: {e}", dir.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The publish folder and its `objects` must be this agent's own and
/// writable by nobody else, and no folder above may be writable by others
/// (unless sticky): root writes and prunes there, and a symlink someone else
/// could plant would point both at any directory on the host.
fn check_folder(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "{}: must be a directory, not a symlink or a file",
            dir.display()
        ));
    }
    if meta.uid() != me || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{}: must be owned by uid {me} and writable by nobody else (owner {}, mode {:o})",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    let canonical = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    for above in canonical.ancestors().skip(1) {
        let m = std::fs::metadata(above).map_err(|e| format!("{}: {e}", above.display()))?;
        let sticky = m.mode() & 0o1000 != 0;
        if (m.uid() != 0 && m.uid() != me) || (m.mode() & 0o022 != 0 && !sticky) {
            return Err(format!(
                "{}: a folder above the publish folder belongs to uid {} or is writable by others (mode {:o}): someone could swap the folder",
                above.display(),
                m.uid(),
                m.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

impl Folder {
    /// The root, made if missing (0755), and checked.
    fn root_checked(&self) -> Result<(), String> {
        use std::os::unix::fs::DirBuilderExt;
        if std::fs::symlink_metadata(&self.root).is_err() {
            // made with its mode, never chmod'ed by path afterwards (a swap
            // in between would make root chmod another directory)
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&self.root)
                .map_err(|e| format!("{}: cannot create: {e}", self.root.display()))?;
        }
        check_folder(&self.root)
    }

    /// `objects`, made if missing (0755), and checked.
    fn objects_checked(&self) -> Result<PathBuf, String> {
        self.root_checked()?;
        let objects = self.root.join(OBJECTS);
        {
            use std::os::unix::fs::DirBuilderExt;
            match std::fs::DirBuilder::new().mode(0o755).create(&objects) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("{}: cannot create: {e}", objects.display())),
            }
        }
        check_folder(&objects)?;
        Ok(objects)
    }
}

impl Destination for Folder {
    fn read_pointer(&self) -> Result<Option<(Pointer, SystemTime)>, String> {
        use std::io::Read;
        self.root_checked()?;
        let path = self.root.join(POINTER);
        // no symlink, no FIFO, no endless file: at most 64 KiB of a regular file
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let meta = file
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!("{}: not a regular file", path.display()));
        }
        let mut bytes = Vec::new();
        file.take(64 << 10)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mtime = meta
            .modified()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        // a pointer we cannot read is replaced (and its serial not trusted)
        Ok(serde_json::from_slice(&bytes).ok().map(|p| (p, mtime)))
    }

    fn put_object(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        self.objects_checked()?;
        write_replace(&self.root.join(name), bytes, None)
    }

    fn get_object(&self, name: &str, limit: u64) -> Result<Vec<u8>, String> {
        use std::io::Read;
        let path = self.root.join(name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(format!("{}: not a regular file", path.display()));
        }
        let mut bytes = Vec::new();
        file.take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(bytes)
    }

    fn put_pointer(&self, bytes: &[u8], not_before: Option<SystemTime>) -> Result<(), String> {
        self.root_checked()?;
        let now = SystemTime::now();
        let mtime = not_before.filter(|t| *t > now).unwrap_or(now);
        write_replace(&self.root.join(POINTER), bytes, Some(mtime))
    }

    fn prune(&self, keep: &HashSet<String>) -> Result<usize, String> {
        let objects = self.objects_checked()?;
        let entries = match std::fs::read_dir(&objects) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(format!("{}: {e}", objects.display())),
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = format!("{OBJECTS}/{}", entry.file_name().to_string_lossy());
            // only this agent's own objects: never a directory, never a
            // name it would not have written
            if !entry.file_type().is_ok_and(|t| t.is_file()) || !name.ends_with(".ztf") {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > KEEP_OBJECTS);
            if old && !keep.contains(&name) && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn retire(&self, name: &str) {
        let path = self.root.join(name);
        let touched = std::fs::File::options()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now()));
        if let Err(e) = touched {
            tracing::debug!("{}: {e}", path.display());
        }
    }
}

/// The fleet's view of the directory: the publisher's rules with every
/// configured group a login group, and no local accounts (ids are the fleet's;
/// a host leaves out whoever collides with its own accounts).
pub fn resolve_fleet(config: &AgentConfig, dir: &Directory, ids: &IdState) -> resolve::Resolution {
    let mut policy = Policy::from_config(config);
    for g in &mut policy.groups {
        g.login = true;
    }
    resolve::resolve_with(&policy, dir, &LocalAccounts::default(), ids)
}

/// The document's content (serial and times still zero).
pub fn build_document(
    config: &AgentConfig,
    dir: &Directory,
    ids: &IdState,
    fetched: &[keys::Fetched],
) -> (Document, IdState) {
    let resolution = resolve_fleet(config, dir, ids);
    let username: BTreeMap<&str, &str> = dir
        .users
        .iter()
        .filter_map(|u| Some((u.id.as_str(), u.username.as_deref()?)))
        .collect();
    let id_of: BTreeMap<&str, &str> = resolution
        .content
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.idp_id.as_str()))
        .collect();
    let people = resolution
        .content
        .users
        .iter()
        .map(|u| Person {
            id: u.idp_id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            uid: u.uid,
            gecos: u.gecos.clone(),
            username: username.get(u.idp_id.as_str()).map(|s| s.to_string()),
            ssh_keys: u.ssh_keys.clone(),
        })
        .collect();
    let groups = resolution
        .content
        .groups
        .iter()
        .filter(|g| g.flags & group_flags::USER_PRIVATE == 0 && !g.idp_id.is_empty())
        .map(|g| Group {
            id: g.idp_id.clone(),
            name: g.name.clone(),
            gid: g.gid,
            members: g
                .members
                .iter()
                .filter_map(|n| id_of.get(n.as_str()).map(|s| s.to_string()))
                .collect(),
        })
        .collect();
    // disabled members of the configured groups: a host applies the disable
    let nesting = Nesting::new(dir);
    let mut members: HashSet<&str> = HashSet::new();
    for g in &config.groups {
        members.extend(nesting.expand(g.id.get_ref()).users);
    }
    let mut disabled: Vec<String> = dir
        .users
        .iter()
        .filter(|u| !u.enabled && members.contains(u.id.as_str()))
        .map(|u| u.id.clone())
        .collect();
    disabled.sort();
    let issuer_keys = fetched
        .iter()
        .filter_map(|f| {
            let keys = f.result.as_ref().ok()?;
            Some((
                f.iss.clone(),
                keys.iter()
                    .map(|k| IssuerKey {
                        kid: k.kid.clone(),
                        alg: k.alg.clone(),
                        jwk: k.jwk.clone(),
                    })
                    .collect(),
            ))
        })
        .collect();
    let doc = Document {
        format: document::FORMAT,
        serial: 0,
        published_at: 0,
        valid_until: 0,
        people,
        groups,
        disabled,
        ids: resolution.ids.clone(),
        issuer_keys,
    };
    (doc, resolution.ids)
}

fn content_digest(doc: &Document) -> String {
    let mut h = Sha256::new();
    // writing into a hasher cannot fail
    let _ = serde_json::to_writer(&mut h, doc);
    hex(&h.finalize())
}

/// `ids` with every id and name of the served publication `p` it lacks
/// (this agent's own records win where both name something).
fn adopt_ids(
    destination: &dyn Destination,
    p: &Pointer,
    key: &ed25519_dalek::SigningKey,
    mut ids: IdState,
) -> Result<IdState, String> {
    let object = destination.get_object(&p.object, p.size.saturating_add(1))?;
    if hex(&Sha256::digest(&object)) != p.sha256 {
        return Err(format!("{}: not the object the pointer names", p.object));
    }
    let doc = document::open(&object, &[key.verifying_key()]).map_err(|r| r.to_string())?;
    let taken_uids: HashSet<u32> = ids
        .users
        .values()
        .copied()
        .chain(ids.earlier_users.values().flatten().copied())
        .collect();
    let taken_gids: HashSet<u32> = ids.groups.values().copied().collect();
    let mut adopted = 0;
    for (k, &u) in &doc.ids.users {
        if !ids.users.contains_key(k) && !taken_uids.contains(&u) {
            ids.users.insert(k.clone(), u);
            adopted += 1;
        }
    }
    for (k, earlier) in &doc.ids.earlier_users {
        let e = ids.earlier_users.entry(k.clone()).or_default();
        for u in earlier {
            if !e.contains(u) && !taken_uids.contains(u) {
                e.push(*u);
            }
        }
    }
    for (k, &g) in &doc.ids.groups {
        if !ids.groups.contains_key(k) && !taken_gids.contains(&g) {
            ids.groups.insert(k.clone(), g);
        }
    }
    for (name, id) in &doc.ids.names {
        ids.names.entry(name.clone()).or_insert_with(|| id.clone());
    }
    if adopted > 0 {
        tracing::info!(
            "fleet: took the ids of {adopted} people from serial {} (published elsewhere)",
            p.serial
        );
    }
    Ok(ids)
}

/// Publishes the fleet document for `dir` if its content changed or half of
/// the current publication's validity has passed. The caller holds the state lock.
pub fn publish(
    config: &AgentConfig,
    target: &PublishTarget,
    state: &StateDir,
    dir: &Directory,
    fetched: &[keys::Fetched],
) -> Result<PublishReport, String> {
    let key = super::sign::load(&target.signing_key_file)?;
    let loaded: IdState = match state.read_trusted(FLEET_IDS).map_err(|e| e.to_string())? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{}: {e} (refusing to publish: fleet uids must never be reassigned)",
                state.file_path(FLEET_IDS).display()
            )
        })?,
        None => IdState::default(),
    };
    let last: Published = state
        .read_trusted(PUBLISHED)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let destination = destination(&target.to, config)?;
    let served = destination.read_pointer()?;
    // A served publication of this key that this agent did not make (a
    // second publisher, or this one rebuilt without its fleet-ids.json):
    // its ids are the fleet's too, so nobody's uid or name moves and no
    // departed person's uid goes to someone new.
    let ids = match &served {
        Some((p, _))
            if p.object != last.object
                && super::pointer::verify(p, &[key.verifying_key()]).is_ok() =>
        {
            match adopt_ids(&*destination, p, &key, loaded.clone()) {
                Ok(merged) => merged,
                Err(why) => {
                    tracing::warn!("fleet: the served publication's ids not read: {why}");
                    loaded.clone()
                }
            }
        }
        _ => loaded.clone(),
    };
    let (mut doc, new_ids) = build_document(config, dir, &ids, fetched);
    let content = content_digest(&doc);
    // A served pointer counts (its serial as the floor of ours, its validity
    // for "still current") only when this publisher's key signed it: the
    // folder or bucket is not trusted. A pointer from another key (a key
    // rotation) is replaced; one nobody signed is logged.
    let current = served.clone().filter(|(p, _)| {
        let ours = super::pointer::verify(p, &[key.verifying_key()]);
        if let Err(why) = &ours {
            tracing::warn!("fleet: the served {POINTER} is not this publisher's ({why}): replaced");
        }
        ours.is_ok()
    });
    let now = super::now();
    let half = target.valid_for.as_secs() / 2;
    // whoever published it (this agent, or another publisher with the same
    // key and directory): the same content, valid long enough, stays
    let our_key = super::sign::encode_public(key.verifying_key().as_bytes());
    // ...and not older than this publisher's own last publication (an old
    // pointer of ours put back must not stop a publication)
    let still_current = current.as_ref().is_some_and(|(p, _)| {
        p.content == content
            && p.key == our_key
            && p.serial >= last.serial
            && p.valid_until >= now + half.max(1)
    });
    let report = |published, serial, object_bytes, valid_until| PublishReport {
        published,
        serial,
        people: doc.people.len(),
        groups: doc.groups.len(),
        object_bytes,
        valid_until,
    };
    if let (true, Some((p, _))) = (still_current, &current) {
        return Ok(report(false, p.serial, 0, p.valid_until));
    }
    // ids first: no uid is ever published before it is remembered
    if new_ids != loaded {
        let text = serde_json::to_vec_pretty(&new_ids).map_err(|e| e.to_string())?;
        state
            .write_atomic(FLEET_IDS, &text, modes::PRIVATE)
            .map_err(|e| format!("writing {FLEET_IDS}: {e}"))?;
    }
    // only grows, also across publishers sharing the destination; roughly
    // the publication time, so two publishers stay close
    let before = last
        .serial
        .max(current.as_ref().map_or(0, |(p, _)| p.serial));
    doc.serial = before
        .checked_add(1)
        .ok_or("the serial cannot grow any further (u64)")?
        .max(now);
    doc.published_at = now;
    doc.valid_until = now + target.valid_for.as_secs();
    let object = document::seal(&doc, &key)?;
    let sha = hex(&Sha256::digest(&object));
    let name = format!("{OBJECTS}/{}-{}.ztf", doc.serial, &sha[..16]);
    destination.put_object(&name, &object)?;
    let pointer = Pointer {
        format: POINTER_FORMAT,
        serial: doc.serial,
        object: name.clone(),
        sha256: sha,
        size: object.len() as u64,
        published_at: doc.published_at,
        valid_until: doc.valid_until,
        content: content.clone(),
        key: our_key,
        sig: String::new(),
    };
    let mut pointer = pointer;
    super::pointer::sign(&mut pointer, &key)?;
    let mut text = serde_json::to_vec_pretty(&pointer).map_err(|e| e.to_string())?;
    text.push(b'\n');
    let not_before = served
        .as_ref()
        .and_then(|(_, mtime)| mtime.checked_add(Duration::from_secs(1)));
    destination.put_pointer(&text, not_before)?;
    let published = Published {
        serial: doc.serial,
        content,
        published_at: doc.published_at,
        valid_until: doc.valid_until,
        object: name.clone(),
    };
    let text = serde_json::to_vec_pretty(&published).map_err(|e| e.to_string())?;
    if let Err(e) = state.write_atomic(PUBLISHED, &text, modes::PRIVATE) {
        tracing::warn!("cannot record the publication in {PUBLISHED}: {e}");
    }
    let mut keep: HashSet<String> = HashSet::from([name]);
    if let Some((p, _)) = &current
        && p.object != published.object
    {
        destination.retire(&p.object);
        keep.insert(p.object.clone());
    }
    match destination.prune(&keep) {
        Ok(0) => {}
        Ok(n) => tracing::info!("fleet: removed {n} old objects"),
        Err(e) => tracing::warn!("fleet: cannot remove old objects: {e}"),
    }
    tracing::info!(
        "fleet: published serial {} ({} people, {} groups, {} bytes, valid until {})",
        doc.serial,
        doc.people.len(),
        doc.groups.len(),
        object.len(),
        doc.valid_until
    );
    Ok(report(
        true,
        doc.serial,
        object.len() as u64,
        doc.valid_until,
    ))
}

/// The destination for a `[publish] to`.
pub fn destination(to: &Location, config: &AgentConfig) -> Result<Box<dyn Destination>, String> {
    match to {
        Location::Folder(root) => Ok(Box::new(Folder { root: root.clone() })),
        Location::S3 {
            endpoint,
            bucket,
            prefix,
        } => {
            let http = crate::http::Http::new(&config.http)?;
            Ok(Box::new(super::s3::S3::new(
                http, endpoint, bucket, prefix,
            )?))
        }
        Location::Http(url) => Err(format!(
            "{url}: a publisher writes to a folder or s3://, not to a URL"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::file;
    use crate::fleet::{document, host};
    use std::os::unix::fs::PermissionsExt;

    const DIR: &str = r#"{"users": [
        {"id": "u-alice", "email": "alice@example.com", "display_name": "Alice"},
        {"id": "u-bob", "email": "bob@example.com"},
        {"id": "u-carol", "email": "carol@example.com", "enabled": false},
        {"id": "u-dave", "email": "dave@example.com"}
      ],
      "groups": [
        {"id": "g-sre", "name": "SRE", "members": ["u-alice", "g-oncall", "u-carol"]},
        {"id": "g-oncall", "name": "On call", "members": ["u-bob"]},
        {"id": "g-dev", "name": "Dev", "members": ["u-dave"]}
      ]}"#;

    fn config(extra: &str) -> AgentConfig {
        AgentConfig::parse(
            &format!(
                r#"
[directory]
kind = "file"
path = "/d.json"
[users]
domains = ["example.com"]
[[groups]]
id = "g-sre"
name = "sre"
login = true
[[groups]]
id = "g-dev"
name = "developers"
{extra}"#
            ),
            "agent.toml",
        )
        .unwrap()
    }

    struct Setup {
        _dir: tempfile::TempDir,
        state: StateDir,
        target: PublishTarget,
        folder: PathBuf,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let state_path = dir.path().join("state");
        std::fs::create_dir(&state_path).unwrap();
        std::fs::set_permissions(&state_path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let state = StateDir::open_or_create(&state_path).unwrap();
        let key = dir.path().join("fleet.key");
        crate::fleet::sign::new_key(&key).unwrap();
        let folder = dir.path().join("www");
        Setup {
            target: PublishTarget {
                to: Location::Folder(folder.clone()),
                signing_key_file: key,
                valid_for: Duration::from_secs(3600),
            },
            _dir: dir,
            state,
            folder,
        }
    }

    fn current(s: &Setup) -> (Pointer, Document) {
        let pointer: Pointer =
            serde_json::from_slice(&std::fs::read(s.folder.join(POINTER)).unwrap()).unwrap();
        let object = std::fs::read(s.folder.join(&pointer.object)).unwrap();
        let key = crate::fleet::sign::load(&s.target.signing_key_file).unwrap();
        let doc = document::open(&object, &[key.verifying_key()]).unwrap();
        (pointer, doc)
    }

    #[test]
    fn a_signed_document_still_cannot_give_a_host_bad_names_or_ids() {
        let s = setup();
        let c = config("");
        let d = file::parse(DIR, "d.json").unwrap();
        publish(&c, &s.target, &s.state, &d, &[]).unwrap();
        let (_, good) = current(&s);
        let host_config = config("");
        let resolve_doc = |doc: Document| {
            let (dir, published) = host::split(doc);
            host::resolve(
                &host_config,
                &dir,
                &LocalAccounts::default(),
                &published,
                &IdState::default(),
            )
        };
        let why = |r: &resolve::Resolution, id: &str| {
            r.skipped
                .iter()
                .find(|s| s.id == id)
                .map(|s| s.reason.clone())
                .unwrap_or_default()
        };
        // alice: a name with a path and a right-to-left override; bob: the
        // uid of a systemd dynamic user
        let mut doc = good.clone();
        doc.people[0].name = "Evil/..\u{202e}Name".into();
        doc.people[1].uid = 62000;
        doc.ids.users.insert("u-bob".into(), 62000);
        let r = resolve_doc(doc);
        assert!(r.content.users.is_empty(), "{:?}", r.content.users);
        assert!(
            why(&r, "u-alice").contains("not one this host accepts"),
            "{r:?}"
        );
        assert!(why(&r, "u-bob").contains("systemd dynamic users"), "{r:?}");
        // bob given alice's uid; a group given gid 600
        let mut doc = good.clone();
        let alice_uid = doc.people[0].uid;
        doc.people[1].uid = alice_uid;
        doc.ids.users.insert("u-bob".into(), alice_uid);
        doc.ids.groups.insert("g-sre".into(), 600);
        for g in &mut doc.groups {
            if g.id == "g-sre" {
                g.gid = 600;
            }
        }
        let r = resolve_doc(doc);
        assert!(why(&r, "u-bob").contains("as well"), "{r:?}");
        assert!(
            r.problems.iter().any(|p| p.contains("gid 600")),
            "{:?}",
            r.problems
        );
        assert!(r.content.groups.iter().all(|g| g.gid != 600));
    }

    #[test]
    fn a_folder_someone_else_could_change_is_refused() {
        let s = setup();
        let c = config("");
        let d = file::parse(DIR, "d.json").unwrap();
        // objects/ a symlink to another directory: refused, nothing written there
        std::fs::create_dir_all(&s.folder).unwrap();
        std::fs::set_permissions(&s.folder, std::fs::Permissions::from_mode(0o755)).unwrap();
        let elsewhere = s._dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("precious"), "x").unwrap();
        std::os::unix::fs::symlink(&elsewhere, s.folder.join(OBJECTS)).unwrap();
        let e = publish(&c, &s.target, &s.state, &d, &[]).unwrap_err();
        assert!(e.contains("not a symlink"), "{e}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 1);
        // a group-writable folder: refused
        std::fs::remove_file(s.folder.join(OBJECTS)).unwrap();
        std::fs::set_permissions(&s.folder, std::fs::Permissions::from_mode(0o775)).unwrap();
        let e = publish(&c, &s.target, &s.state, &d, &[]).unwrap_err();
        assert!(e.contains("writable by nobody else"), "{e}");
        std::fs::set_permissions(&s.folder, std::fs::Permissions::from_mode(0o755)).unwrap();
        publish(&c, &s.target, &s.state, &d, &[]).unwrap();
    }

    #[test]
    fn an_old_pointer_of_ours_put_back_does_not_stop_a_publication() {
        let s = setup();
        let c = config("");
        let a = file::parse(DIR, "d").unwrap();
        let b = file::parse(&DIR.replace("\"Alice\"", "\"Alice L\""), "d").unwrap();
        publish(&c, &s.target, &s.state, &a, &[]).unwrap();
        let old = std::fs::read(s.folder.join(POINTER)).unwrap();
        let second = publish(&c, &s.target, &s.state, &b, &[]).unwrap();
        // back to A's content; whoever can write the folder restores A's
        // (validly signed) pointer, which hosts refuse as a rollback
        std::fs::write(s.folder.join(POINTER), &old).unwrap();
        let third = publish(&c, &s.target, &s.state, &a, &[]).unwrap();
        assert!(third.published && third.serial > second.serial, "{third:?}");
    }

    #[test]
    fn a_rebuilt_publisher_takes_the_fleets_ids_from_what_it_served() {
        let s = setup();
        let c = config("");
        let d = file::parse(DIR, "d").unwrap();
        publish(&c, &s.target, &s.state, &d, &[]).unwrap();
        let (_, before) = current(&s);
        let uid =
            |doc: &Document, name: &str| doc.people.iter().find(|p| p.name == name).map(|p| p.uid);
        // the same key and folder, a new state directory (fleet-ids.json
        // lost); alice has left and zed has come
        let fresh = s._dir.path().join("state2");
        std::fs::create_dir(&fresh).unwrap();
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755)).unwrap();
        let fresh = StateDir::open_or_create(&fresh).unwrap();
        let changed = DIR
            .replace(
                r#"{"id": "u-alice", "email": "alice@example.com", "display_name": "Alice"},"#,
                r#"{"id": "u-zed", "email": "zed@example.com"},"#,
            )
            .replace(r#""members": ["u-alice","#, r#""members": ["u-zed","#);
        let d2 = file::parse(&changed, "d").unwrap();
        publish(&c, &s.target, &fresh, &d2, &[]).unwrap();
        let (_, after) = current(&s);
        assert_eq!(
            uid(&after, "bob"),
            uid(&before, "bob"),
            "bob's uid never moves"
        );
        assert_eq!(uid(&after, "dave"), uid(&before, "dave"));
        assert_ne!(
            uid(&after, "zed"),
            uid(&before, "alice"),
            "a departed person's uid goes to nobody new"
        );
        assert!(uid(&after, "zed").is_some());
        // alice's uid is remembered as hers by the rebuilt publisher (zt's
        // uids come from a hash of the IdP id, so only a collision would
        // show it in the uids above: the record is what keeps it so)
        let kept: IdState =
            serde_json::from_slice(&fresh.read_trusted(FLEET_IDS).unwrap().unwrap()).unwrap();
        assert_eq!(
            kept.users.get("u-alice").copied(),
            uid(&before, "alice"),
            "{kept:?}"
        );
    }

    #[test]
    fn a_forged_pointer_in_the_folder_is_never_trusted() {
        let s = setup();
        let c = config("");
        let d = file::parse(DIR, "d.json").unwrap();
        let first = publish(&c, &s.target, &s.state, &d, &[]).unwrap();
        let (mut forged, _) = current(&s);
        // whoever can write the folder claims the next serial is near 2^64
        // and the current publication valid forever
        forged.serial = u64::MAX - 1;
        forged.valid_until = u64::MAX;
        std::fs::write(s.folder.join(POINTER), serde_json::to_vec(&forged).unwrap()).unwrap();
        let key = crate::fleet::sign::load(&s.target.signing_key_file).unwrap();
        assert!(super::super::pointer::verify(&forged, &[key.verifying_key()]).is_err());
        let again = publish(&c, &s.target, &s.state, &d, &[]).unwrap();
        assert!(again.published, "the forged pointer is replaced");
        assert!(
            again.serial > first.serial && again.serial < first.serial + 10,
            "{} after {}",
            again.serial,
            first.serial
        );
        let (pointer, _) = current(&s);
        super::super::pointer::verify(&pointer, &[key.verifying_key()]).unwrap();
        assert_eq!(pointer.serial, again.serial);
    }

    #[test]
    fn publishes_every_configured_group_and_only_when_something_changed() {
        let s = setup();
        let c = config("");
        let d = file::parse(DIR, "d.json").unwrap();
        let first = publish(&c, &s.target, &s.state, &d, &[]).unwrap();
        assert!(first.published);
        let (pointer, doc) = current(&s);
        assert_eq!(pointer.serial, doc.serial);
        // developers is not a login group on the publisher, but the fleet has its people
        let names: Vec<&str> = doc.people.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "dave"]);
        assert_eq!(doc.disabled, ["u-carol"]);
        let sre = doc.groups.iter().find(|g| g.id == "g-sre").unwrap();
        assert_eq!(sre.members, ["u-alice", "u-bob"]);
        // nothing changed: no new publication, the pointer stays
        let again = publish(&c, &s.target, &s.state, &d, &[]).unwrap();
        assert!(!again.published);
        assert_eq!(again.serial, first.serial);
        // a change: a higher serial, the same ids for everyone already there
        let d2 = file::parse(
            &DIR.replace("\"u-dave\"]}", "\"u-dave\", \"u-alice\"]}"),
            "d",
        )
        .unwrap();
        let second = publish(&c, &s.target, &s.state, &d2, &[]).unwrap();
        assert!(second.published && second.serial > first.serial);
        let (_, doc2) = current(&s);
        for p in &doc.people {
            let q = doc2.people.iter().find(|q| q.id == p.id).unwrap();
            assert_eq!((p.uid, &p.name), (q.uid, &q.name));
        }
    }

    #[test]
    fn two_hosts_get_the_fleets_ids_and_a_local_clash_is_left_out_with_a_reason() {
        let s = setup();
        let c = config("");
        let d = file::parse(DIR, "d.json").unwrap();
        publish(&c, &s.target, &s.state, &d, &[]).unwrap();
        let (_, doc) = current(&s);
        let alice_uid = doc.people[0].uid;
        // host A: a subordinate range over every zt id; host B: a local
        // account with alice's uid
        let mut a = LocalAccounts::default();
        a.add_sub_ranges(&format!("someone:{}:{}\n", 0x7000_0000u32, 0x0800_0000u32));
        let mut b = LocalAccounts::default();
        b.add_files(
            &format!("svc:x:{alice_uid}:100::/:/bin/sh\n"),
            "svc:x:100:\n",
        );
        let host_config = config("");
        let (dir_a, pub_a) = host::split(doc.clone());
        let ra = host::resolve(&host_config, &dir_a, &a, &pub_a, &IdState::default());
        let (dir_b, pub_b) = host::split(doc.clone());
        let rb = host::resolve(&host_config, &dir_b, &b, &pub_b, &IdState::default());
        let uids = |r: &resolve::Resolution| -> Vec<(String, u32)> {
            r.content
                .users
                .iter()
                .map(|u| (u.name.clone(), u.uid))
                .collect()
        };
        // only login-group members (sre) on these hosts; same uids as published
        assert_eq!(
            uids(&ra),
            [
                ("alice".to_string(), alice_uid),
                ("bob".to_string(), doc.people[1].uid)
            ]
        );
        assert_eq!(uids(&rb), [("bob".to_string(), doc.people[1].uid)]);
        let why = &rb
            .skipped
            .iter()
            .find(|s| s.id == "u-alice")
            .unwrap()
            .reason;
        assert!(why.contains("local account"), "{why}");
        let gid = |r: &resolve::Resolution| {
            r.content
                .groups
                .iter()
                .find(|g| g.name == "sre")
                .unwrap()
                .gid
        };
        assert_eq!(gid(&ra), gid(&rb));
    }

    #[test]
    fn a_second_publisher_with_the_same_directory_adds_nothing_and_keys_travel() {
        let s = setup();
        let c = config("");
        let d = file::parse(DIR, "d.json").unwrap();
        let fetched = [keys::Fetched {
            iss: "https://sso.example.com".into(),
            result: Ok(vec![zt_snapshot::KeyEntry {
                kid: "k1".into(),
                alg: "RS256".into(),
                jwk: "{}".into(),
            }]),
        }];
        let first = publish(&c, &s.target, &s.state, &d, &fetched).unwrap();
        assert!(first.published);
        // another publisher: its own state, the same key and folder
        let other = setup();
        let other_state = &other.state;
        let again = publish(&c, &s.target, other_state, &d, &fetched).unwrap();
        assert!(
            !again.published,
            "interchangeable content was published again"
        );
        assert_eq!(again.serial, first.serial);
        // a host whose own fetch failed uses the keys the document carries
        let (_, doc) = current(&s);
        let (_, published) = host::split(doc);
        let failed = [keys::Fetched {
            iss: "https://sso.example.com".into(),
            result: Err(keys::KeysError::new(
                keys::KeysFailure::Unavailable,
                "no route",
            )),
        }];
        let used = host::issuer_keys(&failed, &published);
        assert_eq!(used[0].result.as_ref().unwrap()[0].kid, "k1");
    }

    #[test]
    fn every_publication_moves_the_pointers_mtime_and_old_objects_go_after_a_while() {
        let s = setup();
        let c = config("");
        let mtime = |s: &Setup| {
            std::fs::metadata(s.folder.join(POINTER))
                .unwrap()
                .modified()
                .unwrap()
        };
        let d1 = file::parse(DIR, "d").unwrap();
        publish(&c, &s.target, &s.state, &d1, &[]).unwrap();
        let (p1, _) = current(&s);
        let t1 = mtime(&s);
        // a second publication within the same second: nginx's ETag (mtime
        // seconds and size) must still change
        let d2 = file::parse(&DIR.replace("\"Alice\"", "\"Alice L\""), "d").unwrap();
        publish(&c, &s.target, &s.state, &d2, &[]).unwrap();
        let (p2, _) = current(&s);
        assert!(mtime(&s).duration_since(t1).unwrap() >= Duration::from_secs(1));
        assert!(p2.serial > p1.serial && p2.object != p1.object);
        // the first object was replaced over an hour ago (as if): it goes at
        // the next publication; the one just replaced stays (a host may be
        // downloading it)
        let old = s.folder.join(&p1.object);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - KEEP_OBJECTS - Duration::from_secs(60))
            .unwrap();
        let d3 = file::parse(&DIR.replace("\"Alice\"", "\"Alice M\""), "d").unwrap();
        publish(&c, &s.target, &s.state, &d3, &[]).unwrap();
        let (p3, _) = current(&s);
        assert!(
            !old.exists(),
            "an object replaced over an hour ago is still there"
        );
        assert!(s.folder.join(&p2.object).exists() && s.folder.join(&p3.object).exists());
    }

    #[test]
    fn a_host_never_moves_an_id_or_name_it_handed_out_before_joining_the_fleet() {
        let s = setup();
        let c = config("");
        let d = file::parse(DIR, "d.json").unwrap();
        publish(&c, &s.target, &s.state, &d, &[]).unwrap();
        let (_, doc) = current(&s);
        let alice = doc.people.iter().find(|p| p.id == "u-alice").unwrap().uid;
        let bob = doc.people.iter().find(|p| p.id == "u-bob").unwrap().uid;
        // this host gave alice another uid, and bob's fleet uid to a departed
        // person, before it joined the fleet
        let mut before = IdState::default();
        before.users.insert("u-alice".into(), 0x7000_0001);
        before.users.insert("u-gone".into(), bob);
        before.names.insert("gone".into(), "u-gone".into());
        let (dir, published) = host::split(doc);
        let r = host::resolve(&c, &dir, &LocalAccounts::default(), &published, &before);
        assert!(r.content.users.is_empty(), "{:?}", r.content.users);
        let why = |id: &str| {
            r.skipped
                .iter()
                .find(|s| s.id == id)
                .unwrap()
                .reason
                .clone()
        };
        assert!(
            why("u-alice").contains("differs from uid 1879048193"),
            "{}",
            why("u-alice")
        );
        assert!(why("u-bob").contains("\"u-gone\""), "{}", why("u-bob"));
        // nothing this host handed out is forgotten, nor overwritten
        assert_eq!(r.ids.users["u-alice"], 0x7000_0001);
        assert_eq!(r.ids.users["u-gone"], bob);
        assert_ne!(r.ids.users.get("u-bob"), Some(&bob));
        assert_ne!(alice, 0x7000_0001);
    }
}
