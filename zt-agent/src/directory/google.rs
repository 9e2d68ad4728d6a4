//! `kind = "google"`: Google Workspace through the Admin SDK Directory API.
//!
//! A token for a service account with domain-wide delegation: an RS256
//! assertion (RFC 7523) signed with the key in `service_account_file`, `iss`
//! its `client_email`, `sub` the admin it acts as (`subject`), scopes
//! `admin.directory.group.readonly` and `admin.directory.user.readonly`,
//! exchanged at `token_url`. Then for each configured group only: the group
//! (`/admin/directory/v1/groups/{id}`) and its members, nested groups
//! included (`.../members?includeDerivedMembership=true`), and the people of
//! the customer (`/admin/directory/v1/users?customer=&projection=full`),
//! keeping members. Everything pages by `pageToken` / `nextPageToken`.
//!
//! Each user maps to: id, email (`primaryEmail`), display name
//! (`name.fullName`), enabled (neither `suspended`, which is required, nor
//! `archived`), created
//! (`creationTime`), username and uid from the primary (else first)
//! `posixAccounts` entry, and the unexpired `sshPublicKeys`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::api::{Api, Credentials, PageLinks, RetryPolicy, query_value, segment, truncate};
use super::collect::{Collected, clean, group_name, utc_time};
use super::error::{DirectoryError, DirectoryFailure};
use super::oauth::token_request;
use super::{DirGroup, DirUser, Directory};
use crate::config::GoogleSource;
use crate::http::Http;

/// What the token may do: read groups, memberships and people.
pub const SCOPES: &str = "https://www.googleapis.com/auth/admin.directory.group.readonly https://www.googleapis.com/auth/admin.directory.user.readonly";
/// Members per page (the API's largest).
const MEMBERS_PAGE: usize = 200;
/// People per page (the API's largest).
const USERS_PAGE: usize = 500;

/// The fields of a service account key file the agent uses.
#[derive(Deserialize)]
struct ServiceAccountKey {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    sub: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

struct ServiceAccount {
    file: std::path::PathBuf,
    subject: String,
    token_url: String,
    policy: RetryPolicy,
}

impl Credentials for ServiceAccount {
    fn authorization(&mut self, http: &Http, _renew: bool) -> Result<String, DirectoryError> {
        let refused = |why: String| {
            DirectoryError::new(
                DirectoryFailure::Unauthorised,
                format!("{}: {why}", self.file.display()),
            )
        };
        let text = crate::trusted_file::read(&self.file, crate::trusted_file::Kind::Secret)
            .map_err(|why| DirectoryError::new(DirectoryFailure::Unauthorised, why))?;
        // only where, never what: the text around the error is the secret
        let key: ServiceAccountKey = serde_json::from_str(&text).map_err(|e| {
            refused(format!(
                "not a service account key file (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Assertion {
            iss: &key.client_email,
            sub: &self.subject,
            scope: SCOPES,
            aud: &self.token_url,
            iat: now,
            exp: now + 3600,
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = key.private_key_id.clone();
        let signing_key = jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.as_bytes())
            .map_err(|_| refused("private_key is not an RSA private key in PEM".into()))?;
        let assertion = jsonwebtoken::encode(&header, &claims, &signing_key)
            .map_err(|_| refused("cannot sign the token request".into()))?;
        let whose = format!(
            "service account {:?} acting as {:?}, key from {}",
            key.client_email,
            self.subject,
            self.file.display()
        );
        token_request(
            http,
            &self.token_url,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ],
            &self.policy,
            &whose,
        )
    }
}

pub fn connect<'h>(http: &'h Http, source: &GoogleSource) -> Result<Api<'h>, DirectoryError> {
    let credentials = ServiceAccount {
        file: source.service_account_file.clone(),
        subject: source.subject.clone(),
        token_url: source.token_url.clone(),
        policy: RetryPolicy::default(),
    };
    Api::new(http, &source.api_url, Box::new(credentials))
}

#[derive(Deserialize)]
struct GoogleGroup {
    /// Required, `admin#directory#group`: a 200 carrying something else (an
    /// error object, a proxy's page) is no group. Checked after parsing,
    /// for a message that says so.
    #[serde(default)]
    kind: String,
    id: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MembersPage {
    /// Required, `admin#directory#members`: without it, `{}` or an error
    /// object answered with 200 would read as "no members, no next page" and
    /// silently end the listing. (`members` itself is absent for an empty
    /// group.) Checked after parsing, for a message that says so.
    #[serde(default)]
    kind: String,
    #[serde(default)]
    members: Vec<Member>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct Member {
    id: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsersPage {
    /// Required: a 200 without it is not a listing.
    kind: String,
    #[serde(default)]
    users: Vec<Box<RawValue>>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GoogleUser {
    id: String,
    primary_email: String,
    #[serde(default)]
    name: Option<UserName>,
    /// Required: the API always sends it, and a person whose state we
    /// cannot see is not let in (the entry is left out with a problem).
    suspended: bool,
    /// Absent: not archived (older answers may lack it).
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    creation_time: Option<String>,
    #[serde(default)]
    posix_accounts: Vec<PosixAccount>,
    #[serde(default)]
    ssh_public_keys: Vec<SshPublicKey>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserName {
    #[serde(default)]
    full_name: Option<String>,
}

#[derive(Deserialize)]
struct PosixAccount {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    uid: Option<NumberOrText>,
    #[serde(default)]
    primary: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SshPublicKey {
    key: String,
    #[serde(default)]
    expiration_time_usec: Option<NumberOrText>,
}

/// The API sends 64-bit integers as JSON strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}

impl NumberOrText {
    fn value(&self) -> Option<u64> {
        match self {
            NumberOrText::Number(n) => Some(*n),
            NumberOrText::Text(t) => t.trim().parse().ok(),
        }
    }
}

fn map_user(raw: &RawValue, now_usec: u64) -> Result<DirUser, String> {
    let u: GoogleUser = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    let id = clean(&u.id, 256).ok_or("an unusable id")?;
    let email = clean(&u.primary_email, 320).ok_or("an unusable primaryEmail")?;
    let posix = u
        .posix_accounts
        .iter()
        .find(|p| p.primary)
        .or(u.posix_accounts.first());
    let uid = match posix.and_then(|p| p.uid.as_ref()) {
        None => None,
        Some(v) => Some(
            v.value()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or("posixAccounts uid is not a 32-bit number")?,
        ),
    };
    let ssh_keys = u
        .ssh_public_keys
        .iter()
        .filter(|k| {
            k.expiration_time_usec
                .as_ref()
                .and_then(NumberOrText::value)
                .is_none_or(|expires| expires == 0 || expires > now_usec)
        })
        .map(|k| k.key.trim().to_string())
        .collect();
    Ok(DirUser {
        id,
        email,
        display_name: u
            .name
            .and_then(|n| n.full_name)
            .as_deref()
            .and_then(|n| clean(n, 256)),
        enabled: !u.suspended && !u.archived,
        username: posix
            .and_then(|p| p.username.as_deref())
            .and_then(|n| clean(n, 256)),
        uid,
        created: u.creation_time.as_deref().and_then(utc_time),
        ssh_keys,
    })
}

/// Reads the configured groups, their (derived) members and those people.
pub fn read(
    api: &mut Api<'_>,
    source: &GoogleSource,
    group_ids: &[String],
) -> Result<Directory, DirectoryError> {
    let base = format!("{}/admin/directory/v1", source.api_url);
    let mut collected = Collected::default();
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for group_id in group_ids {
        let group_url = format!("{base}/groups/{}", segment(group_id));
        let Some(group) = api.get::<GoogleGroup>(&group_url)? else {
            continue;
        };
        if group.kind != "admin#directory#group" {
            return Err(DirectoryError::new(
                DirectoryFailure::Malformed,
                format!("GET {}: not a group", truncate(&group_url)),
            ));
        }
        if &group.id != group_id {
            return Err(DirectoryError::new(
                DirectoryFailure::Malformed,
                format!(
                    "GET {}: answered group {:?}",
                    truncate(&group_url),
                    group.id
                ),
            ));
        }
        let first =
            format!("{group_url}/members?maxResults={MEMBERS_PAGE}&includeDerivedMembership=true");
        let mut members = Vec::new();
        let mut url = first.clone();
        let mut tokens = PageLinks::default();
        loop {
            let page = api.get::<MembersPage>(&url)?.ok_or_else(|| {
                DirectoryError::new(
                    DirectoryFailure::Unavailable,
                    format!(
                        "GET {}: the group vanished while it was read",
                        truncate(&url)
                    ),
                )
            })?;
            if page.kind != "admin#directory#members" {
                return Err(DirectoryError::new(
                    DirectoryFailure::Malformed,
                    format!("GET {}: not a list of members", truncate(&url)),
                ));
            }
            for m in page.members {
                super::collect::check_members(members.len())?;
                if m.kind.as_deref() == Some("USER")
                    && let Some(id) = clean(&m.id, 256)
                {
                    wanted.insert(id.clone());
                    members.push(id);
                }
            }
            match page.next_page_token {
                Some(token) => {
                    tokens.follow(&token)?;
                    url = format!("{first}&pageToken={}", query_value(&token));
                }
                None => break,
            }
        }
        members.sort();
        members.dedup();
        collected.group(DirGroup {
            id: group.id,
            name: group_name(group.name.as_deref(), group_id),
            members,
        })?;
    }

    let now_usec = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let first = format!(
        "{base}/users?customer={}&maxResults={USERS_PAGE}&projection=full",
        query_value(&source.customer)
    );
    let mut url = first.clone();
    let mut tokens = PageLinks::default();
    loop {
        let page = api.get::<UsersPage>(&url)?.ok_or_else(|| {
            DirectoryError::new(
                DirectoryFailure::Malformed,
                format!(
                    "GET {}: HTTP 404 (customer {:?}?)",
                    truncate(&url),
                    source.customer
                ),
            )
        })?;
        if page.kind != "admin#directory#users" {
            return Err(DirectoryError::new(
                DirectoryFailure::Malformed,
                format!("GET {}: not a list of users", truncate(&url)),
            ));
        }
        for raw in &page.users {
            let member =
                serde_json::from_str::<IdOnly>(raw.get()).is_ok_and(|u| wanted.contains(&u.id));
            if !member {
                continue;
            }
            match map_user(raw, now_usec) {
                Ok(user) => collected.user(user)?,
                Err(why) => collected.left_out("user", raw, &why),
            }
        }
        match page.next_page_token {
            Some(token) => {
                tokens.follow(&token)?;
                url = format!("{first}&pageToken={}", query_value(&token));
            }
            None => break,
        }
    }
    Ok(collected.into_directory())
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(json: &str) -> Result<DirUser, String> {
        map_user(
            &RawValue::from_string(json.to_string()).unwrap(),
            1_700_000_000_000_000,
        )
    }

    #[test]
    fn posix_accounts_and_ssh_keys() {
        let u = user(
            r#"{"kind":"admin#directory#user","id":"108028652821197762751","primaryEmail":"liz@example.com",
                "name":{"givenName":"Elizabeth","familyName":"Smith","fullName":"Elizabeth Smith"},
                "isAdmin":false,"suspended":false,"archived":false,"creationTime":"2013-09-20T21:48:23.000Z",
                "posixAccounts":[{"username":"lsmith2","uid":"2001","gid":"2001","primary":false},
                                 {"username":"liz","uid":"2000","gid":"2000","primary":true,"homeDirectory":"/home/liz"}],
                "sshPublicKeys":[{"key":"ssh-ed25519 AAAA liz@laptop","expirationTimeUsec":"0"},
                                 {"key":"ssh-ed25519 BBBB old","expirationTimeUsec":"1600000000000000"},
                                 {"key":"ssh-ed25519 CCCC new","expirationTimeUsec":"1800000000000000"}]}"#,
        )
        .unwrap();
        assert_eq!(u.username.as_deref(), Some("liz"));
        assert_eq!(u.uid, Some(2000));
        assert_eq!(u.display_name.as_deref(), Some("Elizabeth Smith"));
        assert_eq!(u.created.as_deref(), Some("2013-09-20T21:48:23Z"));
        assert_eq!(
            u.ssh_keys,
            ["ssh-ed25519 AAAA liz@laptop", "ssh-ed25519 CCCC new"]
        );
        assert!(u.enabled);
        let u = user(r#"{"id":"1","primaryEmail":"a@example.com","suspended":true}"#).unwrap();
        assert!(!u.enabled, "suspended");
        let u =
            user(r#"{"id":"1","primaryEmail":"a@example.com","suspended":false,"archived":true}"#)
                .unwrap();
        assert!(!u.enabled, "archived");
        let e = user(
            r#"{"id":"1","primaryEmail":"a@example.com","suspended":false,"posixAccounts":[{"uid":"99999999999"}]}"#,
        )
        .unwrap_err();
        assert!(e.contains("32-bit"), "{e}");
    }

    #[test]
    fn a_user_without_suspended_is_left_out_not_let_in() {
        let raw =
            RawValue::from_string(r#"{"id":"1","primaryEmail":"a@example.com"}"#.into()).unwrap();
        let e = map_user(&raw, 0).unwrap_err();
        assert!(e.contains("suspended"), "{e}");
    }
}
