//! The device grant's HTTP side: discovery, the device authorization
//! request and token polls, through the agent's one HTTP client. Public
//! clients only (RFC 8628 with `client_id` and no secret: what Entra, Okta,
//! Google and Keycloak register for devices without a browser).

use std::time::Duration;

use crate::config::DeviceSpec;
use crate::http::Http;

use super::grant::{self, Poll, Started};

/// Bound on one request to the IdP during a sign-in: a person is waiting.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on fetching the discovery document at a sign-in's start (pam_zt
/// waits 40 s for the code in all).
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on an answer's size (device and token answers are a few KiB).
pub const MAX_ANSWER: u64 = 256 * 1024;

/// What discovery says: the device authorization endpoint (if any) and the
/// token endpoint.
pub type Discovery = (Option<String>, String);

/// Fetches and checks `spec`'s discovery document.
pub fn discover(http: &Http, iss: &str, spec: &DeviceSpec) -> Result<Discovery, String> {
    let body = crate::keys::get_within(http, &spec.discovery, DISCOVERY_TIMEOUT)
        .map_err(|e| e.to_string())?;
    grant::parse_discovery(&body, iss).map_err(|why| format!("{}: {why}", spec.discovery))
}

/// The device authorization and token endpoints: configured ones win over
/// what `discovered` says (asked only when one is not configured).
pub fn merge(
    spec: &DeviceSpec,
    discovered: impl FnOnce() -> Result<Discovery, String>,
) -> Result<(String, String), String> {
    if let (Some(d), Some(t)) = (&spec.device_authorization_endpoint, &spec.token_endpoint) {
        return Ok((d.clone(), t.clone()));
    }
    let (device, token) = discovered()?;
    let device = spec
        .device_authorization_endpoint
        .clone()
        .or(device)
        .ok_or_else(|| {
            format!(
                "{}: no device_authorization_endpoint (set device_authorization_endpoint in \
                 [[issuers]], or use an IdP with the device grant)",
                spec.discovery
            )
        })?;
    Ok((device, spec.token_endpoint.clone().unwrap_or(token)))
}

/// `merge` with discovery fetched now (doctor).
pub fn endpoints(http: &Http, iss: &str, spec: &DeviceSpec) -> Result<(String, String), String> {
    merge(spec, || discover(http, iss, spec))
}

/// POSTs `form` to `url`: the status and the body (at most `MAX_ANSWER`).
fn post(http: &Http, url: &str, form: &[(&str, &str)]) -> Result<(u16, Vec<u8>), String> {
    let mut response = http
        .agent()
        .post(url)
        .header("Accept", "application/json")
        .config()
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .send_form(form.iter().copied())
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(|e| format!("POST {url}: reading the answer: {e}"))?;
    Ok((status, body))
}

/// Starts a sign-in: the code to show and the device code to poll with.
/// `local`: the issuer is on loopback (tests), where plain http is allowed.
pub fn authorize(
    http: &Http,
    url: &str,
    spec: &DeviceSpec,
    local: bool,
) -> Result<Started, String> {
    let scope = spec.scopes.join(" ");
    let (status, body) = post(
        http,
        url,
        &[("client_id", &spec.client_id), ("scope", &scope)],
    )?;
    if status != 200 {
        let why = match grant::parse_token(status, &body) {
            Poll::Failed(m) | Poll::Refused(m) => {
                m.replacen("token endpoint", "device endpoint", 1)
            }
            _ => format!("HTTP {status}"),
        };
        return Err(format!("{url}: {why}"));
    }
    grant::parse_authorization(&body, local).map_err(|why| format!("{url}: {why}"))
}

/// One poll of the token endpoint. A transport failure is `Err` (the
/// caller decides whether to try again).
pub fn poll(http: &Http, url: &str, spec: &DeviceSpec, device_code: &str) -> Result<Poll, String> {
    let (status, body) = post(
        http,
        url,
        &[
            ("grant_type", grant::GRANT_TYPE),
            ("device_code", device_code),
            ("client_id", &spec.client_id),
        ],
    )?;
    Ok(grant::parse_token(status, &body))
}
