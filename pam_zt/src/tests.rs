//! The verification matrix, the auth flow over a mock PAM handle, the
//! account policy, and the live read path over published files.
//! Keys are the committed TEST-ONLY fixtures in tests/fixtures (generating
//! RSA keys in a debug build is slow).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::args::Args;
use crate::audit::Record;
use crate::directory::{Claim, DirUser, Directory, Fixture, Issuer, Key, kind};
use crate::handler::{Item, PamHandler, Secret};
use crate::stages::{self, Opener};
use crate::status::{Failure, code};
use crate::token::{self, Facts, Verified};

const NOW: i64 = 1_800_000_000;
const CF_ISS: &str = "https://acme.cloudflareaccess.com";
const CF_AUD: &str = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2";
const OIDC_ISS: &str = "https://id.example.com";

fn fixture_file(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn key(file: &str, alg: &str) -> Key {
    let jwk = fixture_file(file);
    let v: Value = serde_json::from_slice(&jwk).unwrap();
    Key {
        kid: v["kid"].as_str().unwrap().into(),
        alg: alg.into(),
        jwk,
    }
}

fn user(name: &str, email: &str) -> DirUser {
    DirUser {
        name: name.into(),
        uid: 1_500_001,
        gid: 1_500_001,
        home: format!("/home/{name}").into(),
        email: email.into(),
        idp_id: format!("oid-{name}").into(),
        in_login_group: true,
    }
}

fn directory() -> Fixture {
    Fixture {
        issuers: vec![
            Issuer {
                kind: kind::CLOUDFLARE_ACCESS,
                iss: CF_ISS.into(),
                claim: Claim::Email,
                audiences: vec![CF_AUD.into()],
                require_mfa: false,
                mfa_acr: Vec::new(),
            },
            Issuer {
                kind: kind::OIDC,
                iss: OIDC_ISS.into(),
                claim: Claim::Email,
                audiences: vec!["zt-ssh".into()],
                require_mfa: false,
                mfa_acr: Vec::new(),
            },
        ],
        keys: vec![
            (CF_ISS.into(), key("TEST-ONLY-rsa.jwk.json", "RS256")),
            (OIDC_ISS.into(), key("TEST-ONLY-ec.jwk.json", "ES256")),
            (OIDC_ISS.into(), key("TEST-ONLY-ed25519.jwk.json", "EdDSA")),
        ],
        users: vec![
            user("alice", "alice@example.com"),
            user("bob", "bob@example.com"),
        ],
        last_sync: NOW as u64 - 60,
        ..Fixture::default()
    }
}

fn sign(alg: Algorithm, kid: &str, claims: &Value) -> String {
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&fixture_file("TEST-ONLY-rsa-private.pem")),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&fixture_file("TEST-ONLY-ec-private.pem")),
        Algorithm::EdDSA => {
            EncodingKey::from_ed_pem(&fixture_file("TEST-ONLY-ed25519-private.pem"))
        }
        _ => unreachable!(),
    }
    .unwrap();
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

/// A Cloudflare Access application token as Access issues it.
fn cf_claims(email: &str) -> Value {
    json!({
        "aud": [CF_AUD],
        "email": email,
        "exp": NOW + 3600,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "iss": CF_ISS,
        "type": "app",
        "identity_nonce": "6ei69kawdKzMIAPF",
        "sub": "7335d417-61da-459d-899c-0a01c76a2f94",
        "country": "DE",
    })
}

fn oidc_claims(email: &str) -> Value {
    json!({
        "iss": OIDC_ISS,
        "aud": "zt-ssh",
        "sub": "oid-alice",
        "email": email,
        "email_verified": true,
        "exp": NOW + 300,
        "iat": NOW,
        "jti": "id-token-1",
        "nonce": "n-0S6_WzA2Mj",
    })
}

fn cf(claims: &Value) -> String {
    sign(Algorithm::RS256, "test-rsa-1", claims)
}

fn check(token: &str, dir: &mut Fixture) -> Result<Verified, Failure> {
    let mut facts = Facts::default();
    token::verify(token.as_bytes(), dir, NOW, &mut facts)
}

/// Verifies and matches with PAM_USER; the reason on refusal.
fn login(token: &str, pam_user: &str) -> Result<DirUser, String> {
    let mut dir = directory();
    let v = check(token, &mut dir).map_err(|f| f.reason().to_owned())?;
    crate::auth::match_identity(&dir, &v, pam_user.as_bytes()).map_err(|f| f.reason().to_owned())
}

fn refused(token: &str, pam_user: &str, why: &str) {
    match login(token, pam_user) {
        Ok(_) => panic!("accepted, expected refusal with {why:?}"),
        Err(r) => assert!(r.contains(why), "reason {r:?} does not contain {why:?}"),
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn valid_cloudflare_access_token_is_accepted() {
    let t = cf(&cf_claims("Alice@Example.com"));
    assert!(token::looks_like_jwt(t.as_bytes()));
    let u = login(&t, "alice").unwrap();
    assert_eq!(u.name, b"alice");
}

#[test]
fn valid_oidc_id_tokens_are_accepted() {
    let t = sign(
        Algorithm::ES256,
        "test-ec-1",
        &oidc_claims("alice@example.com"),
    );
    assert_eq!(login(&t, "alice").unwrap().name, b"alice");
    let t = sign(
        Algorithm::EdDSA,
        "test-ed-1",
        &oidc_claims("alice@example.com"),
    );
    assert_eq!(login(&t, "alice").unwrap().name, b"alice");
    // aud as an array holding the client id among others
    let mut c = oidc_claims("alice@example.com");
    c["aud"] = json!(["other", "zt-ssh"]);
    let t = sign(Algorithm::ES256, "test-ec-1", &c);
    assert!(login(&t, "alice").is_ok());
}

#[test]
fn alg_none_is_refused() {
    let h = b64(&json!({"alg": "none", "kid": "test-rsa-1", "typ": "JWT"}));
    let p = b64(&cf_claims("alice@example.com"));
    refused(
        &format!("{h}.{p}."),
        "alice",
        "algorithm none is not allowed",
    );
    refused(
        &format!("{h}.{p}.AAAA"),
        "alice",
        "algorithm none is not allowed",
    );
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let public_pem = fixture_file("TEST-ONLY-rsa-public.pem");
    let jwk = fixture_file("TEST-ONLY-rsa.jwk.json");
    for secret in [public_pem, jwk] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("test-rsa-1".into());
        let t = jsonwebtoken::encode(
            &h,
            &cf_claims("alice@example.com"),
            &EncodingKey::from_secret(&secret),
        )
        .unwrap();
        refused(&t, "alice", "algorithm HS256 is not allowed");
    }
}

#[test]
fn a_key_of_another_family_is_refused() {
    // ES256 header naming the issuer's RSA key: the token cannot choose.
    let mut d = directory();
    d.keys.push((CF_ISS.into(), {
        let mut k = key("TEST-ONLY-ec.jwk.json", "ES256");
        k.kid = "test-rsa-1-ec".into();
        k
    }));
    let t = sign(
        Algorithm::ES256,
        "test-rsa-1",
        &cf_claims("alice@example.com"),
    );
    let r = check(&t, &mut d).unwrap_err();
    assert!(r.reason().contains("does not fit algorithm ES256"), "{r:?}");
}

#[test]
fn unknown_kid_asks_the_agent_once() {
    let t = sign(Algorithm::RS256, "rotated", &cf_claims("alice@example.com"));
    // agent down: an immediate refusal saying so
    let mut d = directory();
    d.agent_down = Some("agent unavailable: connect: No such file or directory".into());
    let r = check(&t, &mut d).unwrap_err();
    assert!(r.reason().contains("unknown kid rotated"), "{r:?}");
    assert!(r.reason().contains("agent unavailable"), "{r:?}");
    assert_eq!(d.refreshes, 1);
    // the agent refreshes, the key is still unknown
    let mut d = directory();
    let r = check(&t, &mut d).unwrap_err();
    assert!(
        r.reason().contains("not found after a key refresh"),
        "{r:?}"
    );
    assert_eq!(d.refreshes, 1);
    // the agent fetches the rotated key: accepted after one refresh
    let mut d = directory();
    let mut k = key("TEST-ONLY-rsa.jwk.json", "RS256");
    k.kid = "rotated".into();
    k.jwk = serde_json::to_vec(&{
        let mut v: Value = serde_json::from_slice(&k.jwk).unwrap();
        v["kid"] = "rotated".into();
        v
    })
    .unwrap();
    d.keys_after_refresh.push((CF_ISS.into(), k));
    assert!(check(&t, &mut d).is_ok());
    assert_eq!(d.refreshes, 1);
    // a known kid never bothers the agent
    let mut d = directory();
    check(&cf(&cf_claims("alice@example.com")), &mut d).unwrap();
    assert_eq!(d.refreshes, 0);
}

#[test]
fn time_claims_with_60_s_leeway() {
    let with = |k: &str, v: Value| {
        let mut c = cf_claims("alice@example.com");
        c[k] = v;
        cf(&c)
    };
    refused(&with("exp", json!(NOW - 61)), "alice", "expired");
    assert!(login(&with("exp", json!(NOW - 59)), "alice").is_ok());
    refused(&with("nbf", json!(NOW + 300)), "alice", "not valid yet");
    assert!(login(&with("nbf", json!(NOW + 30)), "alice").is_ok());
    refused(
        &with("iat", json!(NOW + 300)),
        "alice",
        "issued in the future",
    );
    refused(
        &with("exp", json!("tomorrow")),
        "alice",
        "exp is not a number",
    );
    let mut c = cf_claims("alice@example.com");
    c.as_object_mut().unwrap().remove("exp");
    refused(&cf(&c), "alice", "token has no exp");
}

#[test]
fn wrong_aud_and_wrong_iss_are_refused() {
    let mut c = cf_claims("alice@example.com");
    c["aud"] = json!(["0000"]);
    refused(&cf(&c), "alice", "audience not accepted");
    c["aud"] = json!("zt-ssh"); // another issuer's audience
    refused(&cf(&c), "alice", "audience not accepted");
    c.as_object_mut().unwrap().remove("aud");
    refused(&cf(&c), "alice", "token has no aud");
    let mut c = cf_claims("alice@example.com");
    c["iss"] = json!("https://evil.cloudflareaccess.com");
    refused(
        &cf(&c),
        "alice",
        "issuer https://evil.cloudflareaccess.com is not configured",
    );
    c["iss"] = json!("https://acme.cloudflareaccess.com/"); // exact match only
    refused(&cf(&c), "alice", "is not configured");
}

#[test]
fn truncated_bad_base64_and_oversized_tokens_are_refused() {
    let t = cf(&cf_claims("alice@example.com"));
    refused(&t[..t.len() - 10], "alice", "bad signature");
    let two = &t[..t.rfind('.').unwrap()];
    assert!(
        token::looks_like_jwt(two.as_bytes()),
        "still recognised as a token"
    );
    refused(two, "alice", "2 parts instead of 3");
    refused(&format!("{two}."), "alice", "no signature");
    // a character outside base64url in the payload
    let mut parts: Vec<String> = t.split('.').map(String::from).collect();
    parts[1].insert(5, '!');
    refused(&parts.join("."), "alice", "payload is not base64url");
    // a signature that is not base64url
    let mut parts: Vec<String> = t.split('.').map(String::from).collect();
    parts[2] = "%%%%".into();
    refused(&parts.join("."), "alice", "signature is not valid");
    // a changed payload
    let mut parts: Vec<String> = t.split('.').map(String::from).collect();
    parts[1] = b64(&cf_claims("bob@example.com"));
    refused(&parts.join("."), "bob", "bad signature");
    // 1 MB
    let big = format!(
        "{}.{}.{}",
        t.split('.').next().unwrap(),
        "A".repeat(1 << 20),
        "sig"
    );
    assert!(token::looks_like_jwt(big.as_bytes()));
    refused(&big, "alice", "token too large");
}

#[test]
fn another_persons_token_and_unknown_people_are_refused() {
    refused(
        &cf(&cf_claims("bob@example.com")),
        "alice",
        "used for alice",
    );
    // a disabled person is not published: nobody has the email
    refused(
        &cf(&cf_claims("carol@example.com")),
        "carol",
        "no directory user has the email",
    );
    refused(
        &cf(&cf_claims("alice@example.com")),
        "root",
        "used for root",
    );
}

#[test]
fn service_tokens_are_refused() {
    let c = json!({
        "aud": [CF_AUD], "exp": NOW + 60, "iat": NOW, "nbf": NOW, "iss": CF_ISS,
        "type": "app", "identity_nonce": "", "sub": "", "common_name": "ci-runner.access",
    });
    refused(&cf(&c), "alice", "service token (ci-runner.access)");
    let mut c = cf_claims("alice@example.com");
    c["sub"] = json!("");
    refused(&cf(&c), "alice", "service token (empty sub)");
}

#[test]
fn email_verified_false_is_refused() {
    let mut c = oidc_claims("alice@example.com");
    c["email_verified"] = json!(false);
    refused(
        &sign(Algorithm::ES256, "test-ec-1", &c),
        "alice",
        "email not verified",
    );
}

#[test]
fn other_claims_match_as_documented() {
    let mut d = directory();
    d.issuers[1].claim = Claim::Sub;
    let t = sign(Algorithm::ES256, "test-ec-1", &oidc_claims("x@y"));
    let v = check(&t, &mut d).unwrap();
    assert!(
        crate::auth::match_identity(&d, &v, b"alice").is_ok(),
        "sub = alice's IdP id"
    );
    assert!(crate::auth::match_identity(&d, &v, b"bob").is_err());
    d.issuers[1].claim = Claim::PreferredUsername;
    let mut c = oidc_claims("x@y");
    c["preferred_username"] = json!("BOB@example.com");
    let v = check(&sign(Algorithm::ES256, "test-ec-1", &c), &mut d).unwrap();
    assert!(crate::auth::match_identity(&d, &v, b"bob").is_ok());
    assert!(crate::auth::match_identity(&d, &v, b"alice").is_err());
}

#[test]
fn a_bare_username_claim_never_names_a_directory_user() {
    // The IdP's user names are its own namespace (often chosen by the user
    // at self-registration): "alice" there is not zt's alice.
    for (claim, name) in [
        (Claim::PreferredUsername, "preferred_username"),
        (Claim::Upn, "upn"),
    ] {
        let mut d = directory();
        d.issuers[1].claim = claim;
        let mut c = oidc_claims("x@y");
        c[name] = json!("alice");
        let v = check(&sign(Algorithm::ES256, "test-ec-1", &c), &mut d).unwrap();
        let why = crate::auth::match_identity(&d, &v, b"alice")
            .map(|u| String::from_utf8_lossy(&u.name).into_owned())
            .expect_err("a bare IdP user name must not log in as alice");
        let why = why.reason().to_owned();
        assert!(
            why.contains(&format!("claim {name} = \"alice\" has no '@'")),
            "{why}"
        );
        assert!(why.contains("claim = \"sub\""), "{why}");
        assert_eq!(
            crate::auth::match_identity(&d, &v, b"bob")
                .map(|_| ())
                .unwrap_err()
                .reason(),
            why
        );
    }
}

#[test]
fn email_verified_must_be_true_when_present() {
    for bad in [
        json!("false"),
        json!("true"),
        json!(0),
        json!(1),
        json!(null),
        json!([]),
    ] {
        let mut c = oidc_claims("alice@example.com");
        c["email_verified"] = bad.clone();
        refused(
            &sign(Algorithm::ES256, "test-ec-1", &c),
            "alice",
            "email_verified is not true",
        );
    }
    // absent (Cloudflare Access never sends it) and true are fine
    assert!(login(&cf(&cf_claims("alice@example.com")), "alice").is_ok());
    let c = oidc_claims("alice@example.com");
    assert!(login(&sign(Algorithm::ES256, "test-ec-1", &c), "alice").is_ok());
}

#[test]
fn extreme_time_claims_are_refused_without_overflow() {
    let with = |k: &str, v: Value| {
        let mut c = cf_claims("alice@example.com");
        c[k] = v;
        cf(&c)
    };
    refused(&with("exp", json!(i64::MIN)), "alice", "expired");
    refused(&with("exp", json!(-1e300)), "alice", "expired");
    refused(&with("nbf", json!(i64::MAX)), "alice", "not valid yet");
    refused(
        &with("iat", json!(i64::MAX)),
        "alice",
        "issued in the future",
    );
    refused(&with("iat", json!(1e300)), "alice", "issued in the future");
    // and at the ends of the clock itself
    let mut c = cf_claims("alice@example.com");
    c["exp"] = json!(i64::MIN);
    let mut facts = Facts::default();
    let r = token::verify(cf(&c).as_bytes(), &mut directory(), i64::MAX, &mut facts);
    assert!(r.unwrap_err().reason().contains("expired"));
    let mut c = cf_claims("alice@example.com");
    c["exp"] = json!(i64::MAX);
    c["nbf"] = json!(i64::MAX);
    let r = token::verify(cf(&c).as_bytes(), &mut directory(), i64::MIN, &mut facts);
    assert!(r.unwrap_err().reason().contains("not valid yet"));
    let mut c = cf_claims("alice@example.com");
    c["exp"] = json!(i64::MAX);
    c.as_object_mut().unwrap().remove("nbf");
    c["iat"] = json!(i64::MAX);
    let r = token::verify(cf(&c).as_bytes(), &mut directory(), i64::MIN, &mut facts);
    assert!(r.unwrap_err().reason().contains("issued in the future"));
}

#[test]
fn passwords_are_not_tokens() {
    for p in [
        "hunter2",
        "a.b.c",
        "",
        "eyJ.x.y",
        "correct horse battery staple",
    ] {
        assert!(!token::looks_like_jwt(p.as_bytes()), "{p}");
    }
}

// ---- the auth flow over a mock PAM handle ----

#[derive(Default)]
struct MockPam {
    user: String,
    authtok: Option<Vec<u8>>,
    answers: VecDeque<Vec<u8>>,
    prompts: Vec<String>,
    infos: Vec<String>,
    errors: Vec<String>,
    env: Vec<(String, Vec<u8>)>,
    data: Vec<(String, Vec<u8>)>,
}

impl PamHandler for MockPam {
    fn user(&mut self) -> Result<Vec<u8>, Failure> {
        Ok(self.user.clone().into_bytes())
    }
    fn item(&self, item: Item) -> Result<Option<Vec<u8>>, Failure> {
        Ok(match item {
            Item::Service => Some(b"sshd".to_vec()),
            Item::Rhost => Some(b"::1".to_vec()),
            Item::Ruser => None,
            Item::Tty => Some(b"ssh".to_vec()),
            Item::Authtok => self.authtok.clone(),
        })
    }
    fn item_authtok(&self) -> Result<Option<Secret>, Failure> {
        Ok(self.authtok.clone().map(Secret::new))
    }
    fn set_authtok(&mut self, answer: &Secret) -> Result<(), Failure> {
        self.authtok = Some(answer.bytes().to_vec());
        Ok(())
    }
    fn prompt_secret(&mut self, prompt: &str) -> Result<Secret, Failure> {
        self.prompts.push(prompt.into());
        self.answers
            .pop_front()
            .map(Secret::new)
            .ok_or(Failure::Conversation("no answer"))
    }
    fn info_prompt(&mut self, info: &str, prompt: &str) -> Result<Option<Secret>, Failure> {
        self.infos.push(info.into());
        self.prompts.push(prompt.into());
        // b"NULL" stands for an application that answers with a NULL pointer
        self.answers
            .pop_front()
            .map(|a| (a != b"NULL").then(|| Secret::new(a)))
            .ok_or(Failure::Conversation("no answer"))
    }
    fn error_msg(&mut self, text: &str) {
        self.errors.push(text.into());
    }
    fn env(&self, name: &str) -> Option<Vec<u8>> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
    fn set_data(&mut self, name: &str, value: &[u8]) -> Result<(), Failure> {
        self.data.retain(|(k, _)| k != name);
        self.data.push((name.into(), value.to_vec()));
        Ok(())
    }
    fn data(&self, name: &str) -> Option<Vec<u8>> {
        self.data
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

struct FixtureOpener(RefCell<Option<Fixture>>);

impl Opener for FixtureOpener {
    type Dir = Fixture;
    fn open(&self, _: &Args) -> Result<Fixture, Failure> {
        self.0
            .borrow()
            .clone()
            .ok_or_else(|| Failure::Unavailable("snapshot unusable: does not exist".into()))
    }
    // the host's NSS stays out of the tests
    fn resolves(&self, _: &[u8]) -> bool {
        false
    }
}

/// A fixture directory on a host where another NSS source (sssd, LDAP,
/// extrausers) resolves `names`.
struct OtherSource(FixtureOpener, &'static [&'static str]);

impl Opener for OtherSource {
    type Dir = Fixture;
    fn open(&self, args: &Args) -> Result<Fixture, Failure> {
        self.0.open(args)
    }
    fn resolves(&self, name: &[u8]) -> bool {
        self.1.iter().any(|n| n.as_bytes() == name)
    }
}

fn opener() -> FixtureOpener {
    FixtureOpener(RefCell::new(Some(directory())))
}

struct TempLog(PathBuf);
impl TempLog {
    fn new(tag: &str) -> TempLog {
        let d = std::env::temp_dir().join(format!("pam-zt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        TempLog(d)
    }
    fn arg(&self) -> String {
        format!("audit_log={}/auth.jsonl", self.0.display())
    }
    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.0.join("auth.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}
impl Drop for TempLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn auth_prompts_once_stores_the_answer_and_accepts_a_token() {
    let log = TempLog::new("auth-ok");
    let t = cf(&cf_claims("alice@example.com"));
    let mut pam = MockPam {
        user: "alice".into(),
        answers: [t.clone().into_bytes()].into(),
        ..MockPam::default()
    };
    let c = stages::authenticate(&mut pam, &[&log.arg()], &opener(), NOW as u64);
    assert_eq!(c, code::SUCCESS);
    assert_eq!(pam.prompts, [crate::args::DEFAULT_PROMPT]);
    assert_eq!(
        pam.authtok.as_deref(),
        Some(t.as_bytes()),
        "PAM_AUTHTOK set for the next module"
    );
    let lines = log.lines();
    assert_eq!(lines.len(), 1);
    let r = &lines[0];
    assert_eq!(r["result"], "success");
    assert_eq!(r["user"], "alice");
    assert_eq!(r["email"], "alice@example.com");
    assert_eq!(r["idp_id"], "oid-alice");
    assert_eq!(r["method"], "token");
    assert_eq!(r["issuer"], CF_ISS);
    assert_eq!(r["kid"], "test-rsa-1");
    assert_eq!(r["jti"], Value::Null);
    assert_eq!(r["service"], "sshd");
    assert_eq!(r["rhost"], "::1");
    let text = std::fs::read_to_string(log.0.join("auth.jsonl")).unwrap();
    assert!(
        !text.contains(t.split('.').nth(2).unwrap()),
        "never the token"
    );
}

#[test]
fn auth_custom_prompt_and_first_pass() {
    let log = TempLog::new("auth-fp");
    let t = sign(
        Algorithm::ES256,
        "test-ec-1",
        &oidc_claims("alice@example.com"),
    );
    // use_first_pass: the stored answer, no prompt
    let mut pam = MockPam {
        user: "alice".into(),
        authtok: Some(t.clone().into_bytes()),
        ..MockPam::default()
    };
    let c = stages::authenticate(
        &mut pam,
        &["use_first_pass", &log.arg()],
        &opener(),
        NOW as u64,
    );
    assert_eq!(c, code::SUCCESS);
    assert!(pam.prompts.is_empty());
    assert_eq!(log.lines()[0]["jti"], "id-token-1");
    // use_first_pass with nothing stored: not ours, no prompt
    let mut pam = MockPam {
        user: "alice".into(),
        ..MockPam::default()
    };
    let c = stages::authenticate(
        &mut pam,
        &["use_first_pass", &log.arg()],
        &opener(),
        NOW as u64,
    );
    assert_eq!(c, code::IGNORE);
    assert!(pam.prompts.is_empty());
    // try_first_pass with nothing stored: prompts with the configured text
    let mut pam = MockPam {
        user: "alice".into(),
        answers: [t.into_bytes()].into(),
        ..MockPam::default()
    };
    let c = stages::authenticate(
        &mut pam,
        &["try_first_pass", "prompt=Token: ", &log.arg()],
        &opener(),
        NOW as u64,
    );
    assert_eq!(c, code::SUCCESS);
    assert_eq!(pam.prompts, ["Token: "]);
}

#[test]
fn not_a_token_is_left_to_the_next_module() {
    let log = TempLog::new("auth-pw");
    let mut pam = MockPam {
        user: "root".into(),
        answers: [b"break-glass password".to_vec()].into(),
        ..MockPam::default()
    };
    // No snapshot at all: a password never needs one.
    let none = FixtureOpener(RefCell::new(None));
    let c = stages::authenticate(&mut pam, &[&log.arg()], &none, NOW as u64);
    assert_eq!(c, code::IGNORE);
    assert_eq!(
        pam.authtok.as_deref(),
        Some(&b"break-glass password"[..]),
        "pam_unix try_first_pass sees it"
    );
    let r = &log.lines()[0];
    assert_eq!(
        (r["result"].as_str(), r["method"].as_str()),
        (Some("ignored"), Some("password"))
    );
    assert!(
        !std::fs::read_to_string(log.0.join("auth.jsonl"))
            .unwrap()
            .contains("break-glass")
    );
}

#[test]
fn refused_tokens_are_auth_err_with_a_reason_and_no_snapshot_is_unavailable() {
    let log = TempLog::new("auth-refused");
    let t = cf(&cf_claims("bob@example.com"));
    let mut pam = MockPam {
        user: "alice".into(),
        answers: [t.clone().into_bytes()].into(),
        ..MockPam::default()
    };
    assert_eq!(
        stages::authenticate(&mut pam, &[&log.arg()], &opener(), NOW as u64),
        code::AUTH_ERR
    );
    let r = &log.lines()[0];
    assert_eq!(r["result"], "failure");
    assert!(r["reason"].as_str().unwrap().contains("used for alice"));
    let mut pam = MockPam {
        user: "alice".into(),
        answers: [t.into_bytes()].into(),
        ..MockPam::default()
    };
    let none = FixtureOpener(RefCell::new(None));
    assert_eq!(
        stages::authenticate(&mut pam, &[&log.arg()], &none, NOW as u64),
        code::AUTHINFO_UNAVAIL
    );
    // a bad argument is a service error
    let mut pam = MockPam::default();
    assert_eq!(
        stages::authenticate(&mut pam, &["state_dir=relative"], &none, NOW as u64),
        code::SERVICE_ERR
    );
}

#[test]
fn a_forged_token_is_audited_with_claimed_values_only() {
    let log = TempLog::new("auth-forged");
    let mut c = cf_claims("alice@example.com");
    c["jti"] = json!("forged-jti");
    let t = cf(&c);
    // Same header and signature, another payload: the signature fails.
    let mut parts: Vec<String> = t.split('.').map(Into::into).collect();
    c["email"] = json!("bob@example.com");
    parts[1] = b64(&c);
    let forged = parts.join(".");
    let mut pam = MockPam {
        user: "bob".into(),
        answers: [forged.into_bytes()].into(),
        ..MockPam::default()
    };
    assert_eq!(
        stages::authenticate(&mut pam, &[&log.arg()], &opener(), NOW as u64),
        code::AUTH_ERR
    );
    let r = &log.lines()[0];
    assert!(
        r["reason"].as_str().unwrap().contains("bad signature"),
        "{r}"
    );
    assert!(r.get("email").is_none_or(Value::is_null), "{r}");
    assert!(r.get("issuer").is_none_or(Value::is_null), "{r}");
    assert!(r.get("jti").is_none_or(Value::is_null), "{r}");
    assert_eq!(r["claimed_email"], "bob@example.com", "{r}");
    assert_eq!(r["claimed_issuer"], CF_ISS, "{r}");
    assert_eq!(r["kid"], "test-rsa-1", "{r}");

    // Once the signature holds, the values are facts even if a later check
    // refuses the token.
    let mut c = cf_claims("alice@example.com");
    c["jti"] = json!("real-jti");
    c["exp"] = json!(NOW - 3600);
    let mut pam = MockPam {
        user: "alice".into(),
        answers: [cf(&c).into_bytes()].into(),
        ..MockPam::default()
    };
    assert_eq!(
        stages::authenticate(&mut pam, &[&log.arg()], &opener(), NOW as u64),
        code::AUTH_ERR
    );
    let r = &log.lines()[1];
    assert!(r["reason"].as_str().unwrap().contains("expired"), "{r}");
    assert_eq!(r["email"], "alice@example.com", "{r}");
    assert_eq!(r["issuer"], CF_ISS, "{r}");
    assert_eq!(r["jti"], "real-jti", "{r}");
    assert!(r.get("claimed_email").is_none(), "{r}");
    assert!(r.get("claimed_issuer").is_none(), "{r}");
}

// ---- continuation prompts for tokens that arrive in pieces ----

/// Runs the auth stage with these answers; the code, the handle (prompts,
/// PAM_AUTHTOK) and the audit reason.
fn auth_with(answers: &[&[u8]], argv: &[&str]) -> (i32, MockPam, String) {
    // one log per call: tests run in parallel
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = TempLog::new(&format!("auth-cont-{n}"));
    let mut pam = MockPam {
        user: "alice".into(),
        answers: answers.iter().map(|a| a.to_vec()).collect(),
        ..MockPam::default()
    };
    let mut argv = argv.to_vec();
    let arg = log.arg();
    argv.push(&arg);
    let c = stages::authenticate(&mut pam, &argv, &opener(), NOW as u64);
    let reason = log.lines()[0]["reason"].as_str().unwrap().to_owned();
    (c, pam, reason)
}

const CONT: &str = crate::auth::CONTINUE_PROMPT;
const FIRST: &str = crate::args::DEFAULT_PROMPT;

#[test]
fn a_one_shot_token_gets_no_extra_prompt() {
    let t = cf(&cf_claims("alice@example.com"));
    assert!(!crate::auth::CUT_LENGTHS.contains(&t.len()));
    let (c, pam, _) = auth_with(&[t.as_bytes()], &[]);
    assert_eq!(c, code::SUCCESS);
    assert_eq!(pam.prompts, [FIRST]);
    assert_eq!(pam.authtok.as_deref(), Some(t.as_bytes()));
}

#[test]
fn a_token_in_two_and_three_pieces_is_joined() {
    let t = cf(&cf_claims("alice@example.com"));
    // two: cut inside the payload
    let (a, b) = t.split_at(300);
    let (c, pam, _) = auth_with(&[a.as_bytes(), b.as_bytes()], &[]);
    assert_eq!(c, code::SUCCESS);
    assert_eq!(pam.prompts, [FIRST, CONT]);
    assert_eq!(
        pam.authtok.as_deref(),
        Some(t.as_bytes()),
        "the whole token"
    );
    // three, with the newlines and spaces a paste brings; the first piece
    // ends right after the second dot (an empty third part)
    let sig = t.rfind('.').unwrap() + 1;
    let pieces = [
        format!("{}\n", &t[..200]),
        format!("  {}\r\n", &t[200..sig]),
        format!("{} ", &t[sig..]),
    ];
    let p: Vec<&[u8]> = pieces.iter().map(|p| p.as_bytes()).collect();
    let (c, pam, _) = auth_with(&p, &["try_first_pass"]);
    assert_eq!(c, code::SUCCESS);
    assert_eq!(pam.prompts, [FIRST, CONT, CONT]);
    assert_eq!(pam.authtok.as_deref(), Some(t.as_bytes()));
}

#[test]
fn a_first_piece_of_a_cut_length_ending_in_the_signature_asks_for_more() {
    let t = cf(&cf_claims("alice@example.com"));
    assert!(t.rfind('.').unwrap() < 500 && t.len() > 511, "{}", t.len());
    let (a, b) = t.split_at(511);
    // looks complete (three parts) but 511 bytes is where sudo cuts
    assert!(crate::auth::incomplete(a.as_bytes(), 511));
    let (c, pam, _) = auth_with(&[a.as_bytes(), b.as_bytes()], &[]);
    assert_eq!(c, code::SUCCESS);
    assert_eq!(pam.prompts, [FIRST, CONT]);
    // a complete-looking piece of exactly a cut length asks again, and the
    // empty line then ends it
    assert!(crate::auth::incomplete(t.as_bytes(), 1023));
    assert!(!crate::auth::incomplete(t.as_bytes(), t.len()));
    let (a, b) = t.split_at(200);
    let (c, pam, _) = auth_with(&[a.as_bytes(), b.as_bytes()], &[]);
    assert_eq!(c, code::SUCCESS);
    assert_eq!(
        pam.prompts,
        [FIRST, CONT],
        "{} bytes: done at once",
        b.len()
    );
}

#[test]
fn an_empty_continuation_ends_the_token() {
    let t = cf(&cf_claims("alice@example.com"));
    let (c, pam, reason) = auth_with(&[&t.as_bytes()[..300], b"", b"never asked"], &[]);
    assert_eq!(c, code::AUTH_ERR);
    assert_eq!(pam.prompts, [FIRST, CONT]);
    assert!(reason.contains("truncated"), "{reason}");
    assert_eq!(pam.authtok.as_deref(), Some(&t.as_bytes()[..300]));
}

#[test]
fn continuation_is_capped_in_prompts_and_bytes() {
    let t = cf(&cf_claims("alice@example.com"));
    let head = &t[..t.find('.').unwrap() + 1];
    // 32 continuation prompts, each answered with more payload: refused
    let mut answers: Vec<&[u8]> = vec![head.as_bytes()];
    answers.extend(std::iter::repeat_n(&b"QUFB"[..], 40));
    let (c, pam, reason) = auth_with(&answers, &[]);
    assert_eq!(c, code::AUTH_ERR);
    assert_eq!(pam.prompts.len(), 1 + crate::auth::MAX_CONTINUATIONS);
    assert!(reason.contains("after 32 continuation prompts"), "{reason}");
    // 16 KiB in all: refused at the piece that crosses it
    let big = vec![b'Q'; 6000];
    let answers: Vec<&[u8]> = vec![head.as_bytes(), &big, &big, &big, &big];
    let (c, pam, reason) = auth_with(&answers, &[]);
    assert_eq!(c, code::AUTH_ERR);
    assert_eq!(pam.prompts.len(), 1 + 3);
    assert!(reason.contains("exceed 16384 bytes"), "{reason}");
}

#[test]
fn use_first_pass_refuses_an_incomplete_token_without_prompting() {
    let t = cf(&cf_claims("alice@example.com"));
    let log = TempLog::new("auth-cont-fp");
    let mut pam = MockPam {
        user: "alice".into(),
        authtok: Some(t.as_bytes()[..300].to_vec()),
        answers: [t.as_bytes()[300..].to_vec()].into(),
        ..MockPam::default()
    };
    let c = stages::authenticate(
        &mut pam,
        &["use_first_pass", &log.arg()],
        &opener(),
        NOW as u64,
    );
    assert_eq!(c, code::AUTH_ERR);
    assert!(pam.prompts.is_empty());
    let r = &log.lines()[0];
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("use_first_pass never prompts"),
        "{r}"
    );
}

#[test]
fn a_conversation_that_repeats_the_first_answer_stops_at_once() {
    // sshd's password authentication answers every prompt with its one
    // password: the rest of the token can never come.
    let t = cf(&cf_claims("alice@example.com"));
    let a = &t.as_bytes()[..400];
    let (c, pam, reason) = auth_with(&[a, a, a], &[]);
    assert_eq!(c, code::AUTH_ERR);
    assert_eq!(pam.prompts, [FIRST, CONT]);
    assert!(reason.contains("sshd password authentication"), "{reason}");
    // a three-part answer that happens to be of a cut length is passed on
    // whole (the signature check decides), not refused unseen
    let t = cf(&cf_claims("alice@example.com"));
    let padded = format!("{t}{}", "A".repeat(1023 - t.len()));
    let mut pam = MockPam {
        answers: [padded.clone().into_bytes()].into(),
        ..MockPam::default()
    };
    let first = Secret::new(padded.clone().into_bytes());
    let whole = crate::auth::complete(&mut pam, first).unwrap();
    assert_eq!(whole.bytes(), padded.as_bytes());
    assert_eq!(pam.prompts, [CONT]);
}

#[test]
fn passwords_never_get_a_continuation_prompt() {
    for p in [&b"hunter2"[..], &[b'x'; 511], &[b'y'; 1023]] {
        let (c, pam, _) = auth_with(&[p], &[]);
        assert_eq!(c, code::IGNORE);
        assert_eq!(pam.prompts, [FIRST]);
        assert_eq!(pam.authtok.as_deref(), Some(p), "unchanged for pam_unix");
    }
}

#[test]
fn method_comes_from_ssh_auth_info() {
    use crate::auth::ssh_method;
    assert_eq!(ssh_method(b"publickey ssh-ed25519 AAAA\n"), Some("key"));
    assert_eq!(
        ssh_method(b"publickey ecdsa-sha2-nistp256-cert-v01@openssh.com AAAA"),
        Some("certificate")
    );
    assert_eq!(ssh_method(b"keyboard-interactive\n"), Some("password"));
    assert_eq!(ssh_method(b"password"), Some("password"));
    assert_eq!(ssh_method(b""), None);
    let mut r = Record::default();
    let pam = MockPam {
        env: vec![(
            "SSH_AUTH_INFO_0".into(),
            b"publickey ssh-ed25519-cert-v01@openssh.com AAAA".to_vec(),
        )],
        ..MockPam::default()
    };
    crate::auth::context(&pam, &mut r);
    assert_eq!(r.method.as_deref(), Some("certificate"));
}

#[test]
fn the_method_of_a_token_login_reaches_account_and_session() {
    let log = TempLog::new("method-data");
    let t = cf(&cf_claims("alice@example.com"));
    let mut pam = MockPam {
        user: "alice".into(),
        answers: [t.into_bytes()].into(),
        // what sshd says after keyboard-interactive, token or password alike
        env: vec![("SSH_AUTH_INFO_0".into(), b"keyboard-interactive\n".to_vec())],
        ..MockPam::default()
    };
    let c = stages::authenticate(&mut pam, &[&log.arg()], &opener(), NOW as u64);
    assert_eq!(c, code::SUCCESS);
    assert_eq!(
        pam.data(crate::auth::METHOD_DATA).as_deref(),
        Some(&b"token"[..])
    );
    let passwd = std::env::temp_dir().join(format!("pam-zt-md-passwd-{}", std::process::id()));
    std::fs::write(&passwd, "root:x:0:0::/root:/bin/sh\n").unwrap();
    let c = stages::account(&mut pam, &[&log.arg()], &opener(), &passwd, NOW as u64);
    std::fs::remove_file(&passwd).unwrap();
    assert_eq!(c, code::SUCCESS);
    let lines = log.lines();
    assert_eq!(lines[1]["stage"], "account");
    assert_eq!(lines[1]["method"], "token", "not the SSH_AUTH_INFO_0 guess");
    // without the data (another process, or a password login): the guess
    let mut r = Record::default();
    pam.data.clear();
    crate::auth::context(&pam, &mut r);
    assert_eq!(r.method.as_deref(), Some("password"));
    // a refused or ignored answer leaves nothing behind
    let mut pam = MockPam {
        user: "root".into(),
        answers: [b"hunter2".to_vec()].into(),
        ..MockPam::default()
    };
    stages::authenticate(&mut pam, &[&log.arg()], &opener(), NOW as u64);
    assert!(pam.data.is_empty());
    // garbage under the name is not trusted as a method
    pam.data
        .push((crate::auth::METHOD_DATA.into(), b"x\ny".to_vec()));
    let mut r = Record::default();
    crate::auth::context(&pam, &mut r);
    assert_eq!(r.method, None);
}

#[test]
fn the_data_cleanup_frees_and_never_unwinds() {
    let p = Box::into_raw(Box::new(b"token".to_vec()));
    let fake = std::ptr::NonNull::<crate::ffi::PamHandleT>::dangling().as_ptr();
    // SAFETY: p is a boxed Vec<u8> handed over once, as libpam would.
    unsafe {
        crate::ffi::free_data(fake, p.cast(), 0);
        crate::ffi::free_data(fake, std::ptr::null_mut(), 0);
    }
}

// ---- account ----

#[test]
fn account_policy() {
    let log = TempLog::new("account");
    let passwd = std::env::temp_dir().join(format!("pam-zt-passwd-{}", std::process::id()));
    std::fs::write(
        &passwd,
        "root:x:0:0:root:/root:/bin/bash\nops:x:1000:1000::/home/ops:/bin/bash\n",
    )
    .unwrap();
    let run = |user: &str, o: &FixtureOpener| {
        let mut pam = MockPam {
            user: user.into(),
            ..MockPam::default()
        };
        stages::account(&mut pam, &[&log.arg()], o, &passwd, NOW as u64)
    };
    assert_eq!(run("alice", &opener()), code::SUCCESS);
    assert_eq!(run("ops", &opener()), code::IGNORE, "local");
    assert_eq!(run("stranger", &opener()), code::IGNORE, "not ours");
    // no snapshot: local users unaffected, nobody else is vouched for
    let none = FixtureOpener(RefCell::new(None));
    assert_eq!(run("root", &none), code::IGNORE);
    assert_eq!(run("alice", &none), code::AUTHINFO_UNAVAIL);
    // not in a login group
    let mut d = directory();
    d.users[0].in_login_group = false;
    assert_eq!(
        run("alice", &FixtureOpener(RefCell::new(Some(d)))),
        code::PERM_DENIED
    );
    // offline for too long
    let mut d = directory();
    d.max_offline = 3 * 86400;
    d.last_sync = NOW as u64 - 3 * 86400 - 1;
    assert_eq!(
        run("alice", &FixtureOpener(RefCell::new(Some(d.clone())))),
        code::PERM_DENIED
    );
    d.last_sync = NOW as u64 - 3 * 86400 + 10;
    assert_eq!(
        run("alice", &FixtureOpener(RefCell::new(Some(d)))),
        code::SUCCESS
    );
    let lines = log.lines();
    let reasons: Vec<&str> = lines
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("offline for too long")),
        "{reasons:?}"
    );
    assert!(reasons.contains(&"not in a login group"));
    assert!(
        lines.iter().all(|l| l["user"] != "ops"),
        "local users are not recorded"
    );
    std::fs::remove_file(&passwd).unwrap();
}

#[test]
fn account_without_a_snapshot_leaves_other_nss_sources_alone() {
    let log = TempLog::new("account-other-nss");
    let passwd = std::env::temp_dir().join(format!("pam-zt-passwd-other-{}", std::process::id()));
    std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let run = |user: &str, o: &dyn Fn(&mut MockPam) -> std::ffi::c_int| {
        let mut pam = MockPam {
            user: user.into(),
            ..MockPam::default()
        };
        o(&mut pam)
    };
    let args = [log.arg()];
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    // no snapshot: sssd's "carol" resolves, so she is another source's user
    // and her own modules decide; "alice" (a zt user while the snapshot is
    // gone, nss_zt cannot answer) resolves nowhere and is still refused
    let none = OtherSource(FixtureOpener(RefCell::new(None)), &["carol"]);
    let acct = |p: &mut MockPam| stages::account(p, &argv, &none, &passwd, NOW as u64);
    assert_eq!(run("carol", &acct), code::IGNORE);
    assert_eq!(run("alice", &acct), code::AUTHINFO_UNAVAIL);
    assert_eq!(run("root", &acct), code::IGNORE, "local");
    // with a snapshot nothing changes: a directory user that NSS resolves
    // (through nss_zt) is judged by the snapshot, not waved through
    let mut d = directory();
    d.users[0].in_login_group = false;
    let some = OtherSource(FixtureOpener(RefCell::new(Some(d))), &["alice", "carol"]);
    let acct = |p: &mut MockPam| stages::account(p, &argv, &some, &passwd, NOW as u64);
    assert_eq!(run("alice", &acct), code::PERM_DENIED);
    assert_eq!(run("carol", &acct), code::IGNORE, "not in the snapshot");
    let lines = log.lines();
    // another source's users are not this module's business: no record
    assert!(lines.iter().all(|l| l["user"] != "carol"), "{lines:?}");
    assert_eq!(lines[0]["reason"], "snapshot unusable: does not exist");
    std::fs::remove_file(&passwd).unwrap();
}

#[test]
fn nss_resolution_is_asked_of_the_host() {
    // root resolves through files on every host; an impossible name nowhere
    assert!(crate::account::resolves_in_nss(b"root"));
    assert!(!crate::account::resolves_in_nss(b"zt-no-such-user-\x01"));
    assert!(!crate::account::resolves_in_nss(b"nul\0name"));
}

// ---- the live read path over published files ----

#[test]
fn live_directory_reads_issuers_users_and_policy() {
    use zt_snapshot::{Content, GroupEntry, IssuerEntry, KeyEntry, PolicyEntry};
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: open_pair wants a root-owned state directory");
        return;
    }
    let d = zt_published::testing::TempStateDir::new("pam");
    let mut alice = zt_published::testing::user("alice", 1_500_001);
    alice.email = "alice@example.com".into();
    let bob = zt_published::testing::user("bob", 1_500_002);
    let mut login = GroupEntry {
        name: "zt-login".into(),
        gid: 1_500_100,
        flags: zt_snapshot::format::group_flags::LOGIN,
        idp_id: "grp-login".into(),
        members: vec!["alice".into()],
    };
    login.members.sort();
    let rsa = key("TEST-ONLY-rsa.jwk.json", "RS256");
    let content = Content {
        generation: 7,
        synced_at: NOW as u64 - 100,
        users: vec![alice, bob],
        groups: vec![
            zt_published::testing::upg("alice", 1_500_001),
            zt_published::testing::upg("bob", 1_500_002),
            login,
        ],
        issuers: vec![IssuerEntry {
            kind: kind::CLOUDFLARE_ACCESS,
            iss: CF_ISS.into(),
            claim: "email".into(),
            audiences: vec![CF_AUD.into()],
            keys: vec![KeyEntry {
                kid: rsa.kid.clone(),
                alg: "RS256".into(),
                jwk: String::from_utf8(rsa.jwk.clone()).unwrap(),
            }],
            ..Default::default()
        }],
        policy: PolicyEntry {
            max_offline_secs: 3600,
        },
        shared_accounts: Vec::new(),
        local_grants: Vec::new(),
    };
    d.publish(&content);
    let mut live = crate::live::Live::open(
        &d.path,
        Path::new("/nonexistent"),
        zt_published::control::request_key_refresh,
    )
    .unwrap();
    let v = token::verify(
        cf(&cf_claims("alice@example.com")).as_bytes(),
        &mut live,
        NOW,
        &mut Facts::default(),
    )
    .unwrap();
    let u = crate::auth::match_identity(&live, &v, b"alice").unwrap();
    assert!(u.in_login_group);
    assert!(!live.user_by_name(b"bob").unwrap().unwrap().in_login_group);
    assert_eq!(live.max_offline_secs().unwrap(), 3600);
    assert_eq!(live.last_good_sync().unwrap(), NOW as u64 - 100);
    let r = token::verify(
        sign(Algorithm::RS256, "other", &cf_claims("alice@example.com")).as_bytes(),
        &mut live,
        NOW,
        &mut Facts::default(),
    )
    .unwrap_err();
    assert!(
        r.reason()
            .contains("key refresh failed: zt-agent control socket /nonexistent/control.sock"),
        "{r:?}"
    );
}

// ---- the C boundary ----

#[test]
fn boundary_turns_panics_and_bad_handles_into_codes() {
    use std::ffi::{CString, c_char};
    let fake = std::ptr::NonNull::<crate::ffi::PamHandleT>::dangling().as_ptr();
    // SAFETY: the bodies never touch the handle; argv is null with argc 0.
    unsafe {
        assert_eq!(
            crate::run(fake, 0, std::ptr::null(), |_, _| panic!("boom")),
            code::SYSTEM_ERR
        );
        assert_eq!(
            crate::run(fake, 0, std::ptr::null(), |_, a| a.len() as i32),
            0
        );
        assert_eq!(
            crate::run(std::ptr::null_mut(), 0, std::ptr::null(), |_, _| 0),
            code::SYSTEM_ERR
        );
        let owned = [
            CString::new("debug").unwrap(),
            CString::new("prompt=T: ").unwrap(),
        ];
        let argv: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        assert_eq!(
            crate::ffi::args(2, argv.as_ptr()).unwrap(),
            ["debug", "prompt=T: "]
        );
        let bad = CString::new(vec![0xff]).unwrap();
        let argv = [bad.as_ptr()];
        assert!(matches!(
            crate::ffi::args(1, argv.as_ptr()),
            Err(Failure::Config(_))
        ));
    }
}

/// su on a terminal and pamtester cut a line at 4,095 bytes (measured in
/// tests/e2e): a token of exactly that length may have lost its tail.
#[test]
fn an_answer_cut_at_su_s_4095_bytes_counts_as_incomplete() {
    let head = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ";
    let body = "A".repeat(3000);
    let sig_len = 4095 - head.len() - body.len() - 2;
    let t = format!("{head}.{body}.{}", "B".repeat(sig_len));
    assert_eq!(t.len(), 4095);
    assert!(crate::auth::incomplete(t.as_bytes(), t.len()));
    let shorter = &t[..4094];
    assert!(!crate::auth::incomplete(shorter.as_bytes(), shorter.len()));
}

/// An ed25519 user certificate blob in OpenSSH's wire format (signature
/// not checked by the parser: sshd did that).
fn cert_blob(key_id: &str, serial: u64, principals: &[&str], ca_key: &[u8]) -> Vec<u8> {
    fn s(b: &mut Vec<u8>, v: &[u8]) {
        b.extend_from_slice(&(v.len() as u32).to_be_bytes());
        b.extend_from_slice(v);
    }
    let mut b = Vec::new();
    s(&mut b, b"ssh-ed25519-cert-v01@openssh.com");
    s(&mut b, &[7; 32]); // nonce
    s(&mut b, &[9; 32]); // the user's key
    b.extend_from_slice(&serial.to_be_bytes());
    b.extend_from_slice(&1u32.to_be_bytes());
    s(&mut b, key_id.as_bytes());
    let mut p = Vec::new();
    for x in principals {
        s(&mut p, x.as_bytes());
    }
    s(&mut b, &p);
    b.extend_from_slice(&0u64.to_be_bytes());
    b.extend_from_slice(&u64::MAX.to_be_bytes());
    for _ in 0..3 {
        s(&mut b, b"");
    }
    s(&mut b, ca_key);
    s(&mut b, b"sig");
    b
}

#[test]
fn account_records_the_certificate_or_key_sshd_accepted() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let log = TempLog::new("account-cert");
    let passwd = std::env::temp_dir().join(format!("pam-zt-cert-passwd-{}", std::process::id()));
    std::fs::write(&passwd, "root:x:0:0::/root:/bin/sh\n").unwrap();
    let ca = b"\0\0\0\x0bssh-ed25519\0\0\0\x20ABCDEFGHABCDEFGHABCDEFGHABCDEFGH";
    let cert = cert_blob("0123456789abcdef0123456789abcdef", 77, &["alice"], ca);
    let key = b"\0\0\0\x0bssh-ed25519\0\0\0\x20abcdefghabcdefghabcdefghabcdefgh";
    for info in [
        format!(
            "publickey ssh-ed25519-cert-v01@openssh.com {}\n",
            b64(&cert)
        ),
        format!("publickey ssh-ed25519 {}\n", b64(key)),
    ] {
        let mut pam = MockPam {
            user: "alice".into(),
            env: vec![("SSH_AUTH_INFO_0".into(), info.into_bytes())],
            ..MockPam::default()
        };
        let c = stages::account(&mut pam, &[&log.arg()], &opener(), &passwd, NOW as u64);
        assert_eq!(c, code::SUCCESS);
    }
    std::fs::remove_file(&passwd).unwrap();
    let lines = log.lines();
    let (c, k) = (&lines[0], &lines[1]);
    assert_eq!(c["stage"], "account");
    assert_eq!(c["user"], "alice");
    assert_eq!(c["method"], "certificate");
    assert_eq!(c["cert_key_id"], "0123456789abcdef0123456789abcdef");
    assert_eq!(c["cert_serial"], 77);
    assert_eq!(c["cert_principals"], serde_json::json!(["alice"]));
    assert_eq!(c["cert_ca"], crate::sshkey::fingerprint(ca));
    assert!(c["cert_ca"].as_str().unwrap().starts_with("SHA256:"));
    assert!(!c["cert_ca"].as_str().unwrap().ends_with('='));
    assert!(c.get("key_fingerprint").is_none());
    assert_eq!(k["method"], "key");
    assert_eq!(k["key_fingerprint"], crate::sshkey::fingerprint(key));
    assert!(k.get("cert_key_id").is_none() && k.get("cert_ca").is_none());
}

#[test]
fn a_certificate_login_to_a_shared_account_names_the_real_person() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let log = TempLog::new("account-person");
    let passwd = std::env::temp_dir().join(format!("pam-zt-person-passwd-{}", std::process::id()));
    std::fs::write(
        &passwd,
        "root:x:0:0::/root:/bin/sh\nsysadmin:x:1500:1500::/home/sysadmin:/bin/sh\n",
    )
    .unwrap();
    let mut dir = directory();
    dir.principals = vec![
        (b"alice".to_vec(), vec!["alice".into()]),
        (b"bob".to_vec(), vec!["bob".into()]),
    ];
    let o = FixtureOpener(RefCell::new(Some(dir)));
    let ca = b"\0\0\0\x0bssh-ed25519\0\0\0\x20ABCDEFGHABCDEFGHABCDEFGHABCDEFGH";
    let run = |user: &str, principal: &str| {
        let cert = cert_blob("fedcba9876543210fedcba9876543210", 5, &[principal], ca);
        let mut pam = MockPam {
            user: user.into(),
            env: vec![(
                "SSH_AUTH_INFO_0".into(),
                format!("publickey ssh-ed25519-cert-v01@openssh.com {}", b64(&cert)).into_bytes(),
            )],
            ..MockPam::default()
        };
        stages::account(&mut pam, &[&log.arg()], &o, &passwd, NOW as u64)
    };
    // bob's certificate as the local shared account: pam_zt leaves the
    // decision to pam_unix (ignore) but records who it was
    assert_eq!(run("sysadmin", "bob"), code::IGNORE);
    // alice as herself
    assert_eq!(run("alice", "alice"), code::SUCCESS);
    // a principal nobody in the directory carries: a local login as before, no record
    assert_eq!(run("sysadmin", "mallory"), code::IGNORE);
    std::fs::remove_file(&passwd).unwrap();
    let lines = log.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["user"], "sysadmin");
    assert_eq!(lines[0]["person"], "bob");
    assert_eq!(lines[0]["cert_key_id"], "fedcba9876543210fedcba9876543210");
    assert_eq!(lines[0]["method"], "certificate");
    assert_eq!(lines[1]["user"], "alice");
    assert_eq!(lines[1]["person"], "alice");
}

#[test]
fn the_session_record_carries_the_key_and_names_the_person_of_a_shared_account() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let log = TempLog::new("session-person");
    let passwd = std::env::temp_dir().join(format!("pam-zt-sess-passwd-{}", std::process::id()));
    std::fs::write(&passwd, "sysadmin:x:1500:1500::/home/sysadmin:/bin/sh\n").unwrap();
    let mut dir = directory();
    dir.principals = vec![(b"bob".to_vec(), vec!["bob".into()])];
    let o = FixtureOpener(RefCell::new(Some(dir)));
    let ca = b"\0\0\0\x0bssh-ed25519\0\0\0\x20ABCDEFGHABCDEFGHABCDEFGHABCDEFGH";
    let session = |user: &str, info: Option<String>| {
        let mut pam = MockPam {
            user: user.into(),
            env: info
                .map(|i| vec![("SSH_AUTH_INFO_0".into(), i.into_bytes())])
                .unwrap_or_default(),
            ..MockPam::default()
        };
        stages::open_session(&mut pam, &[&log.arg()], &o, &passwd, NOW as u64)
    };
    let cert = |p: &str| {
        let c = cert_blob("0123456789abcdef0123456789abcdef", 3, &[p], ca);
        Some(format!(
            "publickey ssh-ed25519-cert-v01@openssh.com {}",
            b64(&c)
        ))
    };
    assert_eq!(session("sysadmin", cert("bob")), code::IGNORE);
    // no key, or a certificate naming nobody in the directory: nothing recorded
    assert_eq!(session("sysadmin", None), code::IGNORE);
    assert_eq!(session("sysadmin", cert("mallory")), code::IGNORE);
    std::fs::remove_file(&passwd).unwrap();
    let lines = log.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["stage"], "session");
    assert_eq!(lines[0]["user"], "sysadmin");
    assert_eq!(lines[0]["person"], "bob");
    assert_eq!(lines[0]["cert_key_id"], "0123456789abcdef0123456789abcdef");
    assert_eq!(lines[0]["result"], "ignored");
}

fn mfa_directory(acr: &[&str]) -> Fixture {
    let mut d = directory();
    d.issuers[1].require_mfa = true;
    d.issuers[1].mfa_acr = acr.iter().map(|a| a.to_string()).collect();
    d
}

#[test]
fn require_mfa_wants_amr_mfa_or_a_listed_acr() {
    let es = |c: &Value| sign(Algorithm::ES256, "test-ec-1", c);
    let mut plain = oidc_claims("alice@example.com");
    let mut dir = mfa_directory(&["urn:example:mfa"]);
    let e = check(&es(&plain), &mut dir).unwrap_err();
    assert!(
        e.reason().contains("no multi-factor") && e.reason().contains("urn:example:mfa"),
        "{}",
        e.reason()
    );
    plain["amr"] = json!(["pwd"]);
    plain["acr"] = json!("urn:example:pwd");
    let e = check(&es(&plain), &mut dir).unwrap_err();
    assert!(
        e.reason().contains("amr=pwd acr=urn:example:pwd"),
        "{}",
        e.reason()
    );
    // "mfa" as a string, not in an array, is not amr
    plain["amr"] = json!("mfa");
    assert!(check(&es(&plain), &mut dir).is_err());
    plain["amr"] = json!(["pwd", "mfa"]);
    check(&es(&plain), &mut dir).unwrap();
    plain["amr"] = json!(["pwd"]);
    plain["acr"] = json!("urn:example:mfa");
    check(&es(&plain), &mut dir).unwrap();
    // the requirement is per issuer: Cloudflare's tokens are untouched
    check(&cf(&cf_claims("alice@example.com")), &mut dir).unwrap();
    let mut facts = Facts::default();
    plain["sid"] = json!("session-7");
    token::verify(es(&plain).as_bytes(), &mut dir, NOW, &mut facts).unwrap();
    assert_eq!(facts.sid.as_deref(), Some("session-7"));
    assert_eq!(facts.mfa.as_deref(), Some("amr=pwd acr=urn:example:mfa"));
}

/// An agent that answers from a script and records what it was asked.
#[derive(Default)]
struct ScriptedAgent {
    start: Option<Result<zt_published::device::DeviceCode, String>>,
    answers: VecDeque<zt_published::device::DeviceAnswer>,
    started_for: Vec<String>,
    rhosts: Vec<Option<String>>,
    polls: usize,
}

impl crate::device::DeviceAgent for ScriptedAgent {
    fn start(
        &mut self,
        user: &[u8],
        rhost: Option<&[u8]>,
    ) -> Result<zt_published::device::DeviceCode, String> {
        self.started_for.push(String::from_utf8_lossy(user).into());
        self.rhosts
            .push(rhost.map(|r| String::from_utf8_lossy(r).into_owned()));
        self.start.take().unwrap_or(Err("no script".into()))
    }
    fn poll(&mut self) -> zt_published::device::DeviceAnswer {
        self.polls += 1;
        self.answers
            .pop_front()
            .unwrap_or(zt_published::device::DeviceAnswer::Unavailable(
                "script ended".into(),
            ))
    }
}

fn code() -> zt_published::device::DeviceCode {
    zt_published::device::DeviceCode {
        expires_in: 600,
        user_code: "WDJB-MJHT".into(),
        verification_uri: "https://id.example.com/device".into(),
        verification_uri_complete: None,
    }
}

fn device_login(
    user: &str,
    answers: &[&[u8]],
    agent: &mut ScriptedAgent,
    dir: Fixture,
) -> (Result<&'static str, Failure>, MockPam, Record) {
    device_login_at(user, answers, agent, dir, &|| NOW)
}

fn device_login_at(
    user: &str,
    answers: &[&[u8]],
    agent: &mut ScriptedAgent,
    dir: Fixture,
    clock: &dyn Fn() -> i64,
) -> (Result<&'static str, Failure>, MockPam, Record) {
    let mut pam = MockPam {
        user: user.into(),
        answers: answers.iter().map(|a| a.to_vec()).collect(),
        ..MockPam::default()
    };
    let args = crate::args::parse(["device"]).unwrap();
    let mut record = Record::default();
    let r = crate::auth::authenticate(&mut pam, &args, || Ok(dir), agent, clock, &mut record);
    (r, pam, record)
}

#[test]
fn a_device_sign_in_shows_the_code_and_takes_the_persons_token() {
    use zt_published::device::DeviceAnswer;
    let mut claims = oidc_claims("alice@example.com");
    claims["amr"] = json!(["pwd", "mfa"]);
    claims["sid"] = json!("sid-1");
    let mut agent = ScriptedAgent {
        start: Some(Ok(code())),
        answers: [
            DeviceAnswer::Pending,
            DeviceAnswer::Token(sign(Algorithm::ES256, "test-ec-1", &claims)),
        ]
        .into(),
        ..ScriptedAgent::default()
    };
    let (r, pam, record) = device_login(
        "alice",
        &[b"", b"", b"", b""],
        &mut agent,
        mfa_directory(&[]),
    );
    assert_eq!(r.unwrap(), "device");
    assert_eq!(agent.started_for, ["alice"]);
    assert_eq!(
        agent.rhosts,
        [Some("::1".to_string())],
        "PAM_RHOST goes along"
    );
    assert_eq!(agent.polls, 2);
    assert_eq!(pam.prompts[0], crate::args::DEVICE_PROMPT);
    assert_eq!(pam.prompts[1], crate::device::CONFIRM);
    assert_eq!(&pam.prompts[2..], [crate::device::PRESS_ENTER; 2]);
    assert!(pam.infos[0].contains("Sign in as alice with your browser"));
    assert_eq!(
        pam.infos[1],
        "To sign in as alice, open https://id.example.com/device and enter the code WDJB-MJHT"
    );
    assert!(pam.infos[2].starts_with("Not signed in yet.\nTo sign in as alice"));
    assert_eq!(record.method.as_deref(), Some("device"));
    assert_eq!(record.issuer.as_deref(), Some(OIDC_ISS));
    assert_eq!(record.jti.as_deref(), Some("id-token-1"));
    assert_eq!(record.sid.as_deref(), Some("sid-1"));
    assert_eq!(record.mfa.as_deref(), Some("amr=pwd,mfa"));
    assert_eq!(record.email.as_deref(), Some("alice@example.com"));
}

#[test]
fn a_device_sign_in_is_refused_for_another_person_without_mfa_or_when_declined() {
    use zt_published::device::DeviceAnswer;
    let token = |email: &str, mfa: bool| {
        let mut c = oidc_claims(email);
        if mfa {
            c["amr"] = json!(["mfa"]);
        }
        sign(Algorithm::ES256, "test-ec-1", &c)
    };
    for (answer, want) in [
        (
            DeviceAnswer::Token(token("bob@example.com", true)),
            "used for alice",
        ),
        (
            DeviceAnswer::Token(token("alice@example.com", false)),
            "no multi-factor",
        ),
        (
            DeviceAnswer::Refused("the sign-in was declined at the IdP".into()),
            "declined",
        ),
        (DeviceAnswer::Refused("the code expired".into()), "expired"),
    ] {
        let mut agent = ScriptedAgent {
            start: Some(Ok(code())),
            answers: [answer].into(),
            ..ScriptedAgent::default()
        };
        let (r, pam, _) = device_login("alice", &[b"", b"", b""], &mut agent, mfa_directory(&[]));
        let f = r.unwrap_err();
        assert!(matches!(f, Failure::Refused(_)), "{want}: {f:?}");
        assert!(f.reason().contains(want), "{want}: {}", f.reason());
        // declined and expired are the agent's own words; whose sign-in it
        // was and which claim failed stay in the audit log
        let told = if want == "declined" || want == "expired" {
            want
        } else {
            "does not let alice in here"
        };
        assert!(
            pam.errors.iter().any(|e| e.contains(told)),
            "the person is told: {:?}",
            pam.errors
        );
        assert!(
            !pam.errors.iter().any(|e| e.contains("bob")),
            "{:?}",
            pam.errors
        );
    }
}

#[test]
fn device_sign_in_is_only_for_directory_users_and_fails_fast_without_an_agent() {
    // a local account: no IdP is asked, the next module decides
    let mut agent = ScriptedAgent::default();
    let (r, _, _) = device_login("root", &[b""], &mut agent, directory());
    assert!(matches!(r, Err(Failure::Ignore(_))), "{r:?}");
    assert!(agent.started_for.is_empty());
    // the agent down
    let mut agent = ScriptedAgent {
        start: Some(Err(
            "zt-agent control socket /run/zt/control.sock: unavailable".into(),
        )),
        ..ScriptedAgent::default()
    };
    let (r, pam, _) = device_login("alice", &[b"", b""], &mut agent, directory());
    assert!(matches!(r, Err(Failure::Unavailable(_))), "{r:?}");
    assert_eq!(
        pam.errors,
        [crate::device::UNAVAILABLE],
        "no internals shown"
    );
    // the real socket client, with nothing listening: at once
    let t = std::time::Instant::now();
    let mut socket = crate::device::SocketAgent::new(Path::new("/nonexistent-zt-run"));
    assert!(crate::device::DeviceAgent::start(&mut socket, b"alice", None).is_err());
    assert!(t.elapsed() < std::time::Duration::from_secs(1));
    // a token or a password still works as before with `device`
    let mut agent = ScriptedAgent::default();
    let t = cf(&cf_claims("alice@example.com"));
    let (r, _, _) = device_login("alice", &[t.as_bytes()], &mut agent, directory());
    assert_eq!(r.unwrap(), "token");
    let (r, _, _) = device_login("alice", &[b"hunter2"], &mut agent, directory());
    assert!(matches!(r, Err(Failure::Ignore(_))));
    // spaces are a (bad) password, not a request for a code
    let (r, _, _) = device_login("alice", &[b"   "], &mut agent, directory());
    assert!(matches!(r, Err(Failure::Ignore(_))));
    assert!(agent.started_for.is_empty());
    // a conversation that cannot answer the echo-on question (sshd's password
    // authentication) never reaches the agent
    let mut agent = ScriptedAgent {
        start: Some(Ok(code())),
        ..ScriptedAgent::default()
    };
    let (r, _, _) = device_login("alice", &[b""], &mut agent, directory());
    assert!(matches!(r, Err(Failure::Conversation(_))), "{r:?}");
    assert!(agent.started_for.is_empty());
    // text at the question (a conversation that answers everything), or no
    // answer at all (a NULL response), starts nothing
    for answer in [&b"alice"[..], b"NULL"] {
        let (r, _, _) = device_login("alice", &[b"", answer], &mut agent, directory());
        assert!(matches!(r, Err(Failure::Ignore(_))), "{r:?}");
        assert!(agent.started_for.is_empty());
    }
    // Ctrl-C at the "press Enter" prompt ends the conversation: no poll
    let (r, _, _) = device_login("alice", &[b"", b""], &mut agent, directory());
    assert!(matches!(r, Err(Failure::Conversation(_))), "{r:?}");
    assert_eq!(agent.started_for, ["alice"]);
    assert_eq!(agent.polls, 0);
}

#[test]
fn tokens_are_judged_when_they_arrive() {
    use zt_published::device::DeviceAnswer;
    // The IdP issues the token ten minutes after the stage began (a slow
    // sign-in): the clock is read when it arrives, so it is not "issued in
    // the future".
    let mut c = oidc_claims("alice@example.com");
    c["iat"] = json!(NOW + 600);
    c["exp"] = json!(NOW + 900);
    let token = sign(Algorithm::ES256, "test-ec-1", &c);
    let scripted = || ScriptedAgent {
        start: Some(Ok(code())),
        answers: [DeviceAnswer::Token(token.clone())].into(),
        ..ScriptedAgent::default()
    };
    let (r, _, _) = device_login_at(
        "alice",
        &[b"", b"", b""],
        &mut scripted(),
        directory(),
        &|| NOW + 600,
    );
    assert_eq!(r.unwrap(), "device");
    let (r, _, _) = device_login("alice", &[b"", b"", b""], &mut scripted(), directory());
    assert!(r.unwrap_err().reason().contains("issued in the future"));
    // A pasted token is judged when it is pasted: one valid when the prompt
    // appeared but expired by the time it was answered is refused.
    let pasted = cf(&cf_claims("alice@example.com")); // exp NOW + 3600
    let (r, _, _) = device_login_at(
        "alice",
        &[pasted.as_bytes()],
        &mut ScriptedAgent::default(),
        directory(),
        &|| NOW + 7200,
    );
    assert!(r.unwrap_err().reason().contains("expired"));
}
