//! Proof of the PAM / sshd / sudo / HTTP / OIDC harness (src/pam.rs, sshd.rs, net.rs,
//! keys_server.rs, oidc.rs, tokens.rs) with STAND-INS ONLY: pam_unix with a local
//! password and the test-only fixtures/standin/pam_zt_standin.c. Nothing here tests zt's
//! PAM module; these tests show that the helpers pam_zt's tests will use work against
//! the real Linux-PAM, OpenSSH, sudo and oidc-provider, and measure the answer limits.

use jsonwebtoken::{DecodingKey, Validation, jwk::Jwk};
use serde_json::{Value, json};
use zt_e2e::tokens::{self, TestKey};
use zt_e2e::{
    Host, KeysServer, Net, OidcProvider, PAM_ZT_STANDIN, SSH_MAX_ANSWER, SUDO_MAX_ANSWER, SshAuth,
    Sshd,
};

const UNIX_STACK: &str =
    "auth required pam_unix.so\naccount required pam_unix.so\nsession required pam_permit.so\n";

fn local_host() -> Host {
    let h = Host::new_pam();
    h.add_local_user_with_password("breakglass", 4100, "correct horse");
    h
}

/// A stand-in stack: the answer must equal the bytes of `secret`; lengths go to a log.
fn standin_host(secret: &[u8]) -> (Host, std::path::PathBuf) {
    let h = Host::new_pam();
    std::fs::write(h.path("etc/zt/standin-secret"), secret).unwrap();
    let log = h.path("var/log/zt/standin.log");
    let stack = format!(
        "auth required {PAM_ZT_STANDIN} expect=/etc/zt-secret log=/var/log/zt/standin.log\n\
         account required pam_permit.so\nsession required pam_permit.so\n"
    );
    // /etc/zt is not mounted into the host: use the host-root path directly.
    let stack = stack.replace(
        "/etc/zt-secret",
        &h.path("etc/zt/standin-secret").display().to_string(),
    );
    for s in ["zt-harness", "sshd", "sudo"] {
        h.pam_service(s, &stack);
    }
    (h, log)
}

fn lengths(log: &std::path::Path) -> Vec<usize> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("len=")?.parse().ok())
        .collect()
}

fn answer(n: usize) -> String {
    "abcdefghij".repeat(n / 10 + 1)[..n].to_string()
}

#[test]
fn pamtester_with_pam_unix_standin() {
    let h = local_host();
    h.pam_service("zt-harness", UNIX_STACK);
    let ok = h.pamtester(
        "zt-harness",
        "breakglass",
        "correct horse",
        &["authenticate", "acct_mgmt"],
    );
    assert!(ok.ok(), "{ok:?}");
    assert!(ok.output.contains("successfully authenticated"), "{ok:?}");
    let bad = h.pamtester("zt-harness", "breakglass", "wrong", &["authenticate"]);
    assert_ne!(bad.code, 0, "{bad:?}");
    assert!(bad.output.contains("Authentication failure"), "{bad:?}");
}

#[test]
fn pam_driver_answers_a_megabyte_and_pamtester_stops_at_4095() {
    let big = answer(1 << 20);
    let (h, log) = standin_host(big.as_bytes());
    let r = h.pam_driver(
        "zt-harness",
        "root",
        big.as_bytes(),
        &["--rhost", "192.0.2.7", "--tty", "ssh"],
        &["authenticate", "acct_mgmt", "open_session", "close_session"],
    );
    assert!(r.ok(), "{}", &r.output[..r.output.len().min(2000)]);
    assert!(
        r.output.contains("prompt-echo-off: Token: "),
        "{}",
        r.output
    );
    assert!(r.output.contains("authenticate: 0 Success"), "{}", r.output);
    let wrong = h.pam_driver("zt-harness", "root", b"nope", &[], &["authenticate"]);
    assert_eq!(wrong.code, 7, "PAM_AUTH_ERR: {wrong:?}");
    assert_eq!(lengths(&log), vec![1 << 20, 4]);

    // pamtester reads one line of at most 4,095 bytes: longer answers arrive cut.
    std::fs::write(&log, "").unwrap();
    let _ = h.pamtester("zt-harness", "root", &answer(5000), &["authenticate"]);
    assert_eq!(lengths(&log), vec![4095], "pamtester's limit moved");
}

#[test]
fn sshd_logs_in_a_local_user_with_pam_unix() {
    let h = local_host();
    h.pam_service("sshd", UNIX_STACK);
    let d = Sshd::start(&h, "");
    for auth in [SshAuth::KeyboardInteractive, SshAuth::Password] {
        let ok = d.ssh(
            &h,
            "breakglass",
            auth,
            &["correct horse"],
            "id -un; echo home=$HOME",
        );
        assert_eq!(ok.code, 0, "{auth:?}: {ok:?}\n{}", d.log());
        assert!(
            ok.output.contains("breakglass\nhome=/home/breakglass"),
            "{ok:?}"
        );
        let bad = d.ssh(&h, "breakglass", auth, &["wrong"], "true");
        assert_eq!(bad.code, 255, "{auth:?}: {bad:?}");
    }
    let log = d.log();
    assert!(
        log.contains("Accepted keyboard-interactive/pam for breakglass"),
        "{log}"
    );
    assert!(log.contains("Accepted password for breakglass"), "{log}");

    // AuthenticationMethods in the caller's lines wins over the defaults.
    let only_kbd = Sshd::start(&h, "AuthenticationMethods keyboard-interactive");
    let pw = only_kbd.ssh(
        &h,
        "breakglass",
        SshAuth::Password,
        &["correct horse"],
        "true",
    );
    assert_eq!(pw.code, 255, "password must be refused: {pw:?}");
}

#[test]
fn ssh_answer_limits() {
    // Both methods cut the answer at SSH_MAX_ANSWER bytes (client side).
    let exact = answer(SSH_MAX_ANSWER);
    let (h, log) = standin_host(exact.as_bytes());
    h.add_local_user("tokenuser", 4200);
    let d = Sshd::start(&h, "");
    for auth in [SshAuth::KeyboardInteractive, SshAuth::Password] {
        std::fs::write(&log, "").unwrap();
        let ok = d.ssh(&h, "tokenuser", auth, &[&exact], "id -un");
        assert_eq!(ok.code, 0, "{auth:?}: {ok:?}\n{}", d.log());
        assert_eq!(lengths(&log), vec![SSH_MAX_ANSWER], "{auth:?}: {ok:?}");
        std::fs::write(&log, "").unwrap();
        // Another pattern, so that a cut answer cannot equal the secret.
        let long = d.ssh(&h, "tokenuser", auth, &["X".repeat(3000).as_str()], "true");
        assert_eq!(long.code, 255, "{long:?}");
        assert_eq!(
            lengths(&log),
            vec![SSH_MAX_ANSWER],
            "{auth:?}: the longest answer that gets through moved"
        );
    }
}

#[test]
fn directory_user_logs_in_over_ssh_through_the_standin() {
    let secret = answer(SSH_MAX_ANSWER);
    let (h, _log) = standin_host(secret.as_bytes());
    h.write_directory(&json!({
        "users": [{"id": "u-alice", "email": "alice@example.com"}],
        "groups": [{"id": "g-sre", "name": "SRE", "members": ["u-alice"]}]
    }));
    h.sync();
    let d = Sshd::start(&h, "PasswordAuthentication no");
    let r = d.ssh(
        &h,
        "alice",
        SshAuth::KeyboardInteractive,
        &[&secret],
        "id -un; id -Gn",
    );
    assert_eq!(r.code, 0, "{r:?}\n{}", d.log());
    assert!(
        r.output.contains("(alice@127.0.0.1) Token: "),
        "prompt: {r:?}"
    );
    assert!(r.output.contains("alice\nalice sre"), "{r:?}");
    let pw = d.ssh(&h, "alice", SshAuth::Password, &[&secret], "true");
    assert_eq!(pw.code, 255, "PasswordAuthentication no: {pw:?}");
}

#[test]
fn sudo_with_a_local_password_and_its_answer_limit() {
    let h = local_host();
    h.pam_service("sudo", UNIX_STACK);
    h.sudoers("breakglass ALL=(ALL:ALL) ALL\n");
    let ok = h.sudo("breakglass", "correct horse");
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.output.lines().any(|l| l.trim() == "0"), "{ok:?}");
    let bad = h.sudo("breakglass", "wrong");
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(!bad.output.lines().any(|l| l.trim() == "0"), "{bad:?}");

    let (s, log) = standin_host(answer(SUDO_MAX_ANSWER).as_bytes());
    s.add_local_user("tokenuser", 4200);
    s.sudoers("tokenuser ALL=(ALL:ALL) ALL\n");
    let ok = s.sudo("tokenuser", &answer(SUDO_MAX_ANSWER));
    assert_eq!(ok.code, 0, "{ok:?}");
    assert_eq!(lengths(&log), vec![SUDO_MAX_ANSWER]);
    std::fs::write(&log, "").unwrap();
    // One byte more and sudo's conversation fails: the module gets no answer at all.
    let long = s.sudo("tokenuser", &answer(SUDO_MAX_ANSWER + 1));
    assert_ne!(long.code, 0, "{long:?}");
    assert_eq!(lengths(&log), Vec::<usize>::new(), "sudo's limit moved");
}

#[test]
fn keys_server_serves_swaps_and_fails_on_demand() {
    let k = KeysServer::start();
    k.put(tokens::CF_CERTS_PATH, &tokens::cf_certs(&[TestKey::Rsa]));
    let net = Net::shared();
    let (st, head, body) = net.http_get(k.port, tokens::CF_CERTS_PATH);
    assert_eq!(st, 200, "{head}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["keys"][0]["kid"], "zt-test-rsa-1");
    assert_eq!(doc["public_cert"]["kid"], "zt-test-rsa-1");
    assert!(
        doc["public_certs"][0]["cert"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );

    // rotation: two keys live, then the old one gone
    k.put(
        tokens::CF_CERTS_PATH,
        &tokens::cf_certs(&[TestKey::Rsa2, TestKey::Rsa]),
    );
    let (_, _, body) = net.http_get(k.port, tokens::CF_CERTS_PATH);
    let doc: Value = serde_json::from_str(&body).unwrap();
    let kids: Vec<&str> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, ["zt-test-rsa-2", "zt-test-rsa-1"]);

    k.fail_with(503);
    assert_eq!(net.http_get(k.port, tokens::CF_CERTS_PATH).0, 503);
    k.fail_with(0);
    assert_eq!(net.http_get(k.port, "/missing").0, 404);
    assert_eq!(k.hits().len(), 4);
    assert!(k.url("/x").starts_with("http://127.0.0.1:"));
}

fn decoding_key(doc: &Value, kid: &str) -> DecodingKey {
    let jwk: Jwk = serde_json::from_value(
        doc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap()
            .clone(),
    )
    .unwrap();
    DecodingKey::from_jwk(&jwk).unwrap()
}

#[test]
fn minted_tokens_verify_against_their_certs_document() {
    let doc: Value = serde_json::from_str(&tokens::cf_certs(&[TestKey::Rsa, TestKey::Ec])).unwrap();
    for key in [TestKey::Rsa, TestKey::Ec] {
        let c = tokens::access_claims("acme", tokens::TEST_AUD, "alice@example.com", 300);
        let jwt = tokens::mint(key, &c);
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key.kid()));
        let mut v = Validation::new(key.alg());
        v.set_audience(&[tokens::TEST_AUD]);
        v.set_issuer(&["https://acme.cloudflareaccess.com"]);
        let got = jsonwebtoken::decode::<Value>(&jwt, &decoding_key(&doc, key.kid()), &v).unwrap();
        assert_eq!(got.claims["email"], "alice@example.com");
        assert_eq!(got.claims["type"], "app");
    }
    let svc = tokens::mint(
        TestKey::Rsa,
        &tokens::service_token_claims("acme", tokens::TEST_AUD, 60),
    );
    assert_eq!(tokens::claims_unverified(&svc)["sub"], "");
}

#[test]
fn oidc_provider_answers_discovery_and_issues_an_id_token() {
    let p = OidcProvider::shared();
    let net = Net::shared();
    let (st, _, body) = net.http_get(p.port, "/.well-known/openid-configuration");
    assert_eq!(st, 200);
    let disc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(disc["issuer"], p.issuer());
    let jwks_path = disc["jwks_uri"].as_str().unwrap().replace(&p.issuer(), "");
    let (_, _, jwks) = net.http_get(p.port, &jwks_path);
    let jwks: Value = serde_json::from_str(&jwks).unwrap();

    let t = p.id_token("alice", "zt-ssh");
    let kid = jsonwebtoken::decode_header(&t).unwrap().kid.unwrap();
    let mut v = Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&["zt-ssh"]);
    v.set_issuer(&[p.issuer()]);
    let c = jsonwebtoken::decode::<Value>(&t, &decoding_key(&jwks, &kid), &v)
        .unwrap()
        .claims;
    assert_eq!(c["email"], "alice@example.com");
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["email_verified"], true);
}
