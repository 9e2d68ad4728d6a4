//! A fleet host resolves a verified document with its own rules: its login
//! groups, domains, shells, sudo rules and grants decide who gets what here,
//! so a host is never given more than its config asks for. Names, uids and
//! gids are the fleet's, taken as given: the published ids are the held ids
//! (so nobody is allocated anything here), the published names override the
//! host's own naming, and this host's subordinate id ranges do not count (the
//! fleet's range is the authority). A person or group whose id or name a
//! local account holds is left out here, with the reason logged.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::document::{Document, IssuerKey};
use crate::config::AgentConfig;
use crate::directory::{DirGroup, DirUser, Directory};
use crate::identity::local::LocalAccounts;
use crate::identity::{idmap, names};
use crate::keys;
use crate::resolve::{self, IdState, Policy, Resolution, Skip};

/// What a host keeps from a document for the sync: the directory to resolve
/// and the fleet's ids.
#[derive(Debug, Clone)]
pub struct Published {
    pub ids: IdState,
    /// (IdP id, fleet name) for everyone published.
    pub names: Vec<(String, String)>,
    pub serial: u64,
    /// The issuers' keys the publisher fetched, by `iss`.
    pub issuer_keys: BTreeMap<String, Vec<IssuerKey>>,
}

/// The document as a directory, and the fleet's ids.
pub fn split(doc: Document) -> (Directory, Published) {
    let mut names = Vec::with_capacity(doc.people.len());
    let mut users: Vec<DirUser> = Vec::with_capacity(doc.people.len() + doc.disabled.len());
    // only people the fleet gave a uid: a host never allocates its own
    let with_uid: BTreeSet<&str> = doc.ids.users.keys().map(String::as_str).collect();
    for p in doc.people {
        if !with_uid.contains(p.id.as_str()) {
            continue;
        }
        names.push((p.id.clone(), p.name.clone()));
        users.push(DirUser {
            id: p.id,
            email: p.email,
            display_name: (!p.gecos.is_empty()).then_some(p.gecos),
            enabled: true,
            username: p.username,
            uid: None,
            created: None,
            ssh_keys: p.ssh_keys,
        });
    }
    let published: BTreeSet<String> = users.iter().map(|u| u.id.clone()).collect();
    for id in doc.disabled {
        if !published.contains(&id) {
            users.push(DirUser {
                id,
                email: String::new(),
                display_name: None,
                enabled: false,
                username: None,
                uid: None,
                created: None,
                ssh_keys: Vec::new(),
            });
        }
    }
    let groups = doc
        .groups
        .into_iter()
        .filter(|g| doc.ids.groups.get(&g.id) == Some(&g.gid))
        .map(|g| DirGroup {
            id: g.id,
            name: g.name,
            members: g.members,
        })
        .collect();
    let directory = Directory {
        users,
        groups,
        ..Directory::default()
    };
    (
        directory,
        Published {
            ids: doc.ids,
            names,
            serial: doc.serial,
            issuer_keys: doc.issuer_keys,
        },
    )
}

/// Why a published person would move an id or name this host handed out
/// before (its ids.json: a host that read the IdP itself before it joined
/// the fleet, or a departed person's id kept reserved): uids and names never
/// move, so such a person is not served here and the reason is reported.
fn moved_people(published: &Published, host: &IdState) -> BTreeMap<String, String> {
    let mut owner: HashMap<u32, &str> = host
        .earlier_users
        .iter()
        .flat_map(|(k, ids)| ids.iter().map(move |&u| (u, k.as_str())))
        .collect();
    owner.extend(host.users.iter().map(|(k, &u)| (u, k.as_str())));
    let mut out = BTreeMap::new();
    for (id, name) in &published.names {
        let Some(&uid) = published.ids.users.get(id) else {
            continue;
        };
        let why = match (host.users.get(id), owner.get(&uid), host.names.get(name)) {
            (Some(&before), _, _) if before != uid => format!(
                "the fleet's uid {uid} differs from uid {before} this host gave them before (uids never move)"
            ),
            (_, Some(&other), _) if other != id => format!(
                "the fleet's uid {uid} was handed out on this host to {other:?} before (uids never move)"
            ),
            (_, _, Some(other)) if other != id => format!(
                "the fleet's name {name:?} is held on this host by {other:?} (`zt-agent release {name}` frees it)"
            ),
            _ => continue,
        };
        out.insert(id.clone(), why);
    }
    out
}

/// An id no zt host hands out, from whatever source: system ids, systemd's
/// ranges (dynamic service users, containers, homed), nobody, 2^31 and up.
fn outside_ids(id: u32) -> Option<&'static str> {
    if idmap::is_special(id) {
        return Some("system accounts");
    }
    idmap::forbidden_range(id)
}

/// What even a correctly signed document may not give this host: names this
/// host's rules refuse, ids outside what any zt host hands out, a uid given
/// twice or also a group's gid (a person's private group has gid = uid).
/// People and groups are left out one by one, never the whole sync.
fn unusable(published: &Published) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut people = BTreeMap::new();
    let gids: HashMap<u32, &str> = published
        .ids
        .groups
        .iter()
        .map(|(k, &g)| (g, k.as_str()))
        .collect();
    let mut uids: HashMap<u32, &str> = HashMap::new();
    for (id, name) in &published.names {
        let Some(&uid) = published.ids.users.get(id) else {
            continue;
        };
        let why = if let Err(e) = names::validate(name, true) {
            format!("the fleet's name {name:?} is not one this host accepts: {e}")
        } else if let Some(range) = outside_ids(uid) {
            format!("the fleet's uid {uid} is in the range of {range}")
        } else if let Some(other) = uids.insert(uid, id) {
            format!("the fleet gives uid {uid} to {other:?} as well")
        } else if let Some(group) = gids.get(&uid) {
            format!("the fleet's uid {uid} is also group {group:?}'s gid")
        } else {
            continue;
        };
        people.insert(id.clone(), why);
    }
    let mut groups = BTreeMap::new();
    let mut seen: HashMap<u32, &str> = HashMap::new();
    for (id, &gid) in &published.ids.groups {
        let why = if let Some(range) = outside_ids(gid) {
            format!("the fleet's gid {gid} is in the range of {range}")
        } else if let Some(other) = seen.insert(gid, id) {
            format!("the fleet gives gid {gid} to group {other:?} as well")
        } else {
            continue;
        };
        groups.insert(id.clone(), why);
    }
    (people, groups)
}

/// Groups whose fleet gid differs from the one this host gave them, or was
/// another group's here.
fn moved_groups(published: &Published, host: &IdState) -> BTreeMap<String, String> {
    let owner: HashMap<u32, &str> = host.groups.iter().map(|(k, &g)| (g, k.as_str())).collect();
    let mut out = BTreeMap::new();
    for (id, &gid) in &published.ids.groups {
        let why = match (host.groups.get(id), owner.get(&gid)) {
            (Some(&before), _) if before != gid => format!(
                "the fleet's gid {gid} differs from gid {before} this host gave it before (gids never move)"
            ),
            (_, Some(&other)) if other != id => format!(
                "the fleet's gid {gid} was handed out on this host to group {other:?} before"
            ),
            _ => continue,
        };
        out.insert(id.clone(), why);
    }
    out
}

/// Resolves the fleet's directory on this host. `host_ids`: what this host
/// handed out before (ids.json); the resolution's ids are those plus the
/// fleet's, so nothing this host ever handed out is forgotten.
pub fn resolve(
    config: &AgentConfig,
    directory: &Directory,
    local: &LocalAccounts,
    published: &Published,
    host_ids: &IdState,
) -> Resolution {
    let mut policy = Policy::from_config(config);
    for (id, name) in &published.names {
        policy
            .name_overrides
            .insert(id.to_ascii_lowercase(), name.clone());
    }
    // the fleet's range is the authority: subordinate ranges are this host's
    // business only where they hold a local account's id
    let mut local = local.clone();
    local.sub_ranges.clear();
    let mut people = moved_people(published, host_ids);
    let mut groups = moved_groups(published, host_ids);
    let (bad_people, bad_groups) = unusable(published);
    people.extend(bad_people);
    groups.extend(bad_groups);
    let filtered;
    let directory = if people.is_empty() && groups.is_empty() {
        directory
    } else {
        let mut d = directory.clone();
        d.users.retain(|u| !people.contains_key(&u.id));
        d.groups.retain(|g| !groups.contains_key(&g.id));
        filtered = d;
        &filtered
    };
    let mut r = resolve::resolve_with(&policy, directory, &local, &published.ids);
    for (id, why) in &people {
        let email = published
            .names
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, n)| n.clone());
        r.skipped.push(Skip {
            id: id.clone(),
            email: String::new(),
            name: email,
            reason: why.clone(),
            notable: true,
        });
    }
    for (id, why) in &groups {
        r.problems.push(format!("group {id:?} left out: {why}"));
    }
    // a group the fleet does not publish is never given a gid of this host's
    let fleet_groups: BTreeSet<&str> = published.ids.groups.keys().map(String::as_str).collect();
    r.content
        .groups
        .retain(|g| g.idp_id.is_empty() || fleet_groups.contains(g.idp_id.as_str()));
    r.ids = merged_ids(host_ids, &r.ids, &people, &groups);
    r
}

/// This host's ids with the fleet's added: an id this host holds is kept
/// (departed people's too), a fleet assignment that would move one is not taken.
fn merged_ids(
    host: &IdState,
    fleet: &IdState,
    moved_people: &BTreeMap<String, String>,
    moved_groups: &BTreeMap<String, String>,
) -> IdState {
    // what a signed document may put into this host's own records is
    // checked like what it may publish: no id no zt host hands out, no name
    // this host's rules refuse (they would stay after the document is gone)
    let usable = |id: u32| outside_ids(id).is_none();
    let mut out = host.clone();
    for (k, &u) in &fleet.users {
        if !moved_people.contains_key(k) && usable(u) {
            out.users.entry(k.clone()).or_insert(u);
        }
    }
    for (k, earlier) in &fleet.earlier_users {
        if !moved_people.contains_key(k) {
            let e = out.earlier_users.entry(k.clone()).or_default();
            for u in earlier {
                if usable(*u) && !e.contains(u) {
                    e.push(*u);
                }
            }
        }
    }
    for (k, &g) in &fleet.groups {
        if !moved_groups.contains_key(k) && usable(g) {
            out.groups.entry(k.clone()).or_insert(g);
        }
    }
    for (name, id) in &fleet.names {
        if !moved_people.contains_key(id) && names::validate(name, true).is_ok() {
            out.names.entry(name.clone()).or_insert_with(|| id.clone());
        }
    }
    out
}

/// The issuers' keys for this host: its own fetch where it worked; where it
/// failed (a host with no way out to the issuer), the keys the publisher
/// fetched for the same `iss`. Only issuers this host's config names count.
pub fn issuer_keys(fetched: &[keys::Fetched], published: &Published) -> Vec<keys::Fetched> {
    fetched
        .iter()
        .map(|f| match (&f.result, published.issuer_keys.get(&f.iss)) {
            // (the publisher's keys, not this host's previous ones: those may
            // be the fleet's from an earlier sync, and a host that cannot
            // reach the issuer must still follow its key rotations)
            (Err(e), Some(keys)) if !keys.is_empty() => {
                tracing::info!(
                    "issuer {}: {e}; using the {} keys the fleet document carries",
                    f.iss,
                    keys.len()
                );
                keys::Fetched {
                    iss: f.iss.clone(),
                    result: Ok(keys
                        .iter()
                        .map(|k| zt_snapshot::KeyEntry {
                            kid: k.kid.clone(),
                            alg: k.alg.clone(),
                            jwk: k.jwk.clone(),
                        })
                        .collect()),
                }
            }
            _ => f.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_document_adds_to_this_hosts_records_is_checked_too() {
        let mut fleet = IdState::default();
        fleet.users.insert("u-ok".into(), 0x7000_0001);
        fleet.users.insert("u-root".into(), 0);
        fleet
            .earlier_users
            .insert("u-ok".into(), vec![0x7000_0002, 62000]);
        fleet.groups.insert("g-ok".into(), 0x7800_0001);
        fleet.groups.insert("g-disk".into(), 6);
        fleet.names.insert("ok".into(), "u-ok".into());
        fleet.names.insert("bad/..name".into(), "u-x".into());
        let out = merged_ids(
            &IdState::default(),
            &fleet,
            &BTreeMap::new(),
            &BTreeMap::new(),
        );
        assert_eq!(out.users.keys().collect::<Vec<_>>(), ["u-ok"]);
        assert_eq!(out.earlier_users["u-ok"], [0x7000_0002]);
        assert_eq!(out.groups.keys().collect::<Vec<_>>(), ["g-ok"]);
        assert_eq!(out.names.keys().collect::<Vec<_>>(), ["ok"]);
    }
}
