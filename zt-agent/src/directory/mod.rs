//! The directory: people and groups as the IdP has them. Every connector maps
//! its API into `Directory`; the `file` source reads it from JSON.

pub mod api;
pub mod collect;
pub mod entra;
pub mod error;
pub mod file;
pub mod google;
pub mod keycloak;
pub mod nesting;
pub mod oauth;
pub mod okta;
pub mod scim;

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DirUser {
    /// Immutable object id.
    pub id: String,
    pub email: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The directory's own user name (used with name_from = "username").
    #[serde(default)]
    pub username: Option<String>,
    /// A uid the organisation already assigns (uidNumber-style); wins over the hash.
    #[serde(default)]
    pub uid: Option<u32>,
    /// RFC 3339 creation time; decides who keeps a contested name or uid.
    #[serde(default)]
    pub created: Option<String>,
    /// OpenSSH public key lines (`type base64 [comment]`) for
    /// `zt-agent keys`; each is checked when the directory is resolved, and a
    /// bad one is left out with a problem (never the person).
    #[serde(default)]
    pub ssh_keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DirGroup {
    pub id: String,
    pub name: String,
    /// User or group ids; groups nest.
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    #[serde(default)]
    pub users: Vec<DirUser>,
    #[serde(default)]
    pub groups: Vec<DirGroup>,
    /// What was wrong with single entries and left out when the directory was
    /// read (not part of the document).
    #[serde(skip)]
    pub problems: Vec<String>,
    /// Ids of entries left out (did not parse, or ambiguous) -> whether any
    /// entry with the id said `"enabled": false`. See [`Directory::left_out`].
    #[serde(skip)]
    pub left_out: BTreeMap<String, bool>,
}

/// At most this many entry problems are reported per read; the rest are counted.
pub const MAX_ENTRY_PROBLEMS: usize = 50;

fn yes() -> bool {
    true
}

impl DirUser {
    /// Creation time as unix seconds, if given and valid.
    pub fn created_at(&self) -> Result<Option<i64>, String> {
        match &self.created {
            None => Ok(None),
            Some(s) => humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
                .ok()
                .filter(|_| s.ends_with('Z') || !s.contains(['+']))
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| Some(d.as_secs() as i64))
                .ok_or_else(|| {
                    format!("created {s:?} is not an RFC 3339 UTC time like 2024-02-01T10:00:00Z")
                }),
        }
    }
}

impl Directory {
    /// Entries no rule can safely attribute to one object are dropped, each with
    /// a problem: an empty id, or an id shared by several entries (which of them
    /// is the person?). Only those entries go: the rest of the directory still
    /// syncs, so one bad entry can never freeze every removal.
    pub fn drop_ambiguous_entries(&mut self) {
        self.drop_ambiguous_entries_with(&[]);
    }

    /// Was `id` in the directory as an entry that was left out (it did not
    /// parse, or its id was ambiguous)? Some(true) if any entry with it said
    /// `"enabled": false`. The removal guard reads this: such a person is not
    /// missing, and a disable applies at once.
    pub fn left_out(&self, id: &str) -> Option<bool> {
        self.left_out.get(id).copied()
    }

    /// As [`Self::drop_ambiguous_entries`], also counting the ids of entries
    /// that were already left out (because they did not parse).
    pub fn drop_ambiguous_entries_with(&mut self, failed: &[(String, bool)]) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for id in self
            .users
            .iter()
            .map(|u| &u.id)
            .chain(self.groups.iter().map(|g| &g.id))
            .chain(failed.iter().map(|(id, _)| id))
        {
            *seen.entry(id.clone()).or_default() += 1;
        }
        for (id, disabled) in failed {
            *self.left_out.entry(id.clone()).or_default() |= *disabled;
        }
        let ambiguous = |id: &str| id.is_empty() || seen.get(id).is_some_and(|&n| n > 1);
        let mut dropped: Vec<String> = Vec::new();
        let left_out = &mut self.left_out;
        self.users.retain(|u| {
            !ambiguous(&u.id) || {
                dropped.push(u.id.clone());
                *left_out.entry(u.id.clone()).or_default() |= !u.enabled;
                false
            }
        });
        self.groups.retain(|g| {
            !ambiguous(&g.id) || {
                dropped.push(g.id.clone());
                false
            }
        });
        dropped.sort();
        dropped.dedup();
        for id in dropped.iter().take(MAX_ENTRY_PROBLEMS) {
            self.problems.push(if id.is_empty() {
                "entries with an empty id were left out".to_string()
            } else {
                format!("id {id:?} appears more than once; every entry with it was left out")
            });
        }
        if dropped.len() > MAX_ENTRY_PROBLEMS {
            self.problems.push(format!(
                "... and {} more ambiguous ids left out",
                dropped.len() - MAX_ENTRY_PROBLEMS
            ));
        }
    }
}
