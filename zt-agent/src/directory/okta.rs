//! `kind = "okta"`: an Okta organisation through its management API, with an
//! API token (`Authorization: SSWS <token>`; a read-only administrator's) or
//! as an API service app (client credentials with a private_key_jwt client
//! assertion at `<org_url>/oauth2/v1/token`, scopes `okta.groups.read
//! okta.users.read`, then `Authorization: Bearer`).
//!
//! For each configured group only: the group (`/api/v1/groups/{id}`) and its
//! members (`/api/v1/groups/{id}/users?limit=200`), paged by the
//! `Link: <..>; rel="next"` header (a cursor, so a change during the read
//! cannot shift anyone out of a page). Okta groups do not nest. Rate limits:
//! a 429 waits for `Retry-After` or else `X-Rate-Limit-Reset`, and when
//! `X-Rate-Limit-Remaining` reaches 0 the next request waits for the reset.
//!
//! Each user maps to: id, email (`profile.email`), display name
//! (`profile.displayName`, else first and last name), enabled (status
//! ACTIVE, PASSWORD_EXPIRED, LOCKED_OUT or RECOVERY: the account exists and
//! is active, whatever its sign-in state; SUSPENDED, DEPROVISIONED, STAGED,
//! PROVISIONED and anything unknown are disabled), created, username
//! (`profile.login`).

use serde::Deserialize;
use serde_json::value::RawValue;

use super::api::{
    Api, Credentials, Fetched, PageLinks, StaticToken, read_secret, segment, truncate,
};
use super::collect::{Collected, clean, group_name, utc_time};
use super::error::{DirectoryError, DirectoryFailure};
use super::oauth::{ClientAuth, ClientCredentials};
use super::{DirGroup, DirUser, Directory};
use crate::config::{OktaCredential, OktaSource};
use crate::http::Http;

/// Members per page (Okta's largest for group members).
pub const PAGE_SIZE: usize = 200;

/// Statuses of an account that exists and is active.
pub const ENABLED: [&str; 4] = ["ACTIVE", "PASSWORD_EXPIRED", "LOCKED_OUT", "RECOVERY"];

/// What a service app's token may do.
pub const SCOPES: &str = "okta.groups.read okta.users.read";

pub fn connect<'h>(http: &'h Http, source: &OktaSource) -> Result<Api<'h>, DirectoryError> {
    let credentials: Box<dyn Credentials + 'h> = match &source.credential {
        OktaCredential::ApiToken(file) => Box::new(StaticToken {
            header: format!("SSWS {}", read_secret(file)?),
            origin: file.display().to_string(),
        }),
        OktaCredential::ServiceApp {
            client_id,
            private_key_file,
        } => Box::new(ClientCredentials {
            token_url: format!("{}/oauth2/v1/token", source.org_url),
            client_id: client_id.clone(),
            auth: ClientAuth::PrivateKey(private_key_file.clone()),
            scope: Some(SCOPES.to_string()),
            policy: Default::default(),
        }),
    };
    Api::new(http, &source.org_url, credentials)
}

#[derive(Deserialize)]
struct OktaGroup {
    id: String,
    #[serde(default)]
    profile: Option<GroupProfile>,
}

#[derive(Deserialize)]
struct GroupProfile {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct OktaUser {
    id: String,
    status: String,
    #[serde(default)]
    created: Option<String>,
    profile: UserProfile,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserProfile {
    #[serde(default)]
    login: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
}

fn map_user(raw: &RawValue) -> Result<DirUser, String> {
    let u: OktaUser = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    let id = clean(&u.id, 256).ok_or("an unusable id")?;
    let email = u
        .profile
        .email
        .as_deref()
        .and_then(|e| clean(e, 320))
        .ok_or("no profile.email")?;
    let full_name = [
        u.profile.first_name.as_deref(),
        u.profile.last_name.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join(" ");
    let display = u
        .profile
        .display_name
        .as_deref()
        .and_then(|d| clean(d, 256))
        .or_else(|| clean(&full_name, 256));
    Ok(DirUser {
        id,
        email,
        display_name: display,
        enabled: ENABLED.contains(&u.status.as_str()),
        username: u.profile.login.as_deref().and_then(|l| clean(l, 256)),
        uid: None,
        created: u.created.as_deref().and_then(utc_time),
        ssh_keys: Vec::new(),
    })
}

/// Reads the configured groups and their members.
pub fn read(
    api: &mut Api<'_>,
    source: &OktaSource,
    group_ids: &[String],
) -> Result<Directory, DirectoryError> {
    let mut collected = Collected::default();
    for group_id in group_ids {
        let group_url = format!("{}/api/v1/groups/{}", source.org_url, segment(group_id));
        let Some(group) = api.get::<OktaGroup>(&group_url)? else {
            continue;
        };
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
        let mut members = Vec::new();
        let mut next = Some(format!("{group_url}/users?limit={PAGE_SIZE}"));
        let mut links = PageLinks::default();
        while let Some(url) = next.take() {
            links.follow(&url)?;
            let (page, link) = api.fetch_linked::<Vec<Box<RawValue>>>(&url)?;
            let page = match page {
                Fetched::Found(page) => page,
                Fetched::Missing | Fetched::Gone(_) => {
                    return Err(DirectoryError::new(
                        DirectoryFailure::Unavailable,
                        format!(
                            "GET {}: the group vanished while it was read",
                            truncate(&url)
                        ),
                    ));
                }
            };
            for raw in &page {
                super::collect::check_members(members.len())?;
                match map_user(raw) {
                    Ok(user) => {
                        members.push(user.id.clone());
                        collected.user(user)?;
                    }
                    Err(why) => collected.left_out("user", raw, &why),
                }
            }
            next = link;
        }
        members.sort();
        members.dedup();
        collected.group(DirGroup {
            id: group.id,
            name: group_name(group.profile.and_then(|p| p.name).as_deref(), group_id),
            members,
        })?;
    }
    Ok(collected.into_directory())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(json: &str) -> Result<DirUser, String> {
        map_user(&RawValue::from_string(json.to_string()).unwrap())
    }

    #[test]
    fn okta_users_map_by_status() {
        let u = user(
            r#"{"id":"00ub0oNGTSWTBKOLGLNR","status":"ACTIVE","created":"2013-06-24T16:39:18.000Z",
                "activated":"2013-06-24T16:39:19.000Z","statusChanged":null,
                "profile":{"firstName":"Isaac","lastName":"Brock","email":"isaac.brock@example.com",
                           "login":"isaac.brock@example.com","mobilePhone":"555-415-1337"},
                "credentials":{"provider":{"type":"OKTA","name":"OKTA"}},
                "_links":{"self":{"href":"https://acme.okta.com/api/v1/users/00ub0oNGTSWTBKOLGLNR"}}}"#,
        )
        .unwrap();
        assert_eq!(u.email, "isaac.brock@example.com");
        assert_eq!(u.display_name.as_deref(), Some("Isaac Brock"));
        assert_eq!(u.created.as_deref(), Some("2013-06-24T16:39:18Z"));
        assert!(u.enabled);
        for (status, enabled) in [
            ("PASSWORD_EXPIRED", true),
            ("LOCKED_OUT", true),
            ("RECOVERY", true),
            ("SUSPENDED", false),
            ("DEPROVISIONED", false),
            ("STAGED", false),
            ("PROVISIONED", false),
            ("SOMETHING_NEW", false),
        ] {
            let u = user(&format!(
                r#"{{"id":"x","status":"{status}","profile":{{"email":"a@example.com"}}}}"#
            ))
            .unwrap();
            assert_eq!(u.enabled, enabled, "{status}");
        }
        assert!(
            user(r#"{"id":"x","status":"ACTIVE","profile":{"login":"a"}}"#)
                .unwrap_err()
                .contains("no profile.email")
        );
    }
}
