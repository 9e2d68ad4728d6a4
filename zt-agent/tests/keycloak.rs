//! `kind = "keycloak"` against a fake Keycloak admin REST API answering in
//! its documented shapes (GroupRepresentation, UserRepresentation arrays
//! paged by `first`/`max`, `/children` for subgroups, client-credentials
//! tokens, 401 for an expired token), with whole syncs.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use common::fake_http::{FakeServer, Request, Response};
use serde_json::json;
use zt_agent::config::AgentConfig;
use zt_agent::directory::error::DirectoryFailure;
use zt_agent::outcome::{Completed, FailureKind};
use zt_agent::sync::sync;

const SECRET: &str = "test-only-keycloak-secret";

#[derive(Default)]
struct Realm {
    /// group id -> (name, user indices, child group ids)
    groups: BTreeMap<String, (String, Vec<usize>, Vec<String>)>,
    disabled: Vec<usize>,
    token: u32,
    /// Answer 401 to the next Graph request (an expired token).
    expire_next: bool,
    /// Answer this status to every members request.
    members_status: Option<u16>,
    /// Before answering the n-th members request, delete this member (a
    /// change while the agent pages).
    delete_before_members_request: Option<(usize, usize)>,
    members_requests: usize,
}

fn user_json(n: usize, enabled: bool) -> serde_json::Value {
    json!({
        "id": format!("kc-user-{n:05}"), "username": format!("user{n}"),
        "email": if n == 13 { serde_json::Value::Null } else { json!(format!("user{n}@example.com")) },
        "firstName": "User", "lastName": format!("{n}"), "enabled": enabled, "emailVerified": true,
        "createdTimestamp": 1_706_781_600_000u64 + n as u64 * 1000, "totp": false,
        "attributes": {"department": ["ops"]},
    })
}

fn answer(realm: &mut Realm, r: &Request) -> Response {
    if r.method == "POST" && r.path() == "/realms/staff/protocol/openid-connect/token" {
        if !r.body.contains(&format!("client_secret={SECRET}"))
            || !r.body.contains("grant_type=client_credentials")
        {
            return Response::json(
                401,
                r#"{"error":"unauthorized_client","error_description":"Invalid client or Invalid client credentials"}"#,
            );
        }
        realm.token += 1;
        return Response::json(
            200,
            format!(
                r#"{{"access_token":"kc-{}","expires_in":300,"refresh_expires_in":0,"token_type":"Bearer","not-before-policy":0,"scope":"profile email"}}"#,
                realm.token
            ),
        );
    }
    if r.authorization.as_deref() != Some(&format!("Bearer kc-{}", realm.token))
        || realm.expire_next
    {
        realm.expire_next = false;
        realm.token += 100;
        return Response::json(401, r#"{"error":"HTTP 401 Unauthorized"}"#);
    }
    let Some(rest) = r.path().strip_prefix("/admin/realms/staff/groups/") else {
        return Response::json(404, r#"{"error":"Could not find resource"}"#);
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let first: usize = r.query("first").and_then(|v| v.parse().ok()).unwrap_or(0);
    let max: usize = r.query("max").and_then(|v| v.parse().ok()).unwrap_or(100);
    let Some((name, users, children)) = realm.groups.get(parts[0]) else {
        return Response::json(404, r#"{"error":"Could not find group by id"}"#);
    };
    match parts.as_slice() {
        [id] => Response::json(
            200,
            json!({"id": id, "name": name, "path": format!("/{name}"), "subGroupCount": children.len(),
                   "subGroups": [], "attributes": {}, "realmRoles": [], "clientRoles": {}, "access": {}})
            .to_string(),
        ),
        [_, "members"] => {
            realm.members_requests += 1;
            if let Some((n, gone)) = realm.delete_before_members_request
                && n == realm.members_requests
            {
                for (_, users, _) in realm.groups.values_mut() {
                    users.retain(|u| *u != gone);
                }
                return answer(realm, r);
            }
            if let Some(status) = realm.members_status {
                return Response::json(status, "{}");
            }
            if r.query("briefRepresentation") != Some("false") {
                return Response::json(400, "{}");
            }
            let page: Vec<_> = users
                .iter()
                .skip(first)
                .take(max)
                .map(|n| user_json(*n, !realm.disabled.contains(n)))
                .collect();
            Response::json(200, serde_json::Value::Array(page).to_string())
        }
        [_, "children"] => {
            let page: Vec<_> = children
                .iter()
                .skip(first)
                .take(max)
                .map(|c| json!({"id": c, "name": realm.groups[c].0, "path": "/x", "subGroupCount": 0, "subGroups": []}))
                .collect();
            Response::json(200, serde_json::Value::Array(page).to_string())
        }
        _ => Response::json(404, "{}"),
    }
}

#[test]
fn a_keycloak_realm_synced() {
    let realm = Arc::new(Mutex::new(Realm::default()));
    {
        let mut r = realm.lock().unwrap();
        r.groups.insert(
            "g-sre".into(),
            ("sre".into(), (0..1100).collect(), vec!["g-oncall".into()]),
        );
        r.groups.insert(
            "g-oncall".into(),
            ("oncall".into(), vec![2000, 2001], vec![]),
        );
        r.groups
            .insert("g-sales".into(), ("sales".into(), vec![3000], vec![]));
        r.disabled.push(5);
    }
    let rr = realm.clone();
    let server = FakeServer::start(move |req| answer(&mut rr.lock().unwrap(), req));

    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("kc.secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let text = format!(
        r#"
[directory]
kind = "keycloak"
url = "{}"
realm = "staff"
client_id = "zt-agent"
client_secret_file = "{}"

[users]
domains = ["example.com"]

[[groups]]
id = "g-sre"
name = "sre"
login = true
"#,
        server.base,
        secret.display()
    );
    let config = AgentConfig::parse(&text, "agent.toml").unwrap();
    let paths = common::host_paths(tmp.path());
    realm.lock().unwrap().expire_next = true;
    let r = sync(&config, &paths, false).unwrap();
    assert_eq!(r.completed, Completed::Published);
    // 1100 + 2 nested, less the disabled one and the one without email
    assert_eq!(r.users, 1100);
    assert!(
        r.resolution
            .problems
            .iter()
            .any(|p| p.contains("kc-user-00013") && p.contains("no email")),
        "{:?}",
        r.resolution.problems
    );
    let snapshot = std::fs::read(paths.state_dir.join("snapshot")).unwrap();
    let s = zt_snapshot::Snapshot::parse(&snapshot).unwrap();
    assert!(s.user_by_name(b"user2001").unwrap().is_some());
    assert!(s.user_by_name(b"user1099").unwrap().is_some());
    assert!(s.user_by_name(b"user5").unwrap().is_none());
    assert!(s.user_by_name(b"user3000").unwrap().is_none());
    // pages of 500: 3 member pages for sre, one for oncall; sales never read
    assert_eq!(server.count(|q| q.path().ends_with("/g-sre/members")), 3);
    assert_eq!(
        server.count(|q| q.path() == "/admin/realms/staff/groups/g-sre"),
        2,
        "asked again with a new token after the expired one"
    );
    assert_eq!(server.count(|q| q.path().contains("g-sales")), 0);
    assert_eq!(server.count(|q| q.path().ends_with("/token")), 2);

    // someone leaves while the members are paged: everyone after them moves
    // up a place; the overlap shows it and the listing starts over, so
    // nobody is skipped
    {
        let mut r = realm.lock().unwrap();
        r.members_requests = 0;
        r.delete_before_members_request = Some((2, 10));
    }
    let r = sync(&config, &paths, false).unwrap();
    assert_eq!(r.users, 1099);
    let snapshot = std::fs::read(paths.state_dir.join("snapshot")).unwrap();
    let s = zt_snapshot::Snapshot::parse(&snapshot).unwrap();
    assert!(s.user_by_name(b"user10").unwrap().is_none());
    assert!(
        s.user_by_name(b"user500").unwrap().is_some(),
        "the first one moved across the page boundary"
    );
    assert!(s.user_by_name(b"user1099").unwrap().is_some());

    // a failing members listing publishes nothing
    realm.lock().unwrap().members_status = Some(403);
    let e = sync(&config, &paths, false).unwrap_err();
    assert_eq!(
        e.kind,
        FailureKind::Directory(DirectoryFailure::Unauthorised)
    );
    let after = std::fs::read(paths.state_dir.join("snapshot")).unwrap();
    assert_eq!(after, snapshot);
}
