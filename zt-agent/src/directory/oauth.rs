//! OAuth 2.0 client credentials (RFC 6749 4.4): the token Entra ID and
//! Keycloak hand a service for reading the directory, by client secret or
//! (Entra) by a client assertion signed with a certificate's key (RFC 7523).
//! The secret or key is read from its file at every token request (so a
//! rotated one is picked up) and never put in a message.

use std::io::BufReader;
use std::path::PathBuf;

use serde::Deserialize;

use super::api::{self, Credentials, RetryPolicy, truncate};
use super::error::{DirectoryError, DirectoryFailure};
use crate::http::Http;

/// Bound on a token response.
const MAX_TOKEN_RESPONSE: u64 = 64 * 1024;

pub struct ClientCredentials {
    pub token_url: String,
    pub client_id: String,
    pub auth: ClientAuth,
    /// `scope` (Entra: `<graph>/.default`); Keycloak needs none.
    pub scope: Option<String>,
    pub policy: RetryPolicy,
}

/// How the client proves who it is.
pub enum ClientAuth {
    /// A client secret in this file.
    Secret(PathBuf),
    /// A certificate (PEM) registered with the IdP and its private key (PEM).
    Certificate {
        certificate_file: PathBuf,
        private_key_file: PathBuf,
    },
    /// A private key (PEM) whose public half is registered with the IdP
    /// (Okta's private_key_jwt).
    PrivateKey(PathBuf),
}

/// RFC 7523 client assertion claims (Microsoft identity platform's list).
#[derive(serde::Serialize)]
struct ClientAssertion<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: u64,
    iat: u64,
    exp: u64,
}

/// A signed assertion for `client_id` at `token_url`: RS256 with the key,
/// and with a certificate `x5t#S256`, the SHA-256 thumbprint of its DER.
fn client_assertion(
    client_id: &str,
    token_url: &str,
    certificate_file: Option<&std::path::Path>,
    private_key_file: &std::path::Path,
) -> Result<String, DirectoryError> {
    use base64::Engine;
    use sha2::Digest;
    use std::hash::{BuildHasher, Hasher};
    let refused = |path: &std::path::Path, why: &str| {
        DirectoryError::new(
            DirectoryFailure::Unauthorised,
            format!("{}: {why}", path.display()),
        )
    };
    let thumbprint = match certificate_file {
        None => None,
        Some(certificate_file) => {
            let certificate =
                crate::trusted_file::read(certificate_file, crate::trusted_file::Kind::Config)
                    .map_err(|why| DirectoryError::new(DirectoryFailure::Unauthorised, why))?;
            let der = pem::parse_many(certificate.as_bytes())
                .ok()
                .and_then(|items| items.into_iter().find(|p| p.tag() == "CERTIFICATE"))
                .ok_or_else(|| refused(certificate_file, "no PEM CERTIFICATE in it"))?;
            Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(sha2::Sha256::digest(der.contents())),
            )
        }
    };
    let key = crate::trusted_file::read(private_key_file, crate::trusted_file::Kind::Secret)
        .map_err(|why| DirectoryError::new(DirectoryFailure::Unauthorised, why))?;
    let signing_key = jsonwebtoken::EncodingKey::from_rsa_pem(key.as_bytes())
        .map_err(|_| refused(private_key_file, "not an RSA private key in PEM"))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.x5t_s256 = thumbprint;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // unique per assertion (replay protection at the IdP), not a secret
    let nonce = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let claims = ClientAssertion {
        aud: token_url,
        iss: client_id,
        sub: client_id,
        jti: format!("{nonce:016x}-{now:x}"),
        nbf: now,
        iat: now,
        exp: now + 600,
    };
    jsonwebtoken::encode(&header, &claims, &signing_key)
        .map_err(|_| refused(private_key_file, "cannot sign the client assertion"))
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
}

/// RFC 6749 5.2: what a token endpoint says when it refuses.
#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl ClientCredentials {
    fn request(&mut self, http: &Http) -> Result<String, DirectoryError> {
        let (proof, whose) = match &self.auth {
            ClientAuth::Secret(file) => (
                ("client_secret", api::read_secret(file)?),
                format!(
                    "client {:?}, secret from {}",
                    self.client_id,
                    file.display()
                ),
            ),
            ClientAuth::Certificate {
                certificate_file,
                private_key_file,
            } => (
                (
                    "client_assertion",
                    client_assertion(
                        &self.client_id,
                        &self.token_url,
                        Some(certificate_file),
                        private_key_file,
                    )?,
                ),
                format!(
                    "client {:?}, certificate {}",
                    self.client_id,
                    certificate_file.display()
                ),
            ),
            ClientAuth::PrivateKey(private_key_file) => (
                (
                    "client_assertion",
                    client_assertion(&self.client_id, &self.token_url, None, private_key_file)?,
                ),
                format!(
                    "client {:?}, key {}",
                    self.client_id,
                    private_key_file.display()
                ),
            ),
        };
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            (proof.0, proof.1.as_str()),
        ];
        if proof.0 == "client_assertion" {
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
        }
        if let Some(scope) = &self.scope {
            form.push(("scope", scope.as_str()));
        }
        token_request(http, &self.token_url, &form, &self.policy, &whose)
    }
}

/// POSTs a token request (a form holding a credential) with retries on 429
/// and 5xx; the bearer header value, or an error naming `whose` credential
/// (never the credential).
pub fn token_request(
    http: &Http,
    url: &str,
    form: &[(&str, &str)],
    policy: &RetryPolicy,
    whose: &str,
) -> Result<String, DirectoryError> {
    let mut retry = 0;
    loop {
        let outcome = http
            .agent()
            .post(url)
            .header("Accept", "application/json")
            .config()
            .timeout_global(Some(crate::http::REQUEST_TIMEOUT))
            .build()
            .send_form(form.iter().copied());
        let (error, after) = match outcome {
            Err(e) => (
                DirectoryError::new(
                    DirectoryFailure::Unavailable,
                    format!("POST {}: {e}", truncate(url)),
                ),
                None,
            ),
            Ok(mut response) => {
                let status = response.status().as_u16();
                let after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(api::parse_retry_after);
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(MAX_TOKEN_RESPONSE)
                    .reader();
                match status {
                    200 => {
                        let token: TokenResponse = serde_json::from_reader(BufReader::new(body))
                            .map_err(|e| {
                                DirectoryError::new(
                                    DirectoryFailure::Malformed,
                                    format!("POST {}: not a token response: {e}", truncate(url)),
                                )
                            })?;
                        return bearer(token, url);
                    }
                    429 | 500..=599 => {
                        let kind = if status == 429 {
                            DirectoryFailure::Throttled
                        } else {
                            DirectoryFailure::Unavailable
                        };
                        let mut e = DirectoryError::new(
                            kind,
                            format!("POST {}: HTTP {status}", truncate(url)),
                        );
                        e.retry_after = after;
                        (e, after)
                    }
                    _ => {
                        let why = serde_json::from_reader::<_, TokenError>(BufReader::new(body))
                            .map(|e| {
                                format!(
                                    ": {:?} {:?}",
                                    e.error,
                                    e.error_description.unwrap_or_default()
                                )
                            })
                            .unwrap_or_default();
                        let kind = if matches!(status, 400 | 401 | 403) {
                            DirectoryFailure::Unauthorised
                        } else {
                            DirectoryFailure::Malformed
                        };
                        return Err(DirectoryError::new(
                            kind,
                            format!("POST {}: HTTP {status}{why} ({whose})", truncate(url)),
                        ));
                    }
                }
            }
        };
        retry += 1;
        if retry >= policy.attempts {
            return Err(error);
        }
        let wait = match after {
            Some(a) if a > policy.max_wait => return Err(error),
            Some(a) => a,
            None => policy.backoff(retry - 1),
        };
        tracing::info!("{error}; retrying in {} ms", wait.as_millis());
        std::thread::sleep(wait);
    }
}

fn bearer(token: TokenResponse, url: &str) -> Result<String, DirectoryError> {
    let usable = !token.access_token.is_empty()
        && token
            .access_token
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"')
        && token
            .token_type
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case("bearer"));
    if !usable {
        return Err(DirectoryError::new(
            DirectoryFailure::Malformed,
            format!("POST {}: not a bearer token", truncate(url)),
        ));
    }
    Ok(format!("Bearer {}", token.access_token))
}

impl Credentials for ClientCredentials {
    fn authorization(&mut self, http: &Http, _renew: bool) -> Result<String, DirectoryError> {
        // a renewal is simply a new token: client credentials have no refresh token
        self.request(http)
    }
}
