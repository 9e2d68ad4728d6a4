//! A fake Microsoft Graph (and its token endpoint) that answers in the
//! documented shapes: client-credentials tokens from
//! `/{tenant}/oauth2/v2.0/token`, `/v1.0/groups/{id}` and
//! `/v1.0/groups/{id}/transitiveMembers/microsoft.graph.user` as OData
//! collections (`value`, `@odata.nextLink` with a `$skiptoken`), Graph's error
//! objects, 401 for an expired token. Faults are injected per request.

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

    fn json(&self) -> String {
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

#[derive(Default)]
pub struct GraphState {
    pub users: BTreeMap<String, GraphUser>,
    /// group id -> (displayName, transitive user ids)
    pub groups: BTreeMap<String, (String, Vec<String>)>,
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

    pub fn fault(&self, f: Fault) {
        self.state.lock().unwrap().faults.push(f);
    }

    pub fn graph_requests(&self) -> usize {
        self.server.count(|r| r.path().starts_with("/v1.0/"))
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

fn answer(st: &mut GraphState, base: &str, r: &Request) -> Response {
    if r.method == "POST" && r.path() == format!("/{TENANT}/oauth2/v2.0/token") {
        let form: BTreeMap<String, String> = r
            .body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), decode(v)))
            .collect();
        let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && form.get("client_secret").map(String::as_str) == Some(SECRET)
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
    let skip: usize = r
        .query("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if let Some(i) = st.faults.iter().position(|f| {
        r.target.contains(&f.path_contains) && f.skiptoken.is_none_or(|s| s == skip) && f.times > 0
    }) {
        let f = &mut st.faults[i];
        if f.times != usize::MAX {
            f.times -= 1;
        }
        return (f.answer)(&r.target);
    }
    let parts: Vec<&str> = r.path().trim_start_matches("/v1.0/").split('/').collect();
    match parts.as_slice() {
        ["groups", id] => match st.groups.get(*id) {
            Some((name, _)) => Response::json(
                200,
                serde_json::json!({
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#groups(id,displayName)/$entity",
                    "id": id, "displayName": name,
                })
                .to_string(),
            ),
            None => graph_error(
                404,
                "Request_ResourceNotFound",
                &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
            ),
        },
        ["groups", id, "transitiveMembers", "microsoft.graph.user"] => {
            let Some((_, members)) = st.groups.get(*id) else {
                return graph_error(404, "Request_ResourceNotFound", "no such group");
            };
            // the agent asks for what it maps, at Graph's largest page size
            let select = r.query("$select").unwrap_or_default();
            if r.query("$top") != Some("999") || !select.contains("accountEnabled") {
                return graph_error(400, "BadRequest", "unexpected query");
            }
            let page: Vec<String> = members
                .iter()
                .skip(skip)
                .take(st.page_size)
                .filter_map(|m| st.users.get(m))
                .map(GraphUser::json)
                .collect();
            let next = skip + st.page_size;
            let link_base = st.link_base.clone().unwrap_or_else(|| base.to_string());
            let first_page = r.target.split("&$skiptoken").next().unwrap_or("");
            let next_link = if st.loop_links && next < members.len() {
                Some(format!("{link_base}{first_page}"))
            } else {
                (next < members.len())
                    .then(|| format!("{link_base}{first_page}&$skiptoken={next}"))
            };
            let mut body = format!(
                r#"{{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#users","value":[{}]"#,
                page.join(",")
            );
            if let Some(link) = next_link {
                body.push_str(&format!(r#","@odata.nextLink":"{link}""#));
            }
            body.push('}');
            Response::json(200, body)
        }
        _ => graph_error(400, "BadRequest", "Unsupported segment"),
    }
}

fn decode(v: &str) -> String {
    percent_encoding::percent_decode_str(&v.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}
