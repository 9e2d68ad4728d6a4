//! Threads calling getpwnam_r and getgrouplist in a loop while the agent
//! republishes: no crash, no torn or wrong answer. Two Debian NSS modules fail
//! exactly this.

use std::process::Stdio;

use serde_json::json;
use zt_e2e::{Host, text};

fn directory(variant: &str) -> serde_json::Value {
    let mut groups = vec![
        json!({"id": "g-sre", "name": "SRE", "members": ["u-alice"]}),
        json!({"id": "g-dev", "name": "Dev", "members": ["u-alice"]}),
    ];
    if variant == "b" {
        groups.push(json!({"id": "g-ops", "name": "Ops", "members": ["u-alice"]}));
    }
    json!({"users": [{"id": "u-alice", "email": "alice@example.com", "display_name": format!("Alice {variant}")}],
           "groups": groups})
}

const CONFIG_WITH_OPS: &str = r#"
[directory]
kind = "file"
path = "ROOT/etc/zt/directory.json"
[users]
domains = ["example.com"]
[[groups]]
id = "g-sre"
name = "sre"
login = true
[[groups]]
id = "g-dev"
name = "developers"
[[groups]]
id = "g-ops"
name = "ops"
"#;

#[test]
fn lookups_stay_correct_while_snapshots_are_republished() {
    let h = Host::new();
    h.write_config(CONFIG_WITH_OPS);
    // learn the exact answers of both variants first
    let mut allowed = Vec::new();
    for v in ["a", "b"] {
        h.write_directory(&directory(v));
        h.sync();
        let mut p = h.probe();
        allowed.push(p.ask("pw alice"));
        allowed.push(p.ask("groups alice"));
    }
    assert_ne!(allowed[0], allowed[2], "variants must differ in gecos");
    assert_ne!(allowed[1], allowed[3], "variants must differ in groups");
    let allowed_file = h.path("allowed");
    std::fs::write(&allowed_file, allowed.join("\n")).unwrap();

    let probe = h.probe_path();
    let hammer = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            h.run(&[
                probe.to_str().unwrap(),
                "hammer",
                "2",
                "6",
                "alice",
                allowed_file.to_str().unwrap(),
            ])
        });
        // republish, flipping between the variants, while the readers run
        let mut publishes = 0;
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < until {
            h.write_directory(&directory(if publishes % 2 == 0 { "a" } else { "b" }));
            let o = h.agent(&["sync", "--once"]);
            assert!(o.status.success(), "{}", text(&o.stderr));
            publishes += 1;
        }
        assert!(publishes >= 10, "only {publishes} publishes");
        reader.join().unwrap()
    });
    let _ = Stdio::null();
    let report = text(&hammer.stdout);
    assert!(
        hammer.status.success(),
        "hammer died: {:?} {}",
        hammer.status,
        text(&hammer.stderr)
    );
    assert!(
        !report.contains("WRONG"),
        "wrong answers under republishing:\n{report}"
    );
    for a in &allowed {
        assert!(
            report.lines().any(|l| l.ends_with(a.as_str())),
            "answer never seen (no republish observed?): {a}\n{report}"
        );
    }
}

#[test]
fn a_child_forked_while_threads_resolve_never_hangs() {
    let h = Host::new();
    h.write_config(CONFIG_WITH_OPS);
    h.write_directory(&directory("b"));
    h.sync();
    let probe = h.probe_path();
    let o = h.run(&[probe.to_str().unwrap(), "forks", "200", "alice"]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{} {}", out, text(&o.stderr));
    assert_eq!(out.trim(), "forks ok=200 hung=0 failed=0");
}
