//! A fleet host resolves a verified document with its own rules: its login
//! groups, domains, shells, sudo rules and grants decide who gets what here,
//! so a host is never given more than its config asks for. Names, uids and
//! gids are the fleet's, taken as given: the published ids are the held ids
//! (so nobody is allocated anything here), the published names override the
//! host's own naming, and this host's subordinate id ranges do not count (the
//! fleet's range is the authority). A person or group whose id or name a
//! local account holds is left out here, with the reason logged.

use std::collections::{BTreeMap, BTreeSet};

use super::document::{Document, IssuerKey};
use crate::config::AgentConfig;
use crate::directory::{DirGroup, DirUser, Directory};
use crate::identity::local::LocalAccounts;
use crate::keys;
use crate::resolve::{self, IdState, Policy, Resolution};

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

/// Resolves the fleet's directory on this host.
pub fn resolve(
    config: &AgentConfig,
    directory: &Directory,
    local: &LocalAccounts,
    published: &Published,
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
    let mut r = resolve::resolve_with(&policy, directory, &local, &published.ids);
    // a group the fleet does not publish is never given a gid of this host's
    let fleet_groups: BTreeSet<&str> = published.ids.groups.keys().map(String::as_str).collect();
    r.content
        .groups
        .retain(|g| g.idp_id.is_empty() || fleet_groups.contains(g.idp_id.as_str()));
    r
}

/// The issuers' keys for this host: its own fetch where it worked; where it
/// failed (a host with no way out to the issuer), the keys the publisher
/// fetched for the same `iss`. Only issuers this host's config names count.
pub fn issuer_keys(fetched: &[keys::Fetched], published: &Published) -> Vec<keys::Fetched> {
    fetched
        .iter()
        .map(|f| match (&f.result, published.issuer_keys.get(&f.iss)) {
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
