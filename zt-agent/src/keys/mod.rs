//! Token issuers' signing keys: fetched every sync (Cloudflare's certs
//! document, or OIDC discovery then the JWKS), filtered to the algorithms
//! pam_zt accepts, and published in the private file with the issuers.
//!
//! A failed fetch never fails the sync: that issuer keeps the keys the
//! previous private file had, so tokens keep verifying; an issuer never
//! fetched is published with no keys. Both are logged.

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use zt_snapshot::{IssuerEntry, KeyEntry, Private};

use crate::config::{AgentConfig, IssuerSpec, KeySource};
pub use crate::http::Http;

/// Bound on a key or discovery document: a JWKS is a few KiB.
pub const MAX_RESPONSE: u64 = 1024 * 1024;

/// Keys kept per issuer; Cloudflare publishes two, IdPs a handful.
pub const MAX_KEYS: usize = 32;
/// RSA keys with a smaller modulus are skipped.
pub const MIN_RSA_BITS: usize = 2048;
/// Bound on one JWK's JSON text.
pub const MAX_JWK_LEN: usize = 16 * 1024;

/// How fetching keys can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeysFailure {
    /// Not reached: network, DNS, TLS, timeout, a non-200 status.
    Unavailable,
    /// Answered, but not a usable document (bad JSON, no usable key, another
    /// issuer's discovery document, an oversized body).
    Malformed,
    /// Refused on our side: a URL that is not https, an unusable `ca_file`.
    Refused,
}

/// A failed key fetch: the kind and a message naming the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysError {
    pub kind: KeysFailure,
    pub message: String,
}

impl KeysError {
    pub fn new(kind: KeysFailure, message: impl Into<String>) -> Self {
        KeysError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for KeysError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            KeysFailure::Unavailable => "keys unavailable",
            KeysFailure::Malformed => "keys unusable",
            KeysFailure::Refused => "keys refused",
        };
        write!(f, "{what}: {}", self.message)
    }
}

impl std::error::Error for KeysError {}

/// The (alg, kty, crv) triples pam_zt verifies: never HMAC (`oct`), never `none`.
const ALLOWED: [(&str, &str, Option<&str>); 3] = [
    ("RS256", "RSA", None),
    ("ES256", "EC", Some("P-256")),
    ("EdDSA", "OKP", Some("Ed25519")),
];

#[derive(Deserialize)]
struct JwkFields {
    kid: Option<String>,
    kty: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<serde_json::Value>,
}

/// Why one JWK is not kept, or its (kid, alg).
fn usable(jwk: &JwkFields) -> Result<(String, String), String> {
    let kid = jwk.kid.clone().filter(|k| !k.is_empty()).ok_or("no kid")?;
    if jwk.d.is_some() {
        return Err(format!("{kid}: holds a private key"));
    }
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err(format!("{kid}: not a signing key"));
    }
    let kty = jwk.kty.as_deref().unwrap_or_default();
    let crv = jwk.crv.as_deref();
    // an alg the JWK leaves out follows from its type (Entra ID omits it)
    let (alg, _, _) = ALLOWED
        .iter()
        .find(|(alg, k, c)| {
            *k == kty
                && (c.is_none() || *c == crv)
                && jwk.alg.as_deref().is_none_or(|a| a == *alg)
        })
        .ok_or_else(|| {
            format!(
                "{kid}: alg {:?} kty {kty:?} crv {crv:?} is not RS256/RSA, ES256/EC P-256 or EdDSA/OKP Ed25519",
                jwk.alg
            )
        })?;
    let has = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let complete = match kty {
        "RSA" => has(&jwk.n) && has(&jwk.e),
        "EC" => has(&jwk.x) && has(&jwk.y),
        _ => has(&jwk.x),
    };
    if !complete {
        return Err(format!("{kid}: key parameters missing"));
    }
    if kty == "RSA" {
        let bits = jwk
            .n
            .as_deref()
            .and_then(modulus_bits)
            .ok_or_else(|| format!("{kid}: RSA modulus n is not base64url"))?;
        if bits < MIN_RSA_BITS {
            return Err(format!(
                "{kid}: RSA key of {bits} bits (at least {MIN_RSA_BITS} required)"
            ));
        }
    }
    Ok((kid, (*alg).to_string()))
}

/// The size in bits of a big-endian unsigned integer in base64url (padding
/// tolerated), leading zeroes not counted; `None` when not base64url.
fn modulus_bits(b64: &str) -> Option<usize> {
    let mut bytes = Vec::with_capacity(b64.len() * 3 / 4 + 1);
    let (mut acc, mut have) = (0u32, 0u32);
    for c in b64.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        have += 6;
        if have >= 8 {
            have -= 8;
            bytes.push((acc >> have) as u8);
            acc &= (1 << have) - 1;
        }
    }
    let first = bytes.iter().position(|&b| b != 0)?;
    let top = bytes[first];
    Some((bytes.len() - first - 1) * 8 + (8 - top.leading_zeros() as usize))
}

/// The usable keys of a JWKS document (`{"keys": [...]}`; Cloudflare's certs
/// document has that plus `public_cert(s)`, which are ignored), sorted by kid
/// so a reordered document does not make a new generation. Each key's JSON
/// text is kept as fetched. Skipped keys are logged; none usable is an error.
pub fn parse_jwks(body: &[u8], origin: &str) -> Result<Vec<KeyEntry>, KeysError> {
    #[derive(Deserialize)]
    struct Doc<'a> {
        #[serde(borrow)]
        keys: Vec<&'a RawValue>,
    }
    let malformed = |what: String| KeysError::new(KeysFailure::Malformed, what);
    let doc: Doc = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("{origin}: not a JWKS document: {e}")))?;
    let mut keys: Vec<KeyEntry> = Vec::new();
    for raw in doc.keys {
        let text = raw.get();
        let checked = if text.len() > MAX_JWK_LEN {
            Err(format!("a key of {} bytes", text.len()))
        } else {
            serde_json::from_str::<JwkFields>(text)
                .map_err(|e| format!("not a JWK: {e}"))
                .and_then(|f| usable(&f))
        };
        match checked {
            Ok((kid, _)) if keys.iter().any(|k| k.kid == kid) => {
                tracing::warn!("{origin}: key {kid:?} listed twice; keeping the first");
            }
            Ok(_) if keys.len() >= MAX_KEYS => {
                tracing::warn!("{origin}: more than {MAX_KEYS} keys; ignoring the rest");
                break;
            }
            Ok((kid, alg)) => keys.push(KeyEntry {
                kid,
                alg,
                jwk: text.to_string(),
            }),
            Err(why) => tracing::warn!("{origin}: key skipped: {why}"),
        }
    }
    if keys.is_empty() {
        return Err(malformed(format!("{origin}: no usable signing key")));
    }
    keys.sort_by(|a, b| a.kid.cmp(&b.kid));
    Ok(keys)
}

/// The `jwks_uri` of an OIDC discovery document, which must name `iss`.
pub fn parse_discovery(body: &[u8], iss: &str, origin: &str) -> Result<String, KeysError> {
    #[derive(Deserialize)]
    struct Discovery {
        issuer: String,
        jwks_uri: String,
    }
    let d: Discovery = serde_json::from_slice(body).map_err(|e| {
        KeysError::new(
            KeysFailure::Malformed,
            format!("{origin}: not an OpenID discovery document: {e}"),
        )
    })?;
    if d.issuer != iss {
        return Err(KeysError::new(
            KeysFailure::Malformed,
            format!("{origin}: names issuer {:?}, configured {iss:?}", d.issuer),
        ));
    }
    let refused =
        |why: String| KeysError::new(KeysFailure::Refused, format!("{origin}: jwks_uri: {why}"));
    crate::config::check_discovered_url(&d.jwks_uri, iss).map_err(refused)?;
    Ok(d.jwks_uri)
}

/// Fetches one issuer's keys now.
pub fn fetch(http: &Http, spec: &IssuerSpec) -> Result<Vec<KeyEntry>, KeysError> {
    let jwks_url = match &spec.keys {
        KeySource::Jwks(url) => url.clone(),
        KeySource::Discovery(url) => parse_discovery(&get(http, url)?, &spec.iss, url)?,
    };
    parse_jwks(&get(http, &jwks_url)?, &jwks_url)
}

/// GETs `url` (already checked by `config::check_key_url`): 200 and at
/// most `MAX_RESPONSE` bytes, or a typed error naming the URL.
pub fn get(http: &Http, url: &str) -> Result<Vec<u8>, KeysError> {
    get_within(http, url, crate::http::REQUEST_TIMEOUT)
}

/// `get` bounded by `timeout` in all.
pub fn get_within(http: &Http, url: &str, timeout: Duration) -> Result<Vec<u8>, KeysError> {
    crate::config::check_key_url(url).map_err(|why| KeysError::new(KeysFailure::Refused, why))?;
    let unavailable = |what: String| KeysError::new(KeysFailure::Unavailable, what);
    let mut response = http
        .agent()
        .get(url)
        .header("Accept", "application/json")
        .config()
        .timeout_global(Some(timeout))
        .build()
        .call()
        .map_err(|e| unavailable(format!("GET {url}: {e}")))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(unavailable(format!("GET {url}: HTTP {status}")));
    }
    response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE)
        .read_to_vec()
        .map_err(|e| {
            KeysError::new(
                KeysFailure::Malformed,
                format!("GET {url}: reading the body (at most {MAX_RESPONSE} bytes): {e}"),
            )
        })
}

/// One issuer's fetch result.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub iss: String,
    pub result: Result<Vec<KeyEntry>, KeysError>,
}

/// Fetches every configured issuer's keys (outside the state lock: the
/// network is slow). A client that cannot be built fails every issuer.
pub fn fetch_all(config: &AgentConfig) -> Vec<Fetched> {
    if config.issuer_specs.is_empty() {
        return Vec::new();
    }
    let http = Http::new(&config.http).map_err(|e| KeysError::new(KeysFailure::Refused, e));
    config
        .issuer_specs
        .iter()
        .map(|spec| Fetched {
            iss: spec.iss.clone(),
            result: http
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|h| fetch(h, spec)),
        })
        .collect()
}

/// The keys `previous` publishes for `iss` (none if it has none or is unreadable).
pub fn previous_keys(previous: Option<&Private<'_>>, iss: &str) -> Vec<KeyEntry> {
    let Some(Ok(Some(issuer))) = previous.map(|p| p.issuer_by_iss(iss.as_bytes())) else {
        return Vec::new();
    };
    let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_string);
    (0..issuer.key_count())
        .filter_map(|i| issuer.key(i).ok())
        .filter_map(|k| {
            Some(KeyEntry {
                kid: text(k.kid)?,
                alg: text(k.alg)?,
                jwk: text(k.jwk)?,
            })
        })
        .collect()
}

/// The issuers to publish: each configured issuer with the keys just fetched,
/// or, where the fetch failed, the keys `previous` published (logged either way).
pub fn issuer_entries(
    config: &AgentConfig,
    fetched: &[Fetched],
    previous: Option<&Private<'_>>,
) -> Vec<IssuerEntry> {
    config
        .issuer_specs
        .iter()
        .map(|spec| {
            let result = fetched
                .iter()
                .find(|f| f.iss == spec.iss)
                .map(|f| &f.result);
            let keys = match result {
                Some(Ok(keys)) => keys.clone(),
                Some(Err(e)) => {
                    let kept = previous_keys(previous, &spec.iss);
                    if kept.is_empty() {
                        tracing::error!(
                            "issuer {}: {e}; it has no keys yet, so its tokens cannot be verified",
                            spec.iss
                        );
                    } else {
                        tracing::warn!(
                            "issuer {}: {e}; keeping the {} keys published before",
                            spec.iss,
                            kept.len()
                        );
                    }
                    kept
                }
                None => previous_keys(previous, &spec.iss),
            };
            IssuerEntry {
                kind: spec.kind,
                iss: spec.iss.clone(),
                claim: spec.claim.clone(),
                audiences: spec.audiences.clone(),
                keys,
                require_mfa: spec.require_mfa,
                mfa_acr: spec.mfa_acr.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_off_loopback_is_never_requested() {
        let http = Http::new(&crate::config::HttpConfig::default()).unwrap();
        let e = get(&http, "http://192.0.2.1/jwks").unwrap_err();
        assert_eq!(e.kind, KeysFailure::Refused);
    }

    /// 2048 bits: 342 base64url characters, the first with its top bit set.
    fn n_of(chars: usize) -> String {
        format!("w{}", "A".repeat(chars - 1))
    }

    static RSA: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            r#"{{"kid":"r1","kty":"RSA","alg":"RS256","use":"sig","n":"{}","e":"AQAB"}}"#,
            n_of(342)
        )
    });
    const EC: &str = r#"{"kty":"EC","crv":"P-256","kid":"e1","x":"f83OJ3D2","y":"x_FEzRu9"}"#;
    const ED: &str = r#"{"kty":"OKP","crv":"Ed25519","kid":"d1","x":"11qYAYKx","alg":"EdDSA"}"#;

    fn kids(body: &str) -> Vec<(String, String)> {
        parse_jwks(body.as_bytes(), "test")
            .unwrap()
            .into_iter()
            .map(|k| (k.kid, k.alg))
            .collect()
    }

    #[test]
    fn allowed_keys_are_kept_as_fetched_and_sorted() {
        let body = format!(
            r#"{{"keys":[{},{EC},{ED}],"public_cert":{{"kid":"r1","cert":"x"}},"public_certs":[]}}"#,
            *RSA
        );
        assert_eq!(
            kids(&body),
            [
                ("d1".into(), "EdDSA".into()),
                ("e1".into(), "ES256".into()),
                ("r1".into(), "RS256".into())
            ]
        );
        let keys = parse_jwks(body.as_bytes(), "t").unwrap();
        assert_eq!(keys[2].jwk, *RSA, "the JSON text as fetched");
    }

    #[test]
    fn hmac_none_private_encryption_and_odd_keys_are_skipped() {
        let body = format!(
            r#"{{"keys":[
            {{"kid":"h","kty":"oct","alg":"HS256","k":"c2VjcmV0"}},
            {{"kid":"n","kty":"RSA","alg":"none","n":"a","e":"AQAB"}},
            {{"kid":"p","kty":"RSA","alg":"RS256","n":"a","e":"AQAB","d":"secret"}},
            {{"kid":"enc","kty":"RSA","use":"enc","n":"a","e":"AQAB"}},
            {{"kid":"p384","kty":"EC","crv":"P-384","x":"a","y":"b"}},
            {{"kid":"rs512","kty":"RSA","alg":"RS512","n":"a","e":"AQAB"}},
            {{"kid":"mix","kty":"EC","alg":"RS256","crv":"P-256","x":"a","y":"b"}},
            {{"kty":"RSA","alg":"RS256","n":"a","e":"AQAB"}},
            {{"kid":"short","kty":"RSA","alg":"RS256","e":"AQAB"}},
            "not an object",
            {rsa}, {rsa}
            ]}}"#,
            rsa = *RSA
        );
        assert_eq!(kids(&body), [("r1".into(), "RS256".into())]);
    }

    #[test]
    fn rsa_keys_under_2048_bits_are_skipped() {
        assert_eq!(modulus_bits(&n_of(342)), Some(2048));
        assert_eq!(modulus_bits("AQAB"), Some(17));
        assert_eq!(modulus_bits("AAAB"), Some(1), "leading zeroes not counted");
        assert_eq!(modulus_bits("a+b/"), None);
        let rsa = |kid: &str, n: &str| {
            format!(r#"{{"kid":"{kid}","kty":"RSA","alg":"RS256","n":"{n}","e":"AQAB"}}"#)
        };
        // 1024 bits: 128 bytes, 171 characters
        let body = format!(
            r#"{{"keys":[{},{},{},{}]}}"#,
            rsa("r1024", &n_of(171)),
            rsa("r2040", &format!("AA{}", n_of(340))),
            rsa("bad", "not base64!"),
            rsa("r2048", &n_of(342)),
        );
        assert_eq!(modulus_bits(&n_of(171)), Some(1024));
        assert_eq!(kids(&body), [("r2048".into(), "RS256".into())]);
    }

    #[test]
    fn no_usable_key_is_an_error() {
        for body in [
            r#"{"keys":[{"kid":"h","kty":"oct","alg":"HS256","k":"x"}]}"#,
            r#"{"keys":[]}"#,
            r#"{"public_cert":{}}"#,
            "<html>",
        ] {
            let e = parse_jwks(body.as_bytes(), "u").unwrap_err();
            assert_eq!(e.kind, KeysFailure::Malformed, "{body}");
        }
    }

    #[test]
    fn discovery_must_name_the_issuer_and_an_https_jwks_uri() {
        let doc = |iss: &str, jwks: &str| format!(r#"{{"issuer":"{iss}","jwks_uri":"{jwks}"}}"#);
        let iss = "https://id.example.com";
        assert_eq!(
            parse_discovery(doc(iss, "https://id.example.com/jwks").as_bytes(), iss, "d").unwrap(),
            "https://id.example.com/jwks"
        );
        let e = parse_discovery(
            doc("https://evil.example.com", "https://x/j").as_bytes(),
            iss,
            "d",
        )
        .unwrap_err();
        assert_eq!(e.kind, KeysFailure::Malformed);
        let e = parse_discovery(doc(iss, "http://id.example.com/jwks").as_bytes(), iss, "d")
            .unwrap_err();
        assert_eq!(e.kind, KeysFailure::Refused);
    }

    #[test]
    fn a_loopback_jwks_uri_only_for_a_loopback_issuer() {
        let doc = |iss: &str, jwks: &str| format!(r#"{{"issuer":"{iss}","jwks_uri":"{jwks}"}}"#);
        let iss = "https://id.example.com";
        for jwks in [
            "http://127.0.0.1:8080/jwks",
            "http://localhost/jwks",
            "http://[::1]/jwks",
            "https://127.0.0.1/jwks",
            "https://localhost:8443/jwks",
        ] {
            let e = parse_discovery(doc(iss, jwks).as_bytes(), iss, "d").unwrap_err();
            assert_eq!(e.kind, KeysFailure::Refused, "{jwks}");
        }
        let local = "http://127.0.0.1:8080/realms/zt";
        for jwks in [
            "http://127.0.0.1:8080/realms/zt/jwks",
            "https://id.example.com/jwks",
        ] {
            assert_eq!(
                parse_discovery(doc(local, jwks).as_bytes(), local, "d").unwrap(),
                jwks
            );
        }
    }
}
