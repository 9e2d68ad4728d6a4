//! `kind = "okta"` against a fake Okta management API answering in its
//! documented shapes: groups and group members (`/api/v1/groups/{id}/users`)
//! paged by `Link: <..>; rel="next"` cursors, `X-Rate-Limit-*` headers, a 429
//! with only `X-Rate-Limit-Reset`, `SSWS` tokens, Okta's error objects.

mod common;

use std::cell::Cell;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::fake_http::{FakeServer, Request, Response};
use serde_json::json;
use zt_agent::config::{AgentConfig, DirectorySource, HttpConfig};
use zt_agent::directory::api::RetryPolicy;
use zt_agent::directory::error::DirectoryFailure;
use zt_agent::directory::okta;
use zt_agent::http::Http;
use zt_agent::outcome::{Completed, FailureKind};
use zt_agent::sync::{Paths, sync};

const TOKEN: &str = "00test-only-okta-api-token";
const GROUP: &str = "00g1emaKYZTWRYYRRTSK";

#[derive(Default)]
struct Org {
    members: Vec<usize>,
    /// user index -> status (default ACTIVE)
    statuses: Vec<(usize, &'static str)>,
    /// Remaining requests reported; 0 on the response to request n.
    remaining_zero_at: Option<usize>,
    /// Answer 429 (with only X-Rate-Limit-Reset) to request n.
    throttle_at: Option<usize>,
    /// Where next links point.
    link_base: Option<String>,
    requests: usize,
    /// A service app's registered public key (PEM): its client assertions
    /// get a bearer token.
    service_app_key: Option<Vec<u8>>,
}

const SERVICE_APP: &str = "0oa9test0only0client";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn okta_error(status: u16, code: &str, summary: &str) -> Response {
    Response::json(
        status,
        json!({"errorCode": code, "errorSummary": summary, "errorLink": code,
               "errorId": "oaeXXXX", "errorCauses": []})
        .to_string(),
    )
}

fn answer(org: &mut Org, base: &str, r: &Request) -> Response {
    if r.method == "POST" && r.path() == "/oauth2/v1/token" {
        let form: std::collections::BTreeMap<String, String> = r
            .body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                let v = v.replace('+', " ");
                (
                    k.to_string(),
                    percent_encoding::percent_decode_str(&v)
                        .decode_utf8_lossy()
                        .into_owned(),
                )
            })
            .collect();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&[format!("{base}/oauth2/v1/token")]);
        validation.set_issuer(&[SERVICE_APP]);
        validation.sub = Some(SERVICE_APP.into());
        let valid = org.service_app_key.as_ref().is_some_and(|pem| {
            let key = jsonwebtoken::DecodingKey::from_rsa_pem(pem).unwrap();
            form.get("client_assertion").is_some_and(|a| {
                jsonwebtoken::decode::<serde_json::Value>(a, &key, &validation).is_ok()
            })
        });
        if !valid
            || form.get("grant_type").map(String::as_str) != Some("client_credentials")
            || form.get("scope").map(String::as_str) != Some(okta::SCOPES)
        {
            return Response::json(
                401,
                r#"{"error":"invalid_client","error_description":"The client_assertion signature is invalid."}"#,
            );
        }
        return Response::json(
            200,
            r#"{"token_type":"Bearer","expires_in":3600,"access_token":"okta-at-1","scope":"okta.groups.read okta.users.read"}"#,
        );
    }
    let bearer_ok =
        org.service_app_key.is_some() && r.authorization.as_deref() == Some("Bearer okta-at-1");
    if !bearer_ok && r.authorization.as_deref() != Some(&format!("SSWS {TOKEN}")) {
        return okta_error(401, "E0000011", "Invalid token provided");
    }
    org.requests += 1;
    let n = org.requests;
    let limit_headers = |resp: Response, remaining: u64| {
        resp.header("X-Rate-Limit-Limit", "600")
            .header("X-Rate-Limit-Remaining", &remaining.to_string())
            .header("X-Rate-Limit-Reset", &(now() + 1).to_string())
    };
    if org.throttle_at == Some(n) {
        return limit_headers(
            okta_error(
                429,
                "E0000047",
                "API call exceeded rate limit due to too many requests.",
            ),
            0,
        );
    }
    let remaining = if org.remaining_zero_at == Some(n) {
        0
    } else {
        599
    };
    let path = r.path().to_string();
    let Some(rest) = path.strip_prefix("/api/v1/groups/") else {
        return okta_error(
            404,
            "E0000022",
            "The endpoint does not support the provided HTTP method",
        );
    };
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [id] if *id == GROUP => limit_headers(
            Response::json(
                200,
                json!({"id": GROUP, "created": "2015-02-06T10:11:28.000Z", "type": "OKTA_GROUP",
                       "objectClass": ["okta:user_group"],
                       "profile": {"name": "SRE", "description": "site reliability"},
                       "_links": {"users": {"href": format!("{base}/api/v1/groups/{GROUP}/users")}}})
                .to_string(),
            ),
            remaining,
        ),
        [id, "users"] if *id == GROUP => {
            let limit: usize = r.query("limit").and_then(|v| v.parse().ok()).unwrap_or(1000);
            let after: Option<usize> = r.query("after").and_then(|v| v.parse().ok());
            let start = after.map_or(0, |a| org.members.iter().position(|m| *m == a).map_or(0, |p| p + 1));
            let page: Vec<_> = org.members[start..].iter().take(limit).copied().collect();
            let body: Vec<_> = page
                .iter()
                .map(|u| {
                    let status = org.statuses.iter().find(|(i, _)| i == u).map_or("ACTIVE", |(_, s)| *s);
                    json!({"id": format!("{u}"), "status": status, "created": "2020-01-01T00:00:00.000Z",
                           "activated": null, "lastLogin": null,
                           "profile": {"firstName": "User", "lastName": format!("{u}"),
                                       "email": format!("user{u}@example.com"), "login": format!("user{u}@example.com")},
                           "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
                           "_links": {"self": {"href": format!("{base}/api/v1/users/{u}")}}})
                })
                .collect();
            let link_base = org.link_base.clone().unwrap_or_else(|| base.to_string());
            let mut resp = Response::json(200, serde_json::Value::Array(body).to_string()).header(
                "Link",
                &format!("<{base}/api/v1/groups/{GROUP}/users?limit={limit}>; rel=\"self\""),
            );
            if start + page.len() < org.members.len() {
                resp = resp.header(
                    "Link",
                    &format!(
                        "<{link_base}/api/v1/groups/{GROUP}/users?after={}&limit={limit}>; rel=\"next\"",
                        page.last().unwrap()
                    ),
                );
            }
            limit_headers(resp, remaining)
        }
        _ => okta_error(404, "E0000007", &format!("Not found: Resource not found: {rest} (UserGroup)")),
    }
}

struct Host {
    _tmp: tempfile::TempDir,
    server: FakeServer,
    org: Arc<Mutex<Org>>,
    config: AgentConfig,
    paths: Paths,
}

fn host(members: usize) -> Host {
    let org = Arc::new(Mutex::new(Org {
        members: (0..members).collect(),
        ..Org::default()
    }));
    let o = org.clone();
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    let server = FakeServer::start(move |r| answer(&mut o.lock().unwrap(), &b.lock().unwrap(), r));
    *base.lock().unwrap() = server.base.clone();
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("okta.token");
    std::fs::write(&token, TOKEN).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "[directory]\nkind = \"okta\"\norg_url = \"{}\"\ntoken_file = \"{}\"\n\n\
         [users]\ndomains = [\"example.com\"]\n\n[[groups]]\nid = \"{GROUP}\"\nname = \"sre\"\nlogin = true\n",
        server.base,
        token.display()
    );
    let config = AgentConfig::parse(&text, "agent.toml").unwrap();
    let paths = common::host_paths(tmp.path());
    Host {
        _tmp: tmp,
        server,
        org,
        config,
        paths,
    }
}

thread_local! {
    static SLEPT_MS: Cell<u64> = const { Cell::new(0) };
}

fn record_sleep(d: Duration) {
    SLEPT_MS.with(|s| s.set(s.get() + d.as_millis() as u64));
}

fn read(
    h: &Host,
) -> Result<zt_agent::directory::Directory, zt_agent::directory::error::DirectoryError> {
    let DirectorySource::Okta(source) = &h.config.directory.source else {
        panic!("okta config")
    };
    let http = Http::new(&HttpConfig::default()).unwrap();
    let mut api = okta::connect(&http, source).unwrap();
    api.policy = RetryPolicy {
        attempts: 4,
        base: Duration::from_millis(1),
        max_wait: Duration::from_secs(30),
    };
    api.sleep = record_sleep;
    okta::read(&mut api, source, &[GROUP.to_string()])
}

#[test]
fn link_header_paging_and_statuses() {
    let h = host(450);
    {
        let mut o = h.org.lock().unwrap();
        o.statuses = vec![(3, "SUSPENDED"), (4, "DEPROVISIONED"), (5, "LOCKED_OUT")];
    }
    let r = sync(&h.config, &h.paths, false).unwrap();
    assert_eq!(r.completed, Completed::Published);
    assert_eq!(r.users, 448);
    // the group, then 3 pages of at most 200
    assert_eq!(h.server.requests().len(), 4);
    let snapshot = std::fs::read(h.paths.state_dir.join("snapshot")).unwrap();
    let s = zt_snapshot::Snapshot::parse(&snapshot).unwrap();
    assert!(
        s.user_by_name(b"user5").unwrap().is_some(),
        "locked out is still active"
    );
    assert!(s.user_by_name(b"user3").unwrap().is_none());
    assert!(s.user_by_name(b"user449").unwrap().is_some());
}

#[test]
fn rate_limits_are_waited_for() {
    let h = host(450);
    {
        let mut o = h.org.lock().unwrap();
        // page 1's answer says the allowance is used up; page 2 is throttled
        // with only X-Rate-Limit-Reset
        o.remaining_zero_at = Some(2);
        o.throttle_at = Some(3);
    }
    let d = read(&h).unwrap();
    assert_eq!(d.users.len(), 450);
    // two waits for a reset about a second or two away, none for nothing
    let slept = SLEPT_MS.with(Cell::get);
    assert!((1000..=4000).contains(&slept), "{slept} ms");
    assert_eq!(h.server.requests().len(), 5);
}

#[test]
fn a_next_link_elsewhere_is_refused_and_nothing_published() {
    let h = host(450);
    let other = FakeServer::start(|_| Response::json(200, "[]"));
    h.org.lock().unwrap().link_base = Some(other.base.clone());
    let e = read(&h).unwrap_err();
    assert_eq!(e.kind, DirectoryFailure::Malformed);
    assert!(e.message.contains("not at the configured"), "{e}");
    assert!(other.requests().is_empty(), "the token went elsewhere");
    let e = sync(&h.config, &h.paths, false).unwrap_err();
    assert_eq!(e.kind, FailureKind::Directory(DirectoryFailure::Malformed));
    assert!(!h.paths.state_dir.join("snapshot").exists());
}

#[test]
fn a_service_app_signs_its_way_in() {
    let h = host(5);
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("okta.key");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key.to_str().unwrap(),
    ]);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    h.org.lock().unwrap().service_app_key =
        Some(run(&["pkey", "-pubout", "-in", key.to_str().unwrap()]));
    let text = format!(
        "[directory]\nkind = \"okta\"\norg_url = \"{}\"\nclient_id = \"{SERVICE_APP}\"\nprivate_key_file = \"{}\"\n\n\
         [users]\ndomains = [\"example.com\"]\n\n[[groups]]\nid = \"{GROUP}\"\nname = \"sre\"\nlogin = true\n",
        h.server.base,
        key.display()
    );
    let config = AgentConfig::parse(&text, "agent.toml").unwrap();
    let r = sync(&config, &h.paths, false).unwrap();
    assert_eq!(r.users, 5);
    assert!(
        h.server
            .requests()
            .iter()
            .filter(|r| r.path().starts_with("/api/"))
            .all(|r| r.authorization.as_deref() == Some("Bearer okta-at-1"))
    );
}
