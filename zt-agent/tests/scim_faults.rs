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

type Read = (
    Result<zt_agent::directory::Directory, zt_agent::directory::error::DirectoryError>,
    FakeServer,
);

fn read(answer: impl Fn(&Request) -> Response + Send + Sync + 'static) -> Read {
    read_group(
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1",
               "displayName": "sre", "members": [{"value": "u1", "type": "User"},
                                                 {"value": "u9", "type": "User"}]}),
        answer,
    )
}

/// As [`read`], group g1 answering `group`.
fn read_group(
    group: serde_json::Value,
    answer: impl Fn(&Request) -> Response + Send + Sync + 'static,
) -> Read {
    let group = group.to_string();
    let server = FakeServer::start(move |r| {
        if r.authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
            return Response::json(401, "{}");
        }
        if r.path() == "/scim/v2/Groups/g1" {
            return Response::json(200, group.clone());
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

/// The people of a well-behaved `/Users` listing (u1, u2, u9).
fn users(r: &Request) -> Response {
    match r.path() {
        "/scim/v2/Users" => Response::json(
            200,
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                   "totalResults": 3, "startIndex": 1, "itemsPerPage": 3,
                   "Resources": [user(1), user(2), user(9)]})
            .to_string(),
        ),
        _ => Response::json(404, "{}"),
    }
}

#[test]
fn one_bad_member_is_left_out_alone_not_the_group() {
    // `value` is required (RFC 7643 4.2); a `$ref`-only member used to fail
    // the whole group, which then looked empty and its people went
    let (d, _) = read_group(
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1",
               "displayName": "sre", "members": [
                   {"value": "u1", "type": "User"},
                   {"$ref": "https://idp.example.com/scim/v2/Users/u2", "type": "User"},
                   {"value": 7, "type": "User"},
                   {"value": "u9", "type": "User"}]}),
        users,
    );
    let d = d.unwrap();
    let ids: Vec<&str> = d.users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["u1", "u9"]);
    assert_eq!(d.groups.len(), 1);
    assert_eq!(d.groups[0].members, ["u1", "u9"]);
    assert_eq!(
        d.problems
            .iter()
            .filter(|p| p.contains("g1") && p.contains("member left out"))
            .count(),
        2,
        "{:?}",
        d.problems
    );
}

#[test]
fn a_configured_group_that_does_not_parse_fails_the_read() {
    // left out, it would look empty and remove all its people
    for group in [
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1",
               "displayName": "sre", "members": {"value": "u1"}}),
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
               "displayName": "sre", "members": []}),
    ] {
        let (d, _) = read_group(group, users);
        let e = d.unwrap_err();
        assert_eq!(e.kind, DirectoryFailure::Malformed);
        assert!(e.message.contains("not a SCIM group"), "{e}");
    }
}

#[test]
fn a_nested_group_that_does_not_parse_fails_the_read() {
    let (d, _) = read_group(
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1",
               "displayName": "sre", "members": [{"value": "u1", "type": "User"},
                                                 {"value": "g2", "type": "Group"}]}),
        |r| match r.path() {
            "/scim/v2/Groups/g2" => Response::json(200, r#"{"id":"g2","members":"u9"}"#),
            _ => users(r),
        },
    );
    let e = d.unwrap_err();
    assert_eq!(e.kind, DirectoryFailure::Malformed);
    assert!(e.message.contains("/Groups/g2"), "{e}");
}

#[test]
fn a_user_read_by_id_must_be_that_user() {
    let (d, _) = read(|r| match r.path() {
        "/scim/v2/Users" => Response::json(
            200,
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                   "totalResults": 1, "startIndex": 1, "itemsPerPage": 1, "Resources": [user(1)]})
            .to_string(),
        ),
        // someone else's record for u9
        "/scim/v2/Users/u9" => Response::json(200, user(2).to_string()),
        _ => Response::json(404, "{}"),
    });
    let e = d.unwrap_err();
    assert_eq!(e.kind, DirectoryFailure::Malformed);
    assert!(e.message.contains("answered user"), "{e}");
}
