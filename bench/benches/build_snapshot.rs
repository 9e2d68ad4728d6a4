//! Snapshot build time for a large directory: `cargo bench -p zt-bench`.
//!
//! Generates, in memory and deterministically, a directory of 100,000 users and
//! 20,000 groups of 5 members (user u050000 in 200 of them), plus one login
//! group holding every user, and an agent config listing all 20,001 groups as
//! [[groups]]. Then times, as medians over ZT_BENCH_RUNS runs (default 5):
//!
//! - baseline: serde_json parsing the directory JSON into a `serde_json::Value`
//! - the agent pipeline: directory parse (typed, checked) + resolve (identity
//!   rules, uid/gid allocation) + `zt_snapshot::build` + parse + `verify_all`,
//!   for a first sync (no ids handed out yet: every uid/gid is derived) and a
//!   steady-state sync (every id already persisted)
//!
//! and prints each stage, the pipeline total and its ratio to the baseline.
//! ZT_BENCH_USERS / ZT_BENCH_GROUPS change the size (for profiling);
//! ZT_BENCH_DUMP=FILE writes the first-sync snapshot (deterministic bytes).

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use zt_agent::config::AgentConfig;
use zt_agent::directory::file;
use zt_agent::identity::local::LocalAccounts;
use zt_agent::resolve::{self, IdState};
use zt_snapshot::{Pair, Snapshot};

const MEMBERS_PER_GROUP: usize = 5;
const TARGET_GROUPS: usize = 200;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (SplitMix64): same directory on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn user_id(i: usize) -> String {
    format!("5f0c1a2e-0000-4000-8000-{i:012}")
}

fn group_id(j: usize) -> String {
    format!("9a7d3c4b-0000-4000-9000-{j:012}")
}

const LOGIN_GROUP_ID: &str = "9a7d3c4b-ffff-4000-9000-000000000000";

struct Generated {
    json: String,
    config: String,
    target: String,
}

fn generate(users: usize, groups: usize) -> Generated {
    let mut rng = Rng(42);
    let target_idx = users / 2;
    let step = (groups / TARGET_GROUPS).max(1);
    let target_groups: Vec<usize> = (step / 2 + 1..=groups)
        .step_by(step)
        .take(TARGET_GROUPS)
        .collect();

    let mut json = String::with_capacity(users * 200 + groups * 300);
    json.push_str("{\"users\": [\n");
    for i in 1..=users {
        // created: one second apart from 2020-01-01, so ages are all distinct
        let secs = i % 60;
        let mins = (i / 60) % 60;
        let hours = (i / 3600) % 24;
        let day = 1 + (i / 86_400) % 28;
        let _ = writeln!(
            json,
            "{{\"id\": \"{}\", \"email\": \"u{i:06}@example.com\", \"display_name\": \"Bench User {i}\", \
             \"enabled\": true, \"created\": \"2020-01-{day:02}T{hours:02}:{mins:02}:{secs:02}Z\"}}{}",
            user_id(i),
            if i < users { "," } else { "" }
        );
    }
    json.push_str("],\n\"groups\": [\n");
    let mut config = String::from(
        "[directory]\nkind = \"file\"\npath = \"/etc/zt/directory.json\"\n\n\
         [users]\nname_from = \"email-local-part\"\ndomains = [\"example.com\"]\n\n",
    );
    for j in 1..=groups {
        let mut members: Vec<usize> = (0..MEMBERS_PER_GROUP)
            .map(|_| 1 + rng.below(users))
            .filter(|&m| m != target_idx)
            .collect();
        members.sort_unstable();
        members.dedup();
        if target_groups.binary_search(&j).is_ok() {
            members.push(target_idx);
        }
        let list: Vec<String> = members
            .iter()
            .map(|&m| format!("\"{}\"", user_id(m)))
            .collect();
        let _ = writeln!(
            json,
            "{{\"id\": \"{}\", \"name\": \"Group {j}\", \"members\": [{}]}},",
            group_id(j),
            list.join(", ")
        );
        let _ = write!(
            config,
            "[[groups]]\nid = \"{}\"\nname = \"g{j:05}\"\n\n",
            group_id(j)
        );
    }
    let everyone: Vec<String> = (1..=users).map(|i| format!("\"{}\"", user_id(i))).collect();
    let _ = writeln!(
        json,
        "{{\"id\": \"{LOGIN_GROUP_ID}\", \"name\": \"Everyone\", \"members\": [{}]}}\n]}}",
        everyone.join(", ")
    );
    let _ = write!(
        config,
        "[[groups]]\nid = \"{LOGIN_GROUP_ID}\"\nname = \"zt-login\"\nlogin = true\n"
    );
    Generated {
        json,
        config,
        target: format!("u{target_idx:06}"),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

#[derive(Default)]
struct Times {
    parse: Vec<Duration>,
    resolve: Vec<Duration>,
    build: Vec<Duration>,
    verify: Vec<Duration>,
    total: Vec<Duration>,
}

/// One pipeline run: directory parse + resolve + build + parse/verify_all.
/// Returns the resolution's id state (for the steady-state runs) and the
/// snapshot bytes (for the sanity checks).
fn pipeline(
    g: &Generated,
    config: &AgentConfig,
    local: &LocalAccounts,
    ids: &IdState,
    t: &mut Times,
) -> (IdState, Vec<u8>) {
    let t0 = Instant::now();
    let dir = file::parse(&g.json, "bench.json").expect("directory parses");
    let t1 = Instant::now();
    let mut r = resolve::resolve(config, &dir, local, ids);
    r.content.generation = 1;
    let t2 = Instant::now();
    let built = zt_snapshot::build(&r.content).expect("snapshot builds");
    let t3 = Instant::now();
    Pair::parse(&built.public, &built.private)
        .and_then(|p| p.verify_all())
        .expect("snapshot verifies");
    let bytes = built.public;
    let t4 = Instant::now();
    t.parse.push(t1 - t0);
    t.resolve.push(t2 - t1);
    t.build.push(t3 - t2);
    t.verify.push(t4 - t3);
    t.total.push(t4 - t0);
    // dropping the directory and resolution is not part of the pipeline time
    drop(black_box(dir));
    (r.ids, bytes)
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent: stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let users = env_usize("ZT_BENCH_USERS", 100_000);
    let groups = env_usize("ZT_BENCH_GROUPS", 20_000);
    let runs = env_usize("ZT_BENCH_RUNS", 5).max(1);

    let t = Instant::now();
    let g = generate(users, groups);
    println!(
        "generated {users} users, {groups} groups + 1 login group ({:.1} MB JSON, {:.1} MB config) in {}",
        g.json.len() as f64 / 1e6,
        g.config.len() as f64 / 1e6,
        secs(t.elapsed())
    );
    let local = LocalAccounts::load(std::path::Path::new("/")).unwrap_or_default();

    let mut config_parse = Vec::new();
    let mut config = None;
    for _ in 0..runs {
        let t = Instant::now();
        let c = AgentConfig::parse(&g.config, "bench.toml").expect("config parses");
        config_parse.push(t.elapsed());
        config = Some(c);
    }
    let config = config.expect("at least one run");

    let mut baseline = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let v: serde_json::Value = serde_json::from_str(&g.json).expect("valid JSON");
        baseline.push(t.elapsed());
        drop(black_box(v));
    }

    let mut first = Times::default();
    let mut steady = Times::default();
    let mut ids = IdState::default();
    let mut bytes = Vec::new();
    for _ in 0..runs {
        (ids, bytes) = pipeline(&g, &config, &local, &IdState::default(), &mut first);
    }
    for _ in 0..runs {
        pipeline(&g, &config, &local, &ids, &mut steady);
    }

    // ZT_BENCH_DUMP=FILE: the first-sync snapshot's bytes (generation 1,
    // synced_at 0: deterministic), to check that a change to the agent or the
    // writer leaves the output byte for byte the same
    if let Ok(path) = std::env::var("ZT_BENCH_DUMP") {
        std::fs::write(&path, &bytes).expect("write ZT_BENCH_DUMP");
    }

    // sanity: everyone is a user, every group is there, the target's groups
    let s = Snapshot::parse(&bytes).expect("parses");
    let target = s
        .user_by_name(g.target.as_bytes())
        .expect("readable")
        .expect("target user present");
    println!(
        "snapshot: {} users, {} groups (incl. user private groups), {:.1} MB; {} is in {} supplementary groups",
        s.user_count(),
        s.group_count(),
        bytes.len() as f64 / 1e6,
        g.target,
        target.groups.len()
    );
    assert_eq!(s.user_count(), users);
    assert_eq!(s.group_count(), groups + 1 + users);
    assert_eq!(target.groups.len(), TARGET_GROUPS.min(groups) + 1);

    let base = median(baseline);
    println!("\nmedians over {runs} runs\n");
    println!("| step | first sync | steady state |");
    println!("|---|---|---|");
    let row = |label: &str, a: &Vec<Duration>, b: &Vec<Duration>| {
        println!(
            "| {label} | {} | {} |",
            secs(median(a.clone())),
            secs(median(b.clone()))
        );
    };
    println!(
        "| baseline: serde_json::Value parse of the directory JSON | {} | |",
        secs(base)
    );
    println!(
        "| config parse ({} [[groups]], not in the total) | {} | |",
        groups + 1,
        secs(median(config_parse))
    );
    row(
        "directory parse (typed) + check",
        &first.parse,
        &steady.parse,
    );
    row(
        "resolve (identity rules, uid/gid allocation)",
        &first.resolve,
        &steady.resolve,
    );
    row("zt_snapshot::build", &first.build, &steady.build);
    row(
        "Pair::parse + verify_all (both files)",
        &first.verify,
        &steady.verify,
    );
    let (tf, ts) = (median(first.total), median(steady.total));
    println!(
        "| **pipeline total** | **{}** | **{}** |",
        secs(tf),
        secs(ts)
    );
    println!(
        "| ratio to baseline | {:.1}x | {:.1}x |",
        tf.as_secs_f64() / base.as_secs_f64(),
        ts.as_secs_f64() / base.as_secs_f64()
    );
    let target_s = 2.0;
    println!(
        "\ntarget: snapshot for {users} users under {target_s} s: {}",
        if tf.as_secs_f64() < target_s && ts.as_secs_f64() < target_s {
            "met"
        } else {
            "NOT met"
        }
    );
}
