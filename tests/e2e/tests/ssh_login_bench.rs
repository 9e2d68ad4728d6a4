//! Benchmark, run by hand (issue 7, "How fast"): a whole SSH certificate login of a
//! directory user beside the same login by a local user with a plain key, interleaved,
//! against one sshd configured with the shipped drop-in (packaging/sshd/zt.conf).
//!
//! ```text
//! cargo build --workspace && cargo build --release -p zt-agent
//! cargo test -p zt-e2e --test ssh_login_bench -- --ignored --nocapture
//! ```
//!
//! ZT_BENCH_LOGINS (default 50) logins per case; ZT_BENCH_USERS (default 30) directory
//! users; ZT_AGENT the zt-agent to install as the principals/keys command (default
//! target/release/zt-agent when built, else the debug one beside this test). Each
//! login is `ssh -i KEY USER@127.0.0.1 true` timed inside the host from the client's
//! start to its exit; the cases take turns (order rotated every round). Prints a
//! markdown table of medians and ratios to the local-user key login.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use zt_e2e::{CONFIG, Host, Sshd};

const STACK: &str = "\
auth     [success=done ignore=ignore default=die]  pam_zt.so
auth     required                                   pam_unix.so try_first_pass
account  required   pam_zt.so
account  required   pam_unix.so
session  required   pam_zt.so
session  required   pam_unix.so
";

const SSH_CONFIG: &str = r#"
[ssh]
principals = ["email-local-part"]

[[groups]]
id = "g-ops"
name = "ops"
login = false

[[shared_accounts]]
name = "sysadmin"
groups = ["g-ops"]
"#;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn keygen(args: &[&str]) {
    let o = Command::new("ssh-keygen")
        .args(args)
        .output()
        .expect("ssh-keygen");
    assert!(o.status.success(), "ssh-keygen {args:?}: {o:?}");
}

fn root_dir(p: &Path) {
    std::fs::create_dir_all(p).expect("mkdir");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn root_file(p: &Path, text: &str) {
    std::fs::write(p, text).expect("write");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}

/// The zt-agent sshd runs: ZT_AGENT, else the release build, else the debug one.
fn agent_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ZT_AGENT") {
        return PathBuf::from(p);
    }
    let debug = zt_e2e::build_dir().join("zt-agent");
    let release = zt_e2e::build_dir().join("../release/zt-agent");
    if release.exists() { release } else { debug }
}

/// `n` directory users (alice first, with `plain_key`), all in the login group g-sre;
/// g-ops (the shared account's group) holds the first 200.
fn directory(n: usize, plain_key: &str) -> Value {
    let mut users = vec![json!({"id": "u-alice", "email": "alice@example.com",
        "display_name": "Alice", "ssh_keys": [plain_key.trim()]})];
    for i in 1..n {
        users.push(
            json!({"id": format!("u-{i:06}"), "email": format!("u{i:06}@example.com"),
            "display_name": format!("User {i}")}),
        );
    }
    let ids: Vec<Value> = users.iter().map(|u| u["id"].clone()).collect();
    let ops: Vec<Value> = ids.iter().take(200).cloned().collect();
    json!({
        "users": users,
        "groups": [
            {"id": "g-sre", "name": "SRE", "members": ids},
            {"id": "g-dev", "name": "Developers", "members": []},
            {"id": "g-ops", "name": "Ops", "members": ops}
        ]
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[test]
#[ignore = "benchmark, run by hand: cargo test -p zt-e2e --test ssh_login_bench -- --ignored --nocapture"]
fn ssh_certificate_login_beside_a_local_key_login() {
    assert!(
        Host::pam_zt_built().is_some(),
        "target/debug/libpam_zt.so is missing: run `cargo build --workspace`"
    );
    let logins = env_usize("ZT_BENCH_LOGINS", 50);
    let n_users = env_usize("ZT_BENCH_USERS", 30).max(1);
    let h = Host::new_pam();
    h.add_local_user("zt", 990);
    h.add_local_user_with_password("sysadmin", 1500, "break-glass-pw");
    h.add_local_user_with_password("localkey", 1600, "break-glass-pw");
    let kd = h.path("ssh/t");
    std::fs::create_dir_all(&kd).expect("mkdir");
    let s = |name: &str| kd.join(name).to_str().expect("utf8").to_owned();
    // ECDSA P-256 everywhere (Cloudflare's certificate shape; the same key type for
    // the local user's key)
    for k in ["ca", "alice", "plain", "local"] {
        keygen(&[
            "-q",
            "-t",
            "ecdsa",
            "-b",
            "256",
            "-N",
            "",
            "-C",
            k,
            "-f",
            &s(k),
        ]);
    }
    keygen(&[
        "-q",
        "-s",
        &s("ca"),
        "-I",
        "5f0c4a1e9b7d2c3a8e6f1b0d4c2a9e7f",
        "-n",
        "alice",
        "-V",
        "+1h",
        "-z",
        "1",
        &s("alice.pub"),
    ]);
    let plain_pub = std::fs::read_to_string(kd.join("plain.pub")).expect("pub");
    h.write_config(&format!("{CONFIG}{SSH_CONFIG}"));
    h.write_directory(&directory(n_users, &plain_pub));
    h.sync();
    h.pam_service("sshd", STACK);
    let ca_keys = kd.join("trusted_user_ca_keys");
    root_file(
        &ca_keys,
        &std::fs::read_to_string(kd.join("ca.pub")).expect("ca"),
    );
    let home = h.path("home");
    root_dir(&home.join("localkey/.ssh"));
    root_file(
        &home.join("localkey/.ssh/authorized_keys"),
        &std::fs::read_to_string(kd.join("local.pub")).expect("pub"),
    );
    // the drop-in as shipped, its two paths pointed at this test's files
    let bin = h.path("run/zt-bin");
    root_dir(&bin);
    let agent = agent_binary();
    std::fs::copy(&agent, bin.join("zt-agent")).expect("copy zt-agent");
    std::fs::set_permissions(bin.join("zt-agent"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let dropin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/sshd/zt.conf");
    let dropin = std::fs::read_to_string(dropin)
        .expect("drop-in")
        .replace("/usr/sbin/zt-agent", "/run/zt-bin/zt-agent")
        .replace(
            "/etc/ssh/zt_trusted_user_ca_keys",
            ca_keys.to_str().expect("utf8"),
        );
    let d = Sshd::start(
        &h,
        &format!("{dropin}\nAuthorizedKeysFile .ssh/authorized_keys\nPasswordAuthentication no\n"),
    );
    // (sshd logs at LogLevel VERBOSE, the harness's default, for every case alike)

    let cases = [
        (
            "directory user, certificate (AuthorizedPrincipalsCommand)",
            "alice",
            s("alice"),
            format!("-o CertificateFile={}", s("alice-cert.pub")),
        ),
        (
            "directory user, plain key (AuthorizedKeysCommand)",
            "alice",
            s("plain"),
            String::new(),
        ),
        (
            "local user, plain key (authorized_keys)",
            "localkey",
            s("local"),
            String::new(),
        ),
    ];
    let ssh = |user: &str, key: &str, extra: &str| {
        format!(
            "ssh -F /dev/null -T -p {} -o UserKnownHostsFile=/dev/null \
             -o StrictHostKeyChecking=no -o LogLevel=ERROR -o BatchMode=yes \
             -o IdentitiesOnly=yes -o PreferredAuthentications=publickey \
             -o ConnectTimeout=10 -i {key} {extra} {user}@127.0.0.1 true",
            d.port
        )
    };
    // one shell inside the host runs every login and times each with date +%s%N
    let mut script = String::from(
        "set -u\nt() { s=$(date +%s%N); \"$@\" </dev/null >/dev/null 2>&1; rc=$?; e=$(date +%s%N); echo \"$CASE $((e - s)) $rc\"; }\n",
    );
    let warmup = 3;
    for round in 0..(logins + warmup) {
        for k in 0..cases.len() {
            let i = (k + round) % cases.len();
            let (_, user, key, extra) = &cases[i];
            let tag = if round < warmup { "w" } else { "m" };
            script.push_str(&format!("CASE={tag}{i} t {}\n", ssh(user, key, extra)));
        }
    }
    let o = h.sh(&script);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 3, "{line}");
        assert_eq!(f[2], "0", "a login failed: {line}\n{}", d.log());
        if let Some(i) = f[0].strip_prefix('m') {
            let i: usize = i.parse().expect("case");
            times[i].push(f[1].parse::<f64>().expect("ns") / 1e6);
        }
    }
    for t in &times {
        assert_eq!(t.len(), logins, "{out}");
    }
    let meds: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
    let local = meds[cases.len() - 1];
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!(
        "\nzt {commit}; {n_users} directory users; {logins} logins per case, interleaved \
         (after {warmup} warm-up rounds); zt-agent {}; times in ms\n",
        agent.display()
    );
    println!("| login | median | min | max | median / local-user key login |");
    println!("|---|---:|---:|---:|---:|");
    for (i, (name, ..)) in cases.iter().enumerate() {
        let t = &times[i];
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.3} |",
            meds[i],
            t[0],
            t[t.len() - 1],
            meds[i] / local
        );
    }
}
