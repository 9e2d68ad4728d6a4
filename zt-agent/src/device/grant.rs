//! The OAuth 2.0 device authorization grant (RFC 8628) as pure functions:
//! the IdP's answers parsed into what the agent does next. No I/O.

use std::time::Duration;

use serde::Deserialize;
use zt_published::device::DeviceCode;

/// RFC 8628 §3.5: without `interval` in the answer, poll every 5 s.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// `slow_down` adds this to the interval, for this and every later poll.
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// An IdP's `interval` is honoured up to this (a hostile 1e9 must not park
/// a sign-in until its timeout without a single poll).
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// A code's lifetime is honoured up to this (Entra: 15 min, Google: 30 min).
pub const MAX_EXPIRES_IN: u64 = 3600;
/// `grant_type` of a device-code token request.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The device authorization response (RFC 8628 §3.2), as far as it matters.
#[derive(Deserialize)]
struct AuthorizationResponse {
    device_code: String,
    user_code: String,
    /// Google's older endpoint says `verification_url`.
    #[serde(alias = "verification_url")]
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u64,
    interval: Option<u64>,
}

/// A started sign-in: what the person is shown, and what the agent polls with.
pub struct Started {
    pub code: DeviceCode,
    /// Secret between the agent and the IdP: never logged, never sent to pam_zt.
    pub device_code: String,
    pub expires_in: Duration,
    pub interval: Duration,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("code", &self.code)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Parses a 200 answer of the device authorization endpoint. The URIs a
/// person is sent to must be https unless `local` (a loopback issuer, tests).
pub fn parse_authorization(body: &[u8], local: bool) -> Result<Started, String> {
    let r: AuthorizationResponse = serde_json::from_slice(body)
        .map_err(|e| format!("not a device authorization response: {e}"))?;
    let code = DeviceCode {
        expires_in: r.expires_in,
        user_code: r.user_code,
        verification_uri: r.verification_uri,
        verification_uri_complete: r.verification_uri_complete,
    };
    if zt_published::device::code_line(&code).is_none() {
        return Err(
            "the user code or verification URI is empty, too long or has spaces or control \
             characters"
                .into(),
        );
    }
    if !is_web_url(&code.verification_uri, local)
        || code
            .verification_uri_complete
            .as_deref()
            .is_some_and(|u| !is_web_url(u, local))
    {
        return Err("the verification URI is not an https URL".into());
    }
    if r.device_code.is_empty() || r.device_code.len() > 4096 || r.expires_in == 0 {
        return Err("no usable device_code, or expires_in 0".into());
    }
    Ok(Started {
        code,
        device_code: r.device_code,
        expires_in: Duration::from_secs(r.expires_in.min(MAX_EXPIRES_IN)),
        interval: r
            .interval
            .map_or(DEFAULT_INTERVAL, Duration::from_secs)
            .clamp(Duration::from_secs(1), MAX_INTERVAL),
    })
}

/// What a person is told to open must be an https address, not a
/// `javascript:` or `file:` one (plain http only from a loopback issuer).
fn is_web_url(u: &str, local: bool) -> bool {
    let lower = u.get(..8).unwrap_or(u).to_ascii_lowercase();
    lower.starts_with("https://") || (local && lower.starts_with("http://"))
}

/// One poll of the token endpoint, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// Signed in: the ID token.
    Token(String),
    /// `authorization_pending`: ask again after the interval.
    Pending,
    /// `slow_down`: ask again after the interval plus `SLOW_DOWN_STEP`.
    SlowDown,
    /// The sign-in ended without a token (denied, expired): final.
    Refused(String),
    /// The IdP answered something unusable: final.
    Failed(String),
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Decides a token endpoint answer (status and body).
pub fn parse_token(status: u16, body: &[u8]) -> Poll {
    let answer: Option<TokenAnswer> = serde_json::from_slice(body).ok();
    if status == 200 {
        return match answer.and_then(|a| a.id_token) {
            Some(t) if looks_like_compact_jws(&t) => Poll::Token(t),
            Some(_) => Poll::Failed("the IdP's id_token is not a compact JWT".into()),
            _ => Poll::Failed(
                "the IdP's token answer has no id_token (is \"openid\" among the scopes?)".into(),
            ),
        };
    }
    let Some(TokenAnswer {
        error: Some(error),
        error_description,
        ..
    }) = answer
    else {
        return Poll::Failed(format!(
            "token endpoint: HTTP {status} without an OAuth error"
        ));
    };
    let detail = || {
        error_description
            .as_deref()
            .map(|d| format!(": {}", cap(d, 200)))
            .unwrap_or_default()
    };
    match error.as_str() {
        "authorization_pending" => Poll::Pending,
        "slow_down" => Poll::SlowDown,
        // Entra says authorization_declined and code_expired (its docs), the
        // RFC access_denied and expired_token
        "access_denied" | "authorization_declined" => {
            Poll::Refused(format!("the sign-in was declined at the IdP{}", detail()))
        }
        "expired_token" | "code_expired" => Poll::Refused(
            "the code expired before anyone signed in with it; start the login again".into(),
        ),
        other => Poll::Failed(format!(
            "token endpoint: HTTP {status} {}{}",
            cap(other, 64),
            detail()
        )),
    }
}

/// Three base64url parts, within the verifier's size cap: anything else
/// would only be refused by pam_zt, or break the protocol's line.
fn looks_like_compact_jws(t: &str) -> bool {
    t.len() <= 16 * 1024
        && t.split('.').count() == 3
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn cap(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The device and token endpoints from an OpenID discovery document, which
/// must name `iss`; plain http only where the issuer itself is local (tests).
pub fn parse_discovery(body: &[u8], iss: &str) -> Result<(Option<String>, String), String> {
    #[derive(Deserialize)]
    struct Discovery {
        issuer: String,
        device_authorization_endpoint: Option<String>,
        token_endpoint: String,
    }
    let d: Discovery = serde_json::from_slice(body)
        .map_err(|e| format!("not an OpenID discovery document: {e}"))?;
    if d.issuer != iss {
        return Err(format!("names issuer {:?}, configured {iss:?}", d.issuer));
    }
    for url in std::iter::once(&d.token_endpoint).chain(&d.device_authorization_endpoint) {
        crate::config::check_discovered_url(url, iss)?;
    }
    Ok((d.device_authorization_endpoint, d.token_endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authorization_answer_is_parsed_and_checked() {
        let s = parse_authorization(
            br#"{"device_code":"dc","user_code":"ABCD-EFGH","verification_uri":"https://idp/device","expires_in":600}"#,
            false,
        )
        .unwrap();
        assert_eq!(s.code.user_code, "ABCD-EFGH");
        assert_eq!(s.interval, DEFAULT_INTERVAL, "no interval: 5 s");
        assert_eq!(s.expires_in, Duration::from_secs(600));
        assert!(
            !format!("{s:?}").contains("dc\""),
            "the device code is never shown"
        );
        // Google's verification_url, an interval, and a hostile interval
        let g = parse_authorization(
            br#"{"device_code":"dc","user_code":"ABC-DEF","verification_url":"https://www.google.com/device","expires_in":1800,"interval":99999}"#,
            false,
        )
        .unwrap();
        assert_eq!(g.code.verification_uri, "https://www.google.com/device");
        assert_eq!(g.interval, MAX_INTERVAL);
        // a hostile lifetime is capped, and plain http only from a local issuer
        let long = br#"{"device_code":"dc","user_code":"A","verification_uri":"https://i","expires_in":18446744073709551615}"#;
        assert_eq!(
            parse_authorization(long, false).unwrap().expires_in,
            Duration::from_secs(MAX_EXPIRES_IN)
        );
        let plain = br#"{"device_code":"dc","user_code":"A","verification_uri":"http://i/device","expires_in":5}"#;
        assert!(parse_authorization(plain, false).is_err());
        assert!(parse_authorization(plain, true).is_ok());
        for bad in [
            &br#"{"device_code":"dc","user_code":"AB CD","verification_uri":"https://i","expires_in":5}"#[..],
            br#"{"device_code":"dc","user_code":"ABCD","verification_uri":"javascript:alert(1)","expires_in":5}"#,
            br#"{"device_code":"","user_code":"ABCD","verification_uri":"https://i","expires_in":5}"#,
            br#"{"device_code":"dc","user_code":"ABCD","verification_uri":"https://i","expires_in":0}"#,
            br#"{"error":"invalid_client"}"#,
            b"<html>",
        ] {
            assert!(
                parse_authorization(bad, false).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn token_answers_decide_the_next_step() {
        assert_eq!(
            parse_token(200, br#"{"id_token":"a.b.c","access_token":"x"}"#),
            Poll::Token("a.b.c".into())
        );
        for bad in ["a.b", "a.b.c\npending", "a.b.c d", "a.b.c.d"] {
            let body = serde_json::json!({ "id_token": bad }).to_string();
            assert!(
                matches!(parse_token(200, body.as_bytes()), Poll::Failed(_)),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_token(200, br#"{"access_token":"x"}"#),
            Poll::Failed(m) if m.contains("openid")
        ));
        let e = |error: &str| parse_token(400, format!(r#"{{"error":"{error}"}}"#).as_bytes());
        assert_eq!(e("authorization_pending"), Poll::Pending);
        assert_eq!(e("slow_down"), Poll::SlowDown);
        assert!(matches!(e("access_denied"), Poll::Refused(m) if m.contains("declined")));
        assert!(matches!(e("authorization_declined"), Poll::Refused(_)));
        assert!(matches!(e("expired_token"), Poll::Refused(m) if m.contains("expired")));
        assert!(matches!(e("code_expired"), Poll::Refused(_)));
        assert!(matches!(e("invalid_grant"), Poll::Failed(m) if m.contains("invalid_grant")));
        assert!(matches!(parse_token(502, b"<html>"), Poll::Failed(m) if m.contains("502")));
        assert!(matches!(
            parse_token(400, br#"{"error":"access_denied","error_description":"no\nway"}"#),
            Poll::Refused(m) if m.contains("no way")
        ));
    }

    #[test]
    fn discovery_must_name_the_issuer_and_use_https() {
        let d = br#"{"issuer":"https://idp.example.com","token_endpoint":"https://idp.example.com/token","device_authorization_endpoint":"https://idp.example.com/device"}"#;
        assert_eq!(
            parse_discovery(d, "https://idp.example.com").unwrap(),
            (
                Some("https://idp.example.com/device".into()),
                "https://idp.example.com/token".into()
            )
        );
        assert!(parse_discovery(d, "https://other.example.com").is_err());
        let plain =
            br#"{"issuer":"https://idp.example.com","token_endpoint":"http://127.0.0.1:9/token"}"#;
        assert!(parse_discovery(plain, "https://idp.example.com").is_err());
        let local =
            br#"{"issuer":"http://127.0.0.1:3000","token_endpoint":"http://127.0.0.1:3000/token"}"#;
        assert_eq!(
            parse_discovery(local, "http://127.0.0.1:3000").unwrap(),
            (None, "http://127.0.0.1:3000/token".into())
        );
    }
}
