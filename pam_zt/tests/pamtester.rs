//! The real module through the real Linux-PAM: pamtester in a private mount
//! namespace (the host's /etc/pam.d is untouched), against a snapshot
//! published into a temporary state directory the way the agent does it.
//! Skipped unless root with pamtester and unshare installed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use zt_snapshot::{Content, GroupEntry, IssuerEntry, KeyEntry, PolicyEntry};

const CF_ISS: &str = "https://acme.cloudflareaccess.com";
const CF_AUD: &str = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn module() -> PathBuf {
    // The cdylib cargo built for this test run, next to the test's deps dir.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("libpam_zt.so")
}

fn available() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let has = |p: &str| Path::new(p).exists();
    root && has("/usr/bin/pamtester") && has("/usr/bin/unshare") && module().exists()
}

fn token(email: &str, now: i64) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("test-rsa-1".into());
    let claims = json!({
        "aud": [CF_AUD], "email": email, "exp": now + 600, "iat": now, "nbf": now,
        "iss": CF_ISS, "type": "app", "identity_nonce": "x", "sub": "u-1", "country": "DE",
    });
    let key = EncodingKey::from_rsa_pem(&fixture("TEST-ONLY-rsa-private.pem")).unwrap();
    jsonwebtoken::encode(&h, &claims, &key).unwrap()
}

fn pamtester(tmp: &Path, user: &str, ops: &str, input: &str) -> bool {
    let script = format!(
        "mount --bind {0}/pam.d /etc/pam.d && exec pamtester zt-test {user} {ops}",
        tmp.display()
    );
    let mut child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

#[test]
fn token_login_through_linux_pam() {
    if !available() {
        eprintln!(
            "skipped: needs root, pamtester, unshare and {}",
            module().display()
        );
        return;
    }
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let state = zt_published::testing::TempStateDir::new("pamtester");
    let tmp = state.path.join("t");
    std::fs::create_dir_all(tmp.join("homes")).unwrap();
    std::fs::create_dir_all(tmp.join("skel")).unwrap();
    std::fs::write(tmp.join("skel/.profile"), "# profile\n").unwrap();
    let mut alice = zt_published::testing::user("alice", 1_500_001);
    alice.home = tmp.join("homes/alice").display().to_string();
    let rsa = String::from_utf8(fixture("TEST-ONLY-rsa.jwk.json")).unwrap();
    state.publish(&Content {
        generation: 1,
        synced_at: u64::try_from(now).unwrap(),
        users: vec![alice, zt_published::testing::user("bob", 1_500_002)],
        groups: vec![
            zt_published::testing::upg("alice", 1_500_001),
            zt_published::testing::upg("bob", 1_500_002),
            GroupEntry {
                name: "zt-login".into(),
                gid: 1_500_100,
                flags: zt_snapshot::format::group_flags::LOGIN,
                idp_id: "grp".into(),
                members: vec!["alice".into(), "bob".into()],
            },
        ],
        issuers: vec![IssuerEntry {
            kind: 1,
            iss: CF_ISS.into(),
            claim: "email".into(),
            audiences: vec![CF_AUD.into()],
            keys: vec![KeyEntry {
                kid: "test-rsa-1".into(),
                alg: "RS256".into(),
                jwk: rsa,
            }],
            ..Default::default()
        }],
        policy: PolicyEntry {
            max_offline_secs: 3600,
        },
        shared_accounts: Vec::new(),
        local_grants: Vec::new(),
    });
    std::fs::create_dir_all(tmp.join("pam.d")).unwrap();
    let so = module();
    let args = format!(
        "state_dir={} run_dir={}/run audit_log={}/log/auth.jsonl skel={}/skel",
        state.path.display(),
        tmp.display(),
        tmp.display(),
        tmp.display()
    );
    std::fs::write(
        tmp.join("pam.d/zt-test"),
        format!(
            "auth [success=done ignore=ignore default=die] {so} {args}\n\
             auth requisite pam_deny.so\n\
             account required {so} {args}\n\
             session required {so} {args}\n",
            so = so.display()
        ),
    )
    .unwrap();

    let good = token("alice@example.com", now);
    assert!(pamtester(
        &tmp,
        "alice",
        "authenticate acct_mgmt open_session",
        &format!("{good}\n")
    ));
    let home = std::fs::metadata(tmp.join("homes/alice")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((home.uid(), home.mode() & 0o7777), (1_500_001, 0o750));
    assert!(tmp.join("homes/alice/.profile").exists());
    // another person's token, a password with no fallback module: refused
    assert!(!pamtester(
        &tmp,
        "bob",
        "authenticate",
        &format!("{good}\n")
    ));
    assert!(!pamtester(&tmp, "alice", "authenticate", "hunter2\n"));

    let log = std::fs::read_to_string(tmp.join("log/auth.jsonl")).unwrap();
    assert!(
        !log.contains(good.split('.').nth(2).unwrap()),
        "never the token"
    );
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |stage: &str, user: &str, result: &str| {
        lines
            .iter()
            .any(|l| l["stage"] == stage && l["user"] == user && l["result"] == result)
    };
    assert!(find("auth", "alice", "success"), "{log}");
    assert!(find("account", "alice", "success"), "{log}");
    assert!(find("session", "alice", "success"), "{log}");
    assert!(find("auth", "bob", "failure"), "{log}");
    assert!(find("auth", "alice", "ignored"), "{log}");
}
