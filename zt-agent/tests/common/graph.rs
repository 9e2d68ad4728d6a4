//! A fake Microsoft Graph (and its token endpoint) that answers in the
//! documented shapes: client-credentials tokens from
//! `/{tenant}/oauth2/v2.0/token`; delta queries `/v1.0/users/delta` and
//! `/v1.0/groups/delta?$filter=id eq '..' or ..&$select=displayName,members`
//! as OData collections (`value`, `@odata.nextLink` with a `$skiptoken`, the
//! last page's `@odata.deltaLink`), `@removed` for deleted users and removed
//! members, `members@delta` typed `#microsoft.graph.user` / `.group`; Graph's
//! error objects, 401 for an expired token. A delta link remembers the
//! directory as it was when its round started; the next round answers the
//! difference; an expired delta token is answered `400 syncStateNotFound`.
//! Faults are injected per request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::fake_http::{FakeServer, Request, Response};

pub const TENANT: &str = "contoso.onmicrosoft.com";
pub const CLIENT_ID: &str = "0f3c1d2e-1111-2222-3333-444455556666";
pub const SECRET: &str = "test-only-entra-secret~value";

#[derive(Clone)]
pub struct GraphUser {
    pub id: String,
    pub mail: Option<String>,
    pub upn: String,
    pub name: String,
    pub enabled: bool,
    pub created: String,
}

impl PartialEq for GraphUser {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl GraphUser {
    pub fn new(n: usize) -> GraphUser {
        GraphUser {
            id: format!("00000000-0000-4000-8000-{n:012}"),
            mail: Some(format!("user{n}@example.com")),
            upn: format!("user{n}@contoso.onmicrosoft.com"),
            name: format!("User {n}"),
            enabled: true,
            created: format!("2024-01-01T{:02}:{:02}:00Z", (n / 60) % 24, n % 60),
        }
    }

    pub fn json(&self) -> String {
        serde_json::json!({
            "@odata.type": "#microsoft.graph.user",
            "id": self.id,
            "displayName": self.name,
            "mail": self.mail,
            "userPrincipalName": self.upn,
            "accountEnabled": self.enabled,
            "createdDateTime": self.created,
            "mailNickname": self.upn.split('@').next(),
        })
        .to_string()
    }
}

/// What a request matching `path_contains` (and `skiptoken`, if given)
/// answers instead, `times` times (usize::MAX: always).
pub struct Fault {
    pub path_contains: String,
    pub skiptoken: Option<usize>,
    pub times: usize,
    pub answer: fn(&str) -> Response,
}

type Users = BTreeMap<String, GraphUser>;
type Groups = BTreeMap<String, (String, Vec<String>)>;

#[derive(Default)]
pub struct GraphState {
    pub users: Users,
    /// group id -> (displayName, direct member ids: users or groups)
    pub groups: Groups,
    /// The directory as each delta token saw it (token = index).
    snapshots: Vec<Arc<(Users, Groups)>>,
    /// Rounds in progress: their entries and the token their deltaLink gets.
    rounds: Vec<(Arc<Vec<String>>, usize)>,
    pub page_size: usize,
    pub faults: Vec<Fault>,
    /// The only token Graph accepts now: `tok-{n}`.
    pub token_generation: u32,
    /// The current token expires after this many more Graph requests.
    pub expire_after: Option<usize>,
    /// Where nextLinks point (another origin, to test that it is refused).
    pub link_base: Option<String>,
    /// A nextLink that points back at page 1 (a loop).
    pub loop_links: bool,
    /// Delta tokens below this have expired (Graph keeps a directory delta
    /// state for 7 days): answered 400 `syncStateNotFound`.
    pub expired_before: usize,
    /// Sent first on every `groups/delta` page one (an entry Graph could
    /// send that the agent cannot apply).
    pub extra_group_entry: Option<String>,
    /// The token endpoint refuses with the form echoed, as some servers do.
    pub echo_token_requests: bool,
    /// Every Graph page is answered this late (a slow but working tenant).
    pub page_delay: std::time::Duration,
    /// Graph refuses with the Authorization header echoed (a proxy).
    pub echo_graph_requests: bool,
    /// The app's registered certificate: its public key (PEM) and
    /// `x5t#S256`; client assertions are checked against it.
    pub certificate: Option<(Vec<u8>, String)>,
}

pub struct FakeGraph {
    pub server: FakeServer,
    pub state: Arc<Mutex<GraphState>>,
}

impl FakeGraph {
    pub fn start() -> FakeGraph {
        let state = Arc::new(Mutex::new(GraphState {
            page_size: 10,
            ..GraphState::default()
        }));
        let s = state.clone();
        let base = Arc::new(Mutex::new(String::new()));
        let b = base.clone();
        let server =
            FakeServer::start(move |r| answer(&mut s.lock().unwrap(), &b.lock().unwrap(), r));
        *base.lock().unwrap() = server.base.clone();
        FakeGraph { server, state }
    }

    pub fn base(&self) -> &str {
        &self.server.base
    }

    /// `n` users, all in group `group` (and nothing else).
    pub fn populate(&self, group: &str, group_name: &str, n: usize) -> Vec<GraphUser> {
        let users: Vec<GraphUser> = (0..n).map(GraphUser::new).collect();
        let mut st = self.state.lock().unwrap();
        for u in &users {
            st.users.insert(u.id.clone(), u.clone());
        }
        st.groups.insert(
            group.into(),
            (
                group_name.into(),
                users.iter().map(|u| u.id.clone()).collect(),
            ),
        );
        users
    }

    /// Every delta link handed out so far expires (a host offline for
    /// more than 7 days).
    pub fn expire_delta_links(&self) {
        let mut st = self.state.lock().unwrap();
        st.expired_before = st.snapshots.len();
    }

    pub fn fault(&self, f: Fault) {
        self.state.lock().unwrap().faults.push(f);
    }

    pub fn graph_requests(&self) -> usize {
        self.server.count(|r| r.path().starts_with("/v1.0/"))
    }

    pub fn delta_requests(&self, what: &str) -> usize {
        self.server
            .count(|r| r.path() == format!("/v1.0/{what}/delta"))
    }

    pub fn token_requests(&self) -> usize {
        self.server
            .count(|r| r.path().ends_with("/oauth2/v2.0/token"))
    }
}

fn graph_error(status: u16, code: &str, message: &str) -> Response {
    Response::json(
        status,
        serde_json::json!({"error": {"code": code, "message": message,
            "innerError": {"date": "2026-11-25T12:00:00", "request-id": "r", "client-request-id": "c"}}})
        .to_string(),
    )
}

/// The answer of the first fault for `r` (at `skip`), if any, used up once.
fn take_fault(st: &mut GraphState, r: &Request, skip: usize) -> Option<Response> {
    let i = st.faults.iter().position(|f| {
        r.target.contains(&f.path_contains) && f.skiptoken.is_none_or(|s| s == skip) && f.times > 0
    })?;
    let f = &mut st.faults[i];
    if f.times != usize::MAX {
        f.times -= 1;
    }
    Some((f.answer)(&r.target))
}

fn answer(st: &mut GraphState, base: &str, r: &Request) -> Response {
    if r.path().starts_with("/v1.0/") && !st.page_delay.is_zero() {
        std::thread::sleep(st.page_delay);
    }
    if r.method == "POST" && r.path() == format!("/{TENANT}/oauth2/v2.0/token") {
        if let Some(fault) = take_fault(st, r, 0) {
            return fault;
        }
        if st.echo_token_requests {
            return Response::json(
                401,
                serde_json::json!({"error": "invalid_client",
                    "error_description": format!("AADSTS7000215: Invalid client secret provided. Request: {}", decode(&r.body))})
                .to_string(),
            );
        }
        let form: BTreeMap<String, String> = r
            .body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), decode(v)))
            .collect();
        let proof = match (form.get("client_secret"), form.get("client_assertion")) {
            (Some(secret), None) => secret == SECRET,
            (None, Some(assertion)) => {
                form.get("client_assertion_type").map(String::as_str)
                    == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                    && valid_assertion(st, base, assertion)
            }
            _ => false,
        };
        let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && proof
            && form.get("scope") == Some(&format!("{base}/.default"));
        if !ok {
            return Response::json(
                401,
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#,
            );
        }
        st.token_generation += 1;
        return Response::json(
            200,
            format!(
                r#"{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"tok-{}"}}"#,
                st.token_generation
            ),
        );
    }
    if !r.path().starts_with("/v1.0/") {
        return graph_error(404, "BadRequest", "Resource not found for the segment.");
    }
    let current = format!("Bearer tok-{}", st.token_generation);
    let expired = match &mut st.expire_after {
        Some(0) => true,
        Some(n) => {
            *n -= 1;
            false
        }
        None => false,
    };
    if r.authorization.as_deref() != Some(current.as_str()) || expired {
        if expired {
            st.expire_after = None;
            // the old token stops working, a new one will
            st.token_generation += 1000;
        }
        return graph_error(
            401,
            "InvalidAuthenticationToken",
            "Access token has expired or is not yet valid.",
        );
    }
    if st.echo_graph_requests {
        return graph_error(
            403,
            "Authorization_RequestDenied",
            &format!(
                "Insufficient privileges. Authorization: {}",
                r.authorization.as_deref().unwrap_or_default()
            ),
        );
    }
    let skip: usize = r
        .query("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if let Some(fault) = take_fault(st, r, skip) {
        return fault;
    }
    let (entries, round, offset, filter) = match r.query("$round") {
        Some(round) => {
            let round: usize = round.parse().unwrap_or(usize::MAX);
            let Some((entries, _)) = st.rounds.get(round) else {
                return graph_error(400, "BadRequest", "unknown round");
            };
            (
                entries.clone(),
                round,
                skip,
                r.query("$filter").map(str::to_string),
            )
        }
        None => {
            let since = match r.query("$deltatoken") {
                None => Arc::new((Users::new(), Groups::new())),
                Some(t) => match t
                    .parse::<usize>()
                    .ok()
                    .filter(|t| *t >= st.expired_before)
                    .and_then(|t| st.snapshots.get(t))
                {
                    Some(s) => s.clone(),
                    // what Graph answers for a delta token it no longer has
                    None => {
                        return graph_error(
                            400,
                            "syncStateNotFound",
                            "The sync state generation is not found. Please resync.",
                        );
                    }
                },
            };
            let filter = r.query("$filter").map(str::to_string);
            let entries = match r.path() {
                "/v1.0/users/delta" => {
                    // a first round asks for what the agent maps (delta
                    // links carry it on)
                    let select = r.query("$select").unwrap_or_default();
                    let first = r.query("$deltatoken").is_none();
                    if first && (!select.contains("accountEnabled") || !select.contains("mail")) {
                        return graph_error(400, "BadRequest", "unexpected $select");
                    }
                    user_changes(&since.0, &st.users)
                }
                "/v1.0/groups/delta" => {
                    let Some(ids) = filter.as_deref().and_then(filter_ids) else {
                        return graph_error(400, "BadRequest", "groups delta without an id filter");
                    };
                    if ids.len() > 50 {
                        return graph_error(400, "BadRequest", "too many ids in the filter");
                    }
                    group_changes(&since.1, &st.groups, &ids)
                }
                _ => return graph_error(400, "BadRequest", "Unsupported segment"),
            };
            st.snapshots
                .push(Arc::new((st.users.clone(), st.groups.clone())));
            let token = st.snapshots.len() - 1;
            st.rounds.push((Arc::new(entries), token));
            (
                st.rounds[st.rounds.len() - 1].0.clone(),
                st.rounds.len() - 1,
                0,
                filter,
            )
        }
    };
    let mut page: Vec<&str> = entries
        .iter()
        .skip(offset)
        .take(st.page_size)
        .map(String::as_str)
        .collect();
    if let Some(extra) = st.extra_group_entry.as_deref()
        && offset == 0
        && r.path() == "/v1.0/groups/delta"
    {
        page.insert(0, extra);
    }
    let next = offset + st.page_size;
    let link_base = st.link_base.clone().unwrap_or_else(|| base.to_string());
    let filter = filter.map(|f| format!("&$filter={f}")).unwrap_or_default();
    let mut body = format!(
        r#"{{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#{}","value":[{}]"#,
        if r.path().contains("users") {
            "users(id,mail)"
        } else {
            "groups(displayName,members)"
        },
        page.join(",")
    );
    if next < entries.len() {
        let link = if st.loop_links {
            r.target.clone()
        } else {
            format!("{}?$skiptoken={next}&$round={round}{filter}", r.path())
        };
        body.push_str(&format!(r#","@odata.nextLink":"{link_base}{link}""#));
    } else {
        let token = st.rounds[round].1;
        body.push_str(&format!(
            r#","@odata.deltaLink":"{link_base}{}?$deltatoken={token}{filter}""#,
            r.path()
        ));
    }
    body.push('}');
    Response::json(200, body)
}

/// `users/delta` entries from `old` to `new`: changed or new users whole,
/// deleted ones `@removed`.
fn user_changes(old: &Users, new: &Users) -> Vec<String> {
    let mut out: Vec<String> = new
        .values()
        .filter(|u| old.get(&u.id) != Some(u))
        .map(GraphUser::json)
        .collect();
    out.extend(old.keys().filter(|id| !new.contains_key(*id)).map(|id| {
        serde_json::json!({"@odata.type": "#microsoft.graph.user", "id": id,
            "@removed": {"reason": "changed"}})
        .to_string()
    }));
    out
}

/// `groups/delta` entries for the filtered `ids` from `old` to `new`.
fn group_changes(old: &Groups, new: &Groups, ids: &[String]) -> Vec<String> {
    let typed = |id: &str, removed: bool| {
        let kind = if new.contains_key(id) || old.contains_key(id) {
            "#microsoft.graph.group"
        } else {
            "#microsoft.graph.user"
        };
        let mut m = serde_json::json!({"@odata.type": kind, "id": id});
        if removed {
            m["@removed"] = serde_json::json!({"reason": "deleted"});
        }
        m
    };
    let mut out = Vec::new();
    for id in ids {
        match (old.get(id), new.get(id)) {
            (None, None) => {}
            (Some(_), None) => out.push(
                serde_json::json!({"@odata.type": "#microsoft.graph.group", "id": id,
                    "@removed": {"reason": "deleted"}})
                .to_string(),
            ),
            (before, Some((name, members))) => {
                let empty = Vec::new();
                let old_members = before.map_or(&empty, |b| &b.1);
                if before.is_some_and(|b| &b.0 == name && &b.1 == members) {
                    continue;
                }
                let mut delta: Vec<serde_json::Value> = members
                    .iter()
                    .filter(|m| !old_members.contains(m))
                    .map(|m| typed(m, false))
                    .collect();
                delta.extend(
                    old_members
                        .iter()
                        .filter(|m| !members.contains(m))
                        .map(|m| typed(m, true)),
                );
                out.push(
                    serde_json::json!({"@odata.type": "#microsoft.graph.group", "id": id,
                        "displayName": name, "members@delta": delta})
                    .to_string(),
                );
            }
        }
    }
    out
}

/// The ids of `id eq 'a' or id eq 'b'` (percent-encoded as sent).
fn filter_ids(filter: &str) -> Option<Vec<String>> {
    let filter = decode(filter);
    filter
        .split(" or ")
        .map(|term| {
            let literal = term.strip_prefix("id eq '")?.strip_suffix('\'')?;
            Some(literal.replace("''", "'"))
        })
        .collect()
}

/// A client assertion as Microsoft's docs describe it: RS256 signed by the
/// registered certificate's key, `x5t#S256` its thumbprint, iss = sub = the
/// client id, aud = the token endpoint, a `jti`, at most 10 minutes.
fn valid_assertion(st: &GraphState, base: &str, assertion: &str) -> bool {
    let Some((public_pem, x5t)) = &st.certificate else {
        return false;
    };
    let Ok(header) = jsonwebtoken::decode_header(assertion) else {
        return false;
    };
    if header.x5t_s256.as_deref() != Some(x5t.as_str()) {
        return false;
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[format!("{base}/{TENANT}/oauth2/v2.0/token")]);
    validation.set_issuer(&[CLIENT_ID]);
    validation.sub = Some(CLIENT_ID.into());
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem) else {
        return false;
    };
    jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &validation).is_ok_and(|t| {
        t.claims["jti"].is_string()
            && t.claims["exp"].as_u64().unwrap_or(0) <= t.claims["iat"].as_u64().unwrap_or(0) + 600
    })
}

fn decode(v: &str) -> String {
    percent_encoding::percent_decode_str(&v.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}
