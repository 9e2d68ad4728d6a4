//! SSH certificates and keys end to end: the sshd drop-in zt ships
//! (packaging/sshd/zt.conf) with real sshd inside a PAM host ([`Host::new_pam`]).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use zt_e2e::{CONFIG, Host, PamResult, Sshd};

/// The README's stack: a token, with a local break-glass password.
const STACK: &str = "\
auth     [success=done ignore=ignore default=die]  pam_zt.so
auth     required                                   pam_unix.so try_first_pass
account  required   pam_zt.so
account  required   pam_unix.so
session  required   pam_zt.so
session  required   pam_unix.so
";

/// Cloudflare's key id shape: 32 hex digits.
const KEY_ID: &str = "5f0c4a1e9b7d2c3a8e6f1b0d4c2a9e7f";

fn people(with_alice: bool) -> Value {
    let mut users = vec![
        json!({"id": "u-bob", "email": "bob@example.com", "display_name": "Bob"}),
        json!({"id": "u-eve", "email": "eve@example.com", "display_name": "Eve"}),
    ];
    let mut sre = vec!["u-bob"];
    if with_alice {
        users.push(json!({"id": "u-alice", "email": "alice@example.com", "display_name": "Alice"}));
        sre.push("u-alice");
    }
    json!({
        "users": users,
        "groups": [
            {"id": "g-sre", "name": "SRE", "members": sre},
            {"id": "g-dev", "name": "Developers", "members": ["u-eve", "u-bob"]}
        ]
    })
}

fn keygen(args: &[&str]) {
    let o = Command::new("ssh-keygen")
        .args(args)
        .output()
        .expect("ssh-keygen");
    assert!(o.status.success(), "ssh-keygen {args:?}: {o:?}");
}

/// `ssh-keygen -l`'s SHA256 fingerprint of a public key file.
fn fingerprint(pubfile: &Path) -> String {
    let o = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(pubfile)
        .output()
        .expect("ssh-keygen -l");
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout)
        .split(' ')
        .nth(1)
        .expect("fingerprint")
        .to_owned()
}

/// Key material for one test under the host's ssh/ directory.
struct Keys(PathBuf);

impl Keys {
    fn new(h: &Host) -> Keys {
        let d = h.path("ssh/t");
        std::fs::create_dir_all(&d).expect("mkdir");
        Keys(d)
    }
    fn p(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn s(&self, name: &str) -> String {
        self.p(name).to_str().expect("utf8").to_owned()
    }
    /// An ECDSA P-256 key pair (Cloudflare's shape) named `name`.
    fn key(&self, name: &str) -> PathBuf {
        keygen(&[
            "-q",
            "-t",
            "ecdsa",
            "-b",
            "256",
            "-N",
            "",
            "-C",
            name,
            "-f",
            &self.s(name),
        ]);
        self.p(name)
    }
    /// A certificate for `key`'s public half signed by `ca`: `-I KEY_ID -n principal
    /// -V validity -z serial`. Returns the certificate file.
    fn cert(&self, ca: &str, key: &str, principal: &str, validity: &str, serial: &str) -> PathBuf {
        keygen(&[
            "-q",
            "-s",
            &self.s(ca),
            "-I",
            KEY_ID,
            "-n",
            principal,
            "-V",
            validity,
            "-z",
            serial,
            &self.s(&format!("{key}.pub")),
        ]);
        self.p(&format!("{key}-cert.pub"))
    }
}

fn short(r: &PamResult) -> String {
    let mut s = r.output.clone();
    s.truncate(2000);
    format!("exit {}: {s}", r.code)
}

/// A root-owned 0755 directory (sshd's StrictModes and principals-file checks).
fn root_dir(p: &Path) {
    std::fs::create_dir_all(p).expect("mkdir");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn root_file(p: &Path, text: &str) {
    std::fs::write(p, text).expect("write");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}

/// packaging/sshd/zt.conf of this checkout.
fn dropin() -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/sshd/zt.conf");
    let p = p.canonicalize().expect("packaging/sshd/zt.conf");
    p.to_str().expect("utf8").to_owned()
}

/// `sshd -T` lines as keyword -> values.
fn settings(t: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in t.lines() {
        if let Some((k, v)) = line.split_once(' ') {
            m.entry(k.to_owned())
                .and_modify(|e: &mut String| {
                    e.push('\n');
                    e.push_str(v);
                })
                .or_insert_with(|| v.to_owned());
        }
    }
    m
}

/// What a Debian admin's sshd_config might say about local accounts; the drop-in is
/// included first, as Debian's main file does with sshd_config.d/*.conf.
const ADMIN: &str = "\
PasswordAuthentication no
PermitRootLogin prohibit-password
AuthorizedKeysFile .ssh/authorized_keys
";

#[test]
fn sshd_accepts_the_dropin_and_it_changes_nothing_for_local_accounts() {
    let h = Host::new_pam();
    let dropin = dropin();
    let (ok, err, with) = Sshd::check_config(&h, &format!("Include {dropin}\n{ADMIN}"), "root");
    assert!(ok, "sshd -t refused the drop-in: {err}");
    let with = settings(&with);
    // the drop-in's settings are the effective ones
    for (k, v) in [
        ("trustedusercakeys", "/etc/ssh/zt_trusted_user_ca_keys"),
        (
            "authorizedprincipalscommand",
            "/usr/sbin/zt-agent principals %u",
        ),
        ("authorizedprincipalscommanduser", "zt"),
        ("authorizedkeyscommand", "/usr/sbin/zt-agent keys %u"),
        ("authorizedkeyscommanduser", "zt"),
        ("exposeauthinfo", "yes"),
        ("kbdinteractiveauthentication", "yes"),
        ("usepam", "yes"),
    ] {
        assert_eq!(with.get(k).map(String::as_str), Some(v), "{k}: {with:?}");
    }
    // without it: the same config otherwise (positive control that -T reflects it)
    let (ok, err, without) = Sshd::check_config(&h, ADMIN, "root");
    assert!(ok, "{err}");
    let without = settings(&without);
    assert_eq!(
        without.get("trustedusercakeys").map(String::as_str),
        Some("none")
    );
    // every difference is one of the drop-in's own keywords; the local-account rules
    // (passwords, root, authorized_keys files) are the admin's
    let dropin_keys = [
        "trustedusercakeys",
        "authorizedprincipalscommand",
        "authorizedprincipalscommanduser",
        "authorizedkeyscommand",
        "authorizedkeyscommanduser",
    ];
    // (each check_config has a port, host key and pid file of its own)
    let harness = ["port", "hostkey", "pidfile", "listenaddress"];
    for (k, v) in &with {
        if without.get(k) != Some(v) && !harness.contains(&k.as_str()) {
            assert!(
                dropin_keys.contains(&k.as_str()),
                "the drop-in changed {k}: {v}"
            );
        }
    }
    for k in [
        "passwordauthentication",
        "permitrootlogin",
        "authorizedkeysfile",
        "pubkeyauthentication",
    ] {
        assert_eq!(with.get(k), without.get(k), "{k}");
        assert!(with.contains_key(k), "{k}");
    }
    assert_eq!(with["passwordauthentication"], "no");
    assert_eq!(with["authorizedkeysfile"], ".ssh/authorized_keys");
    // negative control: sshd -t does check what it is given
    let (ok, _, _) = Sshd::check_config(
        &h,
        &format!("Include {dropin}\nNoSuchKeyword yes\n"),
        "root",
    );
    assert!(!ok, "sshd -t accepted an unknown keyword");
}

/// Certificates and keys through real sshd with principals from a file (the part that
/// does not need `zt-agent principals`): what pam_zt records, and what sshd and pam_zt
/// refuse.
#[test]
fn certificate_and_key_logins_through_sshd_are_audited_and_refusals_hold() {
    assert!(
        Host::pam_zt_built().is_some(),
        "target/debug/libpam_zt.so is missing: run `cargo build --workspace`"
    );
    let h = Host::new_pam();
    h.write_config(CONFIG);
    h.write_directory(&people(true));
    h.sync();
    h.pam_service("sshd", STACK);
    h.add_local_user_with_password("localkey", 1600, "break-glass-pw");
    let k = Keys::new(&h);
    k.key("ca");
    k.key("other_ca");
    for u in ["alice", "eve", "bob", "old", "rogue", "plain", "local"] {
        k.key(u);
    }
    let alice = k.cert("ca", "alice", "alice", "+3m", "7");
    let eve = k.cert("ca", "eve", "eve", "+3m", "8");
    let for_bob = k.cert("ca", "bob", "bob", "+3m", "9");
    let expired = k.cert("ca", "old", "alice", "-20m:-10m", "10");
    let rogue = k.cert("other_ca", "rogue", "alice", "+3m", "11");
    // principals files and authorized_keys, root-owned under the host's /home
    let home = h.path("home");
    root_dir(&home.join("principals"));
    for u in ["alice", "eve", "bob"] {
        root_file(&home.join("principals").join(u), &format!("{u}\n"));
    }
    for (u, key) in [("alice", "plain"), ("localkey", "local")] {
        root_dir(&home.join(u).join(".ssh"));
        let pubkey = std::fs::read_to_string(k.p(&format!("{key}.pub"))).expect("pub");
        root_file(&home.join(u).join(".ssh/authorized_keys"), &pubkey);
    }
    let d = Sshd::start(
        &h,
        &format!(
            "TrustedUserCAKeys {}\n\
             AuthorizedPrincipalsFile /home/principals/%u\n\
             AuthorizedKeysFile .ssh/authorized_keys\n\
             PasswordAuthentication no\n",
            k.s("ca.pub")
        ),
    );
    let login =
        |user: &str, key: &str, cert: Option<&Path>| d.ssh_key(&h, user, &k.p(key), cert, "id");

    // a directory user with a Cloudflare-shaped certificate: in, with IdP groups
    let n = h.audit().len();
    let r = login("alice", "alice", Some(&alice));
    assert_eq!(r.code, 0, "{}\n{}", short(&r), d.log());
    assert!(
        r.output.contains("uid=") && r.output.contains("(sre)"),
        "{}",
        short(&r)
    );
    let recs: Vec<Value> = h.audit().into_iter().skip(n).collect();
    // sshd (9.2) sets SSH_AUTH_INFO_0 for PAM only from the session on after a
    // publickey login: the session record carries the certificate
    let acct = recs
        .iter()
        .find(|r| r["stage"] == "session")
        .unwrap_or_else(|| panic!("no session record: {recs:#?}"));
    assert_eq!(acct["user"], "alice");
    assert_eq!(acct["result"], "success");
    assert_eq!(acct["method"], "certificate", "{recs:#?}");
    assert_eq!(acct["cert_key_id"], KEY_ID);
    assert_eq!(acct["cert_serial"], 7);
    assert_eq!(acct["cert_principals"], json!(["alice"]));
    assert_eq!(acct["cert_ca"], fingerprint(&k.p("ca.pub")));
    assert_eq!(acct["idp_id"], "u-alice");
    assert!(acct.get("key_fingerprint").is_none());

    // a directory key (authorized_keys file here): method key and its fingerprint
    let n = h.audit().len();
    let r = login("alice", "plain", None);
    assert_eq!(r.code, 0, "{}", short(&r));
    let recs: Vec<Value> = h.audit().into_iter().skip(n).collect();
    let acct = recs
        .iter()
        .find(|r| r["stage"] == "session")
        .expect("session record");
    assert_eq!(acct["method"], "key", "{recs:#?}");
    assert_eq!(acct["email"], "alice@example.com");
    assert_eq!(acct["key_fingerprint"], fingerprint(&k.p("plain.pub")));
    assert!(acct.get("cert_key_id").is_none());

    // a local user with an authorized_keys file logs in as before (not audited)
    let r = d.ssh_key(&h, "localkey", &k.p("local"), None, "id -un");
    assert_eq!(r.code, 0, "{}", short(&r));
    assert_eq!(r.output.trim(), "localkey");

    // refused: not in a login group (zt does not publish eve to NSS, so sshd has no
    // such user), with a certificate that is otherwise fine
    let n = h.audit().len();
    let r = login("eve", "eve", Some(&eve));
    assert_eq!(r.code, 255, "{}", short(&r));
    let recs: Vec<Value> = h.audit().into_iter().skip(n).collect();
    assert!(!recs.iter().any(|r| r["result"] == "success"), "{recs:#?}");
    assert!(!recs.iter().any(|r| r["stage"] == "session"), "{recs:#?}");
    // bob's own certificate works for bob (control) but not for alice
    assert_eq!(login("bob", "bob", Some(&for_bob)).code, 0);
    assert_eq!(login("alice", "bob", Some(&for_bob)).code, 255);
    // expired, and signed by an untrusted CA
    assert_eq!(login("alice", "old", Some(&expired)).code, 255);
    assert_eq!(login("alice", "rogue", Some(&rogue)).code, 255);

    // removed from the directory after the next sync, the certificate still valid
    assert_eq!(login("alice", "alice", Some(&alice)).code, 0, "control");
    h.write_directory(&people(false));
    h.sync();
    let r = login("alice", "alice", Some(&alice));
    assert_eq!(r.code, 255, "{}", short(&r));
    assert_eq!(
        login("bob", "bob", Some(&for_bob)).code,
        0,
        "others still in"
    );
}

/// The drop-in as shipped, with its two paths pointed at this test's files: the
/// trusted CA file and zt-agent (copied into the host's /run/zt-bin, root-owned
/// 0755 all the way up, as sshd requires of the commands).
fn dropin_for(h: &Host, ca_keys: &Path) -> String {
    let bin = h.path("run/zt-bin");
    root_dir(&bin);
    let agent = zt_e2e::build_dir().join("zt-agent");
    std::fs::copy(&agent, bin.join("zt-agent")).expect("copy zt-agent");
    std::fs::set_permissions(bin.join("zt-agent"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let text = std::fs::read_to_string(dropin()).expect("drop-in");
    assert!(text.contains("/usr/sbin/zt-agent principals %u"));
    assert!(text.contains("TrustedUserCAKeys /etc/ssh/zt_trusted_user_ca_keys"));
    text.replace("/usr/sbin/zt-agent", "/run/zt-bin/zt-agent")
        .replace(
            "/etc/ssh/zt_trusted_user_ca_keys",
            ca_keys.to_str().expect("utf8"),
        )
}

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

fn ssh_people(alice: bool, bob_in_ops: bool, plain_key: &str) -> Value {
    let mut users = vec![
        json!({"id": "u-bob", "email": "bob@example.com", "display_name": "Bob"}),
        json!({"id": "u-carol", "email": "carol@example.com", "display_name": "Carol"}),
        json!({"id": "u-eve", "email": "eve@example.com", "display_name": "Eve"}),
    ];
    let mut sre = vec!["u-bob", "u-carol"];
    if alice {
        users.push(json!({"id": "u-alice", "email": "alice@example.com",
            "display_name": "Alice", "ssh_keys": [plain_key.trim()]}));
        sre.push("u-alice");
    }
    let ops: Vec<&str> = if bob_in_ops { vec!["u-bob"] } else { vec![] };
    json!({
        "users": users,
        "groups": [
            {"id": "g-sre", "name": "SRE", "members": sre},
            {"id": "g-dev", "name": "Developers", "members": ["u-eve"]},
            {"id": "g-ops", "name": "Ops", "members": ops}
        ]
    })
}

/// The whole thing as shipped: the drop-in's settings (principals and keys from
/// `zt-agent`, run as the unprivileged `zt` user), Cloudflare-shaped certificates, a
/// shared account reached by an IdP group, and no agent running (only `sync --once`
/// has published the files).
#[test]
fn the_dropin_logs_in_directory_users_and_a_shared_account_by_certificate() {
    assert!(
        Host::pam_zt_built().is_some(),
        "target/debug/libpam_zt.so is missing: run `cargo build --workspace`"
    );
    let h = Host::new_pam();
    h.add_local_user("zt", 990);
    h.add_local_user_with_password("sysadmin", 1500, "break-glass-pw");
    h.add_local_user_with_password("localkey", 1600, "break-glass-pw");
    let k = Keys::new(&h);
    k.key("ca");
    k.key("other_ca");
    for u in [
        "alice", "bob", "carol", "eve", "old", "rogue", "plain", "local",
    ] {
        k.key(u);
    }
    let plain_pub = std::fs::read_to_string(k.p("plain.pub")).expect("pub");
    h.write_config(&format!("{CONFIG}{SSH_CONFIG}"));
    h.write_directory(&ssh_people(true, true, &plain_pub));
    h.sync();
    h.pam_service("sshd", STACK);
    // the private file is readable by the zt group, not by others
    let private = h.path("var/lib/zt/private");
    let mode = std::fs::metadata(&private)
        .expect("private")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        mode, 0o640,
        "the agent publishes 0640 root:zt when a zt group exists"
    );

    let alice = k.cert("ca", "alice", "alice", "+3m", "1");
    let bob = k.cert("ca", "bob", "bob", "+3m", "2");
    let carol = k.cert("ca", "carol", "carol", "+3m", "3");
    let eve = k.cert("ca", "eve", "eve", "+3m", "4");
    let expired = k.cert("ca", "old", "alice", "-20m:-10m", "5");
    let rogue = k.cert("other_ca", "rogue", "alice", "+3m", "6");
    // two CAs in the trusted file, one per line (the rogue's CA is not among them)
    k.key("second_ca");
    let ca_keys = k.p("trusted_user_ca_keys");
    let trusted = format!(
        "{}{}",
        std::fs::read_to_string(k.p("second_ca.pub")).expect("ca"),
        std::fs::read_to_string(k.p("ca.pub")).expect("ca")
    );
    root_file(&ca_keys, &trusted);
    let home = h.path("home");
    root_dir(&home.join("localkey/.ssh"));
    root_file(
        &home.join("localkey/.ssh/authorized_keys"),
        &std::fs::read_to_string(k.p("local.pub")).expect("pub"),
    );
    let d = Sshd::start(
        &h,
        &format!(
            "{}\nAuthorizedKeysFile .ssh/authorized_keys\nPasswordAuthentication no\n",
            dropin_for(&h, &ca_keys)
        ),
    );
    let login =
        |user: &str, key: &str, cert: Option<&Path>| d.ssh_key(&h, user, &k.p(key), cert, "id");
    // no agent: nothing listens on the control socket
    let sockets = std::fs::read_dir(h.path("run/zt"))
        .expect("run/zt")
        .filter(|e| {
            use std::os::unix::fs::FileTypeExt;
            e.as_ref()
                .is_ok_and(|e| e.file_type().is_ok_and(|t| t.is_socket()))
        })
        .count();
    assert_eq!(sockets, 0, "these logins run with the agent stopped");

    // a directory user with their certificate: in, and `id` shows the IdP groups
    let r = login("alice", "alice", Some(&alice));
    assert_eq!(r.code, 0, "{}\n{}", short(&r), d.log());
    assert!(r.output.contains("(sre)"), "{}", short(&r));
    assert!(
        d.log().contains("Accepted publickey for alice"),
        "{}",
        d.log()
    );
    // refused: another person's certificate, an expired one, an untrusted CA's, a
    // person not in a login group
    assert_eq!(login("alice", "bob", Some(&bob)).code, 255);
    assert_eq!(login("alice", "old", Some(&expired)).code, 255);
    assert_eq!(login("alice", "rogue", Some(&rogue)).code, 255);
    assert_eq!(login("eve", "eve", Some(&eve)).code, 255);
    assert_eq!(login("carol", "carol", Some(&carol)).code, 0, "control");

    // the shared account: a member of its group with their own certificate
    let n = h.audit().len();
    let r = d.ssh_key(&h, "sysadmin", &k.p("bob"), Some(&bob), "id -un");
    assert_eq!(r.code, 0, "{}\n{}", short(&r), d.log());
    assert_eq!(r.output.trim(), "sysadmin");
    let recs: Vec<Value> = h.audit().into_iter().skip(n).collect();
    let rec = recs
        .iter()
        .find(|r| r["person"] == "bob")
        .unwrap_or_else(|| panic!("no record naming bob: {recs:#?}"));
    assert_eq!(rec["user"], "sysadmin");
    assert_eq!(rec["cert_key_id"], KEY_ID);
    assert_eq!(rec["cert_serial"], 2);
    assert_eq!(rec["cert_principals"], json!(["bob"]));
    assert_eq!(rec["cert_ca"], fingerprint(&k.p("ca.pub")));
    // a non-member cannot
    let r = d.ssh_key(&h, "sysadmin", &k.p("carol"), Some(&carol), "id -un");
    assert_eq!(r.code, 255, "{}", short(&r));

    // directory keys through AuthorizedKeysCommand (alice has no authorized_keys file)
    let r = login("alice", "plain", None);
    assert_eq!(r.code, 0, "{}\n{}", short(&r), d.log());
    assert_eq!(login("carol", "plain", None).code, 255, "alice's key only");
    // a local user with an authorized_keys file logs in as before
    let r = d.ssh_key(&h, "localkey", &k.p("local"), None, "id -un");
    assert_eq!(r.code, 0, "{}", short(&r));
    assert_eq!(r.output.trim(), "localkey");

    // after the next sync: alice removed, bob out of the shared account's group; their
    // certificates are still valid
    h.write_directory(&ssh_people(false, false, &plain_pub));
    h.sync();
    assert_eq!(login("alice", "alice", Some(&alice)).code, 255);
    assert_eq!(login("alice", "plain", None).code, 255);
    let r = d.ssh_key(&h, "sysadmin", &k.p("bob"), Some(&bob), "id -un");
    assert_eq!(r.code, 255, "{}", short(&r));
    assert_eq!(
        login("bob", "bob", Some(&bob)).code,
        0,
        "bob himself still in"
    );
}
