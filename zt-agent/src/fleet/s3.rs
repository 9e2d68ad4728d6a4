//! Fleet documents in an S3-compatible bucket. Requests are SigV4 presigned
//! URLs made by `rusty-s3` (no hand-written signer) and sent with the agent's
//! one HTTP client. Credentials come from the environment
//! (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN),
//! the region from AWS_REGION (default us-east-1). Path-style URLs, which
//! every S3-compatible server understands.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::OBJECTS;
use super::publish::{Destination, KEEP_OBJECTS, Pointer};
use crate::http::{Got, Http, Validators};

/// How long a presigned request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(300);

pub struct S3 {
    http: Http,
    bucket: Bucket,
    credentials: Option<Credentials>,
    prefix: String,
}

impl S3 {
    pub fn new(http: Http, endpoint: &str, bucket: &str, prefix: &str) -> Result<S3, String> {
        let url = endpoint
            .parse()
            .map_err(|e| format!("s3 endpoint {endpoint:?}: {e}"))?;
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        let bucket = Bucket::new(url, UrlStyle::Path, bucket.to_string(), region)
            .map_err(|e| format!("s3 bucket {bucket:?} at {endpoint}: {e}"))?;
        Ok(S3 {
            http,
            bucket,
            credentials: Credentials::from_env(),
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A presigned GET for `name` (relative to the prefix).
    pub fn get_url(&self, name: &str) -> String {
        self.bucket
            .get_object(self.credentials.as_ref(), &self.key(name))
            .sign(SIGNED_FOR)
            .to_string()
    }

    /// A conditional GET of `name`.
    pub fn get(&self, name: &str, validators: &Validators, limit: u64) -> Result<Got, String> {
        self.http
            .get_conditional(&self.get_url(name), validators, &[], limit)
            .map_err(|e| redact(&e))
    }

    fn put(&self, name: &str, bytes: &[u8], content_type: &str) -> Result<(), String> {
        let url = self
            .bucket
            .put_object(self.credentials.as_ref(), &self.key(name))
            .sign(SIGNED_FOR);
        let response = self
            .http
            .agent()
            .put(url.as_str())
            .header("Content-Type", content_type)
            .send(bytes)
            .map_err(|e| redact(&format!("PUT {url}: {e}")))?;
        match response.status().as_u16() {
            200 | 201 | 204 => Ok(()),
            s => Err(format!("PUT s3 {}: HTTP {s}", self.key(name))),
        }
    }
}

/// A presigned URL carries a signature: never in a message.
fn redact(message: &str) -> String {
    match message.find("X-Amz-") {
        Some(i) => format!("{}...", &message[..i.saturating_sub(1)]),
        None => message.to_string(),
    }
}

impl Destination for S3 {
    fn read_pointer(&self) -> Result<Option<(Pointer, SystemTime)>, String> {
        match self.get(super::POINTER, &Validators::default(), 1 << 16)? {
            Got::Body { body, .. } => Ok(serde_json::from_slice(&body)
                .ok()
                .map(|p| (p, SystemTime::now()))),
            Got::Status(404) => Ok(None),
            Got::Status(s) => Err(format!("GET s3 {}: HTTP {s}", self.key(super::POINTER))),
            Got::NotModified => Ok(None),
        }
    }

    fn put_object(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        self.put(name, bytes, "application/octet-stream")
    }

    fn get_object(&self, name: &str, limit: u64) -> Result<Vec<u8>, String> {
        match self.get(name, &Validators::default(), limit)? {
            Got::Body { body, .. } => Ok(body),
            Got::Status(s) => Err(format!("GET s3 {}: HTTP {s}", self.key(name))),
            Got::NotModified => Err(format!("GET s3 {}: 304 without validators", self.key(name))),
        }
    }

    fn put_pointer(&self, bytes: &[u8], _not_before: Option<SystemTime>) -> Result<(), String> {
        // S3's ETag is the content's MD5: a new serial is a new ETag
        self.put(super::POINTER, bytes, "application/json")
    }

    fn prune(&self, keep: &HashSet<String>) -> Result<usize, String> {
        let mut list = self.bucket.list_objects_v2(self.credentials.as_ref());
        list.with_prefix(self.key(&format!("{OBJECTS}/")));
        let url = list.sign(SIGNED_FOR);
        let mut response = self
            .http
            .agent()
            .get(url.as_str())
            .call()
            .map_err(|e| redact(&format!("LIST s3: {e}")))?;
        if response.status().as_u16() != 200 {
            return Err(format!("LIST s3: HTTP {}", response.status().as_u16()));
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .map_err(|e| format!("LIST s3: {e}"))?;
        let listing = rusty_s3::actions::ListObjectsV2::parse_response(&text)
            .map_err(|e| format!("LIST s3: {e}"))?;
        let listed: Vec<(String, String)> = listing
            .contents
            .into_iter()
            .map(|o| (o.key, o.last_modified))
            .collect();
        let mut removed = 0;
        for key in prunable(&listed, &self.prefix, keep, &jiff_cutoff()) {
            let object = key;
            let url = self
                .bucket
                .delete_object(self.credentials.as_ref(), &object)
                .sign(SIGNED_FOR);
            if self.http.agent().delete(url.as_str()).call().is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// `now - KEEP_OBJECTS` as S3 writes LastModified (2006-01-02T15:04:05.000Z).
/// Which listed objects (key, LastModified in RFC 3339) may go: those not in
/// `keep` whose replacement (the next object by serial, the leading number
/// of its name) was written before `cutoff`. S3 cannot touch an object when
/// it is replaced, as a folder's retire does, and its own write time says
/// nothing about how long readers may still fetch it; the newest object has
/// no replacement yet and always stays.
fn prunable(
    listed: &[(String, String)],
    prefix: &str,
    keep: &HashSet<String>,
    cutoff: &str,
) -> Vec<String> {
    let serial = |key: &str| -> u64 {
        let name = key.rsplit('/').next().unwrap_or(key);
        name.split('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let mut sorted: Vec<&(String, String)> = listed.iter().collect();
    sorted.sort_by_key(|(k, _)| serial(k));
    let mut out = Vec::new();
    for (i, (key, _)) in sorted.iter().enumerate() {
        let name = key.strip_prefix(prefix).unwrap_or(key);
        // RFC 3339 times in one format compare as strings
        let replaced_long_ago = sorted
            .get(i + 1)
            .is_some_and(|(_, next)| next.as_str() < cutoff);
        if replaced_long_ago && !keep.contains(name) {
            out.push(key.clone());
        }
    }
    out
}

fn jiff_cutoff() -> String {
    let t = SystemTime::now() - KEEP_OBJECTS;
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_goes_an_hour_after_it_was_replaced_not_after_it_was_written() {
        let listed = vec![
            (
                "p/objects/100-a.ztf".to_string(),
                "2026-11-25T10:00:00.000Z".to_string(),
            ),
            (
                "p/objects/200-b.ztf".to_string(),
                "2026-11-25T12:58:00.000Z".to_string(),
            ),
            (
                "p/objects/300-c.ztf".to_string(),
                "2026-11-25T12:59:00.000Z".to_string(),
            ),
            (
                "p/objects/50-z.ztf".to_string(),
                "2026-11-25T09:00:00.000Z".to_string(),
            ),
        ];
        let keep: HashSet<String> = ["objects/300-c.ztf".to_string()].into();
        // cutoff: an hour before 13:00
        let gone = prunable(&listed, "p/", &keep, "2026-11-25T12:00:00.000Z");
        // 50 was replaced by 100 at 10:00: it goes; 100 was replaced by 200
        // only at 12:58 (written at 10:00): it stays; 200 and 300 stay
        assert_eq!(gone, ["p/objects/50-z.ztf"]);
    }
}
