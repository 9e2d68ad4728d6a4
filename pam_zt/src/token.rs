//! Token verification: pure Rust, no PAM, no files. Cloudflare Access
//! application tokens and OIDC ID tokens are both compact JWS (JWT).
//!
//! Order of checks, cheapest and most decisive first: size cap, shape,
//! header (algorithm allow-list, `kid`), payload JSON, issuer (exact `iss`),
//! key (`kid`, with one refresh through the agent), key/algorithm agreement,
//! signature, then the claims (`exp`/`nbf`/`iat` with 60 s leeway, `aud`,
//! service tokens, `email_verified`, the identity claim). Nothing from a
//! token is trusted before its signature is checked except to find the key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, jwk::Jwk};
use serde_json::{Map, Value};

use crate::directory::{Claim, Directory, Issuer};
use crate::status::Failure;

/// Larger input is refused before any decoding. Real tokens are 1 KiB or so;
/// 16 KiB leaves room for large OIDC tokens with many claims.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Clock skew accepted on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: i64 = 60;

/// What the audit log records about a token, filled in as checks pass.
/// Never the token itself. Until `verified`, the payload values (`issuer`,
/// `jti`, `email`, `sub`) are only what the token claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The signature verified: the payload values are the issuer's word.
    pub verified: bool,
    pub issuer: Option<String>,
    pub kid: Option<String>,
    pub jti: Option<String>,
    pub email: Option<String>,
    pub sub: Option<String>,
    /// The IdP's session id (`sid`), for the audit log.
    pub sid: Option<String>,
    /// The MFA evidence seen: `amr` values and `acr`, e.g. "amr=pwd,mfa".
    pub mfa: Option<String>,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub issuer: Issuer,
    /// The value of the issuer's identity claim.
    pub identity: String,
}

/// Does the input look like a JWT at all? True when the part before the
/// first `.` is base64url of a JSON object with a string `alg`. Only then is
/// the input this module's business; anything else (a password) is left to
/// the next module. Deliberately looks only at the header, so a truncated or
/// oversized token is still recognised as a token and refused with a reason.
pub fn looks_like_jwt(input: &[u8]) -> bool {
    let head = input.split(|&b| b == b'.').next().unwrap_or(input);
    if head.is_empty() || head.len() > 4096 {
        return false;
    }
    decode_json(head).is_some_and(|h| h.get("alg").is_some_and(Value::is_string))
}

fn decode_json(part: &[u8]) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn refuse<T>(why: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::Refused(why.into()))
}

/// Caps a token-supplied string for reason texts and the audit log.
pub fn cap(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn str_claim(m: &Map<String, Value>, name: &str) -> Option<String> {
    m.get(name).and_then(Value::as_str).map(|s| cap(s, 256))
}

fn time_claim(m: &Map<String, Value>, name: &str) -> Result<Option<i64>, Failure> {
    match m.get(name) {
        None => Ok(None),
        Some(v) => match v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)) {
            Some(t) => Ok(Some(t)),
            None => refuse(format!("{name} is not a number")),
        },
    }
}

/// The allow-list. `none`, every HMAC (a public key is no secret) and
/// everything else are refused by name.
fn allowed_alg(alg: &str) -> Result<Algorithm, Failure> {
    match alg {
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => refuse(format!("algorithm {} is not allowed", cap(other, 32))),
    }
}

/// The key must be of the family the header's algorithm needs, and agree
/// with it where it names an algorithm itself: a token cannot choose how
/// the key is used.
fn key_for(alg: &str, recorded_alg: &str, jwk_text: &[u8]) -> Result<DecodingKey, Failure> {
    let raw: Map<String, Value> = serde_json::from_slice(jwk_text)
        .map_err(|_| Failure::Unavailable("issuer key is not valid JWK JSON".into()))?;
    let s = |k: &str| raw.get(k).and_then(Value::as_str);
    let (kty, crv) = match alg {
        "RS256" => ("RSA", None),
        "ES256" => ("EC", Some("P-256")),
        _ => ("OKP", Some("Ed25519")),
    };
    if s("kty") != Some(kty) || crv.is_some() && s("crv") != crv {
        return refuse(format!(
            "key type {}/{} does not fit algorithm {alg}",
            cap(s("kty").unwrap_or("?"), 16),
            cap(s("crv").unwrap_or("-"), 16)
        ));
    }
    if s("alg").is_some_and(|a| a != alg) || !recorded_alg.is_empty() && recorded_alg != alg {
        return refuse(format!("key is for another algorithm than {alg}"));
    }
    if s("use").is_some_and(|u| u != "sig") {
        return refuse("key is not a signing key");
    }
    let jwk: Jwk = serde_json::from_value(Value::Object(raw))
        .map_err(|_| Failure::Unavailable("issuer key is not a usable JWK".into()))?;
    DecodingKey::from_jwk(&jwk)
        .map_err(|_| Failure::Unavailable("issuer key is not a usable JWK".into()))
}

/// Verifies `token` against the directory's issuers at time `now` (unix
/// seconds). `facts` collects what the audit log may show, also on refusal.
pub fn verify(
    token: &[u8],
    dir: &mut dyn Directory,
    now: i64,
    facts: &mut Facts,
) -> Result<Verified, Failure> {
    if token.len() > MAX_TOKEN_LEN {
        return refuse(format!(
            "token too large ({} bytes, limit {MAX_TOKEN_LEN})",
            token.len()
        ));
    }
    let parts: Vec<&[u8]> = token.split(|&b| b == b'.').collect();
    let &[h64, p64, s64] = parts.as_slice() else {
        return refuse(format!(
            "malformed token: {} parts instead of 3 (truncated?)",
            parts.len()
        ));
    };
    let header =
        decode_json(h64).ok_or_else(|| Failure::Refused("header is not base64url JSON".into()))?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let algorithm = allowed_alg(alg)?;
    if header.contains_key("crit") {
        return refuse("header has critical extensions");
    }
    let kid = match header.get("kid").and_then(Value::as_str) {
        Some(k) if !k.is_empty() => k,
        _ => return refuse("header has no kid"),
    };
    facts.kid = Some(cap(kid, 128));
    if s64.is_empty() {
        return refuse("malformed token: no signature (truncated?)");
    }
    let payload_bytes = URL_SAFE_NO_PAD
        .decode(p64)
        .map_err(|_| Failure::Refused("payload is not base64url".into()))?;
    let claims = match serde_json::from_slice(&payload_bytes) {
        Ok(Value::Object(m)) => m,
        _ => return refuse("payload is not a JSON object"),
    };
    facts.jti = str_claim(&claims, "jti");
    facts.email = str_claim(&claims, "email");
    facts.sub = str_claim(&claims, "sub");
    facts.sid = str_claim(&claims, "sid");
    facts.mfa = mfa_evidence(&claims);
    let Some(iss) = claims.get("iss").and_then(Value::as_str) else {
        return refuse("token has no iss");
    };
    facts.issuer = Some(cap(iss, 256));
    let Some(issuer) = dir.issuer(iss)? else {
        return refuse(format!("issuer {} is not configured", cap(iss, 256)));
    };

    let key = match dir.key(iss, kid)? {
        Some(k) => k,
        None => {
            // A rotation the last sync has not seen yet: ask the agent once.
            let refreshed = dir.refresh_keys(iss);
            match dir.key(iss, kid)? {
                Some(k) => k,
                None => {
                    let why = match refreshed {
                        Ok(()) => "not found after a key refresh".to_owned(),
                        Err(e) => format!("key refresh failed: {}", cap(&e, 200)),
                    };
                    return refuse(format!("unknown kid {} ({why})", cap(kid, 128)));
                }
            }
        }
    };
    let decoding = key_for(alg, &key.alg, &key.jwk)?;
    let message_len = h64.len() + 1 + p64.len();
    let message = &token[..message_len];
    let signature = std::str::from_utf8(s64)
        .map_err(|_| Failure::Refused("signature is not base64url".into()))?;
    match jsonwebtoken::crypto::verify(signature, message, &decoding, algorithm) {
        Ok(true) => facts.verified = true,
        Ok(false) => return refuse("bad signature"),
        Err(_) => return refuse("signature is not valid for this key"),
    }

    check_claims(&claims, &issuer, now)?;
    check_mfa(&claims, &issuer)?;
    let identity = identity_claim(&claims, issuer.claim)?;
    Ok(Verified { issuer, identity })
}

/// Time, audience, service tokens, `email_verified` (when present, it must
/// be the JSON boolean `true`).
fn check_claims(c: &Map<String, Value>, issuer: &Issuer, now: i64) -> Result<(), Failure> {
    let Some(exp) = time_claim(c, "exp")? else {
        return refuse("token has no exp");
    };
    // Token times are attacker-sized (i64::MIN, 1e300): saturate, never
    // overflow.
    if now > exp.saturating_add(LEEWAY_SECS) {
        return refuse(format!("expired {} s ago", now.saturating_sub(exp)));
    }
    if let Some(nbf) = time_claim(c, "nbf")?
        && nbf > now.saturating_add(LEEWAY_SECS)
    {
        return refuse(format!(
            "not valid yet (nbf in {} s)",
            nbf.saturating_sub(now)
        ));
    }
    if let Some(iat) = time_claim(c, "iat")?
        && iat > now.saturating_add(LEEWAY_SECS)
    {
        return refuse(format!(
            "issued in the future (iat in {} s)",
            iat.saturating_sub(now)
        ));
    }
    let auds: Vec<&str> = match c.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => return refuse("token has no aud"),
    };
    if issuer.audiences.is_empty() {
        return Err(Failure::Unavailable(
            "issuer has no audiences configured".into(),
        ));
    }
    if !auds.iter().any(|a| issuer.audiences.iter().any(|b| b == a)) {
        return refuse("audience not accepted");
    }
    // Cloudflare Access service tokens: a machine credential, never a person.
    if let Some(cn) = c.get("common_name") {
        return refuse(format!(
            "service token ({})",
            cap(cn.as_str().unwrap_or("common_name"), 128)
        ));
    }
    if c.get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return refuse("service token (empty sub)");
    }
    // Present means it counts: only a JSON `true` vouches for the email
    // ("false" as a string, 0 or null must not read as "not false").
    if let Some(v) = c.get("email_verified")
        && v != &Value::Bool(true)
    {
        return refuse(format!(
            "email not verified (email_verified is not true: {})",
            cap(&v.to_string(), 32)
        ));
    }
    Ok(())
}

/// `amr` values, if any.
fn amr(c: &Map<String, Value>) -> Vec<&str> {
    match c.get("amr") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).take(16).collect(),
        _ => Vec::new(),
    }
}

/// What the token says about how the person signed in, for the audit log.
fn mfa_evidence(c: &Map<String, Value>) -> Option<String> {
    let mut parts = Vec::new();
    let amr = amr(c);
    if !amr.is_empty() {
        parts.push(format!("amr={}", amr.join(",")));
    }
    if let Some(acr) = c.get("acr").and_then(Value::as_str) {
        parts.push(format!("acr={acr}"));
    }
    (!parts.is_empty()).then(|| cap(&parts.join(" "), 200))
}

/// With `require_mfa`: `amr` must contain "mfa" (RFC 8176), or `acr` must be
/// one of the issuer's MFA `acr` values.
fn check_mfa(c: &Map<String, Value>, issuer: &Issuer) -> Result<(), Failure> {
    if !issuer.require_mfa {
        return Ok(());
    }
    if amr(c).contains(&"mfa") {
        return Ok(());
    }
    if let Some(acr) = c.get("acr").and_then(Value::as_str)
        && issuer.mfa_acr.iter().any(|a| a == acr)
    {
        return Ok(());
    }
    refuse(format!(
        "no multi-factor sign-in shown ({}; the issuer requires amr \"mfa\"{})",
        mfa_evidence(c).unwrap_or_else(|| "no amr or acr".into()),
        if issuer.mfa_acr.is_empty() {
            String::new()
        } else {
            format!(" or acr {}", issuer.mfa_acr.join(" / "))
        }
    ))
}

fn identity_claim(c: &Map<String, Value>, claim: Claim) -> Result<String, Failure> {
    match c.get(claim.name()).and_then(Value::as_str) {
        Some(v) if !v.is_empty() && v.len() <= 320 => Ok(v.to_owned()),
        Some(v) if !v.is_empty() => refuse(format!("{} claim too long", claim.name())),
        _ => refuse(format!("token has no {} (service token?)", claim.name())),
    }
}
