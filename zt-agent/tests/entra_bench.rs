//! Benchmark (ignored): `zt-agent sync --once` as a whole process against the
//! fake Graph (tests/common/graph.rs) with 100,000 people and 20,000 groups, of
//! which 20 are configured: one holding everyone, 19 of 5,000 each. Prints wall
//! time, the agent's CPU time and peak RSS (wait4 rusage) and the requests
//! Graph saw, for a first sync (full delta rounds), a delta round after 10
//! changes, and one with no change.
//!
//!     cargo test --release -p zt-agent --test entra_bench -- --ignored --nocapture

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Instant;

use common::graph::{CLIENT_ID, FakeGraph, GraphUser, SECRET, TENANT};

const PEOPLE: usize = 100_000;
const GROUPS: usize = 20_000;
const CONFIGURED: usize = 20;

fn group_id(g: usize) -> String {
    format!("6b1f0d7e-0000-4000-9000-{g:012}")
}

struct Run {
    wall_s: f64,
    cpu_s: f64,
    max_rss_mb: f64,
    requests: usize,
    ok: bool,
}

// reaped by wait4 (for its rusage), which clippy cannot see
#[allow(clippy::zombie_processes)]
fn run_agent(config: &std::path::Path, state: &std::path::Path, graph: &FakeGraph) -> Run {
    let before = graph.server.requests().len();
    let started = Instant::now();
    // in a private mount namespace with an empty sudoers.d: the agent
    // never touches this machine's /etc (unshare and sh exec into it, so
    // the rusage is the agent's)
    let child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("{ [ ! -d /etc/sudoers.d ] || mount -t tmpfs -o mode=0755 tmpfs /etc/sudoers.d; } && exec \"$@\"")
        .arg("zt-bench")
        .arg(env!("CARGO_BIN_EXE_zt-agent"))
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .args(["sync", "--once"])
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our child's; status and usage are valid for writes.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    let wall_s = started.elapsed().as_secs_f64();
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Run {
        wall_s,
        cpu_s: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_mb: usage.ru_maxrss as f64 / 1024.0,
        requests: graph.server.requests().len() - before,
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    }
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn graph_sync_of_100k_people() {
    let graph = FakeGraph::start();
    {
        let mut st = graph.state.lock().unwrap();
        st.page_size = 999;
        for n in 0..PEOPLE {
            let u = GraphUser::new(n);
            st.users.insert(u.id.clone(), u);
        }
        let ids: Vec<String> = st.users.keys().cloned().collect();
        for g in 0..GROUPS {
            let members: Vec<String> = match g {
                0 => ids.clone(),
                g if g < CONFIGURED => ids.iter().skip(g).step_by(20).cloned().collect(),
                // the rest of the tenant: never read
                g => vec![ids[g % PEOPLE].clone()],
            };
            st.groups
                .insert(group_id(g), (format!("group {g}"), members));
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("entra.secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut text = format!(
        "[directory]\nkind = \"entra\"\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT_ID}\"\n\
         client_secret_file = \"{}\"\ngraph_url = \"{base}\"\nlogin_url = \"{base}\"\n\n\
         [users]\ndomains = [\"example.com\"]\n",
        secret.display(),
        base = graph.base()
    );
    for g in 0..CONFIGURED {
        text.push_str(&format!(
            "\n[[groups]]\nid = \"{}\"\nname = \"g{g}\"\nlogin = {}\n",
            group_id(g),
            g == 0
        ));
    }
    let config = tmp.path().join("agent.toml");
    std::fs::write(&config, text).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let state = tmp.path().join("state");

    let first = run_agent(&config, &state, &graph);
    assert!(first.ok, "first sync failed");
    {
        let mut st = graph.state.lock().unwrap();
        let ids: Vec<String> = st.users.keys().take(10).cloned().collect();
        for id in ids {
            st.users.get_mut(&id).unwrap().enabled = false;
        }
    }
    let second = run_agent(&config, &state, &graph);
    assert!(second.ok, "second sync failed");
    let third = run_agent(&config, &state, &graph);
    assert!(third.ok, "third sync failed");
    let saved = std::fs::metadata(state.join("entra-delta.json"))
        .unwrap()
        .len();
    println!("saved delta state: {:.1} MB", saved as f64 / 1e6);
    for (what, r) in [
        ("full sync", &first),
        ("delta round, 10 changes", &second),
        ("delta round, no change", &third),
    ] {
        println!(
            "{what}: wall {:.2} s, agent CPU {:.2} s, peak RSS {:.0} MB, {} requests",
            r.wall_s, r.cpu_s, r.max_rss_mb, r.requests
        );
    }
}
