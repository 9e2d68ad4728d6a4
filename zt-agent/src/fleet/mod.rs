//! Fleets: one agent (the publisher) reads the IdP, allocates ids for the
//! whole fleet and publishes a signed, compressed document to a folder a web
//! server serves or to an S3 bucket; every other host (`[directory] kind =
//! "fleet"`) fetches it with conditional requests, verifies it and resolves it
//! with its own config, taking the published names and ids as given.
//!
//! - [`document`]: the document and its signed envelope.
//! - [`sign`]: signing keys (`zt-agent fleet-key new`).
//! - [`publish`]: the publisher: fleet ids, serial, object + pointer, pruning.
//! - [`fetch`]: the host: pointer, object, checks, the held serial.
//! - [`host`]: resolving a verified document with the host's own rules.
//! - [`s3`]: documents in an S3 bucket (requests signed by `rusty-s3`).

pub mod document;
pub mod fetch;
pub mod host;
pub mod pointer;
pub mod publish;
pub mod s3;
pub mod sign;

use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use toml::Spanned;

/// The pointer's name, in the folder or under the bucket's prefix.
pub const POINTER: &str = "current.json";
/// Where objects go, beside the pointer.
pub const OBJECTS: &str = "objects";

/// `[publish]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    /// A folder ("/srv/zt/fleet") or "s3://bucket/prefix".
    pub to: Spanned<String>,
    pub signing_key_file: Spanned<String>,
    /// Each publication's valid_until = its time + this.
    #[serde(default = "default_valid_for")]
    pub valid_for: Spanned<String>,
    pub s3_endpoint: Option<Spanned<String>>,
}

fn default_valid_for() -> Spanned<String> {
    Spanned::new(0..0, "7d".to_string())
}

/// `[publish]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishTarget {
    pub to: Location,
    pub signing_key_file: PathBuf,
    pub valid_for: Duration,
}

/// Where the documents are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The publisher's folder.
    Folder(PathBuf),
    /// A host's base URL, ending in '/'.
    Http(String),
    /// A bucket and a key prefix ("" or ending in '/'), at `endpoint`.
    S3 {
        endpoint: String,
        bucket: String,
        prefix: String,
    },
}

/// `[directory] kind = "fleet"`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSource {
    pub location: Location,
    pub public_keys: Vec<VerifyingKey>,
}

type Span = Option<std::ops::Range<usize>>;
type CheckError = (Span, &'static str, String);

/// The longest `valid_for`: a stolen old document stays usable this long.
pub const MAX_VALID_FOR: Duration = Duration::from_secs(400 * 24 * 3600);

fn s3_location(
    url: &str,
    endpoint: Option<&Spanned<String>>,
    url_key: &'static str,
    endpoint_key: &'static str,
    span: Span,
) -> Result<Location, CheckError> {
    let rest = url.strip_prefix("s3://").unwrap_or_default();
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !bucket_ok {
        return Err((
            span,
            url_key,
            format!("{bucket:?} is not an S3 bucket name (3-63 of a-z, 0-9, '-', '.')"),
        ));
    }
    if prefix.contains("..")
        || prefix
            .chars()
            .any(|c| c.is_control() || c == '?' || c == '#')
    {
        return Err((
            span,
            url_key,
            format!("{prefix:?} is not a plain key prefix"),
        ));
    }
    let prefix = match prefix.trim_end_matches('/') {
        "" => String::new(),
        p => format!("{p}/"),
    };
    let endpoint = endpoint.ok_or_else(|| {
        (
            span.clone(),
            endpoint_key,
            format!(
                "an s3:// location needs {endpoint_key} = \"https://s3.eu-central-1.amazonaws.com\""
            ),
        )
    })?;
    crate::config::check_key_url(endpoint.get_ref())
        .map_err(|why| (Some(endpoint.span()), endpoint_key, why))?;
    Ok(Location::S3 {
        endpoint: endpoint.get_ref().trim_end_matches('/').to_string(),
        bucket: bucket.to_string(),
        prefix,
    })
}

impl PublishConfig {
    pub fn check(&self) -> Result<PublishTarget, CheckError> {
        let to = self.to.get_ref();
        let span = Some(self.to.span());
        let location = if to.starts_with("s3://") {
            s3_location(
                to,
                self.s3_endpoint.as_ref(),
                "publish.to",
                "publish.s3_endpoint",
                span,
            )?
        } else if to.starts_with('/') && !to.contains(['\n', '\0']) {
            if let Some(e) = &self.s3_endpoint {
                return Err((
                    Some(e.span()),
                    "publish.s3_endpoint",
                    "only for an s3:// location".into(),
                ));
            }
            Location::Folder(PathBuf::from(to))
        } else {
            return Err((
                span,
                "publish.to",
                format!("{to:?} must be an absolute folder or \"s3://bucket/prefix\""),
            ));
        };
        let key = self.signing_key_file.get_ref();
        if !key.starts_with('/') {
            return Err((
                Some(self.signing_key_file.span()),
                "publish.signing_key_file",
                format!("{key:?} must be an absolute path"),
            ));
        }
        let v = self.valid_for.get_ref();
        let valid_for = humantime::parse_duration(v)
            .ok()
            .filter(|d| *d >= Duration::from_secs(1) && *d <= MAX_VALID_FOR)
            .ok_or_else(|| {
                let span = self.valid_for.span();
                (
                    (!span.is_empty()).then_some(span),
                    "publish.valid_for",
                    format!("{v:?} is not a duration between 1s and 400d, like \"7d\""),
                )
            })?;
        Ok(PublishTarget {
            to: location,
            signing_key_file: PathBuf::from(key),
            valid_for,
        })
    }
}

/// Checks `[directory] kind = "fleet"`: url, public_keys, s3_endpoint.
pub fn check_source(
    url: &Spanned<String>,
    public_keys: Option<&Spanned<Vec<Spanned<String>>>>,
    s3_endpoint: Option<&Spanned<String>>,
    here: Span,
) -> Result<FleetSource, CheckError> {
    let u = url.get_ref();
    let location = if u.starts_with("s3://") {
        s3_location(
            u,
            s3_endpoint,
            "directory.url",
            "directory.s3_endpoint",
            Some(url.span()),
        )?
    } else {
        crate::config::check_key_url(u).map_err(|why| (Some(url.span()), "directory.url", why))?;
        if u.contains(['?', '#']) {
            return Err((
                Some(url.span()),
                "directory.url",
                "a base URL has no query or fragment".into(),
            ));
        }
        if let Some(e) = s3_endpoint {
            return Err((
                Some(e.span()),
                "directory.s3_endpoint",
                "only for an s3:// url".into(),
            ));
        }
        Location::Http(format!("{}/", u.trim_end_matches('/')))
    };
    let keys = public_keys.ok_or_else(|| {
        (
            here,
            "directory.public_keys",
            "kind = \"fleet\" needs public_keys = [\"<the publisher's FILE.pub>\"]".to_string(),
        )
    })?;
    if keys.get_ref().is_empty() {
        return Err((
            Some(keys.span()),
            "directory.public_keys",
            "list at least one key (the line of the publisher's FILE.pub)".into(),
        ));
    }
    let public_keys = keys
        .get_ref()
        .iter()
        .map(|k| {
            sign::parse_public(k.get_ref())
                .map_err(|why| (Some(k.span()), "directory.public_keys", why))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FleetSource {
        location,
        public_keys,
    })
}

/// Unix seconds now.
pub fn now() -> u64 {
    crate::status::now()
}

#[cfg(test)]
mod tests {
    use crate::config::{AgentConfig, DirectorySource};

    fn parse(directory: &str, extra: &str) -> Result<AgentConfig, String> {
        AgentConfig::parse(
            &format!("[directory]\n{directory}\n[users]\ndomains = [\"example.com\"]\n{extra}"),
            "agent.toml",
        )
        .map_err(|e| e.0)
    }

    const KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

    #[test]
    fn a_fleet_host_config_is_checked_with_line_and_fix() {
        let ok = parse(
            &format!("kind = \"fleet\"\nurl = \"https://zt.example.com/fleet\"\npublic_keys = [\"{KEY}\"]"),
            "",
        )
        .unwrap();
        let DirectorySource::Fleet(f) = &ok.directory.source else {
            panic!("not a fleet source");
        };
        assert_eq!(
            f.location,
            super::Location::Http("https://zt.example.com/fleet/".into())
        );
        let e = parse("kind = \"fleet\"\nurl = \"https://zt.example.com/\"", "").unwrap_err();
        assert!(e.contains("needs public_keys"), "{e}");
        let e = parse(
            "kind = \"fleet\"\nurl = \"https://zt.example.com/\"\npublic_keys = [\"AAAA\"]",
            "",
        )
        .unwrap_err();
        assert!(e.starts_with("agent.toml:4:") && e.contains("32"), "{e}");
        let e = parse(
            &format!(
                "kind = \"fleet\"\nurl = \"http://zt.example.com/\"\npublic_keys = [\"{KEY}\"]"
            ),
            "",
        )
        .unwrap_err();
        assert!(e.contains("must be https"), "{e}");
        let e = parse(
            &format!("kind = \"fleet\"\nurl = \"s3://zt-fleet/prod\"\npublic_keys = [\"{KEY}\"]"),
            "",
        )
        .unwrap_err();
        assert!(e.contains("s3_endpoint"), "{e}");
        let e = parse(
            &format!("kind = \"file\"\npath = \"/d.json\"\npublic_keys = [\"{KEY}\"]"),
            "",
        )
        .unwrap_err();
        assert!(e.contains("not a key of kind = \"file\""), "{e}");
        let e = parse(
            &format!(
                "kind = \"fleet\"\nurl = \"https://zt.example.com/\"\npublic_keys = [\"{KEY}\"]"
            ),
            "[publish]\nto = \"/srv\"\nsigning_key_file = \"/k\"\n",
        )
        .unwrap_err();
        assert!(e.contains("a fleet host does not publish"), "{e}");
    }

    #[test]
    fn a_publish_section_is_checked() {
        let file = "kind = \"file\"\npath = \"/d.json\"";
        let c = parse(
            file,
            "[publish]\nto = \"/srv/zt/fleet\"\nsigning_key_file = \"/etc/zt/fleet.key\"\n",
        )
        .unwrap();
        let t = c.publish_target.unwrap();
        assert_eq!(t.valid_for, std::time::Duration::from_secs(7 * 86400));
        let e = parse(
            file,
            "[publish]\nto = \"srv\"\nsigning_key_file = \"/etc/zt/fleet.key\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("publish.to") && e.contains("absolute folder"),
            "{e}"
        );
        let e = parse(
            file,
            "[publish]\nto = \"/srv\"\nsigning_key_file = \"/k\"\nvalid_for = \"forever\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("agent.toml:9:") && e.contains("valid_for"),
            "{e}"
        );
        let c = parse(
            file,
            "[publish]\nto = \"s3://zt-fleet/prod/\"\nsigning_key_file = \"/k\"\ns3_endpoint = \"https://s3.example.com\"\n",
        )
        .unwrap();
        assert_eq!(
            c.publish_target.unwrap().to,
            super::Location::S3 {
                endpoint: "https://s3.example.com".into(),
                bucket: "zt-fleet".into(),
                prefix: "prod/".into()
            }
        );
    }
}
