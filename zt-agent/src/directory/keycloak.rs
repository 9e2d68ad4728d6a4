//! `kind = "keycloak"`: a Keycloak realm through its admin REST API.
//!
//! A token by client credentials (`<url>/realms/<realm>/protocol/openid-connect/token`;
//! the client's service account needs the realm-management roles
//! `view-users` and `query-groups`), then for each configured group only:
//! the group (`/admin/realms/<realm>/groups/{id}`), its direct members
//! (`.../groups/{id}/members?first=&max=&briefRepresentation=false`) and its
//! subgroups (`.../groups/{id}/children?first=&max=`, Keycloak 23+; older
//! servers list them in the group's `subGroups`), breadth first.
//!
//! Each user maps to: id, email, display name (first and last name), enabled,
//! created (`createdTimestamp`, milliseconds), username, and a uid from a
//! `uidNumber` attribute (LDAP federation puts it there).

use std::collections::{HashSet, VecDeque};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::api::{Api, MAX_PAGES, segment, truncate};
use super::collect::{Collected, MAX_GROUPS, clean, group_name};
use super::error::{DirectoryError, DirectoryFailure};
use super::oauth::{ClientAuth, ClientCredentials};
use super::{DirGroup, DirUser, Directory};
use crate::config::KeycloakSource;
use crate::http::Http;

/// Entries per page of members or subgroups.
pub const PAGE_SIZE: usize = 500;

pub fn connect<'h>(http: &'h Http, source: &KeycloakSource) -> Result<Api<'h>, DirectoryError> {
    let credentials = ClientCredentials {
        token_url: format!(
            "{}/realms/{}/protocol/openid-connect/token",
            source.url, source.realm
        ),
        client_id: source.client_id.clone(),
        auth: ClientAuth::Secret(source.client_secret_file.clone()),
        scope: None,
        policy: Default::default(),
    };
    Api::new(http, &source.url, Box::new(credentials))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeycloakGroup {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    sub_groups: Vec<SubGroup>,
}

#[derive(Deserialize)]
struct SubGroup {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeycloakUser {
    id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    /// Required: a person whose state we cannot see is not let in.
    enabled: bool,
    #[serde(default)]
    created_timestamp: Option<i64>,
    #[serde(default)]
    attributes: std::collections::BTreeMap<String, Vec<String>>,
}

/// 10000-01-01T00:00:00Z in unix milliseconds.
const MAX_TIMESTAMP_MS: i64 = 253_402_300_800_000;

fn map_user(raw: &RawValue) -> Result<DirUser, String> {
    let u: KeycloakUser = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    let id = clean(&u.id, 256).ok_or("an unusable id")?;
    let email = u
        .email
        .as_deref()
        .and_then(|e| clean(e, 320))
        .ok_or("no email")?;
    let name = [u.first_name.as_deref(), u.last_name.as_deref()]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    // RFC 3339 (and humantime, which panics past it) ends at year 9999: a
    // time outside is no creation time, not a reason to drop the person
    let created = u
        .created_timestamp
        .filter(|ms| (1..MAX_TIMESTAMP_MS).contains(ms))
        .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64))
        .map(|t| humantime::format_rfc3339_seconds(t).to_string());
    let uid = match u.attributes.get("uidNumber").and_then(|v| v.first()) {
        None => None,
        Some(v) => Some(
            v.parse::<u32>()
                .map_err(|_| format!("uidNumber {v:?} is not a number"))?,
        ),
    };
    Ok(DirUser {
        id,
        email,
        display_name: clean(&name, 256),
        enabled: u.enabled,
        username: u.username.as_deref().and_then(|n| clean(n, 256)),
        uid,
        created,
        ssh_keys: Vec::new(),
    })
}

/// Reads the configured groups, their subgroups and the people in them.
pub fn read(
    api: &mut Api<'_>,
    source: &KeycloakSource,
    group_ids: &[String],
) -> Result<Directory, DirectoryError> {
    let admin = format!("{}/admin/realms/{}", source.url, source.realm);
    let mut collected = Collected::default();
    let mut seen: HashSet<String> = group_ids.iter().cloned().collect();
    let mut queue: VecDeque<String> = group_ids.iter().cloned().collect();
    while let Some(id) = queue.pop_front() {
        let group_url = format!("{admin}/groups/{}", segment(&id));
        let Some(group) = api.get::<KeycloakGroup>(&group_url)? else {
            continue;
        };
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
        let mut members = Vec::new();
        let listed = pages::<Box<RawValue>>(
            api,
            &format!("{group_url}/members"),
            "&briefRepresentation=false",
        )?
        .ok_or_else(|| {
            DirectoryError::new(
                DirectoryFailure::Unavailable,
                format!(
                    "{}: the group vanished while it was read",
                    truncate(&group_url)
                ),
            )
        })?;
        for raw in listed {
            match map_user(&raw) {
                Ok(user) => {
                    members.push(user.id.clone());
                    collected.user(user)?;
                }
                Err(why) => collected.left_out("user", &raw, &why),
            }
        }
        let mut children: Vec<String> = group.sub_groups.into_iter().map(|g| g.id).collect();
        // Keycloak 23+ lists subgroups only here; older servers answer 404
        children.extend(
            pages::<SubGroup>(api, &format!("{group_url}/children"), "")?
                .unwrap_or_default()
                .into_iter()
                .map(|g| g.id),
        );
        for child in children {
            let Some(child) = clean(&child, 256) else {
                continue;
            };
            members.push(child.clone());
            if seen.insert(child.clone()) {
                if seen.len() > MAX_GROUPS {
                    return Err(DirectoryError::new(
                        DirectoryFailure::Malformed,
                        format!("more than {MAX_GROUPS} nested groups"),
                    ));
                }
                queue.push_back(child);
            }
        }
        members.sort();
        members.dedup();
        collected.group(DirGroup {
            id: group.id,
            name: group_name(group.name.as_deref(), &id),
            members,
        })?;
    }
    Ok(collected.into_directory())
}

/// Every entry of a `first`/`max` paged list: pages until one is short.
/// None if the first page is a 404 (no such list); a 404 on a later page (the
/// group vanished mid-read) fails the read.
///
/// Offset paging skips an entry when one before the offset is removed during
/// the read (everything after moves up), and a skipped person would look
/// removed. So each later page starts one entry early and that entry must be
/// the previous page's last: if it is not, the list moved, and the listing
/// starts over (a few times, then the read fails as unavailable).
fn pages<T: serde::de::DeserializeOwned + Identified>(
    api: &mut Api<'_>,
    url: &str,
    extra_query: &str,
) -> Result<Option<Vec<T>>, DirectoryError> {
    const ATTEMPTS: usize = 3;
    for _ in 0..ATTEMPTS {
        match listing(api, url, extra_query)? {
            Listing::Complete(all) => return Ok(Some(all)),
            Listing::Missing => return Ok(None),
            Listing::Moved => {
                tracing::info!("{}: the list moved while it was read; again", truncate(url))
            }
        }
    }
    Err(DirectoryError::new(
        DirectoryFailure::Unavailable,
        format!(
            "{}: the list kept changing while it was read ({ATTEMPTS} tries)",
            truncate(url)
        ),
    ))
}

enum Listing<T> {
    Complete(Vec<T>),
    Missing,
    Moved,
}

/// What identifies an entry where two pages overlap.
trait Identified {
    fn mark(&self) -> String;
}

impl Identified for SubGroup {
    fn mark(&self) -> String {
        self.id.clone()
    }
}

/// A user entry as the server wrote it: the same entry read twice is the
/// same text (an entry changed in between counts as a move: read again).
impl Identified for Box<RawValue> {
    fn mark(&self) -> String {
        self.get().to_string()
    }
}

fn listing<T: serde::de::DeserializeOwned + Identified>(
    api: &mut Api<'_>,
    url: &str,
    extra_query: &str,
) -> Result<Listing<T>, DirectoryError> {
    let mut all: Vec<T> = Vec::new();
    let mut last: Option<String> = None;
    for page in 0..MAX_PAGES {
        let overlap = usize::from(page > 0);
        let page_url = format!(
            "{url}?first={}&max={}{extra_query}",
            page * PAGE_SIZE - overlap,
            PAGE_SIZE + overlap
        );
        let Some(mut entries) = api.get::<Vec<T>>(&page_url)? else {
            if page == 0 {
                return Ok(Listing::Missing);
            }
            return Err(DirectoryError::new(
                DirectoryFailure::Unavailable,
                format!(
                    "GET {}: HTTP 404 in the middle of a listing",
                    truncate(&page_url)
                ),
            ));
        };
        if page > 0 {
            match entries.first() {
                Some(first) if Some(first.mark()) == last => {
                    entries.remove(0);
                }
                _ => return Ok(Listing::Moved),
            }
        }
        let short = entries.len() < PAGE_SIZE;
        last = entries.last().map(Identified::mark);
        // bounded as pages come: the entries are kept whole until mapped
        super::collect::check_members(all.len() + entries.len())?;
        all.extend(entries);
        if short {
            return Ok(Listing::Complete(all));
        }
    }
    Err(DirectoryError::new(
        DirectoryFailure::Malformed,
        format!("{}: more than {MAX_PAGES} pages", truncate(url)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(json: &str) -> Result<DirUser, String> {
        map_user(&RawValue::from_string(json.to_string()).unwrap())
    }

    #[test]
    fn keycloak_users_map() {
        let u = user(
            r#"{"id":"9c1e","username":"alice","email":"alice@example.com","firstName":"Alice",
                "lastName":"Liddell","enabled":true,"emailVerified":true,
                "createdTimestamp":1706781600000,"attributes":{"uidNumber":["10042"]}}"#,
        )
        .unwrap();
        assert_eq!(u.display_name.as_deref(), Some("Alice Liddell"));
        assert_eq!(u.created.as_deref(), Some("2024-02-01T10:00:00Z"));
        assert_eq!(u.uid, Some(10042));
        assert_eq!(u.username.as_deref(), Some("alice"));
        assert!(
            user(r#"{"id":"x","username":"bob","enabled":true}"#)
                .unwrap_err()
                .contains("no email")
        );
        assert!(user(r#"{"id":"x","email":"c@example.com","enabled":true,"attributes":{"uidNumber":["-1"]}}"#)
            .unwrap_err()
            .contains("uidNumber"));
        assert!(user(r#"{"id":"x","email":"c@example.com"}"#).is_err());
    }

    #[test]
    fn a_created_timestamp_past_year_9999_is_absent_not_a_panic() {
        let at = |ms: i64| {
            user(&format!(
                r#"{{"id":"x","email":"c@example.com","enabled":true,"createdTimestamp":{ms}}}"#
            ))
            .unwrap()
            .created
        };
        assert_eq!(at(253_402_300_800_000), None);
        assert_eq!(at(i64::MAX), None);
        assert_eq!(at(-5), None);
        assert_eq!(
            at(253_402_300_799_999).as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
    }
}
