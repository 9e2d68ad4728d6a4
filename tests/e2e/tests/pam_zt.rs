//! pam_zt.so end to end, as people use it: the real Linux-PAM (pamtester, pam-driver),
//! OpenSSH and sudo load target/debug/libpam_zt.so (overlaid as `pam_zt.so`) inside a
//! private host ([`Host::new_pam`]) whose /var/lib/zt, /run/zt and /var/log/zt are its
//! own, so the module runs with its default `state_dir`, `run_dir` and `audit_log`. The
//! real zt-agent publishes the directory and the issuers' keys, fetched from a local
//! Cloudflare-shaped certs server ([`KeysServer`], one per test binary) and from the real
//! OIDC provider ([`OidcProvider::shared`]).
//!
//! Every refusal is checked beside a positive control (the same host, stack and user
//! succeeding), and every attempt's audit line is read back from /var/log/zt/auth.jsonl.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zt_e2e::tokens::{self, CF_CERTS_PATH, TEST_AUD, TestKey};
use zt_e2e::{
    CONFIG, Host, KeysServer, OidcProvider, PAM_ZT_STANDIN, PamResult, SSH_MAX_ANSWER,
    SU_MAX_ANSWER, SUDO_MAX_ANSWER, SshAuth, Sshd, clock_shift_lib,
};

const TEAM: &str = "acme";
const CF_ISS: &str = "https://acme.cloudflareaccess.com";
/// The PAM service pamtester and pam-driver use.
const SERVICE: &str = "zt-login";
const PAM_PERM_DENIED: i32 = 6;

/// The README's stack: a token, with a local break-glass password.
const STACK: &str = "\
auth     [success=done ignore=ignore default=die]  pam_zt.so
auth     required                                   pam_unix.so try_first_pass
account  required   pam_zt.so
account  required   pam_unix.so
session  required   pam_zt.so
session  required   pam_unix.so
";

/// The certs server of this test binary: `CF_CERTS_PATH` serves the RSA and EC test keys
/// (the rotation test uses a path of its own).
fn keys() -> &'static KeysServer {
    static K: OnceLock<KeysServer> = OnceLock::new();
    K.get_or_init(|| {
        let k = KeysServer::start();
        k.put(
            CF_CERTS_PATH,
            &tokens::cf_certs(&[TestKey::Rsa, TestKey::Ec]),
        );
        k
    })
}

fn cf_issuer_toml(certs_url: &str) -> String {
    format!(
        "\n[[issuers]]\nkind = \"cloudflare-access\"\nteam = \"{TEAM}\"\n\
         audiences = [\"{TEST_AUD}\"]\ncerts_url = \"{certs_url}\"\n"
    )
}

fn people() -> Value {
    json!({
        "users": [
            {"id": "u-alice", "email": "alice@example.com", "display_name": "Alice"},
            {"id": "u-bob", "email": "bob@example.com", "display_name": "Bob"},
            {"id": "u-dave", "email": "dave@example.com", "display_name": "Dave"},
            {"id": "u-carol", "email": "unverified-carol@example.com", "display_name": "Carol"}
        ],
        "groups": [
            {"id": "g-sre", "name": "SRE", "members": ["u-alice", "u-bob", "u-dave", "u-carol"]}
        ]
    })
}

/// A PAM host: the directory above, the Cloudflare issuer at `certs_url`, then `extra`
/// (more issuers, `[login]`), synced once, [`STACK`] as [`SERVICE`].
fn host_at(certs_url: &str, extra: &str) -> Host {
    assert!(
        Host::pam_zt_built().is_some(),
        "target/debug/libpam_zt.so is missing: run `cargo build --workspace`"
    );
    let h = Host::new_pam();
    h.write_config(&format!("{CONFIG}{}{extra}", cf_issuer_toml(certs_url)));
    h.write_directory(&people());
    h.sync();
    h.pam_service(SERVICE, STACK);
    h
}

fn host(extra: &str) -> Host {
    host_at(&keys().url(CF_CERTS_PATH), extra)
}

/// A Cloudflare Access application token (RS256) for `email`, valid for 5 minutes.
fn cf_token(email: &str) -> String {
    tokens::mint(
        TestKey::Rsa,
        &tokens::access_claims(TEAM, TEST_AUD, email, 300),
    )
}

fn audit_text(h: &Host) -> String {
    std::fs::read_to_string(h.path("var/log/zt/auth.jsonl")).unwrap_or_default()
}

/// The audit records appended since the log had `n` lines.
fn since(h: &Host, n: usize) -> Vec<Value> {
    h.audit().into_iter().skip(n).collect()
}

fn stage<'a>(recs: &'a [Value], stage: &str) -> &'a Value {
    recs.iter()
        .find(|r| r["stage"] == stage)
        .unwrap_or_else(|| panic!("no {stage} record in {recs:#?}"))
}

fn short(r: &PamResult) -> String {
    let mut s = r.output.clone();
    s.truncate(3000);
    format!("exit {}: {s}", r.code)
}

/// `user` answers `answer` through pam-driver (authenticate, acct_mgmt): the auth stage
/// must refuse it. Returns the auth stage's audit record (result failure, a reason).
fn refused(h: &Host, user: &str, answer: &[u8]) -> Value {
    let n = h.audit().len();
    let r = h.pam_driver(SERVICE, user, answer, &[], &["authenticate", "acct_mgmt"]);
    assert_ne!(r.code, 0, "{}", short(&r));
    assert!(
        r.output.contains("authenticate: ") && !r.output.contains("authenticate: 0 "),
        "the auth stage must be what refused: {}",
        short(&r)
    );
    let recs = since(h, n);
    let a = stage(&recs, "auth").clone();
    assert_eq!(a["result"], "failure", "{a}");
    assert_eq!(a["user"], user, "{a}");
    assert_eq!(a["service"], SERVICE, "{a}");
    assert!(
        a["reason"].as_str().is_some_and(|s| !s.is_empty()),
        "a refusal needs a reason: {a}"
    );
    a
}

fn reason(rec: &Value) -> String {
    rec["reason"].as_str().unwrap_or_default().to_lowercase()
}

/// Neither the payload nor the signature of `jwt` is anywhere in the audit log.
fn assert_token_not_logged(h: &Host, jwt: &str) {
    let log = audit_text(h);
    for part in jwt.split('.').skip(1) {
        let probe = &part[..part.len().min(40)];
        assert!(
            !log.contains(probe),
            "the audit log holds part of a token ({probe})"
        );
    }
}

/// The passwd line's uid and gid.
fn ids(line: &str) -> (u32, u32) {
    let f: Vec<&str> = line.trim().split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

#[test]
fn access_token_login_makes_the_home_once_and_audits_every_refusal() {
    let h = host("");
    let (uid, gid) = ids(&h.assert_zt_user("alice"));
    h.assert_zt_user("bob");
    let jwt = cf_token("alice@example.com");
    // The Cloudflare Access shape.
    let c = tokens::claims_unverified(&jwt);
    assert!(c["aud"].is_array() && c["type"] == "app", "{c}");
    for k in ["email", "identity_nonce", "sub", "country"] {
        assert!(c[k].is_string(), "{k}: {c}");
    }
    let home = h.path("home/alice");
    assert!(!home.exists());

    let n = h.audit().len();
    let ok = h.pamtester(
        SERVICE,
        "alice",
        &jwt,
        &["authenticate", "acct_mgmt", "open_session"],
    );
    assert!(ok.ok(), "{}", short(&ok));
    assert!(ok.output.contains("successfully authenticated"), "{ok:?}");
    let recs = since(&h, n);
    let a = stage(&recs, "auth");
    assert_eq!(a["result"], "success", "{a}");
    assert_eq!(a["user"], "alice");
    assert_eq!(a["email"], "alice@example.com");
    assert_eq!(a["idp_id"], "u-alice");
    assert_eq!(a["method"], "token");
    assert_eq!(a["issuer"], CF_ISS);
    assert_eq!(a["kid"], TestKey::Rsa.kid());
    assert_eq!(a["service"], SERVICE);
    assert!(a["reason"].is_string(), "{a}");
    for s in ["account", "session"] {
        assert_eq!(stage(&recs, s)["result"], "success", "{recs:#?}");
    }

    // The home: created from /etc/skel, alice's, 0750.
    let m = std::fs::symlink_metadata(&home).expect("home created");
    assert!(m.is_dir());
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (uid, gid, 0o750));
    for e in std::fs::read_dir("/etc/skel")
        .into_iter()
        .flatten()
        .flatten()
    {
        let copy = home.join(e.file_name());
        let cm = std::fs::symlink_metadata(&copy)
            .unwrap_or_else(|_| panic!("{} not copied from /etc/skel", copy.display()));
        assert_eq!(cm.uid(), uid, "{}", copy.display());
    }
    // A second login leaves the existing home alone (alice made it 0700 and wrote to it).
    std::fs::write(home.join("notes.txt"), "mine").unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let before = std::fs::symlink_metadata(&home).unwrap();
    let again = h.pamtester(
        SERVICE,
        "alice",
        &jwt,
        &["authenticate", "acct_mgmt", "open_session"],
    );
    assert!(again.ok(), "{}", short(&again));
    let after = std::fs::symlink_metadata(&home).unwrap();
    assert_eq!(
        (after.ino(), after.mode(), after.uid(), after.mtime()),
        (before.ino(), before.mode(), before.uid(), before.mtime())
    );
    assert_eq!(
        std::fs::read_to_string(home.join("notes.txt")).unwrap(),
        "mine"
    );

    // Refusals, each audited with its own reason.
    let bobs = cf_token("bob@example.com");
    let other = refused(&h, "alice", bobs.as_bytes());
    assert!(reason(&other).contains("alice"), "{other}");
    assert_eq!(other["email"], "bob@example.com", "{other}");

    let t = tokens::now();
    let mut c = tokens::access_claims(TEAM, TEST_AUD, "alice@example.com", 300);
    c["iat"] = json!(t - 900);
    c["nbf"] = json!(t - 900);
    c["exp"] = json!(t - 600);
    let expired_jwt = tokens::mint(TestKey::Rsa, &c);
    let expired = refused(&h, "alice", expired_jwt.as_bytes());
    assert!(reason(&expired).contains("expired"), "{expired}");

    let wrong_aud_jwt = tokens::mint(
        TestKey::Rsa,
        &tokens::access_claims(TEAM, &"0".repeat(64), "alice@example.com", 300),
    );
    let wrong_aud = refused(&h, "alice", wrong_aud_jwt.as_bytes());
    assert!(reason(&wrong_aud).contains("aud"), "{wrong_aud}");

    let service_jwt = tokens::mint(
        TestKey::Rsa,
        &tokens::service_token_claims(TEAM, TEST_AUD, 300),
    );
    let service = refused(&h, "alice", service_jwt.as_bytes());
    assert!(reason(&service).contains("service"), "{service}");

    // 1 MB: a real token's header and signature around a megabyte of payload.
    let parts: Vec<&str> = jwt.split('.').collect();
    let huge = format!("{}.{}.{}", parts[0], "A".repeat(1 << 20), parts[2]);
    let big = refused(&h, "alice", huge.as_bytes());
    let why = reason(&big);
    assert!(
        why.contains("large") || why.contains("long") || why.contains("bytes"),
        "{big}"
    );

    let reasons: Vec<String> = [&other, &expired, &wrong_aud, &service, &big]
        .iter()
        .map(|r| reason(r))
        .collect();
    eprintln!("refusal reasons: {reasons:#?}");
    let mut distinct = reasons.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), reasons.len(), "{reasons:#?}");

    // Never the token itself, and the log is root's alone.
    for t in [
        &jwt,
        &bobs,
        &expired_jwt,
        &wrong_aud_jwt,
        &service_jwt,
        &huge,
    ] {
        assert_token_not_logged(&h, t);
    }
    assert!(
        audit_text(&h).len() < 64 * 1024,
        "the 1 MB token was logged"
    );
    let lm = std::fs::metadata(h.path("var/log/zt/auth.jsonl")).unwrap();
    assert_eq!((lm.uid(), lm.mode() & 0o777), (0, 0o600));
}

#[test]
fn oidc_id_token_logs_in_the_right_user_and_not_an_unverified_one() {
    let p = OidcProvider::shared();
    let h = host(&format!(
        "\n[[issuers]]\nkind = \"oidc\"\nissuer = \"{}\"\naudiences = [\"zt-ssh\"]\nclaim = \"email\"\n",
        p.issuer()
    ));
    h.assert_zt_user("dave");
    h.assert_zt_user("unverified-carol");

    let dave = p.id_token("dave", "zt-ssh");
    let n = h.audit().len();
    let ok = h.pam_driver(
        SERVICE,
        "dave",
        dave.as_bytes(),
        &[],
        &["authenticate", "acct_mgmt"],
    );
    assert!(ok.ok(), "{}", short(&ok));
    let a = stage(&since(&h, n), "auth").clone();
    assert_eq!(a["result"], "success", "{a}");
    assert_eq!(a["issuer"], p.issuer(), "{a}");
    assert_eq!(a["email"], "dave@example.com", "{a}");
    assert_eq!(a["idp_id"], "u-dave", "{a}");

    // dave's token is dave's only.
    let other = refused(&h, "alice", dave.as_bytes());
    assert!(reason(&other).contains("alice"), "{other}");

    // A token for another client of the same provider.
    let agent_aud = p.id_token("alice", "zt-agent");
    let aud = refused(&h, "alice", agent_aud.as_bytes());
    assert!(reason(&aud).contains("aud"), "{aud}");

    // email_verified: false.
    let carol = p.id_token("unverified-carol", "zt-ssh");
    assert_eq!(tokens::claims_unverified(&carol)["email_verified"], false);
    let unverified = refused(&h, "unverified-carol", carol.as_bytes());
    assert!(reason(&unverified).contains("verified"), "{unverified}");
    for t in [&dave, &agent_aud, &carol] {
        assert_token_not_logged(&h, t);
    }
}

use zt_e2e::AgentDaemon as Agent;

#[test]
fn a_rotated_key_is_fetched_through_the_control_socket_at_login() {
    let path = "/rotation/cdn-cgi/access/certs";
    let k = keys();
    k.put(path, &tokens::cf_certs(&[TestKey::Rsa]));
    let h = host_at(&k.url(path), "");
    let fetches = || k.hits().iter().filter(|p| p.as_str() == path).count();
    let rotated = tokens::mint(
        TestKey::Rsa2,
        &tokens::access_claims(TEAM, TEST_AUD, "alice@example.com", 300),
    );

    // Positive control: the current key works.
    let ok = h.pam_driver(
        SERVICE,
        "alice",
        cf_token("alice@example.com").as_bytes(),
        &[],
        &["authenticate", "acct_mgmt"],
    );
    assert!(ok.ok(), "{}", short(&ok));

    // No agent: the unknown kid is refused at once, nothing is fetched.
    let before = fetches();
    let t = Instant::now();
    let no_agent = refused(&h, "alice", rotated.as_bytes());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(no_agent["kid"], TestKey::Rsa2.kid(), "{no_agent}");
    assert_eq!(fetches(), before);

    let agent = Agent::start(&h);
    let sock = h.path("run/zt/control.sock");
    let started = Instant::now();
    while !(sock.exists() && fetches() > before) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the agent did not start (socket, first sync)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // (Its first sync has fetched the old document; a refresh waits for that sync's
    // publish under the state lock, so no sleep is needed.)

    // Rotation: the certs document now has only the new key; log in at once.
    k.put(path, &tokens::cf_certs(&[TestKey::Rsa2]));
    let before = fetches();
    let n = h.audit().len();
    let t = Instant::now();
    let r = h.pam_driver(
        SERVICE,
        "alice",
        rotated.as_bytes(),
        &[],
        &["authenticate", "acct_mgmt"],
    );
    let took = t.elapsed();
    assert!(r.ok(), "{}", short(&r));
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(fetches(), before + 1, "one refetch, asked by pam_zt");
    let a = stage(&since(&h, n), "auth").clone();
    assert_eq!(a["result"], "success", "{a}");
    assert_eq!(a["kid"], TestKey::Rsa2.kid(), "{a}");

    let log = agent.stop();
    assert!(log.contains("refreshed on request"), "agent log: {log}");
}

#[test]
fn with_the_agent_stopped_tokens_and_local_passwords_still_work() {
    let h = host("");
    h.pam_service(
        SERVICE,
        "auth     sufficient pam_zt.so\n\
         auth     required   pam_unix.so try_first_pass\n\
         account  required   pam_zt.so\n\
         account  required   pam_unix.so\n\
         session  required   pam_zt.so\n\
         session  required   pam_unix.so\n",
    );
    h.add_local_user_with_password("breakglass", 4100, "correct horse");
    assert!(!h.path("run/zt/control.sock").exists(), "no agent runs");

    let t = Instant::now();
    let ok = h.pam_driver(
        SERVICE,
        "alice",
        cf_token("alice@example.com").as_bytes(),
        &[],
        &["authenticate", "acct_mgmt", "open_session"],
    );
    assert!(ok.ok(), "{}", short(&ok));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // A kid nobody published: refused at once (no control socket), never a hang.
    let t = Instant::now();
    let unknown = tokens::mint(
        TestKey::Rsa2,
        &tokens::access_claims(TEAM, TEST_AUD, "alice@example.com", 300),
    );
    let r = refused(&h, "alice", unknown.as_bytes());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(
        reason(&r).contains("unknown kid") && reason(&r).contains("control socket"),
        "{r}"
    );

    // Break-glass: the local password goes to pam_unix.
    let n = h.audit().len();
    let local = h.pamtester(
        SERVICE,
        "breakglass",
        "correct horse",
        &["authenticate", "acct_mgmt", "open_session"],
    );
    assert!(local.ok(), "{}", short(&local));
    let a = stage(&since(&h, n), "auth").clone();
    assert_eq!(a["result"], "ignored", "{a}");
    assert_eq!(a["method"], "password", "{a}");
    let wrong = h.pamtester(SERVICE, "breakglass", "wrong horse", &["authenticate"]);
    assert_ne!(wrong.code, 0, "{}", short(&wrong));
    assert!(
        !audit_text(&h).contains("horse"),
        "a password in the audit log"
    );
}

fn write_heartbeat(h: &Host, at: i64) {
    std::fs::write(h.path("var/lib/zt/synced"), (at as u64).to_le_bytes()).unwrap();
}

fn heartbeat(h: &Host) -> i64 {
    let b = std::fs::read(h.path("var/lib/zt/synced")).unwrap();
    u64::from_le_bytes(b[..8].try_into().unwrap()) as i64
}

#[test]
fn past_max_offline_a_directory_user_is_refused_in_account() {
    let h = host("\n[login]\nmax_offline = \"1m\"\n");
    h.add_local_user_with_password("breakglass", 4100, "correct horse");
    let login = |h: &Host| {
        h.pam_driver(
            SERVICE,
            "alice",
            cf_token("alice@example.com").as_bytes(),
            &[],
            &["authenticate", "acct_mgmt"],
        )
    };
    // Positive control: just synced.
    let ok = login(&h);
    assert!(ok.ok(), "{}", short(&ok));

    // The last good sync was ten minutes ago: a change published by an agent whose
    // clock says so (LD_PRELOAD shim), which also writes the heartbeat.
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
    let shim = format!("LD_PRELOAD={}", clock_shift_lib().display());
    let mut argv = vec!["env".to_string(), shim, "ZT_CLOCK_SHIFT=-600".into()];
    argv.extend(h.agent_argv());
    argv.extend(["sync".into(), "--once".into()]);
    let o = h.run(&argv.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hb = heartbeat(&h);
    assert!((hb - (tokens::now() - 600)).abs() < 30, "heartbeat {hb}");
    h.assert_zt_user("erin");

    let offline = |h: &Host| {
        let n = h.audit().len();
        let r = login(h);
        assert_eq!(r.code, PAM_PERM_DENIED, "{}", short(&r));
        assert!(r.output.contains("authenticate: 0 "), "{}", short(&r));
        let recs = since(h, n);
        assert_eq!(stage(&recs, "auth")["result"], "success");
        let acct = stage(&recs, "account").clone();
        assert_eq!(acct["result"], "failure", "{acct}");
        assert!(reason(&acct).contains("offline"), "{acct}");
    };
    offline(&h);
    // A local user is not this module's business: still let in.
    let local = h.pamtester(
        SERVICE,
        "breakglass",
        "correct horse",
        &["authenticate", "acct_mgmt"],
    );
    assert!(local.ok(), "{}", short(&local));

    // A good sync now (nothing changed: only the heartbeat moves) lets alice in again...
    h.sync();
    let ok = login(&h);
    assert!(ok.ok(), "{}", short(&ok));
    // ...and the heartbeat moved back in time shuts her out again.
    write_heartbeat(&h, tokens::now() - 600);
    offline(&h);
}

#[test]
fn sshd_keyboard_interactive_and_password_take_a_token() {
    let h = host("");
    h.pam_service("sshd", STACK);
    let d = Sshd::start(&h, "");
    let jwt = cf_token("alice@example.com");
    assert!(
        jwt.len() <= SSH_MAX_ANSWER,
        "{} bytes: ssh would cut it",
        jwt.len()
    );
    assert!(jwt.len() > 700, "a Cloudflare-sized token: {}", jwt.len());
    let n = h.audit().len();
    for auth in [SshAuth::KeyboardInteractive, SshAuth::Password] {
        let r = d.ssh(&h, "alice", auth, &[&jwt], "id -un");
        assert_eq!(r.code, 0, "{auth:?}: {r:?}\n{}", d.log());
        assert!(r.output.lines().any(|l| l.trim() == "alice"), "{r:?}");
    }
    let kbd = d.ssh(&h, "alice", SshAuth::KeyboardInteractive, &[&jwt], "true");
    assert!(
        kbd.output.contains("Access token or password: "),
        "prompt: {kbd:?}"
    );
    let bobs = cf_token("bob@example.com");
    for auth in [SshAuth::KeyboardInteractive, SshAuth::Password] {
        let r = d.ssh(&h, "alice", auth, &[&bobs], "id -un");
        assert_eq!(r.code, 255, "{auth:?}: {r:?}");
    }
    let log = d.log();
    assert!(
        log.contains("Accepted keyboard-interactive/pam for alice"),
        "{log}"
    );
    assert!(log.contains("Accepted password for alice"), "{log}");

    let recs = since(&h, n);
    let auths: Vec<&Value> = recs
        .iter()
        .filter(|r| r["stage"] == "auth" && r["service"] == "sshd")
        .collect();
    let ok: Vec<_> = auths.iter().filter(|r| r["result"] == "success").collect();
    let bad: Vec<_> = auths.iter().filter(|r| r["result"] == "failure").collect();
    assert!(ok.len() >= 3 && bad.len() >= 2, "{recs:#?}");
    for r in ok.iter().chain(bad.iter()) {
        assert_eq!(r["rhost"], "127.0.0.1", "{r}");
        assert_eq!(r["method"], "token", "{r}");
        assert_eq!(r["user"], "alice", "{r}");
    }
    assert!(bad.iter().all(|r| r["email"] == "bob@example.com"));
    assert!(
        recs.iter()
            .any(|r| r["stage"] == "session" && r["result"] == "success"),
        "{recs:#?}"
    );
    assert!(h.path("home/alice").is_dir());
    assert_token_not_logged(&h, &jwt);
    assert_token_not_logged(&h, &bobs);
}

/// A Cloudflare-issued token as short as it gets: ES256 and few claims.
fn short_es256_token(email: &str) -> String {
    let t = tokens::now();
    tokens::mint(
        TestKey::Ec,
        &json!({"aud": [TEST_AUD], "email": email, "exp": t + 300, "iat": t, "nbf": t,
                "iss": CF_ISS, "type": "app", "sub": "s"}),
    )
}

fn sudo_host() -> Host {
    let h = host("");
    h.pam_service("sudo", STACK);
    h.sudoers("alice ALL=(ALL) ALL\nbob ALL=(ALL) ALL\n");
    h
}

fn became_root(r: &PamResult) -> bool {
    r.code == 0 && r.output.lines().any(|l| l.trim() == "0")
}

#[test]
fn sudo_takes_a_token_that_fits_its_answer() {
    let h = sudo_host();
    let jwt = short_es256_token("alice@example.com");
    assert!(jwt.len() <= SUDO_MAX_ANSWER, "{} bytes", jwt.len());
    let n = h.audit().len();
    let r = h.sudo("alice", &jwt);
    assert!(became_root(&r), "{}", short(&r));
    let a = stage(&since(&h, n), "auth").clone();
    assert_eq!(a["service"], "sudo", "{a}");
    assert_eq!(a["result"], "success", "{a}");
    assert_eq!(a["kid"], TestKey::Ec.kid(), "{a}");
    // alice's token is no use to bob.
    let n = h.audit().len();
    let r = h.sudo_answers("bob", &[&jwt, &jwt, &jwt]);
    assert!(!became_root(&r), "{}", short(&r));
    let recs = since(&h, n);
    let a = stage(&recs, "auth");
    assert_eq!(
        (&a["user"], &a["result"]),
        (&json!("bob"), &json!("failure"))
    );
}

/// sudo cuts answers at 511 bytes: the module must ask for the rest ("Token (continued,
/// empty line to finish): ").
#[test]
fn sudo_takes_a_long_token_in_two_answers() {
    let h = sudo_host();
    let jwt = cf_token("alice@example.com");
    assert!(jwt.len() > SUDO_MAX_ANSWER, "{}", jwt.len());
    let (a, b) = jwt.split_at(SUDO_MAX_ANSWER);
    let r = h.sudo_answers("alice", &[a, b, ""]);
    assert!(became_root(&r), "{}", short(&r));
    // Positive control's negative: bob cannot use it.
    let r = h.sudo_answers("bob", &[a, b, ""]);
    assert!(!became_root(&r), "{}", short(&r));
}

/// su (util-linux 2.38.1) reads each answer from its terminal through libpam_misc's
/// conversation: at most [`SU_MAX_ANSWER`] = 4,095 bytes (the canonical tty line); a
/// longer line arrives cut to its first 4,095 bytes, with no error. So a Cloudflare
/// token goes in one answer (no 511-byte pieces as with sudo). The limit is measured at
/// the end, with the stand-in module.
#[test]
fn su_takes_a_token() {
    let h = host("");
    h.pam_service("su", &format!("auth     sufficient pam_rootok.so\n{STACK}"));
    h.add_local_user_with_password("carol", 4300, "carol's password");
    let jwt = cf_token("alice@example.com");
    assert!(
        jwt.len() > SUDO_MAX_ANSWER && jwt.len() <= SU_MAX_ANSWER,
        "a Cloudflare-sized token: {}",
        jwt.len()
    );
    let su_alice = |answers: &[&str]| h.su_answers("carol", "alice", "id -un", answers);
    let n = h.audit().len();
    let t = Instant::now();
    let r = su_alice(&[&jwt]);
    assert_eq!(r.code, 0, "{}", short(&r));
    assert!(r.output.lines().any(|l| l.trim() == "alice"), "{r:?}");
    assert!(
        r.output.contains("Access token or password: ") && !r.output.contains("continued"),
        "one prompt: {r:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let recs = since(&h, n);
    let a = stage(&recs, "auth");
    assert_eq!(a["service"], "su", "{a}");
    assert_eq!(a["result"], "success", "{a}");
    assert_eq!(a["user"], "alice", "{a}");
    assert_eq!(a["email"], "alice@example.com", "{a}");
    assert_eq!(a["method"], "token", "{a}");
    assert!(
        a["tty"].as_str().is_some_and(|t| t.contains("pts/")),
        "su's terminal: {a}"
    );
    for s in ["account", "session"] {
        let r = stage(&recs, s);
        assert_eq!(
            (&r["service"], &r["result"]),
            (&json!("su"), &json!("success")),
            "{r}"
        );
    }

    // Pasted in two pieces (the first cut inside the payload): pam_zt asks for the rest.
    let (head, tail) = jwt.split_at(jwt.find('.').unwrap() + 40);
    let r = su_alice(&[head, tail]);
    assert_eq!(r.code, 0, "{}", short(&r));
    assert!(
        r.output
            .contains("Token (continued, empty line to finish): "),
        "{r:?}"
    );
    assert!(r.output.lines().any(|l| l.trim() == "alice"), "{r:?}");

    // Positive control's negative: bob's token is no use for alice.
    let bobs = cf_token("bob@example.com");
    let n = h.audit().len();
    let r = su_alice(&[&bobs]);
    assert_eq!(r.code, 1, "{}", short(&r));
    assert!(r.output.contains("su: Authentication failure"), "{r:?}");
    assert!(!r.output.lines().any(|l| l.trim() == "alice"), "{r:?}");
    let a = stage(&since(&h, n), "auth").clone();
    assert_eq!(
        (&a["service"], &a["result"]),
        (&json!("su"), &json!("failure")),
        "{a}"
    );
    assert_eq!(a["email"], "bob@example.com", "{a}");
    assert_token_not_logged(&h, &jwt);
    assert_token_not_logged(&h, &bobs);

    // su's answer limit, through the stand-in module (it logs each answer's length):
    // 4,095 bytes arrive whole, a longer line arrives cut to its first 4,095.
    let log = h.path("var/log/zt/standin.log");
    let secret = h.path("etc/zt/standin-secret");
    let long = "abcdefghij".repeat(500);
    std::fs::write(&secret, &long[..SU_MAX_ANSWER]).unwrap();
    h.pam_service(
        "su",
        &format!(
            "auth required {PAM_ZT_STANDIN} expect={} log=/var/log/zt/standin.log\n\
             account required pam_permit.so\nsession required pam_permit.so\n",
            secret.display()
        ),
    );
    for answer in [&long[..SU_MAX_ANSWER], &long[..]] {
        let r = su_alice(&[answer]);
        assert_eq!(r.code, 0, "{}: {}", answer.len(), short(&r));
    }
    let lengths = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(lengths, "len=4095\nlen=4095\n", "su's limit moved");
}
