//! The directory: people and groups as the IdP has them. Every connector maps
//! its API into `Directory`; the `file` source reads it from JSON.

pub mod error;
pub mod file;
pub mod nesting;

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
}

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
    /// Structural checks that make the whole answer unusable (and so keep the last
    /// good snapshot): duplicate ids. Problems with single entries are not fatal.
    pub fn check(&self) -> Result<(), String> {
        let mut ids = std::collections::HashSet::new();
        for id in self
            .users
            .iter()
            .map(|u| &u.id)
            .chain(self.groups.iter().map(|g| &g.id))
        {
            if id.is_empty() {
                return Err("an entry has an empty id".into());
            }
            if !ids.insert(id.as_str()) {
                return Err(format!("id {id:?} appears more than once"));
            }
        }
        Ok(())
    }
}
