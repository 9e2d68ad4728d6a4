//! `kind = "scim"`: any SCIM 2.0 service provider (RFC 7643/7644), read with
//! a bearer token from `token_file`.
//!
//! Each configured group is read by id (`<url>/Groups/{id}`), then the groups
//! nested in it (members of type `Group`), breadth first. The people are read
//! with `<url>/Users?startIndex=&count=` paging, keeping only members; a
//! member the listing did not show (offset paging skips people when the list
//! shifts under it during a sync) is read by id, so a concurrent change can
//! never make someone look removed. A member whose type is not given is
//! looked for among the users, then among the groups.
//!
//! Each user maps to: id, email (the primary `emails` value, else the first,
//! else a `userName` that is an email), display name (`displayName`, else
//! `name.formatted`), enabled (`active`, true when absent as RFC 7643 leaves
//! it optional), created (`meta.created`), username (`userName`).

use std::collections::{BTreeSet, HashSet, VecDeque};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::api::{Api, MAX_PAGES, StaticToken, read_secret, segment, truncate};
use super::collect::{Collected, MAX_GROUPS, clean, group_name, utc_time};
use super::error::{DirectoryError, DirectoryFailure};
use super::{DirGroup, DirUser, Directory};
use crate::config::ScimSource;
use crate::http::Http;

/// People per `/Users` page (servers may return fewer; RFC 7644 3.4.2.4).
pub const PAGE_SIZE: usize = 200;

pub fn connect<'h>(http: &'h Http, source: &ScimSource) -> Result<Api<'h>, DirectoryError> {
    let token = read_secret(&source.token_file)?;
    let credentials = StaticToken {
        header: format!("Bearer {token}"),
        origin: source.token_file.display().to_string(),
    };
    Api::new(http, &source.url, Box::new(credentials))
}

/// RFC 7644 3.4.2: a query's answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    schemas: Vec<String>,
    total_results: usize,
    /// Absent when there are no results (RFC 7644 3.4.2).
    #[serde(default, rename = "Resources")]
    resources: Vec<Box<RawValue>>,
}

const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScimGroup {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
    /// Each parsed on its own: one bad member (a `$ref` without the
    /// required `value`) is left out alone, not the group with all its people.
    #[serde(default)]
    members: Vec<Box<RawValue>>,
}

#[derive(Deserialize)]
struct Member {
    /// Required (RFC 7643 4.2): the member's id.
    value: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScimUser {
    id: String,
    #[serde(default)]
    user_name: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    name: Option<Name>,
    #[serde(default)]
    emails: Vec<Email>,
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Deserialize)]
struct Name {
    #[serde(default)]
    formatted: Option<String>,
}

#[derive(Deserialize)]
struct Email {
    value: String,
    #[serde(default)]
    primary: Option<bool>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    created: Option<String>,
}

/// Maps one SCIM user; the error says why it was left out.
fn map_user(raw: &RawValue) -> Result<DirUser, String> {
    let u: ScimUser = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    let id = clean(&u.id, 256).ok_or("an unusable id")?;
    let email = u
        .emails
        .iter()
        .find(|e| e.primary == Some(true))
        .or_else(|| u.emails.first())
        .map(|e| e.value.as_str())
        .or(u.user_name.as_deref().filter(|n| n.contains('@')))
        .and_then(|e| clean(e, 320))
        .ok_or("no email (emails, or a userName that is one)")?;
    let display = u
        .display_name
        .as_deref()
        .or(u.name.as_ref().and_then(|n| n.formatted.as_deref()));
    Ok(DirUser {
        id,
        email,
        display_name: display.and_then(|d| clean(d, 256)),
        // RFC 7643 4.1.1 makes `active` optional; a service that does not
        // support it leaves it out for everyone, and reading that as
        // disabled would lock them all out (README: the connector section)
        enabled: u.active.unwrap_or(true),
        username: u.user_name.as_deref().and_then(|n| clean(n, 256)),
        uid: None,
        created: u.meta.and_then(|m| m.created).as_deref().and_then(utc_time),
        ssh_keys: Vec::new(),
    })
}

/// Reads the configured groups, the groups nested in them and their people.
pub fn read(
    api: &mut Api<'_>,
    url: &str,
    group_ids: &[String],
) -> Result<Directory, DirectoryError> {
    let mut walk = Walk {
        api,
        url,
        collected: Collected::default(),
        seen_groups: HashSet::new(),
        users: BTreeSet::new(),
        untyped: BTreeSet::new(),
    };
    walk.groups(group_ids.iter().cloned())?;
    walk.list_users()?;
    // members the listing did not show: each read by id (a 404 means gone),
    // and an untyped member that is no user is tried as a group, whose
    // members then go round again
    let mut handled: HashSet<String> = HashSet::new();
    loop {
        let pending: Vec<String> = walk
            .users
            .iter()
            .chain(walk.untyped.iter())
            .filter(|id| !walk.collected.has_user(id) && !walk.collected.was_left_out(id))
            .filter(|id| !handled.contains(*id))
            .cloned()
            .collect();
        if pending.is_empty() {
            break;
        }
        let mut nested = Vec::new();
        for id in pending {
            handled.insert(id.clone());
            if !walk.read_user(&id)? && walk.untyped.contains(&id) {
                nested.push(id);
            }
        }
        walk.groups(nested)?;
    }
    Ok(walk.collected.into_directory())
}

struct Walk<'a, 'h> {
    api: &'a mut Api<'h>,
    url: &'a str,
    collected: Collected,
    seen_groups: HashSet<String>,
    /// Members typed `User`.
    users: BTreeSet<String>,
    /// Members without a type: a user, or else a group.
    untyped: BTreeSet<String>,
}

impl Walk<'_, '_> {
    /// Reads `ids` and the groups nested in them, breadth first, each once.
    fn groups(&mut self, ids: impl IntoIterator<Item = String>) -> Result<(), DirectoryError> {
        let mut queue: VecDeque<String> = VecDeque::new();
        for id in ids {
            if self.seen_groups.insert(id.clone()) {
                queue.push_back(id);
            }
        }
        while let Some(id) = queue.pop_front() {
            for nested in self.group(&id)? {
                if self.seen_groups.len() >= MAX_GROUPS {
                    return Err(DirectoryError::new(
                        DirectoryFailure::Malformed,
                        format!("more than {MAX_GROUPS} nested groups"),
                    ));
                }
                if self.seen_groups.insert(nested.clone()) {
                    queue.push_back(nested);
                }
            }
        }
        Ok(())
    }

    /// Reads one group (a 404: it does not exist, resolve reports a
    /// configured one); returns the groups nested in it.
    fn group(&mut self, id: &str) -> Result<Vec<String>, DirectoryError> {
        let group_url = format!("{}/Groups/{}", self.url, segment(id));
        let Some(raw) = self.api.get::<Box<RawValue>>(&group_url)? else {
            return Ok(Vec::new());
        };
        // a group left out would look empty and remove its people: a group
        // that is there but does not parse fails the read
        let group: ScimGroup = serde_json::from_str(raw.get()).map_err(|e| {
            DirectoryError::new(
                DirectoryFailure::Malformed,
                format!("GET {}: not a SCIM group: {e}", truncate(&group_url)),
            )
        })?;
        if group.id != id {
            return Err(DirectoryError::new(
                DirectoryFailure::Malformed,
                format!(
                    "GET {}: answered group {:?}",
                    truncate(&group_url),
                    group.id
                ),
            ));
        }
        let mut members = Vec::with_capacity(group.members.len());
        let mut nested = Vec::new();
        for raw in group.members {
            let m = match serde_json::from_str::<Member>(raw.get()) {
                Ok(m) => m,
                Err(e) => {
                    self.collected
                        .problem(format!("group {id:?}: a member left out: {e}"));
                    continue;
                }
            };
            let Some(member) = clean(&m.value, 256) else {
                self.collected.problem(format!(
                    "group {id:?}: a member with an unusable value left out"
                ));
                continue;
            };
            match m.kind.as_deref() {
                Some("Group") => nested.push(member.clone()),
                Some("User") => {
                    self.users.insert(member.clone());
                }
                _ => {
                    self.untyped.insert(member.clone());
                }
            }
            members.push(member);
        }
        self.collected.group(DirGroup {
            id: group.id,
            name: group_name(group.display_name.as_deref(), id),
            members,
        })?;
        Ok(nested)
    }

    /// Every person, page by page, keeping the members.
    fn list_users(&mut self) -> Result<(), DirectoryError> {
        let mut start = 1usize;
        let mut previous_first: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page_url = format!("{}/Users?startIndex={start}&count={PAGE_SIZE}", self.url);
            let page = self.api.get::<ListResponse>(&page_url)?.ok_or_else(|| {
                DirectoryError::new(
                    DirectoryFailure::Malformed,
                    format!(
                        "GET {}: HTTP 404 (no /Users endpoint?)",
                        truncate(&page_url)
                    ),
                )
            })?;
            if !page.schemas.iter().any(|s| s == LIST_RESPONSE) {
                return Err(DirectoryError::new(
                    DirectoryFailure::Malformed,
                    format!("GET {}: not a SCIM ListResponse", truncate(&page_url)),
                ));
            }
            let got = page.resources.len();
            // a server that ignores startIndex answers page one forever
            let first = page.resources.first().map(|r| r.get().to_string());
            if first.is_some() && first == previous_first {
                return Err(DirectoryError::new(
                    DirectoryFailure::Malformed,
                    format!(
                        "GET {}: the same page again (startIndex ignored?)",
                        truncate(&page_url)
                    ),
                ));
            }
            previous_first = first;
            for raw in &page.resources {
                let member = serde_json::from_str::<IdOnly>(raw.get())
                    .is_ok_and(|i| self.users.contains(&i.id) || self.untyped.contains(&i.id));
                if member {
                    self.keep_user(raw)?;
                }
            }
            if got == 0 || start - 1 + got >= page.total_results {
                return Ok(());
            }
            start += got;
        }
        Err(DirectoryError::new(
            DirectoryFailure::Malformed,
            format!("/Users: more than {MAX_PAGES} pages"),
        ))
    }

    /// Reads one person by id; false if there is none.
    fn read_user(&mut self, id: &str) -> Result<bool, DirectoryError> {
        let user_url = format!("{}/Users/{}", self.url, segment(id));
        match self.api.get::<Box<RawValue>>(&user_url)? {
            Some(raw) => {
                // another person's answer would stand in for this one (and
                // their data be mixed with a listing's): the server is broken
                let answered = serde_json::from_str::<IdOnly>(raw.get()).ok().map(|u| u.id);
                if answered.as_deref() != Some(id) {
                    return Err(DirectoryError::new(
                        DirectoryFailure::Malformed,
                        format!("GET {}: answered user {answered:?}", truncate(&user_url)),
                    ));
                }
                self.keep_user(&raw)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn keep_user(&mut self, raw: &RawValue) -> Result<(), DirectoryError> {
        match map_user(raw) {
            Ok(user) => self.collected.user(user),
            Err(why) => {
                self.collected.left_out("user", raw, &why);
                Ok(())
            }
        }
    }
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(json: &str) -> Result<DirUser, String> {
        map_user(&RawValue::from_string(json.to_string()).unwrap())
    }

    #[test]
    fn the_primary_email_wins() {
        let u = user(
            r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"2819c223",
                "userName":"bjensen","name":{"formatted":"Ms. Barbara J Jensen III"},
                "emails":[{"value":"bjensen@home.example.com","type":"home"},
                          {"value":"bjensen@example.com","type":"work","primary":true}],
                "meta":{"resourceType":"User","created":"2010-01-23T04:56:22.000Z"}}"#,
        )
        .unwrap();
        assert_eq!(u.email, "bjensen@example.com");
        assert_eq!(u.display_name.as_deref(), Some("Ms. Barbara J Jensen III"));
        assert_eq!(u.username.as_deref(), Some("bjensen"));
        assert_eq!(u.created.as_deref(), Some("2010-01-23T04:56:22Z"));
        assert!(u.enabled, "active is optional; absent means active");
    }

    #[test]
    fn inactive_and_email_from_user_name() {
        let u = user(r#"{"id":"x","userName":"carol@example.com","active":false}"#).unwrap();
        assert_eq!(u.email, "carol@example.com");
        assert!(!u.enabled);
        assert!(
            user(r#"{"id":"y","userName":"dave"}"#)
                .unwrap_err()
                .contains("no email")
        );
        assert!(user(r#"{"id":"z","emails":"e@example.com"}"#).is_err());
        // present but not a boolean: unknown, left out
        assert!(user(r#"{"id":"w","userName":"w@example.com","active":"false"}"#).is_err());
    }
}
