//! Sudo rights and local group grants from IdP groups, end to end: the real zt-agent
//! installs /etc/sudoers.d/zt from `[[sudo]]`, the real sudo (1.9) reads it, resolves
//! `%group` through libnss_zt, and authenticates and checks accounts through pam_zt.so;
//! `[[local_groups]]` grants show in `id` through libnss_zt's initgroups. Each test has
//! its own private host ([`Host::new_pam`]: /etc/sudoers.d, /etc/pam.d, /var/lib/zt are
//! its own), so the machine's sudo configuration is never touched.
//!
//! Every refusal is checked beside a positive control: the same host and rule working
//! for someone else, or for the same person before the change.

use std::os::unix::fs::PermissionsExt;
use std::process::Child;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use zt_e2e::tokens::{self, CF_CERTS_PATH, TEST_AUD, TestKey};
use zt_e2e::{CONFIG, Host, KeysServer, PamResult, clock_shift_lib, text};

const TEAM: &str = "acme";
const CF_ISS: &str = "https://acme.cloudflareaccess.com";

/// The sudo stack README.md documents: a token (re-authentication where a rule asks for
/// one), a local break-glass password, and pam_zt in account, where `max_offline` holds.
const SUDO_STACK: &str = "\
auth     [success=done ignore=ignore default=die]  pam_zt.so
auth     required                                   pam_unix.so try_first_pass
account  required   pam_zt.so
account  required   pam_unix.so
session  required   pam_unix.so
";

fn keys() -> &'static KeysServer {
    static K: OnceLock<KeysServer> = OnceLock::new();
    K.get_or_init(|| {
        let k = KeysServer::start();
        k.put(CF_CERTS_PATH, &tokens::cf_certs(&[TestKey::Ec]));
        k
    })
}

/// The rules of these tests, after [`CONFIG`]'s groups (g-sre "sre" login, g-dev
/// "developers").
fn rules() -> String {
    format!(
        r#"
[[groups]]
id = "g-people"
name = "people"
login = true

[[groups]]
id = "g-app"
name = "app-ops"
login = true

[[groups]]
id = "g-ops"
name = "ops"
login = true

[[issuers]]
kind = "cloudflare-access"
team = "{TEAM}"
audiences = ["{TEST_AUD}"]
certs_url = "{}"

[[sudo]]
group = "g-sre"
rule = "ALL=(ALL:ALL) NOPASSWD: ALL"

[[sudo]]
group = "g-app"
run_as = "root"
commands = ["/usr/bin/id -un"]
authenticate = false

[[sudo]]
group = "g-ops"
commands = ["/usr/bin/id -u"]
"#,
        keys().url(CF_CERTS_PATH)
    )
}

/// alice: sre (root without re-authentication); bob: nothing; carol: app-ops (one
/// command); dave: ops (one command, with a token). Everyone is in "people" (login).
fn people() -> Value {
    json!({
        "users": [
            {"id": "u-alice", "email": "alice@example.com"},
            {"id": "u-bob", "email": "bob@example.com"},
            {"id": "u-carol", "email": "carol@example.com"},
            {"id": "u-dave", "email": "dave@example.com"}
        ],
        "groups": [
            {"id": "g-people", "name": "People", "members": ["u-alice", "u-bob", "u-carol", "u-dave"]},
            {"id": "g-sre", "name": "SRE", "members": ["u-alice"]},
            {"id": "g-dev", "name": "Developers", "members": ["u-alice", "u-bob"]},
            {"id": "g-app", "name": "App operators", "members": ["u-carol"]},
            {"id": "g-ops", "name": "Ops", "members": ["u-dave"]}
        ]
    })
}

fn host_with(extra: &str) -> Host {
    assert!(
        Host::pam_zt_built().is_some(),
        "target/debug/libpam_zt.so is missing: run `cargo build --workspace`"
    );
    let h = Host::new_pam();
    add_local_groups(&h);
    h.write_config(&format!("{CONFIG}{}{extra}", rules()));
    h.write_directory(&people());
    h.pam_service("sudo", SUDO_STACK);
    h.sync();
    h
}

/// Local groups of the host for grants: ztlogs (2901) and docker (2902) unless the
/// machine's /etc/group (copied into the host) has them.
fn add_local_groups(h: &Host) {
    let mut group = std::fs::read_to_string(h.path("etc/group")).unwrap();
    for (name, gid) in [("ztlogs", 2901), ("docker", 2902)] {
        if !group.lines().any(|l| l.starts_with(&format!("{name}:"))) {
            group.push_str(&format!("{name}:x:{gid}:\n"));
        }
    }
    std::fs::write(h.path("etc/group"), group).unwrap();
}

fn host() -> Host {
    host_with("")
}

fn short(r: &PamResult) -> String {
    let mut s = r.output.clone();
    s.truncate(3000);
    format!("exit {}: {s}", r.code)
}

/// As `user` (uid, gid and groups from NSS, through setpriv --init-groups), runs
/// `sudo ARGS` with `input` on stdin.
fn sudo(h: &Host, user: &str, args: &str, input: &str) -> PamResult {
    let script = format!(
        "cd / && exec setpriv --reuid=$(id -u {user}) --regid=$(id -g {user}) --init-groups \
         sudo {args}"
    );
    h.run_with_stdin(&["bash", "-c", &script], input.as_bytes())
}

/// `sudo -n true` as `user`: may they become root with no re-authentication?
fn sudo_n_true(h: &Host, user: &str) -> PamResult {
    sudo(h, user, "-n -k true", "")
}

fn installed(h: &Host) -> Option<String> {
    std::fs::read_to_string(h.path("etc/sudoers.d/zt")).ok()
}

fn sudo_l(h: &Host, user: &str) -> String {
    let o = h.run(&["sudo", "-l", "-U", user]);
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

/// A short ES256 Access token for `email` (fits sudo's 511-byte answer).
fn token(email: &str) -> String {
    let t = tokens::now();
    tokens::mint(
        TestKey::Ec,
        &json!({"aud": [TEST_AUD], "email": email, "exp": t + 300, "iat": t, "nbf": t,
                "iss": CF_ISS, "type": "app", "sub": "s"}),
    )
}

fn status(h: &Host) -> (i32, String) {
    let o = h.agent(&["status"]);
    (
        o.status.code().unwrap_or(-1),
        format!("{}{}", text(&o.stdout), text(&o.stderr)),
    )
}

#[test]
fn sudo_rights_follow_idp_groups() {
    let h = host();
    let file = installed(&h).expect("/etc/sudoers.d/zt installed");
    let meta = std::fs::metadata(h.path("etc/sudoers.d/zt")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o440);
    assert!(file.starts_with("# zt-agent: generated from "), "{file}");
    assert!(file.contains("%sre ALL=(ALL:ALL) NOPASSWD: ALL"), "{file}");
    let o = h.run(&["visudo", "-c"]);
    assert!(o.status.success(), "visudo -c: {}", text(&o.stdout));

    // sudo -l lists exactly the rules each one's groups give
    let alice = sudo_l(&h, "alice");
    assert!(alice.contains("(ALL : ALL) NOPASSWD: ALL"), "{alice}");
    assert!(!alice.contains("/usr/bin/id"), "{alice}");
    let carol = sudo_l(&h, "carol");
    assert!(
        carol.contains("(root) NOPASSWD: /usr/bin/id -un"),
        "{carol}"
    );
    assert!(!carol.contains("ALL : ALL"), "{carol}");
    let bob = sudo_l(&h, "bob");
    assert!(bob.contains("not allowed to run sudo"), "{bob}");

    // alice needs no re-authentication; bob, in no sudo group, is refused
    let r = sudo_n_true(&h, "alice");
    assert_eq!(r.code, 0, "{}", short(&r));
    let r = sudo_n_true(&h, "bob");
    assert_ne!(r.code, 0, "{}", short(&r));

    // carol: that command with exactly its arguments, nothing else
    let r = sudo(&h, "carol", "-n -k /usr/bin/id -un", "");
    assert_eq!((r.code, r.output.trim()), (0, "root"), "{}", short(&r));
    for other in [
        "/usr/bin/id -u",
        "/usr/bin/id",
        "/usr/bin/true",
        "-u root /bin/sh -c id",
    ] {
        let r = sudo(&h, "carol", &format!("-n -k {other}"), "");
        assert_ne!(r.code, 0, "carol ran {other}: {}", short(&r));
    }

    // dave's rule asks for re-authentication: a token of his, through pam_zt
    let r = sudo(&h, "dave", "-n -k /usr/bin/id -u", "");
    assert_ne!(r.code, 0, "no token, no sudo: {}", short(&r));
    let r = sudo(
        &h,
        "dave",
        "-S -k -p 'sudo-prompt: ' /usr/bin/id -u",
        &format!("{}\n", token("dave@example.com")),
    );
    assert!(
        r.code == 0 && r.output.lines().any(|l| l.trim() == "0"),
        "{}",
        short(&r)
    );
    let alices = token("alice@example.com");
    let r = sudo(
        &h,
        "dave",
        "-S -k -p 'sudo-prompt: ' /usr/bin/id -u",
        &format!("{alices}\n{alices}\n{alices}\n"),
    );
    assert_ne!(r.code, 0, "alice's token is no use to dave: {}", short(&r));

    // alice leaves sre in the IdP: the next sync takes sudo away, and the file is the same
    let mut d = people();
    d["groups"][1]["members"] = json!([]);
    h.write_directory(&d);
    h.sync();
    assert_eq!(installed(&h).as_deref(), Some(file.as_str()));
    let r = sudo_n_true(&h, "alice");
    assert_ne!(r.code, 0, "{}", short(&r));
    assert!(sudo_l(&h, "alice").contains("not allowed"));
    // and back
    h.write_directory(&people());
    h.sync();
    let r = sudo_n_true(&h, "alice");
    assert_eq!(r.code, 0, "{}", short(&r));
}

#[test]
fn an_invalid_rule_is_reported_and_the_installed_file_stays_in_force() {
    let h = host();
    let before = installed(&h).expect("installed");
    let (code, st) = status(&h);
    assert_eq!(code, 0, "{st}");
    assert!(st.contains("sudo: 3 rules"), "{st}");

    // visudo refuses this one (NOPASSWD without its colon); our own checks do not
    h.write_config(&format!(
        "{CONFIG}{}\n[[sudo]]\ngroup = \"g-dev\"\nrule = \"ALL=(ALL:ALL) NOPASSWD ALL\"\n",
        rules()
    ));
    let o = h.agent(&["sync", "--once"]);
    let said = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(said.contains("visudo refused"), "{said}");
    let line = h.path("etc/zt/agent.toml").display().to_string();
    assert!(
        said.contains(&line),
        "names the config file and line: {said}"
    );
    assert_eq!(installed(&h).as_deref(), Some(before.as_str()));
    assert!(!h.path("etc/sudoers.d/.zt.new").exists());
    let r = sudo_n_true(&h, "alice");
    assert_eq!(r.code, 0, "sudo still works: {}", short(&r));
    let (code, st) = status(&h);
    assert_eq!(code, 1, "{st}");
    assert!(st.contains("SUDO RULES NOT UPDATED"), "{st}");

    // a rule that cannot be a sudoers line at all is a config error: nothing changes
    h.write_config(&format!(
        "{CONFIG}{}\n[[sudo]]\ngroup = \"g-dev\"\nrule = \", bob ALL=(ALL) NOPASSWD: ALL\"\n",
        rules()
    ));
    let o = h.agent(&["sync", "--once"]);
    assert_eq!(o.status.code(), Some(78), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("more users"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(installed(&h).as_deref(), Some(before.as_str()));

    // fixed: installed, the status is clean again
    h.write_config(&format!("{CONFIG}{}", rules()));
    h.sync();
    assert_eq!(status(&h).0, 0);
}

/// The agent is killed at random moments of syncs that switch between two rule sets:
/// after each kill the installed file is one of the two, whole, and valid.
#[test]
fn a_killed_agent_leaves_the_old_file_or_the_new_one() {
    let h = host();
    let a = installed(&h).expect("installed");
    let config_a = format!("{CONFIG}{}", rules());
    let config_b =
        format!("{config_a}\n[[sudo]]\ngroup = \"g-dev\"\ncommands = [\"/usr/bin/uptime\"]\n");
    h.write_config(&config_b);
    h.sync();
    let b = installed(&h).expect("installed");
    assert_ne!(a, b);
    let mut seen = [false, false];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..40 {
        h.write_config(if round % 2 == 0 { &config_a } else { &config_b });
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // two rounds in four run to the end (so both texts are installed by
        // a finished sync at some point), the others are killed at random
        // moments of their first 40 ms (writing, visudo, rename)
        let delay = if round % 4 < 2 {
            Duration::from_millis(400)
        } else {
            Duration::from_micros(seed % 40_000)
        };
        let mut argv = h.agent_argv();
        argv.extend(["sync".into(), "--once".into()]);
        // the agent with whatever it started (visudo), as systemd would end it
        let mut child: Child = h.spawn_group(&argv.iter().map(String::as_str).collect::<Vec<_>>());
        std::thread::sleep(delay);
        let group = child.id() as i32;
        // SAFETY: kill has no memory preconditions; the group is our own child's.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = child.wait();
        // until the whole group is gone: a visudo still running would keep the
        // killed agent's mount namespace (and its overlay) alive
        let gone = std::time::Instant::now();
        while group_alive(group) && gone.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(2));
        }
        let now = installed(&h).expect("a file is always installed");
        let which = [now == a, now == b];
        assert!(which[0] || which[1], "round {round}: a third text:\n{now}");
        seen[usize::from(which[1])] = true;
        let o = h.run(&["visudo", "-c"]);
        assert!(
            o.status.success(),
            "round {round}: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
    }
    // both texts were left installed at some point
    assert!(seen[0] && seen[1], "{seen:?}");
    // and the next sync cleans up whatever a kill left
    h.sync();
    assert!(!h.path("etc/sudoers.d/.zt.new").exists());
}

/// Whether a process of group `pgid` is still running (zombies do not count:
/// nobody may reap an orphan here, and a zombie holds no namespace).
fn group_alive(pgid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ')'
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

#[test]
fn local_group_grants_come_from_initgroups() {
    let h = Host::new_pam();
    add_local_groups(&h);
    let grants = |privileged: bool| {
        format!(
            "{CONFIG}{}\n[[local_groups]]\ngroup = \"g-dev\"\ngrant = [\"ztlogs\"]\n\
             \n[[local_groups]]\ngroup = \"g-sre\"\ngrant = [\"disk\", \"docker\"]\n{}",
            rules(),
            if privileged {
                "allow_privileged = true\n"
            } else {
                ""
            }
        )
    };
    h.write_config(&grants(false));
    h.write_directory(&people());
    h.sync();
    let id = |user: &str| text(&h.run(&["id", user]).stdout);
    let alice = id("alice");
    assert!(alice.contains("(ztlogs)"), "{alice}");
    assert!(
        !alice.contains("(docker)") && !alice.contains("(disk)"),
        "{alice}"
    );
    assert!(id("carol").contains("(people)") && !id("carol").contains("ztlogs"));
    let o = h.agent(&["lookup", "alice"]);
    assert!(
        text(&o.stdout).contains("ztlogs, local"),
        "{}",
        text(&o.stdout)
    );
    // /etc/group is not edited
    let group = std::fs::read_to_string(h.path("etc/group")).unwrap();
    assert!(!group.contains("alice"), "{group}");
    let (_, st) = status(&h);
    assert!(
        st.contains("\"disk\" not granted") && st.contains("\"docker\" not granted"),
        "{st}"
    );
    assert!(st.contains("allow_privileged"), "{st}");

    // the grant opens a file owned by that group
    let secret = h.path("var/lib/zt-test-logs");
    std::fs::write(&secret, "log line\n").unwrap();
    let o = h.run(&["chown", "root:ztlogs", secret.to_str().unwrap()]);
    assert!(o.status.success());
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let read_as = |user: &str| {
        h.sh(&format!(
            "cd / && setpriv --reuid=$(id -u {user}) --regid=$(id -g {user}) --init-groups \
             cat /var/lib/zt-test-logs"
        ))
    };
    let o = read_as("alice");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "log line\n");
    let o = read_as("carol");
    assert!(
        !o.status.success(),
        "carol has no grant: {}",
        text(&o.stdout)
    );

    // with the opt-in, the privileged grants apply
    h.write_config(&grants(true));
    h.sync();
    let alice = id("alice");
    assert!(
        alice.contains("(docker)") && alice.contains("(disk)"),
        "{alice}"
    );
    assert!(!id("bob").contains("docker"));
    // leaving the IdP group takes the grant away at the next sync
    let mut d = people();
    d["groups"][1]["members"] = json!([]);
    h.write_directory(&d);
    h.sync();
    assert!(!id("alice").contains("docker"), "{}", id("alice"));
}

#[test]
fn past_max_offline_sudo_and_grants_are_withdrawn() {
    let h = host_with(
        "\n[[local_groups]]\ngroup = \"g-sre\"\ngrant = [\"ztlogs\"]\n\n[login]\nmax_offline = \"1m\"\n",
    );
    let r = sudo_n_true(&h, "alice");
    assert_eq!(r.code, 0, "positive control: {}", short(&r));
    let id = |user: &str| text(&h.run(&["id", user]).stdout);
    assert!(id("alice").contains("(ztlogs)"), "{}", id("alice"));

    // The last good sync was ten minutes ago (an agent whose clock says so, through
    // the LD_PRELOAD shim): the rules are in place, pam_zt's account stage refuses.
    let mut d = people();
    d["users"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "u-erin", "email": "erin@example.com"}));
    d["groups"][0]["members"]
        .as_array_mut()
        .unwrap()
        .push(json!("u-erin"));
    h.write_directory(&d);
    let shifted = |h: &Host| {
        let shim = format!("LD_PRELOAD={}", clock_shift_lib().display());
        let mut argv = vec!["env".to_string(), shim, "ZT_CLOCK_SHIFT=-600".into()];
        argv.extend(h.agent_argv());
        argv.extend(["sync".into(), "--once".into()]);
        h.run(&argv.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let o = shifted(&h);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(installed(&h).is_some());
    let r = sudo_n_true(&h, "alice");
    assert_ne!(r.code, 0, "offline too long: {}", short(&r));
    // dave's rule asks for a token: refused too
    let r = sudo(
        &h,
        "dave",
        "-S -k -p 'sudo-prompt: ' /usr/bin/id -u",
        &format!("{}\n", token("dave@example.com")),
    );
    assert_ne!(r.code, 0, "{}", short(&r));

    // The agent's next attempt fails (the directory is gone) with the host still past
    // max_offline: it withdraws the rules, so even a sudo stack without pam_zt cannot
    // honour them, and the grants, even though the admin also took the
    // [[local_groups]] entry out of the config meanwhile.
    std::fs::remove_file(h.path("etc/zt/directory.json")).unwrap();
    h.write_config(&format!(
        "{CONFIG}{}\n[login]\nmax_offline = \"1m\"\n",
        rules()
    ));
    let o = h.agent(&["sync", "--once"]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o.stderr));
    assert_eq!(installed(&h), None, "rules withdrawn offline");
    assert!(sudo_l(&h, "alice").contains("not allowed"));
    assert!(
        !id("alice").contains("ztlogs"),
        "grant withdrawn: {}",
        id("alice")
    );
    assert!(
        id("alice").contains("(sre)"),
        "memberships stay: {}",
        id("alice")
    );
    let (code, st) = status(&h);
    assert_eq!(code, 1);
    assert!(st.contains("withdrawn"), "{st}");

    // back online: the rules return, alice has sudo again
    h.write_config(&format!(
        "{CONFIG}{}\n[[local_groups]]\ngroup = \"g-sre\"\ngrant = [\"ztlogs\"]\n\n[login]\nmax_offline = \"1m\"\n",
        rules()
    ));
    h.write_directory(&people());
    h.sync();
    assert!(installed(&h).is_some());
    let r = sudo_n_true(&h, "alice");
    assert_eq!(r.code, 0, "{}", short(&r));
    assert!(id("alice").contains("(ztlogs)"), "{}", id("alice"));
}

/// A session opened while alice was in sre keeps sre's gid in its group list. sudo
/// takes the invoking user's groups from the process unless /etc/sudo.conf says
/// `Set group_source dynamic` (README.md tells admins to set it; the package will):
/// then it asks NSS, libnss_zt answers from the current snapshot, and the removal
/// holds for old sessions too.
#[test]
fn with_group_source_dynamic_a_removal_reaches_sessions_already_open() {
    let h = host();
    let gid = |name: &str| {
        let (_, line) = h.getent(&["group", name]);
        line.split(':').nth(2).unwrap().trim().to_string()
    };
    let (sre, everyone) = (gid("sre"), gid("people"));
    let conf = h.path("etc/zt/sudo.conf");
    std::fs::write(&conf, "Set group_source dynamic\n").unwrap();
    // an old session: alice with the groups she had at login
    let old_session = |dynamic: bool| {
        let mount = if dynamic {
            format!("mount --bind {} /etc/sudo.conf && ", conf.display())
        } else {
            String::new()
        };
        h.sh(&format!(
            "cd / && {mount}setpriv --reuid=$(id -u alice) --regid=$(id -g alice) \
             --groups={sre},{everyone} sudo -n -k true"
        ))
    };
    assert!(old_session(true).status.success(), "positive control");
    let mut d = people();
    d["groups"][1]["members"] = json!([]);
    h.write_directory(&d);
    h.sync();
    let stale = old_session(false);
    let fresh = old_session(true);
    assert!(
        !fresh.status.success(),
        "group_source dynamic: refused: {}",
        text(&fresh.stderr)
    );
    eprintln!(
        "default group_source (adaptive), old session: sudo exit {:?}",
        stale.status.code()
    );
    // the machine's sudo.conf (which the host reads) lacks the line: status says so
    let (_, st) = status(&h);
    assert!(st.contains("Set group_source dynamic"), "{st}");
}
