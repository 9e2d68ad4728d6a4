//! A fleet host's read: the pointer with a conditional GET (304: the held
//! document is current, a poll of a few hundred bytes), then, when it names
//! something new, the object; its size and SHA-256 against the pointer, its
//! signature against `public_keys`, its serial against the one held, its
//! `valid_until` against the clock. The held document is kept in the state
//! directory (`fleet-document`, with `fleet-held.json`) and checked again on
//! every read, so an expired one is refused even when nothing changed.
//!
//! Refusals map onto the directory failures of `sync --once`: a damaged,
//! truncated, foreign-signed or older document is `Malformed` (exit 65); an
//! unreachable or expired one `Unavailable` (exit 69), as an IdP that cannot be
//! reached. Either way the last good snapshot stays and `[login] max_offline`
//! governs as it does for an IdP outage.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zt_snapshot::StateDir;

use super::document::{self, Document};
use super::publish::Pointer;
use super::{FleetSource, Location, POINTER};
use crate::config::AgentConfig;
use crate::directory::error::{DirectoryError, DirectoryFailure};
use crate::http::{Got, Http, Validators};

/// The held document's object, as fetched and verified.
pub const DOCUMENT: &str = "fleet-document";
/// What is held: serial, digest, the pointer's validators.
pub const HELD: &str = "fleet-held.json";
/// How long the polling client keeps an idle connection: longer than the
/// longest sync_interval a fleet uses, so a poll reuses it where the server
/// keeps it open (see README: nginx `keepalive_timeout`).
pub const POLL_IDLE: std::time::Duration = std::time::Duration::from_secs(600);
/// The largest pointer read.
const MAX_POINTER: u64 = 64 << 10;
/// The largest object read.
const MAX_OBJECT: u64 = 128 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub serial: u64,
    pub sha256: String,
    #[serde(default)]
    pub published_at: u64,
    #[serde(default)]
    pub valid_until: u64,
    #[serde(default)]
    pub validators: Validators,
}

/// A verified document and the state files to write once it is used.
#[derive(Debug)]
pub struct Fetched {
    pub document: Document,
    pub save: Vec<(&'static str, Vec<u8>)>,
    /// A new document (false: the held one, still current).
    pub new: bool,
}

fn malformed(m: String) -> DirectoryError {
    DirectoryError::new(DirectoryFailure::Malformed, m)
}

fn unavailable(m: String) -> DirectoryError {
    DirectoryError::new(DirectoryFailure::Unavailable, m)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One client for every poll of this process (the daemon): its idle
/// connection and TLS sessions carry over from one poll to the next, so an
/// unchanged poll is a resumed (or reused) connection and a 304, not a full
/// TLS handshake with the server's certificate chain. A new one when
/// `[http]` changes.
fn client(config: &crate::config::HttpConfig) -> Result<Http, String> {
    static CLIENT: std::sync::Mutex<Option<(Option<std::path::PathBuf>, Http)>> =
        std::sync::Mutex::new(None);
    let mut held = CLIENT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((ca, http)) = held.as_ref()
        && *ca == config.ca_file
    {
        return Ok(http.clone());
    }
    let http = Http::for_polls(config, POLL_IDLE)?;
    *held = Some((config.ca_file.clone(), http.clone()));
    Ok(http)
}

enum Transport {
    Http { http: Http, base: String },
    S3(Box<super::s3::S3>),
}

impl Transport {
    fn describe(&self, name: &str) -> String {
        match self {
            Transport::Http { base, .. } => format!("{base}{name}"),
            Transport::S3(_) => format!("s3 {name}"),
        }
    }

    fn get(&self, name: &str, validators: &Validators, limit: u64) -> Result<Got, DirectoryError> {
        let got = match self {
            Transport::Http { http, base } => {
                http.get_conditional(&format!("{base}{name}"), validators, &[], limit)
            }
            Transport::S3(s3) => s3.get(name, validators, limit),
        };
        let what = self.describe(name);
        match got.map_err(unavailable)? {
            Got::Status(s) => Err(DirectoryError::new(
                match s {
                    401 | 403 => DirectoryFailure::Unauthorised,
                    429 | 503 => DirectoryFailure::Throttled,
                    _ => DirectoryFailure::Unavailable,
                },
                format!("GET {what}: HTTP {s}"),
            )),
            other => Ok(other),
        }
    }
}

/// The held document, if its files are there, trusted and agree.
fn held(state: &StateDir) -> (Held, Option<Vec<u8>>) {
    let held: Option<Held> = state
        .read_trusted(HELD)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(held) = held else {
        return (Held::default(), None);
    };
    let object = state
        .read_trusted(DOCUMENT)
        .ok()
        .flatten()
        .filter(|b| hex(&Sha256::digest(b)) == held.sha256);
    (held, object)
}

/// Opens and checks an object: signature, then serial and validity.
fn check(
    object: &[u8],
    source: &FleetSource,
    held: &Held,
    what: &str,
) -> Result<Document, DirectoryError> {
    let doc = document::open(object, &source.public_keys)
        .map_err(|r| malformed(format!("{what}: refused: {r}")))?;
    if doc.serial < held.serial {
        return Err(malformed(format!(
            "{what}: refused: serial {} is older than serial {} this host already holds (a rollback)",
            doc.serial, held.serial
        )));
    }
    sane(doc.serial, doc.published_at, doc.valid_until, what)?;
    let now = super::now();
    if doc.valid_until < now {
        return Err(unavailable(format!(
            "{what}: refused: serial {} expired {} s ago (valid_until {}); is the publisher publishing?",
            doc.serial,
            now - doc.valid_until,
            doc.valid_until
        )));
    }
    Ok(doc)
}

/// Clock skew accepted on a publication time.
pub const MAX_SKEW_SECS: u64 = 300;
/// Longest validity a publication may claim (`valid_for` is at most 400 d).
pub const MAX_VALIDITY_SECS: u64 = 400 * 86_400;
/// How far a serial may run ahead of its publication time: serials are
/// roughly unix seconds, one more per publication within a second.
pub const MAX_SERIAL_LEAD: u64 = 30 * 86_400;

/// Bounds on what even a correctly signed publication may claim: a leaked or
/// misused key cannot push a serial or a validity to the end of time (which
/// hosts would then hold forever).
fn sane(
    serial: u64,
    published_at: u64,
    valid_until: u64,
    what: &str,
) -> Result<(), DirectoryError> {
    let now = super::now();
    if published_at > now.saturating_add(MAX_SKEW_SECS) {
        return Err(unavailable(format!(
            "{what}: refused: published {} s in the future: is this host's clock (or the publisher's) wrong? (timedatectl)",
            published_at - now
        )));
    }
    let why = if valid_until.saturating_sub(published_at) > MAX_VALIDITY_SECS {
        format!(
            "valid for {} s, more than the {MAX_VALIDITY_SECS} s a publication may claim",
            valid_until.saturating_sub(published_at)
        )
    } else if serial > published_at.saturating_add(MAX_SERIAL_LEAD) {
        format!("serial {serial} runs far ahead of its publication time {published_at}")
    } else {
        return Ok(());
    };
    Err(malformed(format!("{what}: refused: {why}")))
}

/// Reads the fleet document for `source`; `state`: where the held document
/// is (none: `doctor`'s read-only check, as a host holding nothing).
pub fn read(
    config: &AgentConfig,
    source: &FleetSource,
    state: Option<&StateDir>,
) -> Result<Fetched, DirectoryError> {
    let http = client(&config.http).map_err(unavailable)?;
    let transport = match &source.location {
        Location::Http(base) => Transport::Http {
            http,
            base: base.clone(),
        },
        Location::S3 {
            endpoint,
            bucket,
            prefix,
        } => Transport::S3(Box::new(
            super::s3::S3::new(http, endpoint, bucket, prefix).map_err(unavailable)?,
        )),
        Location::Folder(p) => {
            return Err(unavailable(format!(
                "{}: a fleet host reads a URL, not a folder",
                p.display()
            )));
        }
    };
    let (held, object) = state.map(held).unwrap_or_default();
    // A held document that no longer checks out (its key was taken out of
    // public_keys) is refused like a new one: the server has that same
    // document until the publisher publishes again, so fetching it anew
    // would only cost the whole document every poll.
    attempt(&transport, source, &held, object.as_deref())
}

/// How refusals of the held document begin.
const HELD_WHAT: &str = "the held fleet document";

/// One read: `object` is the held document, if it is to be used.
fn attempt(
    transport: &Transport,
    source: &FleetSource,
    held: &Held,
    object: Option<&[u8]>,
) -> Result<Fetched, DirectoryError> {
    let validators = if object.is_some() {
        held.validators.clone()
    } else {
        Validators::default()
    };
    let pointer_what = transport.describe(POINTER);
    let use_held = |validators: Validators| -> Result<Fetched, DirectoryError> {
        let object = object.unwrap_or_default();
        let document = check(object, source, held, HELD_WHAT)?;
        let text = serde_json::to_vec(&Held {
            validators,
            ..held.clone()
        })
        .map_err(|e| malformed(e.to_string()))?;
        Ok(Fetched {
            document,
            save: vec![(HELD, text)],
            new: false,
        })
    };
    let (body, new_validators) = match transport.get(POINTER, &validators, MAX_POINTER)? {
        Got::NotModified if object.is_some() => {
            tracing::debug!(
                "fleet: {pointer_what} not modified (serial {})",
                held.serial
            );
            return use_held(validators);
        }
        Got::NotModified => {
            return Err(unavailable(format!(
                "GET {pointer_what}: 304 to a request without validators"
            )));
        }
        Got::Body { body, validators } => (body, validators),
        Got::Status(s) => return Err(unavailable(format!("GET {pointer_what}: HTTP {s}"))),
    };
    let pointer: Pointer = serde_json::from_slice(&body).map_err(|e| {
        malformed(format!(
            "{pointer_what}: not a fleet pointer: line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    // the pointer is checked before anything it names is fetched
    super::pointer::verify(&pointer, &source.public_keys)
        .map_err(|why| malformed(format!("{pointer_what}: refused: {why}")))?;
    sane(
        pointer.serial,
        pointer.published_at,
        pointer.valid_until,
        &pointer_what,
    )?;
    if object.is_some() && pointer.sha256 == held.sha256 {
        tracing::debug!(
            "fleet: {pointer_what} names the held serial {}",
            held.serial
        );
        return use_held(new_validators);
    }
    if pointer.serial < held.serial {
        return Err(malformed(format!(
            "{pointer_what}: refused: it names serial {}, older than serial {} this host already holds (a rollback)",
            pointer.serial, held.serial
        )));
    }
    if pointer.serial == held.serial && object.is_some() {
        // another publication with the same serial: nothing new
        return use_held(new_validators);
    }
    let name = &pointer.object;
    if !name.starts_with("objects/")
        || name.contains("..")
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._".contains(&b))
    {
        return Err(malformed(format!(
            "{pointer_what}: refused: object name {name:?} is not objects/<name>"
        )));
    }
    if pointer.size > MAX_OBJECT {
        return Err(malformed(format!(
            "{pointer_what}: refused: object of {} bytes is over the {MAX_OBJECT}-byte limit",
            pointer.size
        )));
    }
    let what = transport.describe(name);
    let bytes = match transport.get(name, &Validators::default(), pointer.size + 1)? {
        Got::Body { body, .. } => body,
        _ => return Err(unavailable(format!("GET {what}: no body"))),
    };
    let sha = hex(&Sha256::digest(&bytes));
    if bytes.len() as u64 != pointer.size || sha != pointer.sha256 {
        return Err(malformed(format!(
            "{what}: refused: {} bytes with sha256 {sha}, the pointer says {} bytes with sha256 {} (truncated or damaged)",
            bytes.len(),
            pointer.size,
            pointer.sha256
        )));
    }
    let document = check(&bytes, source, held, &what)?;
    if document.serial != pointer.serial {
        return Err(malformed(format!(
            "{what}: refused: the document's serial {} is not the pointer's {}",
            document.serial, pointer.serial
        )));
    }
    let new_held = Held {
        serial: document.serial,
        sha256: sha,
        published_at: document.published_at,
        valid_until: document.valid_until,
        validators: new_validators,
    };
    let text = serde_json::to_vec(&new_held).map_err(|e| malformed(e.to_string()))?;
    tracing::info!(
        "fleet: serial {} ({} people, {} groups), published at {}, valid until {}",
        document.serial,
        document.people.len(),
        document.groups.len(),
        document.published_at,
        document.valid_until
    );
    Ok(Fetched {
        document,
        // the document before what names it
        save: vec![(DOCUMENT, bytes), (HELD, text)],
        new: true,
    })
}

/// `zt-agent status`'s line for a fleet host: the document held, its age and
/// how long it stays valid.
pub fn held_line(state: &StateDir, now: u64) -> Option<String> {
    let held = held_record(state)?;
    let left = if held.valid_until >= now {
        format!("valid for {} s more", held.valid_until - now)
    } else {
        format!("EXPIRED {} s ago", now - held.valid_until)
    };
    Some(format!(
        "fleet document: serial {}, published {} s ago, {left}",
        held.serial,
        now.saturating_sub(held.published_at)
    ))
}

/// What a fleet host holds (none on other hosts), for status and monitoring.
pub fn held_record(state: &StateDir) -> Option<Held> {
    serde_json::from_slice(&state.read_trusted(HELD).ok()??).ok()
}

#[cfg(test)]
mod sanity_tests {
    use super::*;

    #[test]
    fn even_a_signed_publication_has_bounds() {
        let now = super::super::now();
        sane(now, now, now + 7 * 86_400, "doc").unwrap();
        for (serial, published, valid, why) in [
            (now, now + 3600, now + 7200, "in the future"),
            (now, now, u64::MAX, "more than"),
            (u64::MAX - 1, now, now + 60, "runs far ahead"),
        ] {
            let e = sane(serial, published, valid, "doc")
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
