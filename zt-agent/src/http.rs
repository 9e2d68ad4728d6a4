//! The agent's one HTTP client: ureq with rustls, the proxy from the
//! environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY), the system's CA
//! bundle plus `[http] ca_file` and bounded timeouts. The key fetches
//! (`keys`) and the directory connectors (`directory::api`) both use it, each
//! with its own response size cap.

use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::config::HttpConfig;

/// Bound on connecting (and resolving) to a server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one whole request, response body included (the directory
/// connectors set a longer one per request for their larger pages).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

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
    /// The error names the file and what is wrong with it.
    pub fn new(config: &HttpConfig) -> Result<Http, String> {
        Self::build(config, None)
    }

    /// As [`Http::new`], keeping an idle connection for `max_idle` (ureq's
    /// default is 15 s): a client that polls every minute then reuses its
    /// connection, where the server keeps it open as long (nginx's
    /// `keepalive_timeout` is 75 s), instead of a new TCP and TLS handshake.
    pub fn for_polls(config: &HttpConfig, max_idle: Duration) -> Result<Http, String> {
        Self::build(config, Some(max_idle))
    }

    fn build(config: &HttpConfig, max_idle: Option<Duration>) -> Result<Http, String> {
        let mut roots: Vec<Certificate<'static>> = SYSTEM_BUNDLES
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .map(|b| pem_certs(&b))
            .unwrap_or_default();
        let system_found = !roots.is_empty();
        if let Some(path) = &config.ca_file {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("[http] ca_file {}: {e}", path.display()))?;
            let extra = pem_certs(&bytes);
            if extra.is_empty() {
                return Err(format!(
                    "[http] ca_file {}: no PEM certificate in it",
                    path.display()
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
        let mut builder = ureq::Agent::config_builder();
        if let Some(idle) = max_idle {
            builder = builder.max_idle_age(idle);
        }
        let config = builder
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_resolve(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            // a redirect could leave https or the configured host; key and
            // directory URLs are configured exactly
            .max_redirects(0)
            .proxy(ureq::Proxy::try_from_env())
            .user_agent(concat!("zt-agent/", env!("CARGO_PKG_VERSION")))
            .tls_config(TlsConfig::builder().root_certs(root_certs).build())
            .build();
        Ok(Http {
            agent: config.into(),
        })
    }

    /// The configured ureq agent, for callers that build their own requests.
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// A conditional GET: with the validators of the last 200 (ETag,
    /// Last-Modified) an unchanged resource answers 304 and no body. Other
    /// statuses come back as they are (`Got::Status`); the body is read up to
    /// `limit` bytes. `extra` headers go with the request (S3's signature).
    pub fn get_conditional(
        &self,
        url: &str,
        validators: &Validators,
        extra: &[(String, String)],
        limit: u64,
    ) -> Result<Got, String> {
        let mut request = self.agent.get(url);
        if let Some(etag) = &validators.etag {
            request = request.header("If-None-Match", etag);
        }
        if let Some(date) = &validators.last_modified {
            request = request.header("If-Modified-Since", date);
        }
        for (k, v) in extra {
            request = request.header(k, v);
        }
        let mut response = request.call().map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status().as_u16();
        match status {
            304 => Ok(Got::NotModified),
            200 => {
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let validators = Validators {
                    etag: header("etag"),
                    last_modified: header("last-modified"),
                };
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(limit)
                    .read_to_vec()
                    .map_err(|e| {
                        format!("GET {url}: reading the body (at most {limit} bytes): {e}")
                    })?;
                Ok(Got::Body { body, validators })
            }
            other => Ok(Got::Status(other)),
        }
    }
}

/// What identifies the version of a resource a client already has.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validators {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// The answer to a conditional GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// 304: what the client holds is current.
    NotModified,
    /// 200, with the new validators.
    Body {
        body: Vec<u8>,
        validators: Validators,
    },
    /// Any other status.
    Status(u16),
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
        assert!(Http::new(&missing).unwrap_err().contains("missing.pem"));
        let empty = t.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = Http::new(&HttpConfig {
            ca_file: Some(empty),
        })
        .unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        Http::new(&HttpConfig::default()).unwrap();
    }
}
