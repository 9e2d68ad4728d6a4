//! `kind = "scim"` against a real, independent SCIM 2.0 service provider:
//! SCIMMY + scimmy-routers on express (tests/e2e/scim-server/server.mjs),
//! filled by the test through the SCIM protocol itself. Whole syncs into a
//! temporary state directory: nested groups, several `/Users` pages, people
//! outside the configured groups left alone, deactivation and deletion
//! applied, a refused token and a vanished server publishing nothing.
//!
//! Needs node and `npm ci --prefix tests/e2e/scim-server` (.ci/run does it).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use zt_agent::config::AgentConfig;
use zt_agent::directory::error::DirectoryFailure;
use zt_agent::outcome::{Completed, FailureKind};
use zt_agent::sync::{Paths, sync};

const TOKEN: &str = "test-only-scim-token-7f3a";

struct ScimServer {
    child: Child,
    base: String,
}

impl ScimServer {
    fn start() -> ScimServer {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/scim-server");
        assert!(
            dir.join("node_modules/scimmy-routers").exists(),
            "run `npm ci --prefix tests/e2e/scim-server` first (.ci/run does)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .env("SCIM_TOKEN", TOKEN)
            .env("PORT", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("scim listening on ")
            .unwrap_or_else(|| panic!("SCIM server did not start: {line:?}"));
        ScimServer {
            child,
            base: format!("http://127.0.0.1:{port}/scim/v2"),
        }
    }

    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let auth = format!("Bearer {TOKEN}");
        let mut response = match (method, body) {
            ("POST", Some(b)) => agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/scim+json")
                .send(b.to_string()),
            ("PUT", Some(b)) => agent
                .put(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/scim+json")
                .send(b.to_string()),
            ("DELETE", None) => agent.delete(&url).header("Authorization", &auth).call(),
            _ => unreachable!(),
        }
        .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        assert!(status < 300, "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    fn user(&self, n: usize, active: bool) -> Value {
        self.send(
            "POST",
            "/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": format!("user{n}"),
                "name": {"formatted": format!("User {n}")},
                "emails": [{"value": format!("home{n}@home.example"), "type": "home"},
                           {"value": format!("user{n}@example.com"), "type": "work", "primary": true}],
                "active": active,
            })),
        )
    }

    fn group(&self, name: &str, members: Vec<Value>) -> String {
        let g = self.send(
            "POST",
            "/Groups",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": name,
                "members": members,
            })),
        );
        g["id"].as_str().unwrap().to_string()
    }
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        // node exits when its stdin closes; wait so no zombie is left
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn member(user: &Value, typed: bool) -> Value {
    let id = user["id"].as_str().unwrap();
    if typed {
        json!({"value": id, "type": "User"})
    } else {
        json!({"value": id})
    }
}

struct Host {
    _tmp: tempfile::TempDir,
    paths: Paths,
    token_file: PathBuf,
}

impl Host {
    fn new() -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("host");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
        let token_file = tmp.path().join("scim.token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let paths = Paths {
            state_dir: tmp.path().join("state"),
            host_root: root,
        };
        Host {
            _tmp: tmp,
            paths,
            token_file,
        }
    }

    fn config(&self, url: &str, group: &str) -> AgentConfig {
        let text = format!(
            r#"
[directory]
kind = "scim"
url = "{url}/"
token_file = "{}"

[users]
domains = ["example.com"]

[[groups]]
id = "{group}"
name = "sre"
login = true
"#,
            self.token_file.display()
        );
        AgentConfig::parse(&text, "agent.toml").unwrap()
    }

    fn published_users(&self) -> Vec<String> {
        let bytes = std::fs::read(self.paths.state_dir.join("snapshot")).unwrap();
        let s = zt_snapshot::Snapshot::parse(&bytes).unwrap();
        let mut names: Vec<String> = (0..s.user_count())
            .map(|i| String::from_utf8(s.user_name(i).unwrap().to_vec()).unwrap())
            .collect();
        names.sort();
        names
    }
}

#[test]
fn a_real_scim_server_synced_end_to_end() {
    let scim = ScimServer::start();
    let users: Vec<Value> = (0..430).map(|n| scim.user(n, n != 7)).collect();
    // sre: 300 people typed User, one untyped, and a nested group of 5
    let oncall = scim.group(
        "oncall",
        (400..405).map(|n| member(&users[n], true)).collect(),
    );
    let mut sre_members: Vec<Value> = (0..300).map(|n| member(&users[n], true)).collect();
    sre_members.push(member(&users[420], false));
    sre_members.push(json!({"value": oncall, "type": "Group"}));
    let sre = scim.group("sre", sre_members.clone());
    // a group nobody configured: its people stay off the host
    scim.group(
        "sales",
        (405..420).map(|n| member(&users[n], true)).collect(),
    );

    let h = Host::new();
    let config = h.config(&scim.base, &sre);
    let r = sync(&config, &h.paths, false).unwrap();
    assert_eq!(r.completed, Completed::Published);
    let published = h.published_users();
    // 300 + 1 untyped + 5 nested, less user7 (inactive)
    assert_eq!(published.len(), 305, "{published:?}");
    for name in ["user0", "user299", "user420", "user400", "user404"] {
        assert!(published.contains(&name.to_string()), "{name} missing");
    }
    for name in ["user7", "user300", "user410"] {
        assert!(!published.contains(&name.to_string()), "{name} published");
    }

    // deactivated and deleted in the IdP: gone at the next sync
    let u3 = users[3]["id"].as_str().unwrap();
    let mut changed = users[3].clone();
    changed["active"] = json!(false);
    scim.send("PUT", &format!("/Users/{u3}"), Some(changed));
    let u401 = users[401]["id"].as_str().unwrap();
    scim.send("DELETE", &format!("/Users/{u401}"), None);
    let r = sync(&config, &h.paths, false).unwrap();
    assert_eq!(r.completed, Completed::Published);
    let published = h.published_users();
    assert_eq!(published.len(), 303);
    assert!(!published.contains(&"user3".to_string()));
    assert!(!published.contains(&"user401".to_string()));

    // a refused token: nothing changes, and the failure is typed
    std::fs::write(&h.token_file, "test-only-wrong-token\n").unwrap();
    let e = sync(&config, &h.paths, false).unwrap_err();
    assert_eq!(
        e.kind,
        FailureKind::Directory(DirectoryFailure::Unauthorised)
    );
    assert!(!e.message.contains("test-only-wrong-token"), "{e}");
    assert_eq!(h.published_users().len(), 303);
    std::fs::write(&h.token_file, format!("{TOKEN}\n")).unwrap();

    // the server gone: the persisted snapshot serves on
    drop(scim);
    let e = sync(&config, &h.paths, false).unwrap_err();
    assert_eq!(
        e.kind,
        FailureKind::Directory(DirectoryFailure::Unavailable)
    );
    assert_eq!(h.published_users().len(), 303);
}
