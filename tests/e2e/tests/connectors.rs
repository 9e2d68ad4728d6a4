//! Directory connectors end to end: the real agent binary syncing from a real,
//! independent SCIM 2.0 server (SCIMMY + scimmy-routers, src/scim.rs) filled
//! by the test through the protocol, answers read back through the real glibc
//! (`getent`) with libnss_zt in a private mount namespace. Nested groups,
//! several `/Users` pages, people outside the configured groups never visible,
//! deactivation and deletion applied at the next sync, and the failures: a
//! refused token and a vanished server each have their exit code, change
//! nothing on the host and are shown by `zt-agent status`.

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};
use zt_e2e::scim::{ScimServer, member};
use zt_e2e::{Host, text};

const TOKEN: &str = "test-only-scim-token-7f3a";

fn config(h: &Host, url: &str, group: &str) -> String {
    format!(
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
        h.path("etc/zt/scim.token").display()
    )
}

fn write_token(h: &Host, token: &str) {
    let path = h.path("etc/zt/scim.token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn code(h: &Host, args: &[&str]) -> i32 {
    h.agent(args).status.code().unwrap_or(-1)
}

#[test]
fn a_real_scim_server_synced_through_to_getent() {
    let scim = ScimServer::start(TOKEN);
    let users: Vec<Value> = (0..430).map(|n| scim.user(n, n != 7)).collect();
    // sre: 300 people typed User, one untyped, and a nested group of 5
    let oncall = scim.group(
        "oncall",
        (400..405).map(|n| member(&users[n], true)).collect(),
    );
    let mut sre_members: Vec<Value> = (0..300).map(|n| member(&users[n], true)).collect();
    sre_members.push(member(&users[420], false));
    sre_members.push(json!({"value": oncall, "type": "Group"}));
    let sre = scim.group("sre", sre_members);
    // a group nobody configured: its people stay off the host
    scim.group(
        "sales",
        (405..420).map(|n| member(&users[n], true)).collect(),
    );

    let h = Host::new();
    write_token(&h, TOKEN);
    h.write_config(&config(&h, &scim.base, &sre));
    assert_eq!(code(&h, &["sync", "--once", "--detailed-exitcodes"]), 2);
    // doctor reads the directory through the connector too (other checks
    // judge this machine, so only the directory line is looked at)
    let doctor = text(&h.agent(&["doctor"]).stdout);
    assert!(
        doctor
            .lines()
            .any(|l| l.starts_with("ok    directory: scim: read ") && l.contains(" user(s) and ")),
        "{doctor}"
    );
    for name in ["user0", "user299", "user420", "user400", "user404"] {
        h.assert_zt_user(name);
    }
    for name in ["user7", "user300", "user410"] {
        assert_eq!(h.getent(&["passwd", name]).0, 2, "{name} visible");
    }
    let (rc, sre_line) = h.getent(&["group", "sre"]);
    assert_eq!(rc, 0);
    let listed = sre_line
        .trim()
        .rsplit(':')
        .next()
        .unwrap()
        .split(',')
        .count();
    assert_eq!(listed, 305, "{sre_line}");

    // deactivated and deleted in the IdP: gone at the next sync
    let u3 = users[3]["id"].as_str().unwrap();
    let mut changed = users[3].clone();
    changed["active"] = json!(false);
    scim.send("PUT", &format!("/Users/{u3}"), Some(changed));
    let u401 = users[401]["id"].as_str().unwrap();
    scim.send("DELETE", &format!("/Users/{u401}"), None);
    h.sync();
    for name in ["user3", "user401"] {
        assert_eq!(h.getent(&["passwd", name]).0, 2, "{name} still visible");
    }
    h.assert_zt_user("user0");

    // a refused token: EX_NOPERM, nothing changes, status says why
    write_token(&h, "test-only-wrong-token");
    assert_eq!(code(&h, &["sync", "--once"]), 77);
    h.assert_zt_user("user0");
    let status = h.agent(&["status"]);
    let shown = text(&status.stdout);
    assert!(shown.contains("refused our credentials"), "{shown}");
    assert!(!shown.contains("test-only-wrong-token"), "{shown}");
    let doctor = text(&h.agent(&["doctor"]).stdout);
    assert!(
        doctor
            .lines()
            .any(|l| l.starts_with("FAIL  directory: scim: ")
                && l.contains("refused our credentials")),
        "{doctor}"
    );
    assert!(!doctor.contains("test-only-wrong-token"), "{doctor}");
    write_token(&h, TOKEN);

    // the server gone: EX_UNAVAILABLE, the persisted snapshot serves on
    drop(scim);
    assert_eq!(code(&h, &["sync", "--once"]), 69);
    h.assert_zt_user("user0");
    assert_eq!(h.getent(&["group", "sre"]).0, 0);
}
