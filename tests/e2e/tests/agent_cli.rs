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

    // and what the CLI prints to root's terminal cannot drive it: escape
    // sequences (window title, erase line, carriage return) come out as text
    let terminal = "ev\u{1b}]0;pwned\u{7}\u{1b}[2K\rsre-bad il@example.com";
    h.write_directory(&directory(terminal));
    h.sync();
    for args in [&["status"][..], &["lookup", "u-eve"][..]] {
        let out = text(&h.agent(args).stdout);
        assert!(
            out.contains("ev\\u{1b}]0;pwned"),
            "{args:?} shows the email, escaped: {out}"
        );
        assert!(
            !out.chars().any(|c| c.is_control() && c != '\n'),
            "{args:?} printed a control character: {out:?}"
        );
    }
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

#[test]
fn a_crash_between_the_two_renames_does_not_switch_off_the_removal_guard() {
    let h = Host::new();
    let people = |n: usize, extra: &[&str]| {
        let mut ids: Vec<String> = (0..n).map(|i| format!("u-{i}")).collect();
        ids.extend(extra.iter().map(|s| s.to_string()));
        json!({
            "users": ids.iter().map(|id| json!({"id": id, "email": format!("{}@example.com", id.replace("u-", "user"))})).collect::<Vec<_>>(),
            "groups": [{"id": "g-sre", "name": "SRE", "members": ids}]
        })
    };
    h.write_directory(&people(10, &[]));
    h.sync();
    let state = |f: &str| h.path(&format!("var/lib/zt/{f}"));
    let gen1_snapshot = std::fs::read(state("snapshot")).unwrap();
    let gen1_generation = std::fs::read(state("generation")).unwrap();

    // 8 of 10 vanish (a broken export) and someone new arrives: held back
    h.write_directory(&people(2, &["u-new"]));
    assert_eq!(code(&h, &["sync", "--once"]), 3);
    assert_eq!(h.getent(&["passwd", "user5"]).0, 0, "the missing are kept");

    // An agent killed after renaming `private` and before renaming `snapshot`
    // leaves a private file one publication newer than the public one.
    std::fs::write(state("snapshot"), &gen1_snapshot).unwrap();
    std::fs::write(state("generation"), &gen1_generation).unwrap();
    let private_generation = u64::from_le_bytes(
        std::fs::read(state("private")).unwrap()[24..32]
            .try_into()
            .unwrap(),
    );
    assert_eq!(
        private_generation, 2,
        "the private file is the orphaned newer one"
    );

    let o = h.agent(&["sync", "--once"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "still held back without a matching twin: {}",
        text(&o.stderr)
    );
    assert_eq!(
        h.getent(&["passwd", "user5"]).0,
        0,
        "nobody removed unforced"
    );
    assert_eq!(
        h.getent(&["passwd", "usernew"]).0,
        0,
        "the newcomer published"
    );
    let generation = u64::from_le_bytes(
        std::fs::read(state("generation")).unwrap()[..8]
            .try_into()
            .unwrap(),
    );
    assert!(
        generation > private_generation,
        "a new publication never reuses the orphan's generation ({generation})"
    );
}
