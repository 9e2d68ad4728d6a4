//! Benchmark, run by hand (issue 11, "How fast"): what a device-code sign-in adds beyond
//! the IdP's own answers, and the agent's memory per pending sign-in.
//!
//! ```text
//! cargo build --workspace
//! cargo test -p zt-e2e --test device_bench -- --ignored --nocapture
//! ```
//!
//! Added time: pamtester with `pam_zt.so device` against the real OIDC provider; the
//! scripted browser signs in, then Enter is pressed. From that Enter to pamtester's exit
//! (expect's clock) the work is: pam_zt's poll request, the agent's token request to the
//! IdP, the answer back, pam_zt's token verification and the account stage. The agent
//! logs how long the IdP's token endpoint took; the rest is what zt adds (poll scheduling
//! included: the Enter triggers the poll). For comparison, the same pamtester login
//! with a pasted ID token of the same provider is timed in the same run.
//! ZT_BENCH_LOGINS (default 20).
//!
//! Memory: 100 sign-ins held pending through the control socket (one per user, as 100
//! people at their login prompts would), the agent's VmRSS before and after.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zt_e2e::device::{Then, device_login};
use zt_e2e::{AgentDaemon, CONFIG, Host, OidcProvider};

const SERVICE: &str = "zt-device";
const STACK: &str = "\
auth     [success=done ignore=ignore default=die]  pam_zt.so device
auth     required                                   pam_unix.so try_first_pass
account  required   pam_zt.so
account  required   pam_unix.so
";

fn directory(n: usize) -> Value {
    let mut users = vec![json!({"id": "u-alice", "email": "alice@example.com"})];
    for i in 0..n {
        users.push(json!({"id": format!("u-{i:03}"), "email": format!("u{i:03}@example.com")}));
    }
    let ids: Vec<Value> = users.iter().map(|u| u["id"].clone()).collect();
    json!({"users": users, "groups": [{"id": "g-sre", "name": "SRE", "members": ids}]})
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn p90(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[(v.len() * 9 / 10).min(v.len() - 1)]
}

/// The ms value after `tag` on each line of `out`.
fn stamps(out: &str, tag: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix(tag))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

#[test]
#[ignore = "benchmark: run by hand with --ignored --nocapture"]
fn device_sign_in_cost() {
    let logins: usize = std::env::var("ZT_BENCH_LOGINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let provider = OidcProvider::shared();
    let h = Host::new_pam();
    h.write_config(&format!(
        "{CONFIG}\n[[issuers]]\nkind = \"oidc\"\nissuer = \"{}\"\naudiences = [\"zt-ssh\"]\n\
         device_login = true\nclient_id = \"zt-ssh\"\nrequire_mfa = true\ndevice_max_pending = 200\n",
        provider.issuer()
    ));
    // u000-u099 hold the pending sign-ins, u100 on sign in one after another
    // (a user may start 4 sign-ins a minute)
    assert!(logins <= 100, "ZT_BENCH_LOGINS at most 100");
    h.write_directory(&directory(100 + logins));
    h.sync();
    h.pam_service(SERVICE, STACK);
    let agent = AgentDaemon::start(&h);
    let socket_dir = h.path("run/zt");
    while !socket_dir.join("control.sock").exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pamtester = ["pamtester", SERVICE, "alice", "authenticate", "acct_mgmt"];
    // warm-up: the agent's HTTP client, the provider's first sign-in
    let r = device_login(&h, &pamtester, Then::SignIn("alice"));
    assert_eq!(r.code, 0, "{r:?}\n{}", agent.log());

    let (mut after_enter, mut idp, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..logins {
        let before = agent.log().matches("token endpoint answered in").count();
        let user = format!("u{:03}", 100 + i);
        let pamtester = ["pamtester", SERVICE, &user, "authenticate", "acct_mgmt"];
        let r = device_login(&h, &pamtester, Then::SignIn(&user));
        assert_eq!(r.code, 0, "{r:?}");
        let enter = stamps(&r.output, "ZT-T-ENTER");
        let end = stamps(&r.output, "ZT-T-END");
        assert_eq!(
            enter.len(),
            1,
            "one Enter: the sign-in was done before it: {r:?}"
        );
        let total = end[0] - enter[0];
        let log = agent.log();
        let ms: f64 = log
            .split("token endpoint answered in ")
            .nth(before + 1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|v| v.parse().ok())
            .expect("the agent's timing line");
        after_enter.push(total);
        idp.push(ms);
        added.push(total - ms);
    }
    // baseline in the same run: the same pamtester login with a pasted ID token
    let mut token_login = Vec::new();
    for _ in 0..logins {
        let t = provider.id_token("alice", "zt-ssh");
        let start = Instant::now();
        let r = h.pamtester(SERVICE, "alice", &t, &["authenticate", "acct_mgmt"]);
        token_login.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(r.ok(), "{r:?}");
    }

    // memory: 100 pending sign-ins, one per user
    std::thread::sleep(Duration::from_millis(300));
    let (rss0, threads0) = (agent.rss_kib(), agent.threads());
    let held: Vec<_> = (0..100)
        .map(|i| {
            zt_published::device::DeviceSignIn::start(
                &socket_dir,
                format!("u{i:03}").as_bytes(),
                None,
                Duration::from_secs(15),
            )
            .expect("a pending sign-in")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (rss1, threads1) = (agent.rss_kib(), agent.threads());
    drop(held);
    let start = Instant::now();
    while agent.threads() > threads0 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (rss2, threads2) = (agent.rss_kib(), agent.threads());

    println!("\n| device sign-in, {logins} logins | median | p90 |");
    println!("|---|---|---|");
    println!(
        "| Enter to pamtester's exit | {:.1} ms | {:.1} ms |",
        median(&mut after_enter.clone()),
        p90(&mut after_enter)
    );
    println!(
        "| of which the IdP's token endpoint (agent's measure) | {:.1} ms | {:.1} ms |",
        median(&mut idp.clone()),
        p90(&mut idp)
    );
    println!(
        "| **added by zt** (the difference, per login) | **{:.1} ms** | {:.1} ms |",
        median(&mut added.clone()),
        p90(&mut added)
    );
    println!(
        "| baseline: pamtester with a pasted ID token, whole run | {:.1} ms | {:.1} ms |",
        median(&mut token_login.clone()),
        p90(&mut token_login)
    );
    println!(
        "\n100 pending sign-ins: agent VmRSS {rss0} KiB -> {rss1} KiB ({:.1} KiB each), \
         threads {threads0} -> {threads1}; all cancelled: {rss2} KiB, {threads2} threads",
        (rss1 as f64 - rss0 as f64) / 100.0
    );
}
