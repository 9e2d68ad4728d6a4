//! The agent's one HTTP client: ureq with rustls, the proxy from the
//! environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY), the system's CA
//! bundle plus `[http] ca_file`, bounded timeouts and a response size cap.

use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::{KeysError, KeysFailure};
use crate::config::HttpConfig;

/// Bound on connecting (and resolving) to a server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one whole request, response body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on a response body: a JWKS is a few KiB.
pub const MAX_RESPONSE: u64 = 1024 * 1024;

/// Where distributions keep the system's CA bundle.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

#[derive(Debug, Clone)]
pub struct Http {
    agent: ureq::Agent,
}

fn pem_certs(bytes: &[u8]) -> Vec<Certificate<'static>> {
    ureq::tls::parse_pem(bytes)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

impl Http {
    /// The client for `[http]`. The roots are the system bundle plus every
    /// certificate of `ca_file` (which must exist and hold at least one); with
    /// no system bundle, Mozilla's list (webpki-roots), or `ca_file` alone.
    pub fn new(config: &HttpConfig) -> Result<Http, KeysError> {
        let mut roots: Vec<Certificate<'static>> = SYSTEM_BUNDLES
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .map(|b| pem_certs(&b))
            .unwrap_or_default();
        let system_found = !roots.is_empty();
        if let Some(path) = &config.ca_file {
            let bytes = std::fs::read(path).map_err(|e| {
                KeysError::new(
                    KeysFailure::Refused,
                    format!("[http] ca_file {}: {e}", path.display()),
                )
            })?;
            let extra = pem_certs(&bytes);
            if extra.is_empty() {
                return Err(KeysError::new(
                    KeysFailure::Refused,
                    format!(
                        "[http] ca_file {}: no PEM certificate in it",
                        path.display()
                    ),
                ));
            }
            if !system_found {
                tracing::warn!(
                    "no system CA bundle found; trusting only [http] ca_file {}",
                    path.display()
                );
            }
            roots.extend(extra);
        }
        let root_certs = if roots.is_empty() {
            RootCerts::WebPki
        } else {
            RootCerts::Specific(Arc::new(roots))
        };
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_resolve(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            // a redirect could leave https; key URLs are configured exactly
            .max_redirects(0)
            .proxy(ureq::Proxy::try_from_env())
            .user_agent(concat!("zt-agent/", env!("CARGO_PKG_VERSION")))
            .tls_config(TlsConfig::builder().root_certs(root_certs).build())
            .build();
        Ok(Http {
            agent: config.into(),
        })
    }

    /// GETs `url` (already checked by `config::check_key_url`): 200 and at
    /// most `MAX_RESPONSE` bytes, or a typed error naming the URL.
    pub fn get(&self, url: &str) -> Result<Vec<u8>, KeysError> {
        crate::config::check_key_url(url)
            .map_err(|why| KeysError::new(KeysFailure::Refused, why))?;
        let unavailable = |what: String| KeysError::new(KeysFailure::Unavailable, what);
        let mut response = self
            .agent
            .get(url)
            .header("Accept", "application/json")
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
    /// The server's clock (its `Date` header) answering a GET of `url`, for
    /// `zt-agent doctor`'s clock check; `None` when it sends no usable date.
    pub fn server_date(&self, url: &str) -> Result<Option<std::time::SystemTime>, KeysError> {
        crate::config::check_key_url(url)
            .map_err(|why| KeysError::new(KeysFailure::Refused, why))?;
        let response = self
            .agent
            .get(url)
            .call()
            .map_err(|e| KeysError::new(KeysFailure::Unavailable, format!("GET {url}: {e}")))?;
        Ok(response
            .headers()
            .get("date")
            .and_then(|d| d.to_str().ok())
            .and_then(crate::cli::doctor::http_date))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_ca_file_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let missing = HttpConfig {
            ca_file: Some(t.path().join("missing.pem")),
        };
        assert_eq!(Http::new(&missing).unwrap_err().kind, KeysFailure::Refused);
        let empty = t.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = Http::new(&HttpConfig {
            ca_file: Some(empty),
        })
        .unwrap_err();
        assert!(e.message.contains("no PEM certificate"), "{e}");
        Http::new(&HttpConfig::default()).unwrap();
    }

    #[test]
    fn plain_http_off_loopback_is_never_requested() {
        let http = Http::new(&HttpConfig::default()).unwrap();
        let e = http.get("http://192.0.2.1/jwks").unwrap_err();
        assert_eq!(e.kind, KeysFailure::Refused);
    }
}
