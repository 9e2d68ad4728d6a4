//! `kind = "entra"`: Microsoft Entra ID through Microsoft Graph v1.0.
//!
//! A token by client credentials (`<login_url>/<tenant>/oauth2/v2.0/token`,
//! scope `<graph_url>/.default`, application permissions `GroupMember.Read.All`
//! and `User.Read.All`), then for each configured group only: the group
//! (`/groups/{id}`) and its users, nested groups included
//! (`/groups/{id}/transitiveMembers/microsoft.graph.user`), paged through
//! `@odata.nextLink` (at most 999 per page). The whole tenant is never read.
//!
//! Each user maps to: id, email (`mail`, else `userPrincipalName`), display
//! name, enabled (`accountEnabled`), created (`createdDateTime`), username
//! (`mailNickname`). Nesting is already flattened by Graph, so each group
//! lists its users directly.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::api::{Api, PageLinks, segment, truncate};
use super::collect::{Collected, clean, utc_time};
use super::error::{DirectoryError, DirectoryFailure};
use super::oauth::ClientCredentials;
use super::{DirGroup, DirUser, Directory};
use crate::config::EntraSource;
use crate::http::Http;

/// The user properties read (Graph returns only a default set otherwise).
const USER_FIELDS: &str =
    "id,mail,userPrincipalName,displayName,accountEnabled,createdDateTime,mailNickname";
/// Graph's largest page for directory objects.
const PAGE_SIZE: u32 = 999;

/// The API client for `source`: Graph at its configured base, tokens from
/// the configured login endpoint.
pub fn connect<'h>(http: &'h Http, source: &EntraSource) -> Result<Api<'h>, DirectoryError> {
    let credentials = ClientCredentials {
        token_url: format!(
            "{}/{}/oauth2/v2.0/token",
            source.login_url, source.tenant_id
        ),
        client_id: source.client_id.clone(),
        secret_file: source.client_secret_file.clone(),
        scope: Some(format!("{}/.default", source.graph_url)),
        policy: Default::default(),
        requests: 0,
    };
    Api::new(http, &source.graph_url, Box::new(credentials))
}

#[derive(Deserialize)]
struct Page {
    /// Required: a 200 whose body is not a collection (an error object, an
    /// HTML page from a proxy) must fail the read, not look like an empty group.
    value: Vec<Box<RawValue>>,
    #[serde(default, rename = "@odata.nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphGroup {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphUser {
    id: String,
    #[serde(default)]
    mail: Option<String>,
    #[serde(default)]
    user_principal_name: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    /// Required: a person whose state we cannot see is not let in.
    account_enabled: bool,
    #[serde(default)]
    created_date_time: Option<String>,
    #[serde(default)]
    mail_nickname: Option<String>,
}

/// Maps one Graph user; the error says why it was left out.
fn map_user(raw: &RawValue) -> Result<DirUser, String> {
    let u: GraphUser = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    let id = clean(&u.id, 256).ok_or("an unusable id")?;
    let email = u
        .mail
        .as_deref()
        .filter(|m| !m.is_empty())
        .or(u.user_principal_name.as_deref())
        .and_then(|m| clean(m, 320))
        .ok_or("neither mail nor userPrincipalName")?;
    Ok(DirUser {
        id,
        email,
        display_name: u.display_name.as_deref().and_then(|d| clean(d, 256)),
        enabled: u.account_enabled,
        username: u.mail_nickname.as_deref().and_then(|n| clean(n, 256)),
        uid: None,
        created: u.created_date_time.as_deref().and_then(utc_time),
        ssh_keys: Vec::new(),
    })
}

/// Reads the configured groups and their users, transitively. Any request
/// that fails (after its retries) fails the whole read.
pub fn read(
    api: &mut Api<'_>,
    graph_url: &str,
    group_ids: &[String],
) -> Result<Directory, DirectoryError> {
    let mut collected = Collected::default();
    for group_id in group_ids {
        let url = format!(
            "{graph_url}/v1.0/groups/{}?$select=id,displayName",
            segment(group_id)
        );
        let Some(group) = api.get::<GraphGroup>(&url)? else {
            // the configured group is gone: resolve reports it, and the
            // removal guard holds back a mass removal
            continue;
        };
        if &group.id != group_id {
            return Err(DirectoryError::new(
                DirectoryFailure::Malformed,
                format!("GET {}: answered group {:?}", truncate(&url), group.id),
            ));
        }
        let mut members = Vec::new();
        let mut next = Some(format!(
            "{graph_url}/v1.0/groups/{}/transitiveMembers/microsoft.graph.user?$select={USER_FIELDS}&$top={PAGE_SIZE}",
            segment(group_id)
        ));
        let mut links = PageLinks::default();
        while let Some(url) = next.take() {
            links.follow(&url)?;
            let page = api.get::<Page>(&url)?.ok_or_else(|| {
                // the group vanished between its own read and its members'
                DirectoryError::new(
                    DirectoryFailure::Unavailable,
                    format!(
                        "GET {}: HTTP 404 in the middle of a listing",
                        truncate(&url)
                    ),
                )
            })?;
            for raw in &page.value {
                match map_user(raw) {
                    Ok(user) => {
                        members.push(user.id.clone());
                        collected.user(user)?;
                    }
                    Err(why) => collected.left_out("user", raw, &why),
                }
            }
            next = page.next_link;
        }
        members.sort();
        members.dedup();
        collected.group(DirGroup {
            id: group.id,
            name: group
                .display_name
                .as_deref()
                .and_then(|n| clean(n, 256))
                .unwrap_or_else(|| group_id.clone()),
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
    fn mail_else_user_principal_name() {
        let u = user(
            r##"{"@odata.type":"#microsoft.graph.user","id":"u1","mail":"Alice@Example.com",
                "userPrincipalName":"alice_upn@example.com","displayName":"Alice",
                "accountEnabled":true,"createdDateTime":"2024-02-01T10:00:00Z","mailNickname":"alice"}"##,
        )
        .unwrap();
        assert_eq!(u.email, "Alice@Example.com");
        assert_eq!(u.created.as_deref(), Some("2024-02-01T10:00:00Z"));
        assert_eq!(u.username.as_deref(), Some("alice"));
        assert!(u.enabled);
        for mail in ["null", "\"\""] {
            let u = user(&format!(
                r#"{{"id":"u2","mail":{mail},"userPrincipalName":"bob@example.com","accountEnabled":false}}"#
            ))
            .unwrap();
            assert_eq!(u.email, "bob@example.com");
            assert!(!u.enabled);
            assert_eq!(u.created, None);
        }
    }

    #[test]
    fn unusable_users_say_why() {
        assert!(
            user(r#"{"id":"u3","accountEnabled":true}"#)
                .unwrap_err()
                .contains("neither mail")
        );
        // enabled unknown: never let in on a guess
        assert!(
            user(r#"{"id":"u4","mail":"d@example.com"}"#)
                .unwrap_err()
                .contains("accountEnabled")
        );
        assert!(user(r#"{"id":"u5","mail":"e\nx@example.com","accountEnabled":true}"#).is_err());
        assert!(user(r#"{"id":"","mail":"f@example.com","accountEnabled":true}"#).is_err());
    }
}
