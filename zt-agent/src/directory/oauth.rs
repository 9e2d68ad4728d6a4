//! OAuth 2.0 client credentials (RFC 6749 4.4): the token Entra ID and
//! Keycloak hand a service for reading the directory. The secret is read from
//! its file at every token request (so a rotated secret is picked up) and is
//! only ever sent in the request body, never put in a message.

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
    pub secret_file: PathBuf,
    /// `scope` (Entra: `<graph>/.default`); Keycloak needs none.
    pub scope: Option<String>,
    pub policy: RetryPolicy,
    /// Token requests sent (for logs and benchmarks).
    pub requests: u64,
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
        let secret = api::read_secret(&self.secret_file)?;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", secret.as_str()),
        ];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope.as_str()));
        }
        let whose = format!(
            "client {:?}, secret from {}",
            self.client_id,
            self.secret_file.display()
        );
        self.requests += 1;
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
