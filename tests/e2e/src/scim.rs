//! A real, independent SCIM 2.0 service provider: SCIMMY + scimmy-routers on
//! express (tests/e2e/scim-server/server.mjs), with an in-memory store that the
//! test fills through the SCIM protocol itself. It listens on 127.0.0.1 (a free
//! port, in the machine's network namespace, where the non-PAM [`Host`]'s
//! agent runs too) and exits when its stdin closes: dropping the value stops it.
//!
//! Needs node and `npm ci --prefix tests/e2e/scim-server` (.ci/run does it).
//!
//! [`Host`]: crate::Host

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

pub struct ScimServer {
    child: Child,
    /// The service's base: `http://127.0.0.1:PORT/scim/v2`.
    pub base: String,
    pub token: String,
}

impl ScimServer {
    pub fn start(token: &str) -> ScimServer {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scim-server");
        assert!(
            dir.join("node_modules/scimmy-routers").exists(),
            "run `npm ci --prefix tests/e2e/scim-server` first (.ci/run does)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .env("SCIM_TOKEN", token)
            .env("PORT", "0")
            .env("NODE_NO_WARNINGS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("node stdout");
        let port = line
            .trim()
            .strip_prefix("scim listening on ")
            .unwrap_or_else(|| panic!("SCIM server did not start: {line:?}"))
            .to_string();
        ScimServer {
            child,
            base: format!("http://127.0.0.1:{port}/scim/v2"),
            token: token.to_string(),
        }
    }

    /// Sends a SCIM request as the test's client; the answer's JSON.
    pub fn send(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let auth = format!("Bearer {}", self.token);
        let json = "application/scim+json";
        let mut response = match (method, body) {
            ("POST", Some(b)) => agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", json)
                .send(b.to_string()),
            ("PUT", Some(b)) => agent
                .put(&url)
                .header("Authorization", &auth)
                .header("Content-Type", json)
                .send(b.to_string()),
            ("DELETE", None) => agent.delete(&url).header("Authorization", &auth).call(),
            _ => panic!("unsupported request {method} {path}"),
        }
        .expect("SCIM request");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("SCIM answer");
        assert!(status < 300, "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates userN (userN@example.com as the primary work address).
    pub fn user(&self, n: usize, active: bool) -> Value {
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

    /// Creates a group with these members; its id.
    pub fn group(&self, name: &str, members: Vec<Value>) -> String {
        let g = self.send(
            "POST",
            "/Groups",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": name,
                "members": members,
            })),
        );
        g["id"].as_str().expect("group id").to_string()
    }
}

/// A group member entry for `user` (typed `User`, or without a type).
pub fn member(user: &Value, typed: bool) -> Value {
    let id = user["id"].as_str().expect("user id");
    if typed {
        json!({"value": id, "type": "User"})
    } else {
        json!({"value": id})
    }
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        // node exits when its stdin closes; wait so no zombie is left
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
