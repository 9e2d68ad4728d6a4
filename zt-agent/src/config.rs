//! /etc/zt/agent.toml: the only configuration zt reads. Strict: an unknown key,
//! a wrong type or an impossible value is refused with file, line and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::identity::{idmap, names};

pub const DEFAULT_PATH: &str = "/etc/zt/agent.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub directory: DirectoryConfig,
    #[serde(default)]
    pub users: UsersConfig,
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    pub kind: DirectoryKind,
    /// For `kind = "file"`: the JSON document.
    pub path: Option<PathBuf>,
    #[serde(default = "default_interval", deserialize_with = "sync_interval")]
    pub sync_interval: Duration,
    /// A sync that would remove more than this share of users is held back
    /// unless forced (`zt-agent sync --once --force`).
    #[serde(default = "default_max_removal", deserialize_with = "percent")]
    pub max_removal_percent: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectoryKind {
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NameFrom {
    /// alice@example.com -> alice: the principal Cloudflare Access puts in certificates.
    EmailLocalPart,
    /// The whole email as the user name.
    Email,
    /// The directory's `username` field.
    Username,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersConfig {
    #[serde(default = "default_name_from")]
    pub name_from: NameFrom,
    /// Emails outside these domains are ignored. Empty = any domain (not allowed
    /// with email-local-part, where two domains would fight over one name).
    #[serde(default = "no_domains")]
    pub domains: Spanned<Vec<String>>,
    #[serde(default = "default_home", deserialize_with = "home_template")]
    pub home: String,
    #[serde(default = "default_shell", deserialize_with = "absolute_path")]
    pub shell: String,
    /// IdP object id or email -> user name, for people whose derived name is
    /// taken or unsuitable.
    #[serde(default)]
    pub name_overrides: BTreeMap<String, Spanned<String>>,
    /// More names never handed out, beyond the built-in list (service accounts
    /// this site's packages create).
    #[serde(default)]
    pub reserved_names: Vec<Spanned<String>>,
    /// Where directory-provided uids (uidNumber-style) are accepted besides zt's
    /// own range, e.g. "10000-59999". None: only zt's own range.
    #[serde(default)]
    pub directory_uid_range: Option<Spanned<String>>,
}

impl Default for UsersConfig {
    fn default() -> Self {
        UsersConfig {
            name_from: default_name_from(),
            domains: no_domains(),
            home: default_home(),
            shell: default_shell(),
            name_overrides: BTreeMap::new(),
            reserved_names: Vec::new(),
            directory_uid_range: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// The IdP's immutable object id (never the display name: anyone may be able
    /// to create a group called "admins").
    pub id: Spanned<String>,
    /// POSIX group name on this host.
    pub name: Spanned<String>,
    /// Members may log in on this host (they become visible users).
    #[serde(default)]
    pub login: bool,
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_max_removal() -> u8 {
    50
}
fn default_name_from() -> NameFrom {
    NameFrom::EmailLocalPart
}
fn no_domains() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}
fn default_home() -> String {
    "/home/{name}".into()
}
fn default_shell() -> String {
    "/bin/bash".into()
}

fn sync_interval<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    let v = humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "{s:?} is not a duration like \"60s\" or \"5m\": {e}"
        ))
    })?;
    if v < Duration::from_secs(5) || v > Duration::from_secs(24 * 3600) {
        return Err(serde::de::Error::custom(format!(
            "sync_interval {s:?} must be between 5s and 24h"
        )));
    }
    Ok(v)
}

fn percent<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let v = i64::deserialize(d)?;
    u8::try_from(v)
        .ok()
        .filter(|v| *v <= 100)
        .ok_or_else(|| serde::de::Error::custom(format!("{v} is not a percentage (0 to 100)")))
}

fn absolute_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if !s.starts_with('/') || s.contains([':', '\n', '\0']) {
        return Err(serde::de::Error::custom(format!(
            "{s:?} must be an absolute path without ':'"
        )));
    }
    Ok(s)
}

fn home_template<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = absolute_path(d)?;
    if !s.contains("{name}") {
        return Err(serde::de::Error::custom(format!(
            "home {s:?} must contain {{name}}, or everyone would share one home directory"
        )));
    }
    Ok(s)
}

/// A configuration error, already rendered with file, line and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

impl AgentConfig {
    /// Reads the config, which must be trusted: it decides who logs in and who
    /// gets root, so a file anyone but root can change is refused.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = crate::trusted_file::read(path, crate::trusted_file::Kind::Config)
            .map_err(ConfigError)?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates; `origin` names the file in messages.
    pub fn parse(text: &str, origin: &str) -> Result<AgentConfig, ConfigError> {
        let config: AgentConfig = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| line_col(text, s.start));
            match at {
                Some((l, c)) => ConfigError(format!("{origin}:{l}:{c}: {}", e.message())),
                None => ConfigError(format!("{origin}: {}", e.message())),
            }
        })?;
        let fail = |span: std::ops::Range<usize>, key: &str, msg: String| {
            let (l, c) = line_col(text, span.start);
            ConfigError(format!("{origin}:{l}:{c}: {key}: {msg}"))
        };
        match config.directory.kind {
            DirectoryKind::File if config.directory.path.is_none() => {
                return Err(ConfigError(format!(
                    "{origin}: [directory] kind = \"file\" needs path = \"/etc/zt/directory.json\""
                )));
            }
            DirectoryKind::File => {}
        }
        let domains = &config.users.domains;
        if domains.get_ref().is_empty() && config.users.name_from == NameFrom::EmailLocalPart {
            return Err(ConfigError(format!(
                "{origin}: [users] domains: name_from = \"email-local-part\" needs at least one domain \
                 (alice@a.com and alice@b.com would both become \"alice\")"
            )));
        }
        for d in domains.get_ref() {
            if d.is_empty() || d.contains('@') || d.chars().any(|c| c.is_whitespace()) {
                return Err(fail(
                    domains.span(),
                    "users.domains",
                    format!("{d:?} is not a domain name"),
                ));
            }
        }
        for (who, name) in &config.users.name_overrides {
            if let Err(why) = names::validate(name.get_ref(), false) {
                return Err(fail(
                    name.span(),
                    &format!("users.name_overrides.{who:?}"),
                    why,
                ));
            }
        }
        for name in &config.users.reserved_names {
            if let Err(why) = names::validate(name.get_ref(), false) {
                return Err(fail(name.span(), "users.reserved_names", why));
            }
        }
        if let Some(range) = &config.users.directory_uid_range {
            idmap::parse_directory_range(range.get_ref())
                .map_err(|why| fail(range.span(), "users.directory_uid_range", why))?;
        }
        let mut ids = BTreeMap::new();
        let mut group_names = BTreeMap::new();
        for g in &config.groups {
            if g.id.get_ref().trim().is_empty() {
                return Err(fail(
                    g.id.span(),
                    "groups.id",
                    "must be the IdP group's object id".into(),
                ));
            }
            if let Err(why) = names::validate(g.name.get_ref(), false) {
                return Err(fail(g.name.span(), "groups.name", why));
            }
            if ids.insert(g.id.get_ref().clone(), ()).is_some() {
                return Err(fail(
                    g.id.span(),
                    "groups.id",
                    format!("{:?} is listed twice", g.id.get_ref()),
                ));
            }
            if group_names.insert(g.name.get_ref().clone(), ()).is_some() {
                return Err(fail(
                    g.name.span(),
                    "groups.name",
                    format!("{:?} is used twice", g.name.get_ref()),
                ));
            }
        }
        Ok(config)
    }

    pub fn domains(&self) -> &[String] {
        self.users.domains.get_ref()
    }

    /// `[users] directory_uid_range`, already validated by `parse`.
    pub fn directory_uid_range(&self) -> Option<std::ops::RangeInclusive<u32>> {
        let range = self.users.directory_uid_range.as_ref()?;
        idmap::parse_directory_range(range.get_ref()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[directory]
kind = "file"
path = "/etc/zt/directory.json"
sync_interval = "60s"

[users]
name_from = "email-local-part"
domains = ["example.com"]
home = "/home/{name}"
shell = "/bin/bash"

[[groups]]
id = "6b1f0d7e-aaaa"
name = "sre"
login = true
"#;

    fn err(text: &str) -> String {
        AgentConfig::parse(text, "agent.toml").unwrap_err().0
    }

    #[test]
    fn the_documented_example_loads() {
        let c = AgentConfig::parse(GOOD, "agent.toml").unwrap();
        assert_eq!(c.directory.sync_interval, Duration::from_secs(60));
        assert_eq!(c.directory.max_removal_percent, 50);
        assert_eq!(c.groups[0].name.get_ref(), "sre");
        assert!(c.groups[0].login);
        assert_eq!(c.domains(), ["example.com"]);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = err(&GOOD.replace("shell = \"/bin/bash\"", "shel = \"/bin/bash\""));
        assert!(e.starts_with("agent.toml:11:1:"), "{e}");
        assert!(e.contains("unknown field `shel`"), "{e}");
    }

    #[test]
    fn wrong_type_is_refused_with_line() {
        let e = err(&GOOD.replace("login = true", "login = \"yes\""));
        assert!(e.starts_with("agent.toml:16:"), "{e}");
    }

    #[test]
    fn impossible_values_are_refused_with_line() {
        let e = err(&GOOD.replace("\"60s\"", "\"0s\""));
        assert!(
            e.starts_with("agent.toml:5:") && e.contains("between 5s and 24h"),
            "{e}"
        );
        let e = err(&GOOD.replace("\"60s\"", "\"soon\""));
        assert!(e.contains("not a duration"), "{e}");
        let e = err(&GOOD.replace("/home/{name}", "/home/shared"));
        assert!(
            e.starts_with("agent.toml:10:") && e.contains("{name}"),
            "{e}"
        );
        let e = err(&GOOD.replace("name = \"sre\"", "name = \"Bad Name\""));
        assert!(
            e.starts_with("agent.toml:15:") && e.contains("groups.name"),
            "{e}"
        );
        let e = err(&GOOD.replace("kind = \"file\"", "kind = \"ldap\""));
        assert!(e.starts_with("agent.toml:3:"), "{e}");
    }

    #[test]
    fn duplicate_groups_are_refused() {
        let twice = format!("{GOOD}\n[[groups]]\nid = \"6b1f0d7e-aaaa\"\nname = \"ops\"\n");
        let e = err(&twice);
        assert!(
            e.contains("listed twice") && e.starts_with("agent.toml:19:"),
            "{e}"
        );
    }

    #[test]
    fn local_part_names_need_a_domain_list() {
        let e = err(&GOOD.replace("domains = [\"example.com\"]", ""));
        assert!(e.contains("needs at least one domain"), "{e}");
    }

    #[test]
    fn reserved_names_and_directory_uid_range_are_validated() {
        let with = |extra: &str| {
            GOOD.replace(
                "shell = \"/bin/bash\"",
                &format!("shell = \"/bin/bash\"\n{extra}"),
            )
        };
        let c = AgentConfig::parse(
            &with("reserved_names = [\"acme\"]\ndirectory_uid_range = \"10000-59999\""),
            "agent.toml",
        )
        .unwrap();
        assert_eq!(c.directory_uid_range(), Some(10_000..=59_999));
        assert_eq!(c.users.reserved_names[0].get_ref(), "acme");
        let e = err(&with("reserved_names = [\"Not OK\"]"));
        assert!(
            e.starts_with("agent.toml:12:") && e.contains("reserved_names"),
            "{e}"
        );
        let e = err(&with("directory_uid_range = \"61000-62000\""));
        assert!(
            e.starts_with("agent.toml:12:") && e.contains("dynamic"),
            "{e}"
        );
        let e = err(&with("directory_uid_range = \"1879048192-1879049000\""));
        assert!(e.contains("zt's hashed user ids"), "{e}");
        assert_eq!(
            AgentConfig::parse(GOOD, "a").unwrap().directory_uid_range(),
            None
        );
    }

    #[test]
    fn bad_override_is_refused() {
        let e = err(&GOOD.replace(
            "shell = \"/bin/bash\"",
            "shell = \"/bin/bash\"\nname_overrides = { \"alice@example.com\" = \"Älice\" }",
        ));
        assert!(e.contains("name_overrides"), "{e}");
    }
}
