//! Token verification per algorithm, and the whole auth stage over an
//! in-memory directory: `cargo bench -p zt-bench --bench verify_token`.
//!
//! Signs one token per algorithm (RS256 2048-bit, ES256, EdDSA) with the
//! TEST-ONLY fixture keys of pam_zt/tests/fixtures, then times, as medians
//! of ZT_BENCH_RUNS batches (default 21) of ZT_BENCH_ITERS calls (default
//! 200), in microseconds per call:
//!
//! - `pam_zt::token::verify` (shape, header, issuer, key, signature, claims);
//! - `pam_zt::stages::authenticate`: argument parsing, the prompt through a
//!   mock conversation, verification, the identity match and the audit line
//!   (to a file in a temporary directory; syslog as in production).
//!
//! The targets (issue 6): verification under 100 us for RS256 and ES256.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::hint::black_box;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pam_zt::args::Args;
use pam_zt::directory::{Claim, DirUser, Fixture, Issuer, Key, kind};
use pam_zt::handler::{Item, PamHandler, Secret};
use pam_zt::stages::{self, Opener};
use pam_zt::status::{Failure, code};
use pam_zt::token::{self, Facts};
use serde_json::{Value, json};

const CF_ISS: &str = "https://acme.cloudflareaccess.com";
const CF_AUD: &str = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2";
const OIDC_ISS: &str = "https://id.example.com";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../pam_zt/tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn key(file: &str, alg: &str) -> Key {
    let jwk = fixture(file);
    let v: Value = serde_json::from_slice(&jwk).unwrap();
    Key {
        kid: v["kid"].as_str().unwrap().into(),
        alg: alg.into(),
        jwk,
    }
}

fn directory(now: u64) -> Fixture {
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
        users: vec![DirUser {
            name: b"alice".to_vec(),
            uid: 1_500_001,
            gid: 1_500_001,
            home: b"/home/alice".to_vec(),
            email: b"alice@example.com".to_vec(),
            idp_id: b"oid-alice".to_vec(),
            in_login_group: true,
        }],
        max_offline: 86_400,
        last_sync: now - 60,
        ..Fixture::default()
    }
}

fn sign(alg: Algorithm, now: i64) -> String {
    let (pem, kid) = match alg {
        Algorithm::RS256 => ("TEST-ONLY-rsa-private.pem", "test-rsa-1"),
        Algorithm::ES256 => ("TEST-ONLY-ec-private.pem", "test-ec-1"),
        _ => ("TEST-ONLY-ed25519-private.pem", "test-ed-1"),
    };
    let pem = fixture(pem);
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_ed_pem(&pem),
    }
    .unwrap();
    let claims = if alg == Algorithm::RS256 {
        // A Cloudflare Access application token as Access issues it.
        json!({
            "aud": [CF_AUD], "email": "alice@example.com", "exp": now + 3600,
            "iat": now - 10, "nbf": now - 10, "iss": CF_ISS, "type": "app",
            "identity_nonce": "6ei69kawdKzMIAPF",
            "sub": "7335d417-61da-459d-899c-0a01c76a2f94", "country": "DE",
        })
    } else {
        json!({
            "iss": OIDC_ISS, "aud": "zt-ssh", "sub": "oid-alice",
            "email": "alice@example.com", "email_verified": true,
            "exp": now + 300, "iat": now, "jti": "id-token-1",
        })
    };
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, &claims, &key).unwrap()
}

/// Median microseconds per call over `runs` batches of `iters` calls.
fn median_us(runs: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters.min(20) {
        f();
    }
    let mut batches: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / iters as f64
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[batches.len() / 2]
}

/// The PAM handle, as the unit tests mock it: one answer per prompt.
struct Pam {
    answers: VecDeque<Vec<u8>>,
    authtok: Option<Vec<u8>>,
    data: Option<Vec<u8>>,
}

impl PamHandler for Pam {
    fn user(&mut self) -> Result<Vec<u8>, Failure> {
        Ok(b"alice".to_vec())
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
    fn prompt_secret(&mut self, _: &str) -> Result<Secret, Failure> {
        self.answers
            .pop_front()
            .map(Secret::new)
            .ok_or(Failure::Conversation("no answer"))
    }
    fn info_prompt(&mut self, _: &str, _: &str) -> Result<Option<Secret>, Failure> {
        Err(Failure::Conversation(
            "the benchmark makes no device sign-in",
        ))
    }
    fn error_msg(&mut self, _: &str) {}
    fn env(&self, _: &str) -> Option<Vec<u8>> {
        None
    }
    fn set_data(&mut self, _: &str, value: &[u8]) -> Result<(), Failure> {
        self.data = Some(value.to_vec());
        Ok(())
    }
    fn data(&self, _: &str) -> Option<Vec<u8>> {
        self.data.clone()
    }
}

struct Dir(RefCell<Fixture>);

impl Opener for Dir {
    type Dir = Fixture;
    fn open(&self, _: &Args) -> Result<Fixture, Failure> {
        Ok(self.0.borrow().clone())
    }
}

fn main() {
    let runs = env_usize("ZT_BENCH_RUNS", 21);
    let iters = env_usize("ZT_BENCH_ITERS", 200);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let now_i = now as i64;
    let tmp = std::env::temp_dir().join(format!("zt-bench-verify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let audit = format!("audit_log={}/auth.jsonl", tmp.display());
    println!("pam_zt token verification, median of {runs} x {iters} calls");
    println!("| algorithm | token bytes | verify (us) | auth stage (us) |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, alg) in [
        ("RS256", Algorithm::RS256),
        ("ES256", Algorithm::ES256),
        ("EdDSA", Algorithm::EdDSA),
    ] {
        let t = sign(alg, now_i);
        let mut dir = directory(now);
        // Sanity: both paths accept the token, or the numbers mean nothing.
        let mut facts = Facts::default();
        token::verify(t.as_bytes(), &mut dir, now_i, &mut facts).unwrap();
        let opener = Dir(RefCell::new(directory(now)));
        let login = || {
            let mut pam = Pam {
                answers: [t.clone().into_bytes()].into(),
                authtok: None,
                data: None,
            };
            stages::authenticate(&mut pam, &[&audit], &opener, now)
        };
        assert_eq!(login(), code::SUCCESS, "{name}");
        let verify = median_us(runs, iters, || {
            let mut facts = Facts::default();
            black_box(token::verify(black_box(t.as_bytes()), &mut dir, now_i, &mut facts).is_ok());
        });
        let auth = median_us(runs, iters, || {
            black_box(login());
        });
        println!("| {name} | {} | {verify:.1} | {auth:.1} |", t.len());
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
