//! `kind = "entra"`: Microsoft Entra ID through Microsoft Graph v1.0 delta
//! queries, so that after the first sync each sync asks only for what changed.
//!
//! A token by client credentials (`<login_url>/<tenant>/oauth2/v2.0/token`,
//! scope `<graph_url>/.default`, application permissions `GroupMember.Read.All`
//! and `User.Read.All`). Then two delta queries, each followed through
//! `@odata.nextLink` to its `@odata.deltaLink`, which is kept (with what the
//! rounds told so far) in the state directory for the next sync:
//! - `/users/delta` with the mapped properties: the tenant's people (a first
//!   round reads them all; later rounds only changes, `@removed` for deleted);
//! - `/groups/delta?$filter=id eq '..' or ..` (Graph allows 50 ids per query)
//!   with `displayName,members`: only the configured groups and the groups
//!   found nested in them (`members@delta`, `@removed` for a member gone).
//!
//! An expired delta link (Graph keeps a directory delta state for 7 days and
//! then answers `400 Bad Request` with error code `syncStateNotFound`, or
//! `410 Gone` / `resyncRequired`) starts that query over from scratch in the
//! same sync; a saved state older than [`MAX_STATE_AGE`] is not even tried. Any other failure fails the read, and the saved state is
//! left as it was: the next sync resumes from the same links, so a change is
//! never lost. Nothing is saved but a complete round.
//!
//! Each user maps to: id, email (`mail`, else `userPrincipalName`), display
//! name, enabled (`accountEnabled`), created (`createdDateTime`), username
//! (`mailNickname`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::api::{Api, Fetched, PageLinks, query_value, truncate};
use super::collect::{Collected, MAX_GROUPS, clean, group_name, utc_time};
use super::error::{DirectoryError, DirectoryFailure};
use super::oauth::{ClientAuth, ClientCredentials};
use super::{DirGroup, DirUser, Directory};
use crate::config::{EntraCredential, EntraSource};
use crate::http::Http;

/// The user properties read (Graph returns only a default set otherwise).
const USER_FIELDS: &str =
    "id,mail,userPrincipalName,displayName,accountEnabled,createdDateTime,mailNickname";
/// Graph's limit on ids in one `groups/delta` filter.
const GROUPS_PER_QUERY: usize = 50;
/// Rounds of "found a nested group, track it too" per sync.
const MAX_NESTING_ROUNDS: usize = 32;
/// A saved delta state older than this is dropped and Graph read from
/// scratch: Graph forgets a directory delta state after 7 days, and a link
/// it has forgotten would only cost a refused request per query.
pub const MAX_STATE_AGE: std::time::Duration = std::time::Duration::from_secs(6 * 24 * 3600);

/// The API client for `source`: Graph at its configured base, tokens from
/// the configured login endpoint.
pub fn connect<'h>(http: &'h Http, source: &EntraSource) -> Result<Api<'h>, DirectoryError> {
    let credentials = ClientCredentials {
        token_url: format!(
            "{}/{}/oauth2/v2.0/token",
            source.login_url, source.tenant_id
        ),
        client_id: source.client_id.clone(),
        auth: match &source.credential {
            EntraCredential::Secret(file) => ClientAuth::Secret(file.clone()),
            EntraCredential::Certificate {
                certificate_file,
                private_key_file,
            } => ClientAuth::Certificate {
                certificate_file: certificate_file.clone(),
                private_key_file: private_key_file.clone(),
            },
        },
        scope: Some(format!("{}/.default", source.graph_url)),
        policy: Default::default(),
    };
    Api::new(http, &source.graph_url, Box::new(credentials))
}

/// What the delta rounds have told so far, saved between syncs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeltaState {
    /// What it was built for (Graph base, tenant, configured groups):
    /// anything else starts over.
    scope: String,
    /// When the delta links were taken (unix seconds; 0 in older files).
    #[serde(default)]
    saved_at: u64,
    users_link: Option<String>,
    group_queries: Vec<GroupQuery>,
    users: BTreeMap<String, CachedUser>,
    groups: BTreeMap<String, CachedGroup>,
}

/// One `groups/delta` query: the ids it filters on and its delta link.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct GroupQuery {
    ids: Vec<String>,
    link: Option<String>,
}

/// A user's properties as Graph last told them (a later round may send only
/// the changed ones).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct CachedUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_principal_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mail_nickname: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CachedGroup {
    #[serde(default)]
    name: Option<String>,
    /// Direct members that are users.
    #[serde(default)]
    users: BTreeSet<String>,
    /// Direct members that are groups.
    #[serde(default)]
    groups: BTreeSet<String>,
}

#[derive(Deserialize)]
struct DeltaPage {
    /// Required: a 200 whose body is not a collection (an error object, an
    /// HTML page from a proxy) must fail the read, not look like no change.
    value: Vec<Box<RawValue>>,
    #[serde(default, rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(default, rename = "@odata.deltaLink")]
    delta_link: Option<String>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct GroupDelta {
    id: String,
    #[serde(default, rename = "displayName")]
    display_name: Option<String>,
    #[serde(default, rename = "members@delta")]
    members: Vec<MemberDelta>,
    #[serde(default, rename = "@removed")]
    removed: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct MemberDelta {
    id: String,
    #[serde(default, rename = "@odata.type")]
    kind: Option<String>,
    #[serde(default, rename = "@removed")]
    removed: Option<serde_json::Value>,
}

/// Applies one `users/delta` entry: `@removed`, or the properties it carries.
fn apply_user(users: &mut BTreeMap<String, CachedUser>, raw: &RawValue) -> Result<(), String> {
    let entry: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    let id = entry
        .get("id")
        .and_then(|v| v.as_str())
        .and_then(|id| clean(id, 256))
        .ok_or("an unusable id")?;
    if entry.contains_key("@removed") {
        users.remove(&id);
        return Ok(());
    }
    let user = users.entry(id).or_default();
    let text = |key: &str| -> Result<Option<Option<String>>, String> {
        match entry.get(key) {
            None => Ok(None),
            Some(serde_json::Value::Null) => Ok(Some(None)),
            Some(serde_json::Value::String(s)) => Ok(Some(Some(s.clone()))),
            Some(_) => Err(format!("{key} is not a string")),
        }
    };
    let mut patch = user.clone();
    if let Some(v) = text("mail")? {
        patch.mail = v;
    }
    if let Some(v) = text("userPrincipalName")? {
        patch.user_principal_name = v;
    }
    if let Some(v) = text("displayName")? {
        patch.display_name = v;
    }
    if let Some(v) = text("createdDateTime")? {
        patch.created_date_time = v;
    }
    if let Some(v) = text("mailNickname")? {
        patch.mail_nickname = v;
    }
    match entry.get("accountEnabled") {
        None => {}
        Some(serde_json::Value::Bool(b)) => patch.account_enabled = Some(*b),
        Some(serde_json::Value::Null) => patch.account_enabled = None,
        Some(_) => return Err("accountEnabled is not a boolean".into()),
    }
    *user = patch;
    Ok(())
}

/// Maps one cached user; the error says why it was left out.
fn map_user(id: &str, u: &CachedUser) -> Result<DirUser, String> {
    let email = u
        .mail
        .as_deref()
        .filter(|m| !m.is_empty())
        .or(u.user_principal_name.as_deref())
        .and_then(|m| clean(m, 320))
        .ok_or("neither mail nor userPrincipalName")?;
    // a person whose state we cannot see is not let in
    let enabled = u.account_enabled.ok_or("no accountEnabled")?;
    Ok(DirUser {
        id: id.to_string(),
        email,
        display_name: u.display_name.as_deref().and_then(|d| clean(d, 256)),
        enabled,
        username: u.mail_nickname.as_deref().and_then(|n| clean(n, 256)),
        uid: None,
        created: u.created_date_time.as_deref().and_then(utc_time),
        ssh_keys: Vec::new(),
    })
}

/// What a delta round hands its caller.
enum Delta<'a> {
    /// Forget what the query told before: it starts from scratch.
    Restart,
    Entry(&'a RawValue),
}

/// One delta query from `link` (or `initial`, when there is no link yet or
/// Graph said it expired) to its new delta link.
///
/// `on` failing fails the round: the new link is only ever saved once every
/// entry before it was applied, or a change would be skipped for good.
fn round(
    api: &mut Api<'_>,
    link: Option<&str>,
    initial: &str,
    mut on: impl FnMut(Delta<'_>) -> Result<(), DirectoryError>,
) -> Result<String, DirectoryError> {
    let mut from_scratch = link.is_none();
    if from_scratch {
        on(Delta::Restart)?;
    }
    let mut url = link.unwrap_or(initial).to_string();
    let mut links = PageLinks::default();
    loop {
        links.follow(&url)?;
        match api.fetch::<DeltaPage>(&url)? {
            Fetched::Found(page) => {
                for raw in &page.value {
                    on(Delta::Entry(raw)).map_err(|why| {
                        DirectoryError::new(
                            why.kind,
                            format!("GET {}: {}", truncate(&url), why.message),
                        )
                    })?;
                }
                match (page.next_link, page.delta_link) {
                    (Some(next), _) => url = next,
                    // checked now, not when next used: a link saved from
                    // elsewhere would fail every sync from then on
                    (None, Some(delta)) if !api.is_at_origin(&delta) => {
                        return Err(DirectoryError::new(
                            DirectoryFailure::Malformed,
                            format!(
                                "GET {}: a delta link elsewhere: {:?}",
                                truncate(&url),
                                truncate(&delta)
                            ),
                        ));
                    }
                    (None, Some(delta)) => {
                        // saved, and sent again next sync
                        super::api::check_link(&delta)?;
                        return Ok(delta);
                    }
                    (None, None) => {
                        return Err(DirectoryError::new(
                            DirectoryFailure::Malformed,
                            format!(
                                "GET {}: neither @odata.nextLink nor @odata.deltaLink",
                                truncate(&url)
                            ),
                        ));
                    }
                }
            }
            Fetched::Gone(e) if !from_scratch => {
                tracing::info!("{e}: the delta link expired; reading from scratch");
                from_scratch = true;
                on(Delta::Restart)?;
                url = initial.to_string();
                links = PageLinks::default();
            }
            Fetched::Gone(e) => return Err(e),
            Fetched::Missing => {
                return Err(DirectoryError::new(
                    DirectoryFailure::Malformed,
                    format!("GET {}: HTTP 404 for a delta query", truncate(&url)),
                ));
            }
        }
    }
}

/// `groups/delta` filtered to `ids` (OData string literals, quotes doubled).
fn groups_query(graph_url: &str, ids: &[String]) -> String {
    let filter = ids
        .iter()
        .map(|id| format!("id eq '{}'", id.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(" or ");
    format!(
        "{graph_url}/v1.0/groups/delta?$filter={}&$select=displayName,members",
        query_value(&filter)
    )
}

/// Reads the configured groups and their people through delta queries,
/// starting from `saved` (the state file's bytes, if any). Returns the
/// directory and the state to save once it is used.
pub fn read(
    api: &mut Api<'_>,
    source: &EntraSource,
    group_ids: &[String],
    saved: Option<&[u8]>,
) -> Result<(Directory, DeltaState), DirectoryError> {
    let graph_url = &source.graph_url;
    let mut configured: Vec<String> = group_ids.to_vec();
    configured.sort();
    configured.dedup();
    let scope = format!("{graph_url} {} {}", source.tenant_id, configured.join(","));
    if configured.is_empty() {
        // nothing to keep: not worth reading the tenant's people
        return Ok((Directory::default(), DeltaState::default()));
    }
    let now = unix_now();
    let mut state = saved
        .and_then(|b| serde_json::from_slice::<DeltaState>(b).ok())
        .filter(|s| s.scope == scope)
        .filter(|s| {
            // a clock set back makes a state look young: Graph still says
            // whether its links are valid
            let fresh = now.saturating_sub(s.saved_at) < MAX_STATE_AGE.as_secs();
            if !fresh {
                tracing::info!("the saved Graph delta state is too old; reading from scratch");
            }
            fresh
        })
        .unwrap_or_else(|| DeltaState {
            scope,
            ..DeltaState::default()
        });
    state.saved_at = now;
    let mut collected = Collected::default();

    // people
    let users_initial = format!("{graph_url}/v1.0/users/delta?$select={USER_FIELDS}");
    let users = &mut state.users;
    // id -> why its latest entry did not apply (reported only for members:
    // the rest of the tenant is none of this host's business)
    let mut user_problems: BTreeMap<String, String> = BTreeMap::new();
    let link = round(api, state.users_link.as_deref(), &users_initial, |delta| {
        match delta {
            Delta::Restart => {
                users.clear();
                user_problems.clear();
            }
            Delta::Entry(raw) => {
                let result = apply_user(users, raw);
                // an entry without an id could be anyone's change (a
                // disable): not skipped past
                let id = serde_json::from_str::<IdOnly>(raw.get()).map_err(|e| {
                    DirectoryError::new(
                        DirectoryFailure::Malformed,
                        format!("a users/delta entry without an id: {e}"),
                    )
                })?;
                // checked as entries come, not after the round: a hostile
                // listing is stopped before it fills memory
                if users.len() > super::collect::MAX_USERS {
                    return Err(too_many_people());
                }
                match result {
                    Ok(()) => {
                        user_problems.remove(&id.id);
                    }
                    // what Graph now says of this person is unknown: they
                    // are left out (as a bad entry of the file would be)
                    // until Graph sends them again
                    Err(why) => {
                        users.remove(&id.id);
                        user_problems.insert(id.id, why);
                    }
                }
            }
        }
        Ok(())
    })?;
    state.users_link = Some(link);

    // groups: the configured ones, then those found nested in them
    let tracked: BTreeSet<String> = state
        .group_queries
        .iter()
        .flat_map(|q| q.ids.iter().cloned())
        .collect();
    let untracked: Vec<String> = configured
        .iter()
        .filter(|id| !tracked.contains(*id))
        .cloned()
        .collect();
    add_queries(&mut state.group_queries, untracked);
    // each query runs once a sync; queries for nested groups found on the
    // way are added after the others and run in the next pass
    let mut done = 0;
    for _ in 0..MAX_NESTING_ROUNDS {
        for query in state.group_queries.iter_mut().skip(done) {
            let groups = &mut state.groups;
            let ids = query.ids.clone();
            let link = round(
                api,
                query.link.as_deref(),
                &groups_query(graph_url, &query.ids),
                |delta| {
                    match delta {
                        Delta::Restart => {
                            for id in &ids {
                                groups.remove(id);
                            }
                        }
                        // a group change that cannot be applied fails the
                        // read: past it, the link would never send it again
                        // and the group would stay wrong
                        Delta::Entry(raw) => apply_group(groups, &ids, raw).map_err(|why| {
                            DirectoryError::new(
                                DirectoryFailure::Malformed,
                                format!("a groups/delta entry that cannot be applied: {why}"),
                            )
                        })?,
                    }
                    Ok(())
                },
            )?;
            query.link = Some(link);
        }
        done = state.group_queries.len();
        let tracked: BTreeSet<&String> = state
            .group_queries
            .iter()
            .flat_map(|q| q.ids.iter())
            .collect();
        let nested: Vec<String> = reachable(&state.groups, &configured)
            .into_iter()
            .filter(|id| !tracked.contains(id))
            .collect();
        if nested.is_empty() {
            break;
        }
        if tracked.len() + nested.len() > MAX_GROUPS {
            return Err(DirectoryError::new(
                DirectoryFailure::Malformed,
                format!("more than {MAX_GROUPS} nested groups"),
            ));
        }
        add_queries(&mut state.group_queries, nested);
    }
    if state.group_queries.iter().any(|q| q.link.is_none()) {
        return Err(DirectoryError::new(
            DirectoryFailure::Malformed,
            format!("groups nested more than {MAX_NESTING_ROUNDS} levels deep"),
        ));
    }

    // only the configured groups, what is nested in them and their people
    let mut people: BTreeSet<&String> = BTreeSet::new();
    for id in reachable(&state.groups, &configured) {
        let Some(group) = state.groups.get(&id) else {
            continue;
        };
        people.extend(group.users.iter());
        collected.group(DirGroup {
            id: id.clone(),
            name: group_name(group.name.as_deref(), &id),
            members: group
                .users
                .iter()
                .chain(group.groups.iter())
                .cloned()
                .collect(),
        })?;
    }
    for id in people {
        match state.users.get(id) {
            Some(user) => match map_user(id, user) {
                Ok(u) => collected.user(u)?,
                Err(why) => collected.left_out_id(id, user.account_enabled == Some(false), &why),
            },
            // a member the people round has not shown (added between the
            // two queries): not removed on that account
            None => collected.left_out_id(
                id,
                false,
                user_problems.get(id).map_or(
                    "a member not (yet) among the tenant's people",
                    String::as_str,
                ),
            ),
        }
    }
    Ok((collected.into_directory(), state))
}

fn too_many_people() -> DirectoryError {
    DirectoryError::new(
        DirectoryFailure::Malformed,
        format!(
            "more than {} people in the tenant",
            super::collect::MAX_USERS
        ),
    )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Tracks `ids` in new queries of at most [`GROUPS_PER_QUERY`] ids.
fn add_queries(queries: &mut Vec<GroupQuery>, ids: Vec<String>) {
    for chunk in ids.chunks(GROUPS_PER_QUERY) {
        queries.push(GroupQuery {
            ids: chunk.to_vec(),
            link: None,
        });
    }
}

/// The configured groups the cache has and every group nested in them.
fn reachable(groups: &BTreeMap<String, CachedGroup>, configured: &[String]) -> Vec<String> {
    let mut seen: BTreeSet<String> = configured.iter().cloned().collect();
    let mut queue: VecDeque<String> = configured.iter().cloned().collect();
    let mut found = Vec::new();
    while let Some(id) = queue.pop_front() {
        found.push(id.clone());
        if let Some(g) = groups.get(&id) {
            for nested in &g.groups {
                if seen.insert(nested.clone()) {
                    queue.push_back(nested.clone());
                }
            }
        }
    }
    found
}

/// Applies one `groups/delta` entry of a query filtered to `ids`.
fn apply_group(
    groups: &mut BTreeMap<String, CachedGroup>,
    ids: &[String],
    raw: &RawValue,
) -> Result<(), String> {
    let delta: GroupDelta = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    if !ids.contains(&delta.id) {
        // the filter is ours: an answer outside it is not trusted
        return Err(format!("group {:?} was not asked for", delta.id));
    }
    if delta.removed.is_some() {
        groups.remove(&delta.id);
        return Ok(());
    }
    let group = groups.entry(delta.id).or_default();
    if let Some(name) = delta.display_name {
        group.name = Some(name);
    }
    for m in delta.members {
        let Some(id) = clean(&m.id, 256) else {
            continue;
        };
        let set = match m.kind.as_deref() {
            Some("#microsoft.graph.user") => &mut group.users,
            Some("#microsoft.graph.group") => &mut group.groups,
            // devices, service principals, contacts: not people
            _ => continue,
        };
        if m.removed.is_some() {
            set.remove(&id);
        } else {
            set.insert(id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).unwrap()
    }

    #[test]
    fn mail_else_user_principal_name_and_patches() {
        let mut users = BTreeMap::new();
        apply_user(
            &mut users,
            &raw(r##"{"@odata.type":"#microsoft.graph.user","id":"u1","mail":"Alice@Example.com",
                "userPrincipalName":"alice_upn@example.com","displayName":"Alice",
                "accountEnabled":true,"createdDateTime":"2024-02-01T10:00:00Z","mailNickname":"alice"}"##),
        )
        .unwrap();
        let u = map_user("u1", &users["u1"]).unwrap();
        assert_eq!(u.email, "Alice@Example.com");
        assert_eq!(u.created.as_deref(), Some("2024-02-01T10:00:00Z"));
        assert_eq!(u.username.as_deref(), Some("alice"));
        assert!(u.enabled);
        // a later round sends only what changed
        apply_user(
            &mut users,
            &raw(r#"{"id":"u1","mail":null,"accountEnabled":false}"#),
        )
        .unwrap();
        let u = map_user("u1", &users["u1"]).unwrap();
        assert_eq!(u.email, "alice_upn@example.com");
        assert!(!u.enabled);
        assert_eq!(u.display_name.as_deref(), Some("Alice"));
        apply_user(
            &mut users,
            &raw(r#"{"id":"u1","@removed":{"reason":"changed"}}"#),
        )
        .unwrap();
        assert!(users.is_empty());
    }

    #[test]
    fn unusable_users_say_why() {
        let mut users = BTreeMap::new();
        assert!(apply_user(&mut users, &raw(r#"{"id":"u2","mail":7}"#)).is_err());
        assert!(apply_user(&mut users, &raw(r#"{"mail":"x@example.com"}"#)).is_err());
        apply_user(&mut users, &raw(r#"{"id":"u3","accountEnabled":true}"#)).unwrap();
        assert!(
            map_user("u3", &users["u3"])
                .unwrap_err()
                .contains("neither mail")
        );
        // enabled unknown: never let in on a guess
        apply_user(&mut users, &raw(r#"{"id":"u4","mail":"d@example.com"}"#)).unwrap();
        assert!(
            map_user("u4", &users["u4"])
                .unwrap_err()
                .contains("accountEnabled")
        );
        apply_user(
            &mut users,
            &raw(r#"{"id":"u5","mail":"e\nx@example.com","accountEnabled":true}"#),
        )
        .unwrap();
        assert!(map_user("u5", &users["u5"]).is_err());
    }

    #[test]
    fn group_deltas_add_remove_and_stay_in_their_filter() {
        let mut groups = BTreeMap::new();
        let ids = vec!["g1".to_string()];
        apply_group(
            &mut groups,
            &ids,
            &raw(r##"{"id":"g1","displayName":"SRE","members@delta":[
                {"@odata.type":"#microsoft.graph.user","id":"u1"},
                {"@odata.type":"#microsoft.graph.user","id":"u2"},
                {"@odata.type":"#microsoft.graph.group","id":"g2"},
                {"@odata.type":"#microsoft.graph.device","id":"d1"}]}"##),
        )
        .unwrap();
        apply_group(
            &mut groups,
            &ids,
            &raw(r##"{"id":"g1","members@delta":[
                {"@odata.type":"#microsoft.graph.user","id":"u2","@removed":{"reason":"deleted"}}]}"##),
        )
        .unwrap();
        let g = &groups["g1"];
        assert_eq!(g.name.as_deref(), Some("SRE"));
        assert_eq!(g.users.iter().collect::<Vec<_>>(), ["u1"]);
        assert_eq!(g.groups.iter().collect::<Vec<_>>(), ["g2"]);
        assert!(apply_group(&mut groups, &ids, &raw(r#"{"id":"g9"}"#)).is_err());
        apply_group(
            &mut groups,
            &ids,
            &raw(r#"{"id":"g1","@removed":{"reason":"deleted"}}"#),
        )
        .unwrap();
        assert!(groups.is_empty());
    }

    #[test]
    fn group_filters_quote_ids() {
        let q = groups_query("https://graph.microsoft.com", &["a'b".into(), "c".into()]);
        assert_eq!(
            q,
            "https://graph.microsoft.com/v1.0/groups/delta?$filter=id%20eq%20%27a%27%27b%27%20or%20id%20eq%20%27c%27&$select=displayName,members"
        );
    }
}
