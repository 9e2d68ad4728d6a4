//! `kind = "google"` against a fake Admin SDK Directory API and Google token
//! endpoint answering in their documented shapes: the service account's RS256
//! assertion is verified with its public key (iss, sub, scope, aud), groups and
//! derived members and the customer's users page by `pageToken`, `posixAccounts`
//! and `sshPublicKeys` map to uids and keys, an expired token is renewed.
//! The key pair comes from `openssl genpkey` (test-only).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::fake_http::{FakeServer, Request, Response};
use serde_json::json;
use zt_agent::config::AgentConfig;
use zt_agent::directory::error::DirectoryFailure;
use zt_agent::directory::google::SCOPES;
use zt_agent::outcome::{Completed, FailureKind};
use zt_agent::sync::sync;

const GROUP: &str = "03x8tuzt3hqdv5w";
const NESTED: &str = "01ci93xb3tmzkn9";
const ADMIN: &str = "admin@example.com";
const CLIENT_EMAIL: &str = "zt-agent@acme-prod.iam.gserviceaccount.com";

struct Fake {
    public_pem: Vec<u8>,
    base: String,
    token: u32,
    expire_next: bool,
    users: usize,
    suspended: Vec<usize>,
}

fn user(n: usize, suspended: bool) -> serde_json::Value {
    let mut u = json!({
        "kind": "admin#directory#user", "id": format!("1{n:020}"),
        "primaryEmail": format!("user{n}@example.com"),
        "name": {"givenName": "User", "familyName": format!("{n}"), "fullName": format!("User {n}")},
        "isAdmin": false, "suspended": suspended, "archived": false,
        "creationTime": "2020-01-01T00:00:00.000Z", "customerId": "C03az79cb",
    });
    if n == 7 {
        u["posixAccounts"] = json!([{"username": "seven", "uid": "42007", "gid": "42007", "primary": true,
                                     "homeDirectory": "/home/seven", "shell": "/bin/bash", "systemId": ""}]);
        u["sshPublicKeys"] = json!([{"key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl seven@laptop",
                                     "fingerprint": "x"}]);
    }
    u
}

fn google_error(status: u16, message: &str) -> Response {
    Response::json(
        status,
        json!({"error": {"code": status, "message": message,
               "errors": [{"message": message, "domain": "global", "reason": "x"}]}})
        .to_string(),
    )
}

fn answer(f: &mut Fake, r: &Request) -> Response {
    if r.method == "POST" && r.path() == "/token" {
        let form: std::collections::BTreeMap<String, String> = r
            .body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_string(),
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned(),
                )
            })
            .collect();
        if form.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return Response::json(400, r#"{"error":"unsupported_grant_type"}"#);
        }
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&[format!("{}/token", f.base)]);
        validation.set_issuer(&[CLIENT_EMAIL]);
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(&f.public_pem).unwrap();
        let Ok(claims) = jsonwebtoken::decode::<serde_json::Value>(
            form.get("assertion").map(String::as_str).unwrap_or(""),
            &key,
            &validation,
        ) else {
            return Response::json(
                400,
                r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
            );
        };
        if claims.claims["sub"] != ADMIN || claims.claims["scope"] != SCOPES {
            return Response::json(
                401,
                r#"{"error":"unauthorized_client","error_description":"Client is unauthorized to retrieve access tokens using this method"}"#,
            );
        }
        f.token += 1;
        return Response::json(
            200,
            format!(
                r#"{{"access_token":"ya29.test-{}","expires_in":3599,"token_type":"Bearer"}}"#,
                f.token
            ),
        );
    }
    if r.authorization.as_deref() != Some(&format!("Bearer ya29.test-{}", f.token)) || f.expire_next
    {
        f.expire_next = false;
        f.token += 100;
        return google_error(401, "Invalid Credentials");
    }
    let path = r
        .path()
        .trim_start_matches("/admin/directory/v1/")
        .to_string();
    let page_token: usize = r
        .query("pageToken")
        .and_then(|t| t.strip_prefix("tok").and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["groups", id] if *id == GROUP || *id == NESTED => Response::json(
            200,
            json!({"kind": "admin#directory#group", "id": id, "email": "sre@example.com", "name": "SRE",
                   "directMembersCount": "251", "adminCreated": true})
            .to_string(),
        ),
        ["groups", id, "members"] if *id == GROUP => {
            if r.query("includeDerivedMembership") != Some("true") {
                return google_error(400, "test expects derived membership");
            }
            // 250 direct people, the nested group itself, its 2 people (derived)
            let mut all: Vec<serde_json::Value> = (0..250)
                .map(|n| json!({"kind": "admin#directory#member", "id": format!("1{n:020}"),
                                "email": format!("user{n}@example.com"), "role": "MEMBER", "type": "USER", "status": "ACTIVE"}))
                .collect();
            all.push(json!({"kind": "admin#directory#member", "id": NESTED, "email": "oncall@example.com", "role": "MEMBER", "type": "GROUP"}));
            for n in [900, 901] {
                all.push(json!({"kind": "admin#directory#member", "id": format!("1{n:020}"), "role": "MEMBER", "type": "USER", "status": "ACTIVE"}));
            }
            let size: usize = r.query("maxResults").and_then(|v| v.parse().ok()).unwrap_or(200);
            let page: Vec<_> = all.iter().skip(page_token).take(size).cloned().collect();
            let mut body = json!({"kind": "admin#directory#members", "etag": "\"e\"", "members": page});
            if page_token + size < all.len() {
                body["nextPageToken"] = json!(format!("tok{}", page_token + size));
            }
            Response::json(200, body.to_string())
        }
        ["users"] => {
            if r.query("customer") != Some("my_customer") || r.query("projection") != Some("full") {
                return google_error(400, "Bad Request");
            }
            let size: usize = r.query("maxResults").and_then(|v| v.parse().ok()).unwrap_or(100);
            let page: Vec<_> = (page_token..f.users.min(page_token + size))
                .map(|n| user(n, f.suspended.contains(&n)))
                .collect();
            let mut body = json!({"kind": "admin#directory#users", "etag": "\"e\"", "users": page});
            if page_token + size < f.users {
                body["nextPageToken"] = json!(format!("tok{}", page_token + size));
            }
            Response::json(200, body.to_string())
        }
        _ => google_error(404, "Resource Not Found: groupKey"),
    }
}

fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl");
    if let Some(i) = input {
        child.stdin.take().unwrap().write_all(i).unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn a_workspace_synced_with_a_service_account() {
    let private = openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
        None,
    );
    let public = openssl(&["pkey", "-pubout"], Some(&private));
    let fake = Arc::new(Mutex::new(Fake {
        public_pem: public,
        base: String::new(),
        token: 0,
        expire_next: false,
        users: 1200,
        suspended: vec![3],
    }));
    let f = fake.clone();
    let server = FakeServer::start(move |r| answer(&mut f.lock().unwrap(), r));
    fake.lock().unwrap().base = server.base.clone();

    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("google.json");
    std::fs::write(
        &key_file,
        json!({"type": "service_account", "project_id": "acme-prod", "private_key_id": "k1",
               "private_key": String::from_utf8(private).unwrap(), "client_email": CLIENT_EMAIL,
               "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"})
        .to_string(),
    )
    .unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "[directory]\nkind = \"google\"\nservice_account_file = \"{}\"\nsubject = \"{ADMIN}\"\n\
         api_url = \"{base}\"\ntoken_url = \"{base}/token\"\n\n\
         [users]\ndomains = [\"example.com\"]\ndirectory_uid_range = \"40000-49999\"\n\n\
         [[groups]]\nid = \"{GROUP}\"\nname = \"sre\"\nlogin = true\n",
        key_file.display(),
        base = server.base
    );
    let config = AgentConfig::parse(&text, "agent.toml").unwrap();
    let paths = common::host_paths(tmp.path());
    // people 900 and 901 (derived members) are on the third page of users
    fake.lock().unwrap().users = 1000;
    fake.lock().unwrap().expire_next = true;
    let r = sync(&config, &paths, false).unwrap();
    assert_eq!(r.completed, Completed::Published);
    // 250 direct + 2 derived, less the suspended one
    assert_eq!(r.users, 251);
    let snapshot = std::fs::read(paths.state_dir.join("snapshot")).unwrap();
    let s = zt_snapshot::Snapshot::parse(&snapshot).unwrap();
    let seven = s.user_by_name(b"user7").unwrap().expect("user7");
    assert_eq!(seven.uid, 42007, "posixAccounts uid in the directory range");
    assert!(s.user_by_name(b"user901").unwrap().is_some());
    assert!(s.user_by_name(b"user3").unwrap().is_none());
    assert!(
        s.user_by_name(b"user600").unwrap().is_none(),
        "not a member"
    );
    let private_file = std::fs::read(paths.state_dir.join("private")).unwrap();
    let p = zt_snapshot::Private::parse(&private_file).unwrap();
    let keys = (0..p.user_count())
        .filter_map(|i| p.keys(i).ok())
        .map(|k| k.len())
        .sum::<usize>();
    assert_eq!(keys, 1, "seven's one SSH key");
    // token requests: the first, and one after the expired token
    assert_eq!(server.count(|q| q.path() == "/token"), 2);

    // a key file others can read is refused before anything is signed
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = sync(&config, &paths, false).unwrap_err();
    assert_eq!(
        e.kind,
        FailureKind::Directory(DirectoryFailure::Unauthorised)
    );
    assert!(!e.message.contains("PRIVATE KEY"), "{e}");
}
