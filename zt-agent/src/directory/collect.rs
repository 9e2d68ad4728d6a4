//! Gathering a connector's answers into a [`Directory`], one entry at a time:
//! an entry that does not map (no id, no email, a wrong type) is left out
//! with a problem, never fails the sync; the listing as a whole still must be
//! complete, which the connectors check before they get here.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::{DirectoryError, DirectoryFailure};
use super::{DirGroup, DirUser, Directory, MAX_ENTRY_PROBLEMS};

/// Bound on the people one sync keeps: far above any organisation a host
/// serves, low enough that a hostile IdP cannot exhaust the agent's memory.
pub const MAX_USERS: usize = 1_000_000;
/// Bound on the groups one sync keeps (configured ones and those nested in them).
pub const MAX_GROUPS: usize = 100_000;

#[derive(Default)]
pub struct Collected {
    users: BTreeMap<String, DirUser>,
    groups: BTreeMap<String, DirGroup>,
    failed: Vec<(String, bool)>,
    problems: Vec<String>,
    more_problems: usize,
}

/// What can be salvaged from an entry that did not map: its id and whether it
/// said it was disabled, so the removal guard treats it as present (and a
/// disable applies).
#[derive(Deserialize)]
struct Salvage {
    #[serde(default)]
    id: Option<String>,
    /// Graph
    #[serde(default, rename = "accountEnabled")]
    account_enabled: Option<serde_json::Value>,
    /// SCIM
    #[serde(default)]
    active: Option<serde_json::Value>,
    /// Keycloak
    #[serde(default)]
    enabled: Option<serde_json::Value>,
    /// Google
    #[serde(default)]
    suspended: Option<serde_json::Value>,
    /// Google
    #[serde(default)]
    archived: Option<serde_json::Value>,
    /// Okta: SUSPENDED, DEPROVISIONED, ... (any status but the enabled ones)
    #[serde(default)]
    status: Option<serde_json::Value>,
}

impl Salvage {
    /// Did the entry say, in any IdP's words, that the person is disabled?
    fn disabled(&self) -> bool {
        let is = |v: &Option<serde_json::Value>, b: bool| matches!(v, Some(serde_json::Value::Bool(x)) if *x == b);
        is(&self.account_enabled, false)
            || is(&self.active, false)
            || is(&self.enabled, false)
            || is(&self.suspended, true)
            || is(&self.archived, true)
            || matches!(&self.status, Some(serde_json::Value::String(s))
                if !crate::directory::okta::ENABLED.contains(&s.as_str()))
    }
}

impl Collected {
    pub fn problem(&mut self, message: String) {
        if self.problems.len() < MAX_ENTRY_PROBLEMS {
            self.problems.push(message);
        } else {
            self.more_problems += 1;
        }
    }

    /// Keeps `user`. When listings overlap (a person in two groups) the
    /// first answer's data wins, but a person any answer shows disabled is
    /// disabled: read mid-change, the two answers may differ, and the
    /// disable must not depend on which group was read first.
    pub fn user(&mut self, user: DirUser) -> Result<(), DirectoryError> {
        let full = self.users.len() >= MAX_USERS;
        match self.users.entry(user.id.clone()) {
            std::collections::btree_map::Entry::Occupied(mut known) => {
                known.get_mut().enabled &= user.enabled;
            }
            std::collections::btree_map::Entry::Vacant(_) if full => {
                return Err(too_many("people", MAX_USERS));
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(user);
            }
        }
        Ok(())
    }

    pub fn has_user(&self, id: &str) -> bool {
        self.users.contains_key(id)
    }

    /// Was an entry with this id left out (did not map)?
    pub fn was_left_out(&self, id: &str) -> bool {
        self.failed.iter().any(|(f, _)| f == id)
    }

    pub fn group(&mut self, group: DirGroup) -> Result<(), DirectoryError> {
        if self.groups.len() >= MAX_GROUPS && !self.groups.contains_key(&group.id) {
            return Err(too_many("groups", MAX_GROUPS));
        }
        self.groups.insert(group.id.clone(), group);
        Ok(())
    }

    /// An entry of a `what` listing that did not map, because of `why`.
    pub fn left_out(&mut self, what: &str, raw: &RawValue, why: &str) {
        let salvage = serde_json::from_str::<Salvage>(raw.get()).ok();
        let id = salvage
            .as_ref()
            .and_then(|s| s.id.clone())
            .filter(|id| !id.is_empty());
        let disabled = salvage.as_ref().is_some_and(Salvage::disabled);
        match id {
            Some(id) => {
                self.problem(format!("{what} {id:?} left out: {why}"));
                self.failed.push((id, disabled));
            }
            None => self.problem(format!("a {what} without an id left out: {why}")),
        }
    }

    /// As [`Self::left_out`], for an entry already parsed.
    pub fn left_out_id(&mut self, id: &str, disabled: bool, why: &str) {
        self.problem(format!("user {id:?} left out: {why}"));
        self.failed.push((id.to_string(), disabled));
    }

    pub fn into_directory(self) -> Directory {
        let mut directory = Directory {
            users: self.users.into_values().collect(),
            groups: self.groups.into_values().collect(),
            problems: self.problems,
            left_out: BTreeMap::new(),
        };
        if self.more_problems > 0 {
            directory.problems.push(format!(
                "... and {} more entries left out",
                self.more_problems
            ));
        }
        directory.drop_ambiguous_entries_with(&self.failed);
        directory
    }
}

/// An error once one group's member list reaches [`MAX_USERS`]: checked per
/// entry as pages come, so a listing that repeats people without end stops
/// before it fills memory.
pub fn check_members(members: usize) -> Result<(), DirectoryError> {
    if members >= MAX_USERS {
        return Err(too_many("members of one group", MAX_USERS));
    }
    Ok(())
}

fn too_many(what: &str, limit: usize) -> DirectoryError {
    DirectoryError::new(
        DirectoryFailure::Malformed,
        format!("more than {limit} {what} in the configured groups; refusing to go on"),
    )
}

/// A group's name as the directory gives it: its display name cleaned
/// (at most 256 bytes), or its id where it has none usable.
pub fn group_name(display: Option<&str>, id: &str) -> String {
    display
        .and_then(|n| clean(n, 256))
        .unwrap_or_else(|| id.to_string())
}

/// A directory string that becomes part of a message or the model: no
/// control characters, bounded.
pub fn clean(s: &str, max: usize) -> Option<String> {
    (!s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)).then(|| s.to_string())
}

/// An IdP's creation time as the model's RFC 3339 UTC seconds
/// (`2024-02-01T10:00:00Z`): fractions dropped, `+00:00` read as `Z`.
/// Anything else is None (no creation time beats a wrong one).
pub fn utc_time(s: &str) -> Option<String> {
    let s = s
        .strip_suffix("+00:00")
        .map_or(s.to_string(), |t| format!("{t}Z"));
    let t = humantime::parse_rfc3339(&s).ok()?;
    Some(humantime::format_rfc3339_seconds(t).to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_left_out_entry_that_says_disabled_in_any_idps_words_counts_as_a_disable() {
        let disabled = |json: &str| {
            serde_json::from_str::<super::Salvage>(json)
                .unwrap()
                .disabled()
        };
        for yes in [
            r#"{"id":"a","accountEnabled":false}"#,
            r#"{"id":"a","active":false}"#,
            r#"{"id":"a","enabled":false}"#,
            r#"{"id":"a","suspended":true}"#,
            r#"{"id":"a","archived":true}"#,
            r#"{"id":"a","status":"SUSPENDED"}"#,
            r#"{"id":"a","status":"DEPROVISIONED"}"#,
        ] {
            assert!(disabled(yes), "{yes}");
        }
        for no in [
            r#"{"id":"a"}"#,
            r#"{"id":"a","suspended":false,"archived":false}"#,
            r#"{"id":"a","status":"ACTIVE"}"#,
            r#"{"id":"a","accountEnabled":true}"#,
        ] {
            assert!(!disabled(no), "{no}");
        }
    }

    #[test]
    fn creation_times_normalised() {
        assert_eq!(
            utc_time("2024-02-01T10:00:00.123Z").as_deref(),
            Some("2024-02-01T10:00:00Z")
        );
        assert_eq!(
            utc_time("2024-02-01T10:00:00+00:00").as_deref(),
            Some("2024-02-01T10:00:00Z")
        );
        assert_eq!(utc_time("2024-02-01T10:00:00+02:00"), None);
        assert_eq!(utc_time("yesterday"), None);
    }

    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn an_entry_left_out_keeps_its_id_and_disable() {
        let mut c = Collected::default();
        c.left_out(
            "user",
            &raw(r#"{"id":"u1","accountEnabled":false,"mail":7}"#),
            "bad mail",
        );
        c.left_out("user", &raw(r#"{"id":"u2","active":true}"#), "no email");
        c.left_out("user", &raw(r#"[1,2]"#), "not an object");
        let d = c.into_directory();
        assert_eq!(d.left_out("u1"), Some(true));
        assert_eq!(d.left_out("u2"), Some(false));
        assert_eq!(d.problems.len(), 3, "{:?}", d.problems);
        assert!(d.problems[2].contains("without an id"));
    }

    #[test]
    fn a_person_seen_twice_is_disabled_if_either_answer_says_so() {
        let person = |enabled: bool, email: &str| DirUser {
            id: "u1".into(),
            email: email.into(),
            display_name: None,
            enabled,
            username: None,
            uid: None,
            created: None,
            ssh_keys: Vec::new(),
        };
        for (first, second) in [(true, false), (false, true), (false, false)] {
            let mut c = Collected::default();
            c.user(person(first, "a@example.com")).unwrap();
            c.user(person(second, "b@example.com")).unwrap();
            let d = c.into_directory();
            assert_eq!(d.users.len(), 1);
            assert!(!d.users[0].enabled, "{first} then {second}");
            assert_eq!(d.users[0].email, "a@example.com", "the first answer's data");
        }
        let mut c = Collected::default();
        c.user(person(true, "a@example.com")).unwrap();
        c.user(person(true, "a@example.com")).unwrap();
        assert!(c.into_directory().users[0].enabled);
    }

    #[test]
    fn one_groups_members_are_bounded() {
        assert!(check_members(MAX_USERS - 1).is_ok());
        let e = check_members(MAX_USERS).unwrap_err();
        assert_eq!(e.kind, DirectoryFailure::Malformed);
    }

    #[test]
    fn problems_are_bounded() {
        let mut c = Collected::default();
        for i in 0..MAX_ENTRY_PROBLEMS + 5 {
            c.left_out("user", &raw(&format!(r#"{{"id":"u{i}"}}"#)), "x");
        }
        let d = c.into_directory();
        assert_eq!(d.problems.len(), MAX_ENTRY_PROBLEMS + 1);
        assert!(d.problems.last().unwrap().contains("5 more"));
    }
}
