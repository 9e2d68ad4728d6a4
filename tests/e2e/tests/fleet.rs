//! Fleets end to end: a publisher agent with a file directory publishes a
//! signed document into a folder a real nginx serves on 127.0.0.1; two host
//! agents in private hosts with different local accounts and subordinate id
//! ranges fetch it (one as a daemon, one with `sync --once`), verify it and
//! serve the same uids and gids through the real glibc. A change reaches the
//! daemon within one interval; an unchanged poll is a 304. Every refusal (a
//! foreign key, a changed byte, a truncated object, an older serial replayed,
//! an expired document) is a clear exit code and status, and the host keeps
//! its last good state.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zt_e2e::nginx::Nginx;
use zt_e2e::{Host, text, uid_of};

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

const GROUPS: &str = r#"
[users]
domains = ["example.com"]

[[groups]]
id = "g-sre"
name = "sre"
login = true

[[groups]]
id = "g-dev"
name = "developers"
login = false
"#;

fn publisher_config(key: &str, valid_for: &str) -> String {
    format!(
        r#"
[directory]
kind = "file"
path = "ROOT/etc/zt/directory.json"
{GROUPS}
[publish]
to = "ROOT/srv/fleet"
signing_key_file = "ROOT/etc/zt/{key}"
valid_for = "{valid_for}"
"#
    )
}

fn host_config(url: &str, public_key: &str) -> String {
    format!(
        r#"
[directory]
kind = "fleet"
url = "{url}"
public_keys = ["{public_key}"]
sync_interval = "5s"
{GROUPS}"#
    )
}

fn directory(sre: &[&str]) -> Value {
    let mut people: Vec<&str> = sre.to_vec();
    people.push("dave");
    json!({
        "users": people.iter().map(|u| json!({"id": format!("u-{u}"), "email": format!("{u}@example.com"), "display_name": u.to_uppercase()})).collect::<Vec<_>>(),
        "groups": [
            {"id": "g-sre", "name": "SRE", "members": sre.iter().map(|u| format!("u-{u}")).collect::<Vec<_>>()},
            {"id": "g-dev", "name": "Dev", "members": ["u-dave", "u-alice"]}
        ]
    })
}

fn new_key(h: &Host, name: &str) -> String {
    let path = h.path(&format!("etc/zt/{name}"));
    let o = h.agent(&["fleet-key", "new", path.to_str().unwrap()]);
    assert!(o.status.success(), "fleet-key new: {}", text(&o.stderr));
    let public = text(&o.stdout).trim().to_string();
    let on_disk = std::fs::read_to_string(h.path(&format!("etc/zt/{name}.pub"))).unwrap();
    assert_eq!(on_disk.trim(), public);
    public
}

/// `sync --once`: (exit code, stderr).
fn sync(h: &Host) -> (i32, String) {
    let o = h.agent(&["sync", "--once"]);
    (o.status.code().unwrap_or(-1), text(&o.stderr))
}

fn status(h: &Host) -> String {
    text(&h.agent(&["status"]).stdout)
}

fn passwd(h: &Host, name: &str) -> Option<String> {
    let (rc, line) = h.getent(&["passwd", name]);
    (rc == 0).then(|| line.trim().to_string())
}

fn gid_of(h: &Host, group: &str) -> Option<String> {
    let (rc, line) = h.getent(&["group", group]);
    (rc == 0).then(|| line.split(':').nth(2).unwrap_or_default().to_string())
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) on the process group of a child this test started.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGTERM);
    }
    let _ = child.wait();
}

fn pointer(folder: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(folder.join("current.json")).unwrap()).unwrap()
}

fn object_path(folder: &Path) -> std::path::PathBuf {
    folder.join(pointer(folder)["object"].as_str().unwrap())
}

/// A refused sync: its exit code, and the reason in stderr and in status;
/// `keep` still resolves, `absent` never arrived.
fn assert_refused(h: &Host, code: i32, reason: &str, keep: &str, absent: &str) {
    let (rc, err) = sync(h);
    assert_eq!(rc, code, "expected exit {code} ({reason}); stderr: {err}");
    assert!(err.contains(reason), "stderr lacks {reason:?}: {err}");
    let st = status(h);
    assert!(
        st.contains("last sync: FAILED") && st.contains(reason),
        "{st}"
    );
    assert!(passwd(h, keep).is_some(), "{keep} lost after a refusal");
    assert!(
        passwd(h, absent).is_none(),
        "{absent} arrived from a refused document"
    );
}

#[test]
fn a_fleet_served_by_nginx_resolves_the_same_on_every_host_and_refuses_bad_documents() {
    // the publisher: a file directory, a signing key, a folder nginx serves
    let publisher = Host::new();
    let public = new_key(&publisher, "fleet.key");
    publisher.write_config(&publisher_config("fleet.key", "1h"));
    publisher.write_directory(&directory(&["alice", "bob", "carol"]));
    let folder = publisher.path("srv/fleet");
    std::fs::create_dir_all(&folder).unwrap();
    publisher.sync();
    let nginx = Nginx::serve(&folder);
    let first_pointer = std::fs::read(folder.join("current.json")).unwrap();
    let first_object = object_path(&folder);

    // host a: a local account holds bob's fleet uid; host b: subordinate
    // ranges over all of zt's ids (a host-local allocation would refuse everyone)
    let a = Host::new();
    let b = Host::new();
    for h in [&a, &b] {
        h.write_config(&host_config(&nginx.url(), &public));
    }
    std::fs::write(
        b.path("etc/subuid"),
        "builder:1879048192:134217728\nbuilder:100000:65536\n",
    )
    .unwrap();
    std::fs::write(b.path("etc/subgid"), "builder:2013265920:134086656\n").unwrap();
    b.add_local_user("ops", 1500);
    assert_eq!(sync(&b).0, 0, "{}", sync(&b).1);
    let bob = passwd(&b, "bob").expect("bob on b");
    a.add_local_user("build", uid_of(&bob).unwrap());
    let (rc, err) = sync(&a);
    assert_eq!(rc, 0, "{err}");

    // identical uids and gids on both hosts, as published
    for name in ["alice", "carol"] {
        let (la, lb) = (passwd(&a, name), passwd(&b, name));
        assert!(la.is_some(), "{name} missing on a");
        assert_eq!(la, lb, "{name} differs between the hosts");
    }
    assert_eq!(gid_of(&a, "sre"), gid_of(&b, "sre"));
    assert_eq!(gid_of(&a, "developers"), gid_of(&b, "developers"));
    assert!(gid_of(&a, "sre").is_some());
    // dave is only in developers: no login group here
    assert_eq!(passwd(&a, "dave"), None);
    // bob collides with a's local account: left out on a, with the reason
    assert_eq!(passwd(&a, "bob"), None);
    let st = status(&a);
    assert!(st.contains("bob") && st.contains("local account"), "{st}");
    assert!(st.contains("fleet document: serial "), "{st}");
    let json: Value =
        serde_json::from_slice(&a.agent(&["status", "--json"]).stdout).expect("status --json");
    assert!(json["fleet"]["serial"].as_u64().is_some(), "{json}");
    let why = text(&a.agent(&["lookup", "bob"]).stdout);
    assert!(why.contains("local account"), "{why}");
    assert!(text(&a.getent(&["group", "sre"]).1.into_bytes()).contains("alice"));

    // host a as a daemon: a change reaches it within one interval (5 s, +-10%)
    let argv = a.agent_argv();
    let run_dir = a.path("run/zt");
    let mut args: Vec<&str> = argv.iter().map(String::as_str).collect();
    args.extend(["--run-dir", run_dir.to_str().unwrap(), "run"]);
    let daemon = a.spawn_group(&args);
    std::thread::sleep(Duration::from_secs(1));
    publisher.write_directory(&directory(&["alice", "bob", "carol", "erin"]));
    publisher.sync();
    // one interval is at most 5.5 s; the rest is the sync itself and getent
    wait_for("erin on the daemon's host", Duration::from_secs(9), || {
        passwd(&a, "erin").is_some()
    });
    stop(daemon);
    assert_eq!(sync(&b).0, 0);
    assert_eq!(passwd(&a, "erin"), passwd(&b, "erin"));

    // two publications in quick succession (nginx's ETag is the mtime in
    // whole seconds and the size): the host that saw the first sees the second
    publisher.write_directory(&directory(&["alice", "bob", "carol", "erin", "finn"]));
    publisher.sync();
    assert_eq!(sync(&b).0, 0);
    publisher.write_directory(&directory(&[
        "alice", "bob", "carol", "erin", "finn", "fay",
    ]));
    publisher.sync();
    let (rc, err) = sync(&b);
    assert_eq!(rc, 0, "{err}");
    assert!(
        passwd(&b, "fay").is_some(),
        "the second publication was missed"
    );

    // doctor reads the fleet as the agent does, and checks the publisher's key
    let o = text(&b.agent(&["doctor"]).stdout);
    assert!(o.contains("directory: fleet: read "), "{o}");
    let o = text(&publisher.agent(&["doctor"]).stdout);
    assert!(o.contains(&format!("public_keys = [\"{public}\"]")), "{o}");

    // nothing changed: the poll is a 304 and the host is unchanged
    let o = b.agent(&["sync", "--once", "--detailed-exitcodes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let log = std::fs::read_to_string(&nginx.access_log).unwrap();
    let last = log.lines().rfind(|l| l.contains("current.json")).unwrap();
    assert!(last.contains("\" 304 "), "{last}");

    // a document signed by a key the hosts do not know, published into the
    // same folder by a rogue publisher
    let rogue = Host::new();
    new_key(&rogue, "rogue.key");
    rogue.write_config(
        &publisher_config("rogue.key", "1h").replace("ROOT/srv/fleet", folder.to_str().unwrap()),
    );
    rogue.write_directory(&directory(&[
        "alice", "bob", "carol", "erin", "finn", "fay", "mallory",
    ]));
    rogue.sync();
    assert_refused(&b, 65, "unknown key", "erin", "mallory");

    // the real publisher takes over again (the pointer is not its own)
    publisher.sync();
    assert_eq!(sync(&b).0, 0);
    assert!(passwd(&b, "mallory").is_none());

    // one changed byte, with a pointer rewritten to match the changed object:
    // the pointer's own signature gives it away before anything is fetched
    // (a changed byte with the pointer left alone is "truncated or damaged"
    // below; the object's signature over every byte is unit-tested)
    publisher.write_directory(&directory(&[
        "alice", "bob", "carol", "erin", "finn", "fay", "gina",
    ]));
    publisher.sync();
    let path = object_path(&folder);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    let i = bad.len() - 10;
    bad[i] ^= 0x20;
    std::fs::write(&path, &bad).unwrap();
    let mut p = pointer(&folder);
    p["sha256"] = json!(sha256(&bad));
    std::fs::write(folder.join("current.json"), p.to_string()).unwrap();
    assert_refused(&b, 65, "signature does not verify", "erin", "gina");

    // a truncated object
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let mut p = pointer(&folder);
    p["sha256"] = json!(sha256(&good));
    std::fs::write(folder.join("current.json"), p.to_string()).unwrap();
    assert_refused(&b, 65, "truncated or damaged", "erin", "gina");
    std::fs::write(&path, &good).unwrap();
    let (rc, err) = sync(&b);
    assert_eq!(rc, 0, "{err}");
    assert!(passwd(&b, "gina").is_some());

    // the first publication replayed: an older serial
    let current = std::fs::read(folder.join("current.json")).unwrap();
    assert!(first_object.exists(), "old objects are kept a while");
    std::fs::write(folder.join("current.json"), &first_pointer).unwrap();
    assert_refused(&b, 65, "rollback", "gina", "mallory");
    assert!(
        passwd(&b, "erin").is_some(),
        "the replayed document removed erin"
    );
    std::fs::write(folder.join("current.json"), &current).unwrap();
    assert_eq!(sync(&b).0, 0);

    // a key rotation: hosts trust the old and the new key, the publisher
    // switches (and publishes again, though nothing else changed), then the
    // hosts drop the old key
    let new_public = new_key(&publisher, "fleet2.key");
    b.write_config(&host_config(
        &nginx.url(),
        &format!("{public}\", \"{new_public}"),
    ));
    assert_eq!(sync(&b).0, 0);
    publisher.write_config(&publisher_config("fleet2.key", "1h"));
    publisher.sync();
    assert_eq!(pointer(&folder)["key"], json!(new_public));
    b.write_config(&host_config(&nginx.url(), &new_public));
    let (rc, err) = sync(&b);
    assert_eq!(rc, 0, "{err}");
    assert!(passwd(&b, "gina").is_some());

    // an expired document: the publisher stops (valid for 5 s); the host
    // keeps its snapshot, and [login] max_offline governs as for an IdP outage
    publisher.write_config(&publisher_config("fleet2.key", "5s"));
    publisher.write_directory(&directory(&[
        "alice", "bob", "carol", "erin", "finn", "fay", "gina", "ivan",
    ]));
    publisher.sync();
    assert_eq!(sync(&b).0, 0);
    assert!(passwd(&b, "ivan").is_some());
    let valid_until = pointer(&folder)["valid_until"].as_u64().unwrap();
    wait_for("the document to expire", Duration::from_secs(8), || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            > valid_until
    });
    assert_refused(&b, 69, "expired", "ivan", "mallory");
    assert!(status(&b).contains("EXPIRED"), "{}", status(&b));
}

fn sha256(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// `zt-agent ARGS` in `h` with S3 credentials in its environment.
fn agent_with_keys(h: &Host, secret: &str, args: &[&str]) -> (i32, String) {
    let argv = h.agent_argv();
    let mut full: Vec<String> = vec![
        "env".into(),
        format!("AWS_ACCESS_KEY_ID={}", zt_e2e::s3::ACCESS_KEY),
        format!("AWS_SECRET_ACCESS_KEY={secret}"),
        "AWS_REGION=us-east-1".into(),
    ];
    full.extend(argv);
    full.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = full.iter().map(String::as_str).collect();
    let o = h.run(&refs);
    (o.status.code().unwrap_or(-1), text(&o.stderr))
}

#[test]
fn a_fleet_through_a_real_s3_server() {
    let s3 = zt_e2e::s3::S3Server::start("zt-fleet");
    let secret = zt_e2e::s3::SECRET_KEY;
    let publisher = Host::new();
    let public = new_key(&publisher, "fleet.key");
    publisher.write_config(&publisher_config("fleet.key", "1h").replace(
        "to = \"ROOT/srv/fleet\"",
        &format!(
            "to = \"s3://zt-fleet/prod\"\ns3_endpoint = \"{}\"",
            s3.endpoint()
        ),
    ));
    publisher.write_directory(&directory(&["alice", "bob"]));
    let (rc, err) = agent_with_keys(&publisher, secret, &["sync", "--once"]);
    assert_eq!(rc, 0, "{err}");
    assert!(s3.object_path("zt-fleet/prod/current.json").exists());

    let h = Host::new();
    h.write_config(&host_config("s3://zt-fleet/prod", &public).replace(
        "sync_interval",
        &format!("s3_endpoint = \"{}\"\nsync_interval", s3.endpoint()),
    ));
    let (rc, err) = agent_with_keys(&h, secret, &["sync", "--once"]);
    assert_eq!(rc, 0, "{err}");
    let ids: Value = serde_json::from_slice(
        &std::fs::read(publisher.path("var/lib/zt/fleet-ids.json")).unwrap(),
    )
    .unwrap();
    let alice = passwd(&h, "alice").expect("alice through s3");
    // nothing new: the held document is used (s3s-fs answers a conditional
    // GET with the pointer itself, a few hundred bytes; AWS S3 with 304)
    let (rc, err) = agent_with_keys(&h, secret, &["--verbose", "sync", "--once"]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        err.contains("current.json not modified")
            || err.contains("current.json names the held serial"),
        "{err}"
    );
    assert_eq!(
        uid_of(&alice).map(u64::from),
        ids["users"]["u-alice"].as_u64()
    );

    // a change travels; a wrong secret is refused by the server (SigV4
    // checked there) and the host keeps what it has
    publisher.write_directory(&directory(&["alice", "bob", "erin"]));
    let (rc, err) = agent_with_keys(&publisher, secret, &["sync", "--once"]);
    assert_eq!(rc, 0, "{err}");
    let (rc, err) = agent_with_keys(&h, "not-the-secret", &["sync", "--once"]);
    assert_eq!(rc, 77, "{err}");
    assert!(err.contains("HTTP 403"), "{err}");
    assert!(passwd(&h, "erin").is_none() && passwd(&h, "alice").is_some());
    let (rc, err) = agent_with_keys(&h, secret, &["sync", "--once"]);
    assert_eq!(rc, 0, "{err}");
    assert!(passwd(&h, "erin").is_some());
}
