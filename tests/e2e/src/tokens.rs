//! JWTs for a fake Cloudflare Access team (or OIDC issuer), signed with the TEST-ONLY
//! keys committed in fixtures/test-keys/ (see its README), and the matching documents:
//! Cloudflare's certs shape and a plain JWKS.
//!
//! ```ignore
//! let k = TestKey::Rsa;
//! let jwt = mint(k, &access_claims("acme", AUD, "alice@example.com", 300));
//! keys.put(CF_CERTS_PATH, &cf_certs(&[TestKey::Rsa, TestKey::Rsa2]));
//! ```

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// Where Cloudflare serves a team's certs: `https://<team>.cloudflareaccess.com` + this.
pub const CF_CERTS_PATH: &str = "/cdn-cgi/access/certs";

/// A test AUD tag (64 hex digits, the shape of a Cloudflare Access application's AUD).
pub const TEST_AUD: &str = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2";

/// The committed test-only keypairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestKey {
    /// RS256, kid `zt-test-rsa-1`.
    Rsa,
    /// RS256, kid `zt-test-rsa-2` (the key a rotation brings in).
    Rsa2,
    /// ES256 (P-256), kid `zt-test-ec-1`.
    Ec,
}

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/test-keys")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

impl TestKey {
    fn stem(self) -> &'static str {
        match self {
            TestKey::Rsa => "rsa-test-only",
            TestKey::Rsa2 => "rsa2-test-only",
            TestKey::Ec => "ec-test-only",
        }
    }

    pub fn kid(self) -> &'static str {
        match self {
            TestKey::Rsa => "zt-test-rsa-1",
            TestKey::Rsa2 => "zt-test-rsa-2",
            TestKey::Ec => "zt-test-ec-1",
        }
    }

    pub fn alg(self) -> Algorithm {
        match self {
            TestKey::Rsa | TestKey::Rsa2 => Algorithm::RS256,
            TestKey::Ec => Algorithm::ES256,
        }
    }

    /// The public key as a JWK (with `kid`, `alg`, `use`).
    pub fn jwk(self) -> Value {
        serde_json::from_str(&fixture(&format!("{}.jwk.json", self.stem()))).expect("jwk json")
    }

    /// The self-signed certificate (PEM) for `public_cert(s)`.
    pub fn cert_pem(self) -> String {
        fixture(&format!("{}.cert.pem", self.stem()))
    }

    /// The private key (PKCS#8 PEM).
    pub fn private_pem(self) -> String {
        fixture(&format!("{}.key.pem", self.stem()))
    }

    fn encoding_key(self) -> EncodingKey {
        let pem = self.private_pem();
        match self {
            TestKey::Rsa | TestKey::Rsa2 => EncodingKey::from_rsa_pem(pem.as_bytes()),
            TestKey::Ec => EncodingKey::from_ec_pem(pem.as_bytes()),
        }
        .expect("test key")
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A JWT over `claims`, header `{"alg", "kid", "typ": "JWT"}` for `key`.
pub fn mint(key: TestKey, claims: &Value) -> String {
    mint_with_header(key, claims, |_| {})
}

/// Like [`mint`], with the header changed by `edit` first (e.g. another `kid`).
pub fn mint_with_header(key: TestKey, claims: &Value, edit: impl FnOnce(&mut Header)) -> String {
    let mut h = Header::new(key.alg());
    h.kid = Some(key.kid().to_string());
    edit(&mut h);
    jsonwebtoken::encode(&h, claims, &key.encoding_key()).expect("sign")
}

/// `https://<team>.cloudflareaccess.com`
pub fn cf_issuer(team: &str) -> String {
    format!("https://{team}.cloudflareaccess.com")
}

/// Claims of a Cloudflare Access application token for `email`, valid from now for
/// `ttl` seconds (`iat` = `nbf` = now). `iss` can be replaced afterwards
/// (`c["iss"] = ...`) for a loopback test issuer.
pub fn access_claims(team: &str, aud: &str, email: &str, ttl: i64) -> Value {
    let t = now();
    json!({
        "aud": [aud],
        "email": email,
        "exp": t + ttl,
        "iat": t,
        "nbf": t,
        "iss": cf_issuer(team),
        "type": "app",
        "identity_nonce": "6ei69kawdKzMIAPF",
        "sub": "7335d417-61da-459d-899c-0a01c76a2f94",
        "country": "GB"
    })
}

/// Claims of a Cloudflare Access service token (no email, empty `sub`, `common_name`).
pub fn service_token_claims(team: &str, aud: &str, ttl: i64) -> Value {
    let t = now();
    json!({
        "aud": [aud],
        "exp": t + ttl,
        "iat": t,
        "nbf": t,
        "iss": cf_issuer(team),
        "type": "app",
        "identity_nonce": "",
        "sub": "",
        "common_name": "88bf3b6d86161464f6509f7219099e57.access"
    })
}

/// Claims of an OIDC ID token.
pub fn oidc_claims(issuer: &str, aud: &str, email: &str, ttl: i64) -> Value {
    let t = now();
    json!({
        "iss": issuer,
        "aud": aud,
        "sub": format!("sub-{email}"),
        "email": email,
        "email_verified": true,
        "iat": t,
        "exp": t + ttl,
        "jti": format!("jti-{t}-{email}")
    })
}

/// Cloudflare's certs document for `keys` (the first is `public_cert`).
pub fn cf_certs(keys: &[TestKey]) -> String {
    let certs: Vec<Value> = keys
        .iter()
        .map(|k| json!({"kid": k.kid(), "cert": k.cert_pem()}))
        .collect();
    json!({
        "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>(),
        "public_cert": certs.first().cloned().unwrap_or(Value::Null),
        "public_certs": certs,
    })
    .to_string()
}

/// A plain JWKS `{"keys": [...]}`.
pub fn jwks(keys: &[TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// The payload (claims) of a JWT, decoded without any verification (for assertions).
pub fn claims_unverified(jwt: &str) -> Value {
    jsonwebtoken::dangerous::insecure_decode::<Value>(jwt)
        .expect("a JWT")
        .claims
}
