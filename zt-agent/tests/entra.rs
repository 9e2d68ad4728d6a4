//! `kind = "entra"` against a local fake Microsoft Graph (tests/common/graph.rs)
//! answering in the documented shapes: delta queries paged over many pages,
//! 429 storms with Retry-After, 5xx, a failing third page, malformed JSON, a
//! 200 with an error body, an expired token, hostile paging links, delta
//! rounds with additions, removals and `@removed`, a 410 Gone, nested groups,
//! and whole syncs into a temporary state directory (nothing published on
//! failure, disables and removals applied, a mass removal held back).

mod common;

use std::cell::Cell;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use common::fake_http::Response;
use common::graph::{CLIENT_ID, FakeGraph, Fault, GraphUser, SECRET, TENANT};
use zt_agent::config::{AgentConfig, DirectorySource, HttpConfig};
use zt_agent::directory::api::RetryPolicy;
use zt_agent::directory::entra;
use zt_agent::directory::error::DirectoryFailure;
use zt_agent::http::Http;
use zt_agent::outcome::{Completed, FailureKind};
use zt_agent::sync::{Paths, sync};

const SRE: &str = "6b1f0d7e-0000-4000-8000-00000000a001";

struct Host {
    tmp: tempfile::TempDir,
    graph: FakeGraph,
    config: AgentConfig,
    paths: Paths,
}

impl Host {
    fn new() -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let secret = tmp.path().join("entra.secret");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let graph = FakeGraph::start();
        let text = format!(
            r#"
[directory]
kind = "entra"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
client_secret_file = "{}"
graph_url = "{base}"
login_url = "{base}"
max_removal_percent = 30

[users]
domains = ["example.com"]

[[groups]]
id = "{SRE}"
name = "sre"
login = true
"#,
            secret.display(),
            base = graph.base(),
        );
        let config = AgentConfig::parse(&text, "agent.toml").unwrap();
        let paths = common::host_paths(tmp.path());
        Host {
            tmp,
            graph,
            config,
            paths,
        }
    }

    fn delta_path(&self) -> PathBuf {
        self.paths.state_dir.join("entra-delta.json")
    }

    fn secret_path(&self) -> PathBuf {
        self.tmp.path().join("entra.secret")
    }

    fn published_users(&self) -> Vec<String> {
        let bytes = std::fs::read(self.paths.state_dir.join("snapshot")).unwrap();
        let s = zt_snapshot::Snapshot::parse(&bytes).unwrap();
        (0..s.user_count())
            .map(|i| String::from_utf8(s.user_name(i).unwrap().to_vec()).unwrap())
            .collect()
    }
}

thread_local! {
    /// Waits the reads of this test thread asked for (tests run in parallel).
    static SLEPT_MS: Cell<u64> = const { Cell::new(0) };
}

fn record_sleep(d: Duration) {
    SLEPT_MS.with(|s| s.set(s.get() + d.as_millis() as u64));
}

/// Reads the directory directly, with fast retries and recorded waits.
fn read(
    h: &Host,
) -> (
    Result<zt_agent::directory::Directory, zt_agent::directory::error::DirectoryError>,
    u64,
) {
    let DirectorySource::Entra(source) = &h.config.directory.source else {
        panic!("entra config")
    };
    let http = Http::new(&HttpConfig::default()).unwrap();
    let mut api = entra::connect(&http, source).unwrap();
    api.policy = RetryPolicy {
        attempts: 4,
        base: Duration::from_millis(1),
        max_wait: Duration::from_secs(30),
    };
    api.sleep = record_sleep;
    let r = entra::read(&mut api, source, &[SRE.to_string()], None);
    (r.map(|(d, _)| d), api.requests)
}

fn status(code: u16) -> fn(&str) -> Response {
    match code {
        429 => |_| {
            Response::json(
                429,
                r#"{"error":{"code":"TooManyRequests","message":"Too many requests"}}"#,
            )
            .header("Retry-After", "2")
        },
        503 => |_| {
            Response::json(
                503,
                r#"{"error":{"code":"ServiceUnavailable","message":"x"}}"#,
            )
        },
        _ => |_| Response::json(500, "{}"),
    }
}

#[test]
fn many_pages_make_one_directory() {
    let h = Host::new();
    h.graph.populate(SRE, "SRE team", 95);
    let (d, requests) = read(&h);
    let d = d.unwrap();
    assert_eq!(d.users.len(), 95);
    assert_eq!(d.groups.len(), 1);
    assert_eq!(d.groups[0].name, "SRE team");
    assert_eq!(d.groups[0].members.len(), 95);
    // 10 pages of 10 people, then one of groups
    assert_eq!(requests, 11);
    assert_eq!(h.graph.graph_requests(), 11);
    assert_eq!(h.graph.delta_requests("users"), 10);
    assert_eq!(h.graph.token_requests(), 1);
    let u = d
        .users
        .iter()
        .find(|u| u.email == "user7@example.com")
        .unwrap();
    assert_eq!(u.created.as_deref(), Some("2024-01-01T00:07:00Z"));
    assert!(u.enabled);
    assert!(d.problems.is_empty(), "{:?}", d.problems);
}

#[test]
fn a_429_storm_is_ridden_out_honouring_retry_after() {
    let h = Host::new();
    h.graph.populate(SRE, "sre", 35);
    h.graph.fault(Fault {
        path_contains: "users/delta".into(),
        skiptoken: Some(20),
        times: 3,
        answer: status(429),
    });
    let (d, requests) = read(&h);
    assert_eq!(d.unwrap().users.len(), 35);
    assert_eq!(requests, 4 + 3 + 1);
    // three waits of the server's Retry-After: 2, not our backoff
    assert_eq!(SLEPT_MS.with(Cell::get), 6000);
}

#[test]
fn endless_throttling_fails_as_throttled_with_the_servers_retry_after() {
    let h = Host::new();
    h.graph.populate(SRE, "sre", 35);
    h.graph.fault(Fault {
        path_contains: "users/delta".into(),
        skiptoken: None,
        times: usize::MAX,
        answer: status(429),
    });
    let (d, requests) = read(&h);
    let e = d.unwrap_err();
    assert_eq!(e.kind, DirectoryFailure::Throttled);
    assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
    assert_eq!(requests, 4, "bounded attempts");
}

#[test]
fn a_failing_third_page_fails_the_read() {
    let h = Host::new();
    h.graph.populate(SRE, "sre", 35);
    h.graph.fault(Fault {
        path_contains: "users/delta".into(),
        skiptoken: Some(20),
        times: usize::MAX,
        answer: status(503),
    });
    let (d, _) = read(&h);
    let e = d.unwrap_err();
    assert_eq!(e.kind, DirectoryFailure::Unavailable);
    assert!(e.message.contains("HTTP 503"), "{e}");
    // a transient 5xx is retried, then the page comes
    h.graph.state.lock().unwrap().faults.clear();
    h.graph.fault(Fault {
        path_contains: "users/delta".into(),
        skiptoken: Some(20),
        times: 2,
        answer: status(500),
    });
    assert_eq!(read(&h).0.unwrap().users.len(), 35);
}

#[test]
fn malformed_answers_are_malformed() {
    for answer in [
        (|_: &str| Response::json(200, r#"{"value":[{"id":"x","#)) as fn(&str) -> Response,
        // a 200 with an error body is not an empty page
        |_| Response::json(200, r#"{"error":{"code":"x","message":"y"}}"#),
        |_| Response::json(200, "<html>proxy login</html>"),
        |_| Response::json(200, r#"{"value":{"id":"not a list"}}"#),
    ] {
        let h = Host::new();
        h.graph.populate(SRE, "sre", 35);
        h.graph.fault(Fault {
            path_contains: "users/delta".into(),
            skiptoken: Some(10),
            times: usize::MAX,
            answer,
        });
        let e = read(&h).0.unwrap_err();
        assert_eq!(e.kind, DirectoryFailure::Malformed, "{e}");
    }
}

#[test]
fn bad_entries_are_left_out_alone() {
    let h = Host::new();
    let users = h.graph.populate(SRE, "sre", 12);
    {
        let mut st = h.graph.state.lock().unwrap();
        let u = st.users.get_mut(&users[3].id).unwrap();
        u.mail = None;
        u.upn = String::new();
    }
    let d = read(&h).0.unwrap();
    assert_eq!(d.users.len(), 11);
    assert_eq!(d.left_out(&users[3].id), Some(false));
    assert!(d.problems[0].contains("neither mail"), "{:?}", d.problems);
}

#[test]
fn an_expired_token_is_renewed_once() {
    let h = Host::new();
    h.graph.populate(SRE, "sre", 35);
    h.graph.state.lock().unwrap().expire_after = Some(2);
    let (d, _) = read(&h);
    assert_eq!(d.unwrap().users.len(), 35);
    assert_eq!(h.graph.token_requests(), 2);
    // a token refused again right after renewal is unauthorised, not a loop
    let h = Host::new();
    h.graph.populate(SRE, "sre", 35);
    h.graph.fault(Fault {
        path_contains: "users/delta".into(),
        skiptoken: None,
        times: usize::MAX,
        answer: |_| {
            Response::json(
                401,
                r#"{"error":{"code":"InvalidAuthenticationToken","message":"x"}}"#,
            )
        },
    });
    let e = read(&h).0.unwrap_err();
    assert_eq!(e.kind, DirectoryFailure::Unauthorised);
    assert_eq!(h.graph.token_requests(), 2);
}

#[test]
fn paging_links_elsewhere_or_in_a_loop_are_refused() {
    let other = FakeGraph::start();
    let h = Host::new();
    h.graph.populate(SRE, "sre", 35);
    h.graph.state.lock().unwrap().link_base = Some(other.base().to_string());
    let e = read(&h).0.unwrap_err();
    assert_eq!(e.kind, DirectoryFailure::Malformed);
    assert!(e.message.contains("not at the configured"), "{e}");
    assert_eq!(other.server.requests().len(), 0, "our token went elsewhere");

    // a delta link elsewhere is refused before it is saved
    let h = Host::new();
    h.graph.populate(SRE, "sre", 5);
    h.graph.state.lock().unwrap().link_base = Some(other.base().to_string());
    let e = sync(&h.config, &h.paths, false).unwrap_err();
    assert!(e.message.contains("a delta link elsewhere"), "{e}");
    assert!(!h.delta_path().exists());
    assert_eq!(other.server.requests().len(), 0);

    let h = Host::new();
    h.graph.populate(SRE, "sre", 35);
    h.graph.state.lock().unwrap().loop_links = true;
    let e = read(&h).0.unwrap_err();
    assert!(e.message.contains("loop"), "{e}");
}

#[test]
fn credentials_problems_are_unauthorised_and_never_show_the_secret() {
    let h = Host::new();
    h.graph.populate(SRE, "sre", 3);
    // world readable: refused before it is sent anywhere
    std::fs::set_permissions(h.secret_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = read(&h).0.unwrap_err();
    assert_eq!(e.kind, DirectoryFailure::Unauthorised);
    assert!(e.message.contains("every user read this secret"), "{e}");
    assert_eq!(h.graph.token_requests(), 0);
    // a wrong secret: the IdP's reason, never the secret
    std::fs::write(h.secret_path(), "wrong-secret-value\n").unwrap();
    std::fs::set_permissions(h.secret_path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = read(&h).0.unwrap_err();
    assert_eq!(e.kind, DirectoryFailure::Unauthorised);
    assert!(e.message.contains("invalid_client"), "{e}");
    assert!(!e.message.contains("wrong-secret-value"), "{e}");
    assert!(!format!("{e:?}").contains("wrong-secret-value"));
}

#[test]
fn echoed_credentials_are_redacted_from_errors() {
    // a token endpoint that echoes the form: the secret never reaches the
    // message (which is logged and kept in status.json)
    let h = Host::new();
    h.graph.populate(SRE, "sre", 3);
    h.graph.state.lock().unwrap().echo_token_requests = true;
    let e = read(&h).0.unwrap_err();
    assert_eq!(e.kind, DirectoryFailure::Unauthorised);
    assert!(e.message.contains("AADSTS7000215"), "{e}");
    assert!(!e.message.contains(SECRET), "{e}");
    assert!(e.message.contains("[redacted]"), "{e}");
    // Graph (or a proxy) echoing the Authorization header: nor the token
    let h = Host::new();
    h.graph.populate(SRE, "sre", 3);
    h.graph.state.lock().unwrap().echo_graph_requests = true;
    let e = sync(&h.config, &h.paths, false).unwrap_err();
    assert_eq!(
        e.kind,
        FailureKind::Directory(DirectoryFailure::Unauthorised)
    );
    assert!(e.message.contains("Insufficient privileges"), "{e}");
    assert!(!e.message.contains("tok-1"), "{e}");
    let status = std::fs::read_to_string(h.paths.state_dir.join("status.json")).unwrap();
    assert!(!status.contains("tok-1"), "{status}");
    assert!(status.contains("[redacted]"), "{status}");
}

#[test]
fn a_missing_configured_group_is_no_error_but_reported() {
    let h = Host::new();
    let r = sync(&h.config, &h.paths, false).unwrap();
    assert_eq!(r.users, 0);
    assert!(
        r.resolution
            .problems
            .iter()
            .any(|p| p.contains("not in the directory")),
        "{:?}",
        r.resolution.problems
    );
}

#[test]
fn whole_syncs_publish_only_complete_reads() {
    let h = Host::new();
    let users = h.graph.populate(SRE, "sre", 35);
    let r = sync(&h.config, &h.paths, false).unwrap();
    assert_eq!(r.completed, Completed::Published);
    assert_eq!(r.users, 35);
    assert!(h.published_users().contains(&"user0".to_string()));
    let saved = std::fs::read(h.delta_path()).unwrap();
    let mode = std::fs::metadata(h.delta_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // the groups query answers garbage: nothing changes, the error is typed
    // and shown by status, and the delta state stays where it was
    h.graph.fault(Fault {
        path_contains: "groups/delta".into(),
        skiptoken: None,
        times: 1,
        answer: |_| Response::json(200, r#"{"value":[{"id":"x","#),
    });
    h.graph
        .state
        .lock()
        .unwrap()
        .groups
        .get_mut(SRE)
        .unwrap()
        .1
        .truncate(30);
    let e = sync(&h.config, &h.paths, false).unwrap_err();
    assert_eq!(e.kind, FailureKind::Directory(DirectoryFailure::Malformed));
    assert_eq!(h.published_users().len(), 35);
    assert_eq!(std::fs::read(h.delta_path()).unwrap(), saved);
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(h.paths.state_dir.join("status.json")).unwrap())
            .unwrap();
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("not the expected JSON")
    );

    // the next good read applies: 5 removed, one disabled, in one page per query
    h.graph
        .state
        .lock()
        .unwrap()
        .users
        .get_mut(&users[0].id)
        .unwrap()
        .enabled = false;
    let before = h.graph.graph_requests();
    let r = sync(&h.config, &h.paths, false).unwrap();
    assert_eq!(h.graph.graph_requests() - before, 2);
    assert_eq!(r.completed, Completed::Published);
    assert_eq!(r.users, 29);
    assert!(!h.published_users().contains(&"user0".to_string()));
    assert!(!h.published_users().contains(&"user34".to_string()));

    // most of the group gone at once: held back (30% limit)
    {
        let mut st = h.graph.state.lock().unwrap();
        st.groups.get_mut(SRE).unwrap().1.truncate(5);
    }
    let r = sync(&h.config, &h.paths, false).unwrap();
    assert_eq!(r.completed, Completed::HeldBack);
    assert_eq!(h.published_users().len(), 29);
    // the delta link moved on, yet forcing still knows who left
    let r = sync(&h.config, &h.paths, true).unwrap();
    assert_eq!(r.completed, Completed::Published);
    assert_eq!(h.published_users().len(), 4);
}

#[test]
fn a_delta_round_applies_additions_removals_and_removed_people() {
    let h = Host::new();
    let users = h.graph.populate(SRE, "sre", 40);
    // people outside the group: in the tenant, never on the host
    {
        let mut st = h.graph.state.lock().unwrap();
        for n in 100..110 {
            let u = GraphUser::new(n);
            st.users.insert(u.id.clone(), u);
        }
    }
    sync(&h.config, &h.paths, false).unwrap();
    assert_eq!(h.published_users().len(), 40);
    assert!(!h.published_users().contains(&"user100".to_string()));
    {
        let mut st = h.graph.state.lock().unwrap();
        // user5 deleted from the tenant (Graph drops the membership too)
        st.users.remove(&users[5].id);
        let members = &mut st.groups.get_mut(SRE).unwrap().1;
        members.retain(|m| *m != users[5].id && *m != users[6].id);
        // user100 joins; user7 gets another address
        members.push(GraphUser::new(100).id);
        st.users.get_mut(&users[7].id).unwrap().mail = Some("seven@example.com".into());
    }
    let before = h.graph.graph_requests();
    let r = sync(&h.config, &h.paths, false).unwrap();
    assert_eq!(
        h.graph.graph_requests() - before,
        2,
        "one page per delta query"
    );
    assert_eq!(r.completed, Completed::Published);
    let published = h.published_users();
    assert_eq!(published.len(), 39);
    assert!(published.contains(&"user100".to_string()));
    // the changed address reached the host (the name follows it)
    assert!(published.contains(&"seven".to_string()), "{published:?}");
    for gone in ["user5", "user6", "user7"] {
        assert!(!published.contains(&gone.to_string()));
    }
    // nothing changed: still two requests, nothing new
    let before = h.graph.graph_requests();
    let r = sync(&h.config, &h.paths, false).unwrap();
    assert_eq!(h.graph.graph_requests() - before, 2);
    assert_eq!(r.completed, Completed::Unchanged);
}

#[test]
fn an_expired_delta_link_starts_over_in_the_same_sync() {
    let h = Host::new();
    h.graph.populate(SRE, "sre", 25);
    sync(&h.config, &h.paths, false).unwrap();
    h.graph.fault(Fault {
        path_contains: "$deltatoken".into(),
        skiptoken: None,
        times: 2,
        answer: |_| {
            Response::json(
                410,
                r#"{"error":{"code":"resyncRequired","message":"Resync required. Replace any local items with the server's version (including deletes)."}}"#,
            )
        },
    });
    h.graph
        .state
        .lock()
        .unwrap()
        .groups
        .get_mut(SRE)
        .unwrap()
        .1
        .truncate(20);
    let before = h.graph.graph_requests();
    let r = sync(&h.config, &h.paths, false).unwrap();
    assert_eq!(r.users, 20);
    // users: 410 then 3 pages from scratch; groups: 410 then 1 page
    assert_eq!(h.graph.graph_requests() - before, 1 + 3 + 1 + 1);
}

#[test]
fn a_group_delta_entry_that_cannot_be_applied_fails_the_read_and_keeps_the_link() {
    // past an entry it could not apply, the saved link would never send that
    // change again: the read fails and the next sync asks from the same link
    let h = Host::new();
    h.graph.populate(SRE, "sre", 25);
    sync(&h.config, &h.paths, false).unwrap();
    let saved = std::fs::read(h.delta_path()).unwrap();
    h.graph
        .state
        .lock()
        .unwrap()
        .groups
        .get_mut(SRE)
        .unwrap()
        .1
        .truncate(20);
    for bad in [
        // members@delta not a list
        format!(r##"{{"@odata.type":"#microsoft.graph.group","id":"{SRE}","members@delta":"x"}}"##),
        // no id
        r##"{"@odata.type":"#microsoft.graph.group","displayName":"sre"}"##.to_string(),
    ] {
        h.graph.state.lock().unwrap().extra_group_entry = Some(bad);
        let e = sync(&h.config, &h.paths, false).unwrap_err();
        assert_eq!(e.kind, FailureKind::Directory(DirectoryFailure::Malformed));
        assert!(e.message.contains("cannot be applied"), "{e}");
        assert_eq!(std::fs::read(h.delta_path()).unwrap(), saved);
        assert_eq!(h.published_users().len(), 25);
    }
    // Graph answers well again: the change still comes, from the old link
    h.graph.state.lock().unwrap().extra_group_entry = None;
    let r = sync(&h.config, &h.paths, false).unwrap();
    assert_eq!(r.completed, Completed::Published);
    assert_eq!(r.users, 20);
}

#[test]
fn a_users_delta_entry_without_an_id_fails_the_read() {
    let h = Host::new();
    h.graph.populate(SRE, "sre", 5);
    h.graph.fault(Fault {
        path_contains: "users/delta".into(),
        skiptoken: None,
        times: usize::MAX,
        answer: |_| {
            Response::json(
                200,
                r#"{"value":[{"accountEnabled":false}],"@odata.deltaLink":"http://127.0.0.1:1/v1.0/users/delta?$deltatoken=9"}"#,
            )
        },
    });
    let e = read(&h).0.unwrap_err();
    assert_eq!(e.kind, DirectoryFailure::Malformed);
    assert!(e.message.contains("without an id"), "{e}");
}

#[test]
fn a_delta_link_graph_forgot_400_sync_state_not_found_starts_over() {
    // a host offline for more than 7 days: Graph answers its saved links
    // 400 syncStateNotFound; every later sync must not fail on them forever
    let h = Host::new();
    h.graph.populate(SRE, "sre", 25);
    sync(&h.config, &h.paths, false).unwrap();
    h.graph.expire_delta_links();
    h.graph
        .state
        .lock()
        .unwrap()
        .groups
        .get_mut(SRE)
        .unwrap()
        .1
        .truncate(20);
    let before = h.graph.graph_requests();
    let r = sync(&h.config, &h.paths, false).unwrap();
    assert_eq!(r.completed, Completed::Published);
    assert_eq!(r.users, 20);
    // users: 400 then 3 pages from scratch; groups: 400 then 1 page
    assert_eq!(h.graph.graph_requests() - before, 1 + 3 + 1 + 1);
    // the new links are used from then on
    let before = h.graph.graph_requests();
    let r = sync(&h.config, &h.paths, false).unwrap();
    assert_eq!(r.completed, Completed::Unchanged);
    assert_eq!(h.graph.graph_requests() - before, 2);
}

#[test]
fn a_saved_delta_state_older_than_six_days_is_not_used() {
    let h = Host::new();
    h.graph.populate(SRE, "sre", 25);
    sync(&h.config, &h.paths, false).unwrap();
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(h.delta_path()).unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now - state["saved_at"].as_u64().unwrap() < 60);
    state["saved_at"] = (now - 6 * 24 * 3600 - 1).into();
    std::fs::write(h.delta_path(), serde_json::to_vec(&state).unwrap()).unwrap();
    let before = h.graph.graph_requests();
    let r = sync(&h.config, &h.paths, false).unwrap();
    assert_eq!(r.users, 25);
    // from scratch (3 pages of people, 1 of groups), no expired link tried
    assert_eq!(h.graph.graph_requests() - before, 3 + 1);
    assert_eq!(
        h.graph.server.count(|r| r.target.contains("$deltatoken")),
        0
    );
}

#[test]
fn nested_groups_are_found_and_followed() {
    const NESTED: &str = "6b1f0d7e-0000-4000-8000-00000000b002";
    let h = Host::new();
    let users = h.graph.populate(SRE, "sre", 3);
    {
        let mut st = h.graph.state.lock().unwrap();
        let extra = GraphUser::new(200);
        st.users.insert(extra.id.clone(), extra.clone());
        st.groups.insert(
            NESTED.into(),
            ("oncall".into(), vec![extra.id, users[0].id.clone()]),
        );
        st.groups.get_mut(SRE).unwrap().1.push(NESTED.into());
    }
    let r = sync(&h.config, &h.paths, false).unwrap();
    assert_eq!(r.users, 4);
    assert!(h.published_users().contains(&"user200".to_string()));
    // a second groups query tracks the nested group
    assert_eq!(h.graph.delta_requests("groups"), 2);
    h.graph
        .state
        .lock()
        .unwrap()
        .groups
        .get_mut(NESTED)
        .unwrap()
        .1
        .remove(0);
    let r = sync(&h.config, &h.paths, false).unwrap();
    assert_eq!(r.users, 3);
    assert!(!h.published_users().contains(&"user200".to_string()));
}

#[test]
fn the_idp_down_at_start_keeps_the_persisted_snapshot() {
    let h = Host::new();
    h.graph.populate(SRE, "sre", 5);
    sync(&h.config, &h.paths, false).unwrap();
    // Graph answers 404 for everything on another port: point at a closed port
    let mut config = h.config.clone();
    if let DirectorySource::Entra(s) = &mut config.directory.source {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        s.login_url = format!("http://127.0.0.1:{port}");
        s.graph_url = format!("http://127.0.0.1:{port}");
    }
    let started = std::time::Instant::now();
    let e = sync(&config, &h.paths, false).unwrap_err();
    assert_eq!(
        e.kind,
        FailureKind::Directory(DirectoryFailure::Unavailable)
    );
    assert_eq!(h.published_users().len(), 5);
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_huge_answer_is_cut_off_not_read_into_memory() {
    let h = Host::new();
    h.graph.populate(SRE, "sre", 5);
    h.graph.fault(Fault {
        path_contains: "users/delta".into(),
        skiptoken: None,
        times: usize::MAX,
        answer: |_| {
            // one string value larger than the 64 MiB cap, valid JSON so far
            let mut body = br#"{"value":[{"id":""#.to_vec();
            body.resize(body.len() + 65 * 1024 * 1024, b'a');
            body.extend_from_slice(br#""}]}"#);
            Response {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body,
            }
        },
    });
    let (d, requests) = read(&h);
    let e = d.unwrap_err();
    assert_eq!(e.kind, DirectoryFailure::Malformed, "{e}");
    assert!(e.message.contains("larger than 67108864 bytes"), "{e}");
    assert_eq!(requests, 1, "a cut-off answer is not asked for again");
}

#[test]
fn a_retry_after_beyond_our_patience_ends_the_sync_at_once() {
    let h = Host::new();
    h.graph.populate(SRE, "sre", 5);
    h.graph.fault(Fault {
        path_contains: "users/delta".into(),
        skiptoken: None,
        times: usize::MAX,
        answer: |_| {
            Response::json(
                429,
                r#"{"error":{"code":"TooManyRequests","message":"Too many requests"}}"#,
            )
            .header("Retry-After", "3600")
        },
    });
    let (d, requests) = read(&h);
    let e = d.unwrap_err();
    assert_eq!(e.kind, DirectoryFailure::Throttled);
    assert_eq!(e.retry_after, Some(Duration::from_secs(3600)));
    assert_eq!(requests, 1);
    assert_eq!(SLEPT_MS.with(Cell::get), 0);
}

#[test]
fn a_retry_after_on_a_5xx_is_not_followed() {
    // a maintenance page asking for a day: our own backoff, and no
    // Retry-After handed to the daemon (which would stop syncing for a day)
    let h = Host::new();
    h.graph.populate(SRE, "sre", 5);
    h.graph.fault(Fault {
        path_contains: "users/delta".into(),
        skiptoken: None,
        times: usize::MAX,
        answer: |_| Response::json(503, "{}").header("Retry-After", "86400"),
    });
    let (d, requests) = read(&h);
    let e = d.unwrap_err();
    assert_eq!(e.kind, DirectoryFailure::Unavailable);
    assert_eq!(e.retry_after, None);
    assert_eq!(requests, 4, "retried with backoff");
    assert!(SLEPT_MS.with(Cell::get) < 1000);
    // and the same at the token endpoint: two maintenance answers, then a token
    let h = Host::new();
    h.graph.populate(SRE, "sre", 5);
    h.graph.fault(Fault {
        path_contains: "/oauth2/v2.0/token".into(),
        skiptoken: None,
        times: 2,
        answer: |_| Response::json(503, "{}").header("Retry-After", "86400"),
    });
    let (d, _) = read(&h);
    assert_eq!(d.unwrap().users.len(), 5);
    assert_eq!(h.graph.token_requests(), 3);
}

#[test]
fn a_read_that_runs_past_its_deadline_fails() {
    // an IdP that answers slowly and badly for ever: the read ends at its
    // deadline (30 min in production), not after every retry it could make
    let h = Host::new();
    h.graph.populate(SRE, "sre", 5);
    h.graph.fault(Fault {
        path_contains: "users/delta".into(),
        skiptoken: None,
        times: usize::MAX,
        answer: |_| {
            std::thread::sleep(Duration::from_millis(100));
            Response::json(503, "{}")
        },
    });
    let DirectorySource::Entra(source) = &h.config.directory.source else {
        panic!("entra config")
    };
    let http = Http::new(&HttpConfig::default()).unwrap();
    let mut api = entra::connect(&http, source).unwrap();
    api.policy = RetryPolicy {
        attempts: 100,
        base: Duration::from_millis(1),
        max_wait: Duration::from_millis(1),
    };
    assert_eq!(api.deadline, Duration::from_secs(1800));
    api.deadline = Duration::from_millis(600);
    let started = std::time::Instant::now();
    let e = entra::read(&mut api, source, &[SRE.to_string()], None).unwrap_err();
    assert_eq!(e.kind, DirectoryFailure::Unavailable);
    assert!(e.message.contains("took longer than"), "{e}");
    assert!(api.requests < 10, "{} requests", api.requests);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_slow_read_that_keeps_making_progress_is_not_cut_off() {
    // the deadline counts from the last good page, not from the start: a
    // large tenant's first read may take hours, and nothing of a partial
    // read is kept, so a total bound would fail it every time
    let h = Host::new();
    h.graph.populate(SRE, "sre", 45);
    h.graph.state.lock().unwrap().page_delay = Duration::from_millis(60);
    let DirectorySource::Entra(source) = &h.config.directory.source else {
        panic!("entra config")
    };
    let http = Http::new(&HttpConfig::default()).unwrap();
    let mut api = entra::connect(&http, source).unwrap();
    api.deadline = Duration::from_millis(250);
    let started = std::time::Instant::now();
    let read = entra::read(&mut api, source, &[SRE.to_string()], None).unwrap();
    assert!(
        started.elapsed() > Duration::from_millis(300),
        "the read as a whole took longer than the deadline: {:?}",
        started.elapsed()
    );
    assert_eq!(read.0.users.len(), 45);
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl {args:?}");
    out.stdout
}

#[test]
fn certificate_credentials_sign_a_client_assertion() {
    use base64::Engine;
    use sha2::Digest;
    let h = Host::new();
    h.graph.populate(SRE, "sre", 3);
    let dir = h.tmp.path();
    let (cert, key) = (dir.join("entra.crt"), dir.join("entra.key"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=zt-agent",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o644)).unwrap();
    let public = openssl(&["x509", "-pubkey", "-noout", "-in", cert.to_str().unwrap()]);
    let der = openssl(&["x509", "-outform", "DER", "-in", cert.to_str().unwrap()]);
    let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der));
    h.graph.state.lock().unwrap().certificate = Some((public, x5t));
    let text = format!(
        "[directory]\nkind = \"entra\"\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT_ID}\"\n\
         certificate_file = \"{}\"\nprivate_key_file = \"{}\"\ngraph_url = \"{base}\"\nlogin_url = \"{base}\"\n\n\
         [users]\ndomains = [\"example.com\"]\n\n[[groups]]\nid = \"{SRE}\"\nname = \"sre\"\nlogin = true\n",
        cert.display(),
        key.display(),
        base = h.graph.base()
    );
    let config = AgentConfig::parse(&text, "agent.toml").unwrap();
    let r = sync(&config, &h.paths, false).unwrap();
    assert_eq!(r.users, 3);
    assert_eq!(h.graph.token_requests(), 1);
    // the key readable by others: refused, and never quoted
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = sync(&config, &h.paths, false).unwrap_err();
    assert_eq!(
        e.kind,
        FailureKind::Directory(DirectoryFailure::Unauthorised)
    );
    assert!(!e.message.contains("PRIVATE KEY"), "{e}");
}
