//! `zt-agent run` as an admin runs it: it publishes at start, picks up directory
//! changes at the next interval, and a broken directory or config keeps the last
//! good state while it keeps running.

use std::time::{Duration, Instant};

use serde_json::json;
use zt_e2e::{CONFIG, Host, text};

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn the_daemon_syncs_at_start_and_every_interval_and_survives_bad_input() {
    let h = Host::new();
    h.write_config(&CONFIG.replace("\"60s\"", "\"5s\""));
    let directory = |users: &[&str]| {
        json!({
            "users": users.iter().map(|u| json!({"id": format!("u-{u}"), "email": format!("{u}@example.com")})).collect::<Vec<_>>(),
            "groups": [{"id": "g-sre", "name": "SRE", "members": users.iter().map(|u| format!("u-{u}")).collect::<Vec<_>>()}]
        })
    };
    h.write_directory(&directory(&["alice"]));
    let argv = h.agent_argv();
    let mut args: Vec<&str> = argv.iter().map(String::as_str).collect();
    args.push("run");
    let mut daemon = h.spawn(&args);

    wait_for("the first sync", Duration::from_secs(10), || {
        h.getent(&["passwd", "alice"]).0 == 0
    });

    // a broken directory: the daemon logs, keeps running, alice stays
    std::fs::write(h.path("etc/zt/directory.json"), "{ not json").unwrap();
    wait_for(
        "the failed sync to be recorded",
        Duration::from_secs(12),
        || text(&h.agent(&["status"]).stdout).contains("last sync: FAILED"),
    );
    assert_eq!(
        h.getent(&["passwd", "alice"]).0,
        0,
        "last good snapshot kept"
    );
    assert!(daemon.try_wait().unwrap().is_none(), "daemon still running");

    // a broken config edit: the last good config stays in use
    let good = std::fs::read_to_string(h.path("etc/zt/agent.toml")).unwrap();
    std::fs::write(
        h.path("etc/zt/agent.toml"),
        good.replace("[users]", "[users]\nbogus = 1"),
    )
    .unwrap();
    // a good directory again, with bob: picked up with the old, valid config
    h.write_directory(&directory(&["alice", "bob"]));
    wait_for("bob to appear", Duration::from_secs(12), || {
        h.getent(&["passwd", "bob"]).0 == 0
    });
    assert!(daemon.try_wait().unwrap().is_none(), "daemon still running");

    daemon.kill().unwrap();
    let out = daemon.wait_with_output().unwrap();
    let log = text(&out.stderr);
    assert!(
        log.contains("<6>info: published snapshot generation 1"),
        "{log}"
    );
    assert!(
        log.contains("<3>error: sync failed, last good snapshot kept"),
        "{log}"
    );
    assert!(
        log.contains("config not reloaded, keeping the last good one") && log.contains("bogus"),
        "{log}"
    );
}
