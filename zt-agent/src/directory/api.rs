//! What the HTTP connectors share: authenticated GETs of JSON through the
//! agent's one client, retried with exponential backoff and jitter (honouring
//! a 429's `Retry-After`, bounded), a renewed token after a 401, a size cap on every response
//! parsed as it streams in, paging links held to the configured origin, and
//! every failure mapped onto [`DirectoryFailure`].
//!
//! A connector either returns the whole directory or an error: nothing here
//! hands back part of a listing, so a missing page can never remove anyone.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::io::BufReader;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::error::{DirectoryError, DirectoryFailure};
use crate::http::Http;

/// Bound on one directory response. A Graph page of 999 people is about
/// 1 MB; SCIM servers may return more per page. Parsed as it arrives, so this
/// bounds the bytes read, not a buffer.
pub const MAX_RESPONSE: u64 = 64 * 1024 * 1024;
/// Bound on one request, body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the pages of one listing: a paging loop the server sets up (or
/// an endless series of links) ends as an error, not a hang.
pub const MAX_PAGES: usize = 20_000;
/// Bound on a wait a server's headers ask for (`Retry-After`, Okta's
/// `X-Rate-Limit-Reset`): any number is accepted from the wire, so a huge one
/// must neither overflow the clock arithmetic nor park the agent. Longer
/// than any [`RetryPolicy::max_wait`], so such a wait still ends the sync as
/// throttled, and the daemon bounds its own pause again.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(3600);
/// How long a directory read may go without a good answer (every request,
/// retry and wait since the last page counts): a stalling IdP fails the
/// sync, the last good snapshot stays, and the next sync starts afresh
/// instead of one sync hanging for days. Measured from the last page, not
/// from the start: a first read of a large tenant (Graph's delta pages hold
/// 200 people, so 1,000,000 people are 5,000 pages) may take hours, and a
/// total bound would fail it every time (nothing is saved of a partial read).
pub const READ_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// Bound on one whole read even while pages keep coming.
pub const READ_MAX_TOTAL: Duration = Duration::from_secs(12 * 3600);
/// How much of an error body goes into a message.
const MAX_ERROR_SNIPPET: usize = 300;

/// When and how often to try again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries per request, the first included.
    pub attempts: u32,
    /// The first backoff; doubled per retry.
    pub base: Duration,
    /// No single wait is longer. A `Retry-After` beyond it ends the sync as
    /// throttled, with the server's time in the error.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base: Duration::from_millis(500),
            max_wait: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Backoff before retry `retry` (0-based): half fixed, half random, so
    /// many hosts throttled together do not come back in lockstep.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << retry.min(20))
            .min(self.max_wait);
        let half = ceiling / 2;
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let half_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(random % half_nanos.saturating_add(1))
    }
}

/// Where the `Authorization` header comes from.
pub trait Credentials {
    /// The header value. `renew`: the last one was refused (an expired
    /// token); fetch a new one if that can help. Errors never carry a secret.
    fn authorization(&mut self, http: &Http, renew: bool) -> Result<String, DirectoryError>;
}

/// A fixed token read from a file (`Bearer <token>`, Okta's `SSWS <token>`).
pub struct StaticToken {
    pub header: String,
    /// Where it came from, for the message when it is refused.
    pub origin: String,
}

impl Credentials for StaticToken {
    fn authorization(&mut self, _: &Http, renew: bool) -> Result<String, DirectoryError> {
        if renew {
            return Err(DirectoryError::new(
                DirectoryFailure::Unauthorised,
                format!("the token in {} was refused (HTTP 401)", self.origin),
            ));
        }
        Ok(self.header.clone())
    }
}

/// Reads a secret file (root-owned, not world readable: `trusted_file`),
/// trimmed. The error names the file, never its content.
pub fn read_secret(path: &std::path::Path) -> Result<String, DirectoryError> {
    let text = crate::trusted_file::read(path, crate::trusted_file::Kind::Secret)
        .map_err(|why| DirectoryError::new(DirectoryFailure::Unauthorised, why))?;
    let secret = text.trim();
    if secret.is_empty() || secret.contains(['\n', '\r', '\0']) {
        return Err(DirectoryError::new(
            DirectoryFailure::Unauthorised,
            format!("{}: expected one line holding the secret", path.display()),
        ));
    }
    Ok(secret.to_string())
}

/// `scheme://host[:port]`, lowercased, of an absolute URL.
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{authority}").to_ascii_lowercase())
}

/// A GET's answer.
pub enum Fetched<T> {
    Found(T),
    /// 404: no such object.
    Missing,
    /// 410, or Graph's 400 `syncStateNotFound` / `resyncRequired`: the
    /// state the request refers to (a delta link) is gone; the error says so
    /// for callers that cannot start over.
    Gone(DirectoryError),
}

/// A successful attempt: the answer, the next page's link, and how long to
/// wait before the next request (a rate limit used up).
struct Answer<T> {
    value: Fetched<T>,
    next: Option<String>,
    pause: Option<Duration>,
}

/// Okta's `X-Rate-Limit-Remaining` / `X-Rate-Limit-Reset` (unix seconds).
struct RateLimit {
    remaining: Option<u64>,
    reset_in: Option<Duration>,
}

impl RateLimit {
    fn of(headers: &ureq::http::HeaderMap) -> RateLimit {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        RateLimit {
            remaining: number("x-rate-limit-remaining"),
            // a second more: the reset is a whole second, the clocks differ
            reset_in: number("x-rate-limit-reset").map(|reset| {
                Duration::from_secs(reset.saturating_sub(now).saturating_add(1))
                    .min(MAX_SERVER_WAIT)
            }),
        }
    }

    /// Nothing left until the reset: wait for it before asking again.
    fn pause(&self) -> Option<Duration> {
        (self.remaining == Some(0))
            .then_some(self.reset_in)
            .flatten()
    }
}

/// The target of `rel="next"` in the `Link` headers (RFC 8288), if any.
pub fn next_link(headers: &ureq::http::HeaderMap) -> Option<String> {
    headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(", <"))
        .find_map(|link| {
            let (target, params) = link.trim().trim_start_matches('<').split_once('>')?;
            params
                .split(';')
                .any(|p| {
                    let p = p.trim();
                    p == "rel=\"next\"" || p == "rel=next"
                })
                .then(|| target.to_string())
        })
}

/// What one attempt came to.
enum Attempt<T> {
    Done(T),
    Retry {
        error: DirectoryError,
        after: Option<Duration>,
    },
    Renew(DirectoryError),
    Fail(DirectoryError),
}

/// An authenticated JSON API at one origin.
pub struct Api<'h> {
    http: &'h Http,
    origin: String,
    credentials: Box<dyn Credentials + 'h>,
    authorization: Option<String>,
    pub policy: RetryPolicy,
    /// Requests sent, retries included (for logs and benchmarks).
    pub requests: u64,
    /// Waits between attempts go through this (tests record them).
    pub sleep: fn(Duration),
    /// A rate limit used up: no request before this.
    pause_until: Option<std::time::Instant>,
    /// The read fails once it has gone this long without a good answer
    /// ([`READ_DEADLINE`]), or after [`READ_MAX_TOTAL`] in all.
    pub deadline: Duration,
    started: std::time::Instant,
    last_progress: std::time::Instant,
}

impl<'h> Api<'h> {
    /// An API whose every URL (paging links included) must be at `base`'s origin.
    pub fn new(
        http: &'h Http,
        base: &str,
        credentials: Box<dyn Credentials + 'h>,
    ) -> Result<Api<'h>, DirectoryError> {
        let origin = origin(base).ok_or_else(|| {
            DirectoryError::new(
                DirectoryFailure::Malformed,
                format!("{base:?} is not a URL"),
            )
        })?;
        Ok(Api {
            http,
            origin,
            credentials,
            authorization: None,
            policy: RetryPolicy::default(),
            requests: 0,
            sleep: std::thread::sleep,
            pause_until: None,
            deadline: READ_DEADLINE,
            started: std::time::Instant::now(),
            last_progress: std::time::Instant::now(),
        })
    }

    /// An error if the read, after a further `wait`, would run past its
    /// deadline (checked before every request and every wait; a request
    /// itself is bounded by [`REQUEST_TIMEOUT`]).
    fn check_deadline(&self, wait: Duration) -> Result<(), DirectoryError> {
        let (stalled, total) = (
            self.last_progress.elapsed().saturating_add(wait),
            self.started.elapsed().saturating_add(wait),
        );
        if stalled > self.deadline || total > READ_MAX_TOTAL {
            return Err(DirectoryError::new(
                DirectoryFailure::Unavailable,
                format!(
                    "reading the directory at {} took longer than {} s without a good answer \
                     (or {} s in all; after {} requests)",
                    self.origin,
                    self.deadline.as_secs(),
                    READ_MAX_TOTAL.as_secs(),
                    self.requests
                ),
            ));
        }
        Ok(())
    }

    /// Whether `url` is at this API's origin (where paging links must be).
    pub fn is_at_origin(&self, url: &str) -> bool {
        origin(url).as_deref() == Some(self.origin.as_str())
    }

    /// GETs `url` as JSON: `Ok(None)` on 404 (the object does not exist).
    pub fn get<T: DeserializeOwned>(&mut self, url: &str) -> Result<Option<T>, DirectoryError> {
        match self.fetch(url)? {
            Fetched::Found(v) => Ok(Some(v)),
            Fetched::Missing => Ok(None),
            Fetched::Gone(e) => Err(e),
        }
    }

    /// As [`Self::get`], telling a 410 Gone (an expired delta link: start
    /// over) apart from other failures.
    pub fn fetch<T: DeserializeOwned>(&mut self, url: &str) -> Result<Fetched<T>, DirectoryError> {
        self.fetch_linked(url).map(|(v, _)| v)
    }

    /// As [`Self::fetch`], with the `Link: <..>; rel="next"` header's URL
    /// (RFC 8288; Okta pages this way).
    pub fn fetch_linked<T: DeserializeOwned>(
        &mut self,
        url: &str,
    ) -> Result<(Fetched<T>, Option<String>), DirectoryError> {
        if origin(url).as_deref() != Some(self.origin.as_str()) {
            // a paging link elsewhere would send our token to another host
            return Err(DirectoryError::new(
                DirectoryFailure::Malformed,
                format!(
                    "refusing to follow {:?}: not at the configured {}",
                    truncate(url),
                    self.origin
                ),
            ));
        }
        crate::config::check_key_url(url)
            .map_err(|why| DirectoryError::new(DirectoryFailure::Malformed, why))?;
        let mut renewed = false;
        let mut retry = 0;
        loop {
            if let Some(until) = self.pause_until.take() {
                // the server said our allowance is used up until then
                let wait = until.saturating_duration_since(std::time::Instant::now());
                if wait > self.policy.max_wait {
                    let mut e = DirectoryError::new(
                        DirectoryFailure::Throttled,
                        format!("the rate limit of {} is used up", self.origin),
                    );
                    e.retry_after = Some(wait);
                    return Err(e);
                }
                if !wait.is_zero() {
                    self.check_deadline(wait)?;
                    tracing::info!("rate limit used up; waiting {} ms", wait.as_millis());
                    (self.sleep)(wait);
                }
            }
            if self.authorization.is_none() {
                self.authorization = Some(self.credentials.authorization(self.http, false)?);
            }
            self.check_deadline(Duration::ZERO)?;
            let header = self.authorization.clone().unwrap_or_default();
            self.requests += 1;
            let attempt = self.attempt::<T>(url, &header);
            match attempt {
                Attempt::Done(answer) => {
                    self.last_progress = std::time::Instant::now();
                    // checked: a pause the server set cannot panic the agent
                    // (it is bounded already; an Instant's range is the OS's)
                    self.pause_until = answer.pause.map(|p| {
                        let now = std::time::Instant::now();
                        now.checked_add(p.min(MAX_SERVER_WAIT)).unwrap_or(now)
                    });
                    return Ok((answer.value, answer.next));
                }
                Attempt::Renew(e) if !renewed => {
                    // a token can expire in the middle of a long sync
                    tracing::info!("{e}; renewing the token");
                    renewed = true;
                    self.authorization = Some(self.credentials.authorization(self.http, true)?);
                }
                Attempt::Renew(e) | Attempt::Fail(e) => return Err(e),
                Attempt::Retry { error, after } => {
                    retry += 1;
                    if retry >= self.policy.attempts {
                        return Err(error);
                    }
                    let wait = match after {
                        Some(a) if a > self.policy.max_wait => {
                            let mut e = error;
                            e.retry_after = Some(a);
                            return Err(e);
                        }
                        Some(a) => a,
                        None => self.policy.backoff(retry - 1),
                    };
                    self.check_deadline(wait)?;
                    tracing::info!("{error}; retrying in {} ms", wait.as_millis());
                    (self.sleep)(wait);
                }
            }
        }
    }

    fn attempt<T: DeserializeOwned>(&self, url: &str, authorization: &str) -> Attempt<Answer<T>> {
        let unavailable = |what: String| DirectoryError::new(DirectoryFailure::Unavailable, what);
        let response = self
            .http
            .agent()
            .get(url)
            .header("Accept", "application/json, application/scim+json")
            .header("Authorization", authorization)
            .config()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .call();
        let mut response = match response {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    error: unavailable(format!("GET {}: {e}", truncate(url))),
                    after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers();
        let limit = RateLimit::of(headers);
        let retry_after = headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
            .or(if status == 429 { limit.reset_in } else { None });
        let next = next_link(headers);
        let done = |value| {
            Attempt::Done(Answer {
                value,
                next: next.clone(),
                pause: limit.pause(),
            })
        };
        // an error's body is read (bounded) before the match: it says why,
        // and Graph's error code decides whether a delta link expired
        let body = if status == 200 {
            Vec::new()
        } else {
            error_body(&mut response)
        };
        let failed = |kind| {
            DirectoryError::new(
                kind,
                format!(
                    "GET {}: HTTP {status}{}",
                    truncate(url),
                    error_snippet(&body, &[authorization])
                ),
            )
        };
        match status {
            200 => {}
            404 => return done(Fetched::Missing),
            // Graph answers an expired or unknown delta link with 400
            // `syncStateNotFound` (sometimes 410 / `resyncRequired`):
            // start that query over, as for any 410
            410 => return done(Fetched::Gone(failed(DirectoryFailure::Malformed))),
            400 if is_resync(&body) => {
                return done(Fetched::Gone(failed(DirectoryFailure::Malformed)));
            }
            401 => return Attempt::Renew(failed(DirectoryFailure::Unauthorised)),
            403 => return Attempt::Fail(failed(DirectoryFailure::Unauthorised)),
            429 => {
                let mut error = failed(DirectoryFailure::Throttled);
                error.retry_after = retry_after;
                return Attempt::Retry {
                    error,
                    after: retry_after,
                };
            }
            // a Retry-After on a 5xx (a maintenance page) is not followed:
            // one such page could otherwise stop syncing for hours; our own
            // bounded backoff, and the next interval, pace the retries
            500..=599 => {
                return Attempt::Retry {
                    error: failed(DirectoryFailure::Unavailable),
                    after: None,
                };
            }
            _ => return Attempt::Fail(failed(DirectoryFailure::Malformed)),
        }
        // ureq's own limit is lifted: `Capped` stops at ours and remembers
        // that it did, so a cut-off answer reads as too large, not as a
        // network error worth retrying
        let mut capped = Capped {
            inner: response.body_mut().with_config().limit(u64::MAX).reader(),
            left: MAX_RESPONSE,
            hit: false,
        };
        let parsed = serde_json::from_reader::<_, T>(BufReader::new(&mut capped));
        match parsed {
            Ok(v) => done(Fetched::Found(v)),
            Err(_) if capped.hit => Attempt::Fail(DirectoryError::new(
                DirectoryFailure::Malformed,
                format!(
                    "GET {}: the answer is larger than {MAX_RESPONSE} bytes",
                    truncate(url)
                ),
            )),
            Err(e) if e.is_io() => Attempt::Retry {
                error: unavailable(format!("GET {}: reading the answer: {e}", truncate(url))),
                after: None,
            },
            Err(e) => Attempt::Fail(DirectoryError::new(
                DirectoryFailure::Malformed,
                format!("GET {}: not the expected JSON: {e}", truncate(url)),
            )),
        }
    }
}

/// A reader that ends after `left` bytes, noting whether there was more.
struct Capped<R> {
    inner: R,
    left: u64,
    hit: bool,
}

impl<R: std::io::Read> std::io::Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // one byte more than allowed means the answer was too large
            let mut probe = [0u8; 1];
            let n = self.inner.read(&mut probe)?;
            self.hit = n > 0;
            return if self.hit {
                Err(std::io::Error::other("answer too large"))
            } else {
                Ok(0)
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Bound on one paging or delta link (Graph's skip tokens are a few
/// hundred bytes; a server's multi-megabyte link is an attack on memory).
pub const MAX_LINK: usize = 64 * 1024;

/// An error unless `link` is at most [`MAX_LINK`] bytes.
pub fn check_link(link: &str) -> Result<(), DirectoryError> {
    if link.len() > MAX_LINK {
        return Err(DirectoryError::new(
            DirectoryFailure::Malformed,
            format!(
                "a paging link of {} bytes (more than {MAX_LINK}): {:?}",
                link.len(),
                truncate(link)
            ),
        ));
    }
    Ok(())
}

/// Follows paging links (`@odata.nextLink`-style) until there is none: each
/// link at most once, at most [`MAX_PAGES`] pages, each at most
/// [`MAX_LINK`] bytes. Only the links' SHA-256 is kept, so the memory spent
/// on loop detection does not grow with the links' length.
#[derive(Default)]
pub struct PageLinks {
    seen: HashSet<[u8; 32]>,
}

impl PageLinks {
    /// Records `next` as about to be fetched; an error if it was already
    /// (a loop), is too long, or the listing is implausibly long.
    pub fn follow(&mut self, next: &str) -> Result<(), DirectoryError> {
        use sha2::Digest;
        check_link(next)?;
        if self.seen.len() >= MAX_PAGES {
            return Err(DirectoryError::new(
                DirectoryFailure::Malformed,
                format!("more than {MAX_PAGES} pages in one listing"),
            ));
        }
        if !self
            .seen
            .insert(sha2::Sha256::digest(next.as_bytes()).into())
        {
            return Err(DirectoryError::new(
                DirectoryFailure::Malformed,
                format!("the paging link {:?} came back: a loop", truncate(next)),
            ));
        }
        Ok(())
    }
}

/// `Retry-After` in seconds (the form every IdP here sends); an HTTP date
/// is ignored in favour of our own backoff.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s).min(MAX_SERVER_WAIT))
}

/// An error answer's body, at most 64 KiB of it.
fn error_body(response: &mut ureq::http::Response<ureq::Body>) -> Vec<u8> {
    response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_vec()
        .unwrap_or_default()
}

/// Whether an error body is Graph's "this delta state is gone, read from
/// scratch": `{"error":{"code":"syncStateNotFound"|"resyncRequired",..}}`.
fn is_resync(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Outer {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        code: String,
    }
    serde_json::from_slice::<Outer>(body).is_ok_and(|o| {
        o.error.code.eq_ignore_ascii_case("syncStateNotFound")
            || o.error.code.eq_ignore_ascii_case("resyncRequired")
    })
}

/// The start of an error body, escaped, for the message: IdPs explain
/// refusals there. A server (or a proxy) may echo the request, so `secrets`
/// (the `Authorization` value) are blanked out of the whole body first:
/// messages are logged and kept in status.json.
fn error_snippet(body: &[u8], secrets: &[&str]) -> String {
    if body.is_empty() {
        return String::new();
    }
    let text = redact(&String::from_utf8_lossy(body), secrets);
    let end = text
        .char_indices()
        .nth(MAX_ERROR_SNIPPET)
        .map_or(text.len(), |(i, _)| i);
    format!(": {:?}", &text[..end])
}

/// `text` with every secret (and an `Authorization` value's credential
/// alone: `Bearer <token>`, `SSWS <token>`) replaced by `[redacted]`, in the
/// forms an echo may carry it: as sent, JSON-escaped (`\/`, `\u002B`),
/// percent-encoded (upper or lower case, `+` or `%20` for a space) and
/// base64. What is left holding the start of a secret (another encoding, a
/// cut) is withheld whole.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut words: Vec<&str> = Vec::new();
    for secret in secrets {
        words.push(secret);
        if let Some((_, credential)) = secret.split_once(' ') {
            words.push(credential.trim());
        }
    }
    // short strings are no secret and would blank ordinary words
    words.retain(|w| w.len() >= 8);
    let mut forms: Vec<String> = words.iter().flat_map(|w| encodings(w)).collect();
    // longest first, so a header is blanked whole before its token
    forms.sort_by_key(|w| std::cmp::Reverse(w.len()));
    forms.dedup();
    let mut text = text.to_string();
    for form in &forms {
        if text.contains(form.as_str()) {
            text = text.replace(form.as_str(), "[redacted]");
        }
    }
    let leaks = words
        .iter()
        .filter(|w| w.len() >= 16)
        .any(|w| w.get(..12).is_some_and(|start| text.contains(start)));
    if leaks {
        return "[withheld: the answer echoed part of a credential]".into();
    }
    text
}

/// The ways an echo may spell `word`.
fn encodings(word: &str) -> Vec<String> {
    use base64::Engine;
    let percent = |upper: bool, space: &str| -> String {
        word.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => space.to_string(),
                _ if upper => format!("%{b:02X}"),
                _ => format!("%{b:02x}"),
            })
            .collect()
    };
    let json_unicode = |upper: bool| -> String {
        word.chars()
            .map(|c| match c {
                _ if c.is_ascii_alphanumeric() || c == ' ' => c.to_string(),
                _ if upper => format!("\\u{:04X}", c as u32),
                _ => format!("\\u{:04x}", c as u32),
            })
            .collect()
    };
    vec![
        word.to_string(),
        word.replace('/', "\\/"),
        json_unicode(true),
        json_unicode(false),
        percent(true, "%20"),
        percent(true, "+"),
        percent(false, "%20"),
        base64::engine::general_purpose::STANDARD.encode(word),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(word),
    ]
}

/// URLs in messages: paging links can be long.
pub fn truncate(url: &str) -> String {
    const MAX: usize = 200;
    match url.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &url[..i]),
        None => url.to_string(),
    }
}

/// Percent-encodes one URL path segment (an object id from config or the
/// directory).
pub fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, ENCODED).to_string()
}

/// Everything but RFC 3986's unreserved characters.
const ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a query value.
pub fn query_value(s: &str) -> String {
    segment(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert_eq!(
            origin("https://Graph.Microsoft.com/v1.0/x?y").as_deref(),
            Some("https://graph.microsoft.com")
        );
        assert_ne!(
            origin("https://graph.microsoft.com:8443/v1.0"),
            origin("https://graph.microsoft.com/v1.0")
        );
        assert_eq!(origin("https://user@evil.example/x"), None);
        assert_eq!(origin("not a url"), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stays_under_the_cap() {
        let p = RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(100),
            max_wait: Duration::from_secs(1),
        };
        for retry in 0..8 {
            let ceiling = (Duration::from_millis(100) * (1 << retry)).min(Duration::from_secs(1));
            let w = p.backoff(retry);
            assert!(w >= ceiling / 2 && w <= ceiling, "retry {retry}: {w:?}");
        }
        // jitter: not the same every time
        let waits: HashSet<Duration> = (0..20).map(|_| p.backoff(3)).collect();
        assert!(waits.len() > 1);
    }

    #[test]
    fn a_paging_loop_is_an_error() {
        let mut links = PageLinks::default();
        links.follow("https://x/a?page=2").unwrap();
        links.follow("https://x/a?page=3").unwrap();
        let e = links.follow("https://x/a?page=2").unwrap_err();
        assert_eq!(e.kind, DirectoryFailure::Malformed);
        assert!(e.message.contains("loop"), "{e}");
    }

    #[test]
    fn an_overlong_paging_link_is_refused() {
        let mut links = PageLinks::default();
        let long = format!("https://x/a?page={}", "9".repeat(MAX_LINK));
        let e = links.follow(&long).unwrap_err();
        assert_eq!(e.kind, DirectoryFailure::Malformed);
        assert!(e.message.contains(&format!("more than {MAX_LINK}")), "{e}");
        assert!(e.message.len() < 400, "the link is not quoted whole");
        let fits = format!("https://x/a?p={}", "9".repeat(MAX_LINK - 20));
        links.follow(&fits).unwrap();
        assert!(links.follow(&fits).is_err(), "still a loop by its hash");
    }

    #[test]
    fn next_links_from_link_headers() {
        let mut h = ureq::http::HeaderMap::new();
        h.append(
            "link",
            "<https://acme.okta.com/api/v1/groups/g/users?limit=200>; rel=\"self\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_link(&h), None);
        h.append(
            "link",
            "<https://acme.okta.com/api/v1/groups/g/users?after=00u1&limit=200>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://acme.okta.com/api/v1/groups/g/users?after=00u1&limit=200")
        );
        let mut one = ureq::http::HeaderMap::new();
        one.insert(
            "link",
            "<https://x/a?after=1>; rel=\"self\", <https://x/a?after=2>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_link(&one).as_deref(), Some("https://x/a?after=2"));
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(
            parse_retry_after("18446744073709551615"),
            Some(MAX_SERVER_WAIT)
        );
    }

    #[test]
    fn error_bodies_never_carry_the_credential() {
        let auth = "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi.secret-part";
        let body = format!(
            r#"{{"error":"denied","echo":"Authorization: {auth}","token":"eyJ0eXAiOiJKV1QiLCJhbGciOi.secret-part"}}"#
        );
        let s = error_snippet(body.as_bytes(), &[auth]);
        assert!(!s.contains("secret-part"), "{s}");
        assert!(s.contains("Authorization: [redacted]"), "{s}");
        // a long body: blanked before it is cut, so no prefix of it shows
        let long = format!("{}{auth}", "x".repeat(MAX_ERROR_SNIPPET - 20));
        let s = error_snippet(long.as_bytes(), &[auth]);
        assert!(!s.contains("eyJ0"), "{s}");
        assert_eq!(
            redact("SSWS 00abcdefgh here", &["SSWS 00abcdefgh"]),
            "[redacted] here"
        );
    }

    #[test]
    fn a_credential_is_redacted_in_the_encodings_an_echo_uses() {
        use base64::Engine;
        let token = "abc+def/ghi=jklmnopq";
        let auth = format!("Bearer {token}");
        for echo in [
            r"Bearer abc+def\/ghi=jklmnopq".to_string(),
            r"abc\u002Bdef\u002Fghi\u003Djklmnopq".to_string(),
            r"abc\u002bdef\u002fghi\u003djklmnopq".to_string(),
            "Bearer%20abc%2Bdef%2Fghi%3Djklmnopq".to_string(),
            "Bearer+abc%2bdef%2fghi%3djklmnopq".to_string(),
            base64::engine::general_purpose::STANDARD.encode(&auth),
            // an encoding nobody listed, or a cut: the start of it is enough
            "abc+def/ghi=jk (cut here)".to_string(),
        ] {
            let out = redact(&format!("echo: {echo} end"), &[&auth]);
            assert!(
                !out.contains("ghi") && !out.contains("jklm"),
                "{echo}: {out}"
            );
        }
        assert_eq!(redact("nothing to see", &[&auth]), "nothing to see");
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(segment("6b1f0d7e-aaaa_b.c~"), "6b1f0d7e-aaaa_b.c~");
    }
}
