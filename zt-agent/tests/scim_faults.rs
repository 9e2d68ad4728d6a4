//! `kind = "scim"` against a misbehaving server (the real, well-behaved one
//! is in tests/e2e/tests/connectors.rs): a server that ignores `startIndex`,
//! a 200 whose body is not a ListResponse, a member the listing never shows.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::fake_http::{FakeServer, Request, Response};
use serde_json::json;
use zt_agent::config::{AgentConfig, DirectorySource, HttpConfig};
use zt_agent::directory::error::DirectoryFailure;
use zt_agent::directory::scim;
use zt_agent::http::Http;

const TOKEN: &str = "test-only-scim";

fn user(n: usize) -> serde_json::Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": format!("u{n}"),
           "userName": format!("user{n}"), "emails": [{"value": format!("user{n}@example.com"), "primary": true}],
           "active": true, "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z"}})
}

fn read(
    answer: impl Fn(&Request) -> Response + Send + Sync + 'static,
) -> (
    Result<zt_agent::directory::Directory, zt_agent::directory::error::DirectoryError>,
    FakeServer,
) {
    let server = FakeServer::start(move |r| {
        if r.authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
            return Response::json(401, "{}");
        }
        if r.path() == "/scim/v2/Groups/g1" {
            return Response::json(
                200,
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1",
                       "displayName": "sre", "members": [{"value": "u1", "type": "User"},
                                                         {"value": "u9", "type": "User"}]})
                .to_string(),
            );
        }
        answer(r)
    });
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("scim.token");
    std::fs::write(&token, TOKEN).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "[directory]\nkind = \"scim\"\nurl = \"{}/scim/v2\"\ntoken_file = \"{}\"\n\n\
         [users]\ndomains = [\"example.com\"]\n\n[[groups]]\nid = \"g1\"\nname = \"sre\"\n",
        server.base,
        token.display()
    );
    let config = AgentConfig::parse(&text, "agent.toml").unwrap();
    let DirectorySource::Scim(source) = &config.directory.source else {
        panic!("scim")
    };
    let http = Http::new(&HttpConfig::default()).unwrap();
    let mut api = scim::connect(&http, source).unwrap();
    (
        scim::read(&mut api, &source.url, &["g1".to_string()]),
        server,
    )
}

#[test]
fn a_server_that_ignores_start_index_is_not_paged_forever() {
    let (d, server) = read(|_| {
        Response::json(
            200,
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                   "totalResults": 100000, "startIndex": 1, "itemsPerPage": 2,
                   "Resources": [user(1), user(2)]})
            .to_string(),
        )
    });
    let e = d.unwrap_err();
    assert_eq!(e.kind, DirectoryFailure::Malformed);
    assert!(e.message.contains("the same page again"), "{e}");
    assert_eq!(server.requests().len(), 3, "the group and two pages");
}

#[test]
fn a_200_that_is_not_a_list_response_fails_the_read() {
    let (d, _) = read(|_| {
        Response::json(
            200,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"200","totalResults":0}"#,
        )
    });
    assert_eq!(d.unwrap_err().kind, DirectoryFailure::Malformed);
}

#[test]
fn a_member_the_listing_missed_is_read_by_id() {
    let (d, server) = read(|r| match r.path() {
        "/scim/v2/Users" => Response::json(
            200,
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                   "totalResults": 1, "startIndex": 1, "itemsPerPage": 1, "Resources": [user(1)]})
            .to_string(),
        ),
        "/scim/v2/Users/u9" => Response::json(200, user(9).to_string()),
        _ => Response::json(404, "{}"),
    });
    let d = d.unwrap();
    assert_eq!(d.users.len(), 2);
    assert_eq!(server.count(|r| r.path() == "/scim/v2/Users/u9"), 1);
}
