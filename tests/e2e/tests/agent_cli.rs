//! What monitoring and admins see from the agent's command line: one exit code
//! per sync outcome, a frozen host reported by `status`, hostile directory
//! strings that cannot forge log lines, and a config anyone could edit refused.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use zt_e2e::{Host, text};

fn directory(extra_email: &str) -> serde_json::Value {
    json!({
      "users": [
        {"id": "u-alice", "email": "alice@example.com"},
        {"id": "u-eve", "email": extra_email}
      ],
      "groups": [{"id": "g-sre", "name": "SRE", "members": ["u-alice", "u-eve"]}]
    })
}

fn code(h: &Host, args: &[&str]) -> i32 {
    h.agent(args).status.code().unwrap_or(-1)
}

#[test]
fn every_sync_outcome_has_its_own_exit_code() {
    let h = Host::new();
    h.write_directory(&directory("eve@example.com"));
    let detailed = ["sync", "--once", "--detailed-exitcodes"];
    assert_eq!(code(&h, &detailed), 2, "first sync publishes");
    assert_eq!(h.getent(&["passwd", "alice"]).0, 0, "published for real");
    assert_eq!(code(&h, &detailed), 0, "nothing changed");
    assert_eq!(code(&h, &["sync", "--once"]), 0, "plain success by default");

    std::fs::write(h.path("etc/zt/directory.json"), "{\"users\": [").unwrap();
    assert_eq!(code(&h, &["sync", "--once"]), 65, "malformed answer");
    std::fs::remove_file(h.path("etc/zt/directory.json")).unwrap();
    assert_eq!(code(&h, &["sync", "--once"]), 69, "directory unavailable");
    assert_eq!(h.getent(&["passwd", "alice"]).0, 0, "last good state kept");
}

#[test]
fn status_calls_a_host_without_a_good_sync_for_three_intervals_frozen() {
    let h = Host::new();
    h.write_directory(&directory("eve@example.com"));
    h.sync();
    let ok = h.agent(&["status"]);
    assert!(ok.status.success(), "{}", text(&ok.stdout));
    assert!(!text(&ok.stdout).contains("FROZEN"));

    // The directory breaks and stays broken: the last good sync ages. Moving
    // it back in status.json stands in for waiting three 60 s intervals.
    std::fs::write(h.path("etc/zt/directory.json"), "{").unwrap();
    assert_ne!(code(&h, &["sync", "--once"]), 0);
    let status_file = h.path("var/lib/zt/status.json");
    let mut st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&status_file).unwrap()).unwrap();
    let last = st["last_success"].as_u64().unwrap();
    st["last_success"] = json!(last - 181);
    std::fs::write(&status_file, serde_json::to_vec(&st).unwrap()).unwrap();
    let frozen = h.agent(&["status"]);
    let out = text(&frozen.stdout);
    assert_eq!(frozen.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FROZEN") && out.contains("3 sync intervals"),
        "{out}"
    );
}

#[test]
fn a_hostile_email_cannot_forge_a_log_line() {
    let h = Host::new();
    // a valid-looking person whose email carries a newline and a priority prefix
    h.write_directory(&directory("eve@example.com\n<0>emerg: forged"));
    let o = h.agent(&["sync", "--once"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let log = text(&o.stderr);
    assert!(
        log.contains("eve@example.com\\n<0>emerg: forged"),
        "the skip is logged, escaped: {log}"
    );
    assert!(
        log.lines().all(|l| !l.starts_with("<0>")),
        "no line at priority emerg: {log}"
    );
    assert_eq!(h.getent(&["passwd", "alice"]).0, 0, "alice still published");
}

#[test]
fn a_config_others_can_edit_is_refused() {
    let h = Host::new();
    h.write_directory(&directory("eve@example.com"));
    let config = h.path("etc/zt/agent.toml");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        code(&h, &["sync", "--once"]),
        0,
        "a root-owned 0644 config works"
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = h.agent(&["sync", "--once"]);
    assert_eq!(o.status.code(), Some(78));
    assert!(
        text(&o.stderr).contains("lets group or others change it"),
        "{}",
        text(&o.stderr)
    );
}
