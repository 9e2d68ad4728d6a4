//! Sets up a token login for bench/pam/run.sh: publishes a snapshot with one
//! directory user (`zbench`, in a login group) and the TEST-ONLY RS256 issuer
//! key into STATE_DIR with the agent's own publish protocol
//! (`zt_snapshot::StateDir`), and prints a fresh Cloudflare Access token
//! for that user (valid 1 hour).
//!
//!   pam-fixture STATE_DIR > token

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use zt_snapshot::{Content, GroupEntry, IssuerEntry, KeyEntry, PolicyEntry, UserEntry};

const CF_ISS: &str = "https://acme.cloudflareaccess.com";
const CF_AUD: &str = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2";

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pam_zt/tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: pam-fixture STATE_DIR");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let content = Content {
        generation: 1,
        synced_at: now,
        users: vec![UserEntry {
            name: "zbench".into(),
            uid: 1_500_001,
            gid: 1_500_001,
            gecos: "bench".into(),
            home: "/nonexistent".into(),
            shell: "/bin/sh".into(),
            email: "zbench@example.com".into(),
            idp_id: "oid-zbench".into(),
            principals: Vec::new(),
            ssh_keys: Vec::new(),
        }],
        groups: vec![
            GroupEntry {
                name: "zbench".into(),
                gid: 1_500_001,
                flags: 1,
                idp_id: String::new(),
                members: vec![],
            },
            GroupEntry {
                name: "zt-login".into(),
                gid: 1_500_100,
                flags: zt_snapshot::format::group_flags::LOGIN,
                idp_id: "grp".into(),
                members: vec!["zbench".into()],
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
                jwk: String::from_utf8(fixture("TEST-ONLY-rsa.jwk.json")).expect("utf-8"),
            }],
            ..Default::default()
        }],
        policy: PolicyEntry {
            max_offline_secs: 86_400,
        },
        ..Content::default()
    };
    let mut built = zt_snapshot::build(&content).expect("build");
    built.restamp(content.generation, content.synced_at);
    // SAFETY: geteuid cannot fail.
    let owner = unsafe { libc::geteuid() };
    zt_snapshot::StateDir::open_or_create_owned_by(Path::new(&dir), owner)
        .and_then(|s| s.publish(&built))
        .expect("publish");
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("test-rsa-1".into());
    let now = now as i64;
    let claims = json!({
        "aud": [CF_AUD], "email": "zbench@example.com", "exp": now + 3600, "iat": now,
        "nbf": now, "iss": CF_ISS, "type": "app", "identity_nonce": "6ei69kawdKzMIAPF",
        "sub": "7335d417-61da-459d-899c-0a01c76a2f94", "country": "DE",
    });
    let key = EncodingKey::from_rsa_pem(&fixture("TEST-ONLY-rsa-private.pem")).expect("key");
    println!("{}", jsonwebtoken::encode(&h, &claims, &key).expect("sign"));
}
