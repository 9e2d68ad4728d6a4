//! Who holds which name and id, for good: the file the agent keeps between
//! syncs (/var/lib/zt/ids.json). A name or id once given to a person stays
//! theirs while they are absent, disabled or renamed; only `zt-agent release
//! NAME` frees a name, and ids are never freed.
//!
//! The file is versioned so that an agent rolled back one release still reads
//! what a newer one wrote:
//! - `version` is the format the writer used; `oldest_reader` the oldest format
//!   that may read the file without misreading it. A reader refuses a file whose
//!   `oldest_reader` is newer than itself (uids must never be reassigned, so a
//!   file it cannot understand stops the sync rather than being guessed at).
//! - Fields a reader does not know are kept and written back unchanged, so an
//!   older agent never drops a newer one's holders.
//! - The unversioned file of earlier releases (`users`, `groups`, `names`) is
//!   format 1 and loads as is; the next write upgrades it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::idmap::Held;

/// The format this release writes.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format that reads this release's files correctly (format 2 only
/// added fields: an older format-2 reader keeps them as unknown fields).
pub const OLDEST_READER: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "OnDisk")]
pub struct IdState {
    pub version: u32,
    pub oldest_reader: u32,
    /// IdP id -> the uid the person holds now.
    pub users: BTreeMap<String, u32>,
    /// IdP id -> uids the person held before (a directory uid that changed):
    /// still theirs, never handed to anyone else.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub earlier_users: BTreeMap<String, Vec<u32>>,
    /// IdP group id -> gid.
    pub groups: BTreeMap<String, u32>,
    /// POSIX name -> IdP id of the person holding it.
    pub names: BTreeMap<String, String>,
    /// Fields written by a newer release, kept as they were.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

impl Default for IdState {
    fn default() -> Self {
        IdState {
            version: FORMAT_VERSION,
            oldest_reader: OLDEST_READER,
            users: BTreeMap::new(),
            earlier_users: BTreeMap::new(),
            groups: BTreeMap::new(),
            names: BTreeMap::new(),
            unknown: BTreeMap::new(),
        }
    }
}

/// The file as read, before the version check.
#[derive(Deserialize)]
struct OnDisk {
    #[serde(default = "format_1")]
    version: u32,
    #[serde(default = "format_1")]
    oldest_reader: u32,
    #[serde(default)]
    users: BTreeMap<String, u32>,
    #[serde(default)]
    earlier_users: BTreeMap<String, Vec<u32>>,
    #[serde(default)]
    groups: BTreeMap<String, u32>,
    #[serde(default)]
    names: BTreeMap<String, String>,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_json::Value>,
}

fn format_1() -> u32 {
    1
}

impl TryFrom<OnDisk> for IdState {
    type Error = String;

    fn try_from(d: OnDisk) -> Result<Self, String> {
        if d.oldest_reader > FORMAT_VERSION {
            return Err(format!(
                "written in format {} for readers of format {} or later; this agent reads format {FORMAT_VERSION}",
                d.version, d.oldest_reader
            ));
        }
        Ok(IdState {
            // whatever was read, this release writes its own format back
            version: FORMAT_VERSION.max(d.version),
            oldest_reader: OLDEST_READER.max(d.oldest_reader),
            users: d.users,
            earlier_users: d.earlier_users,
            groups: d.groups,
            names: d.names,
            unknown: d.unknown,
        })
    }
}

impl IdState {
    /// Every uid handed out, as allocation needs it.
    pub fn user_ids(&self) -> Held {
        Held {
            current: self.users.clone(),
            earlier: self.earlier_users.clone(),
        }
    }

    /// Every gid handed out (groups never change id, so there is no history).
    pub fn group_ids(&self) -> Held {
        Held {
            current: self.groups.clone(),
            earlier: BTreeMap::new(),
        }
    }

    /// Frees a held name (`zt-agent release NAME`); returns who held it.
    pub fn release_name(&mut self, name: &str) -> Option<String> {
        self.names.remove(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unversioned_file_of_earlier_releases_loads_and_upgrades() {
        let old = r#"{"users": {"u-alice": 1879048200}, "groups": {"g-sre": 2013265921},
                      "names": {"alice": "u-alice"}}"#;
        let s: IdState = serde_json::from_str(old).unwrap();
        assert_eq!(s.users["u-alice"], 1_879_048_200);
        assert_eq!(s.names["alice"], "u-alice");
        let written = serde_json::to_value(&s).unwrap();
        assert_eq!(written["version"], FORMAT_VERSION);
        assert_eq!(written["users"]["u-alice"], 1_879_048_200);
    }

    #[test]
    fn a_newer_file_is_read_and_its_unknown_fields_written_back() {
        let newer = r#"{"version": 3, "oldest_reader": 2, "users": {"u-a": 1879048200},
                        "groups": {}, "names": {}, "principals": {"u-a": ["a"]}}"#;
        let s: IdState = serde_json::from_str(newer).unwrap();
        assert_eq!(s.version, 3);
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back["principals"]["u-a"][0], "a");
        assert_eq!(back["version"], 3);
    }

    #[test]
    fn a_file_for_newer_readers_only_is_refused() {
        let e = serde_json::from_str::<IdState>(
            r#"{"version": 4, "oldest_reader": 4, "users": {}, "groups": {}, "names": {}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("this agent reads format 2"), "{e}");
    }

    #[test]
    fn roundtrip() {
        let mut s = IdState::default();
        s.users.insert("u-a".into(), 70001);
        s.earlier_users.insert("u-a".into(), vec![70000]);
        s.names.insert("a".into(), "u-a".into());
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<IdState>(&text).unwrap(), s);
        assert_eq!(s.release_name("a").as_deref(), Some("u-a"));
    }
}
