//! /etc/zt/agent.toml: the only configuration zt reads. Strict: an unknown key,
//! a wrong type or an impossible value is refused with file, line and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::identity::{idmap, names};
use crate::resolve::grants::LocalGroupRule;
use crate::sudo::file::SudoRule;
use crate::sudo::rule::{self as sudo_rule, Rights};

pub const DEFAULT_PATH: &str = "/etc/zt/agent.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub directory: DirectoryConfig,
    #[serde(default)]
    pub users: UsersConfig,
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    /// Token issuers whose tokens pam_zt accepts, with where their keys are.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    #[serde(default)]
    pub login: LoginConfig,
    #[serde(default)]
    pub http: HttpConfig,
    /// `[ssh]`: what people's SSH certificates carry as principals.
    #[serde(default)]
    pub ssh: SshConfig,
    /// `[[shared_accounts]]`: accounts the members of IdP groups log in to
    /// with their own certificates.
    #[serde(default)]
    pub shared_accounts: Vec<SharedAccountConfig>,
    /// `[[sudo]]`: sudo rights for the members of IdP groups.
    #[serde(default)]
    pub sudo: Vec<SudoConfig>,
    /// `[[local_groups]]`: existing local groups the members of IdP groups get.
    #[serde(default)]
    pub local_groups: Vec<LocalGroupsConfig>,
    /// `[monitoring]`: a node_exporter textfile rewritten after every sync.
    #[serde(default)]
    pub monitoring: crate::monitoring::MonitoringConfig,
    /// `[publish]`: this agent also publishes a signed fleet document.
    #[serde(default)]
    pub publish: Option<crate::fleet::PublishConfig>,
    /// `publish`, checked by `parse`.
    #[serde(skip)]
    pub publish_target: Option<crate::fleet::PublishTarget>,
    /// `issuers`, checked and resolved (iss, key source) by `parse`.
    #[serde(skip)]
    pub issuer_specs: Vec<IssuerSpec>,
    /// `sudo`, checked by `parse`, each with where it is written.
    #[serde(skip)]
    pub sudo_rules: Vec<SudoRule>,
    /// `local_groups`, with where each is written.
    #[serde(skip)]
    pub local_group_rules: Vec<LocalGroupRule>,
    /// The file this config was read from (for the sudoers header and messages).
    #[serde(skip)]
    pub origin: String,
}

/// `[[sudo]]`: either `rule` (the sudoers right-hand side, as written) or
/// `commands` with `run_as` and `authenticate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SudoConfig {
    /// The IdP group id (one of the `[[groups]]` ids).
    pub group: Spanned<String>,
    pub rule: Option<Spanned<String>>,
    /// Default "root".
    pub run_as: Option<Spanned<String>>,
    pub commands: Option<Spanned<Vec<Spanned<String>>>>,
    /// false: NOPASSWD. Default true.
    pub authenticate: Option<Spanned<bool>>,
}

/// `[[local_groups]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalGroupsConfig {
    /// The IdP group id (one of the `[[groups]]` ids).
    pub group: Spanned<String>,
    /// Names of groups in this host's /etc/group.
    pub grant: Spanned<Vec<Spanned<String>>>,
    /// Needed to grant a group that is as good as root (see
    /// `resolve::grants::PRIVILEGED`).
    #[serde(default)]
    pub allow_privileged: bool,
}

/// `[[issuers]]` as written; `parse` checks it and fills `issuer_specs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    pub kind: Spanned<IssuerKind>,
    /// cloudflare-access: the team name (a DNS label): iss = https://<team>.cloudflareaccess.com.
    pub team: Option<Spanned<String>>,
    /// cloudflare-access: a federal (FedRAMP) account: <team>.fed.cloudflareaccess.com.
    #[serde(default)]
    pub fedramp: bool,
    /// oidc: the issuer URL, exactly as tokens carry it in `iss`.
    pub issuer: Option<Spanned<String>>,
    /// Accepted `aud` values: Cloudflare AUD tags, OIDC client ids.
    pub audiences: Spanned<Vec<String>>,
    /// oidc: the claim naming the person (email, preferred_username, upn, sub).
    pub claim: Option<Spanned<String>>,
    /// cloudflare-access: where the keys are, instead of <iss>/cdn-cgi/access/certs.
    pub certs_url: Option<Spanned<String>>,
    /// oidc: the JWKS URL, instead of discovery.
    pub jwks_url: Option<Spanned<String>>,
    /// oidc: this issuer answers device-code sign-ins (pam_zt `device`).
    #[serde(default)]
    pub device_login: Option<Spanned<bool>>,
    /// oidc, device_login: the public client the agent signs in as; must be
    /// one of `audiences` (its ID tokens carry it as `aud`).
    pub client_id: Option<Spanned<String>>,
    /// oidc, device_login: the scopes asked for (default openid email profile).
    pub scopes: Option<Spanned<Vec<String>>>,
    /// oidc: every token of this issuer (pasted or device) must show MFA.
    #[serde(default)]
    pub require_mfa: Option<Spanned<bool>>,
    /// oidc, require_mfa: `acr` values that count as MFA besides `amr` "mfa".
    pub mfa_acr: Option<Spanned<Vec<String>>>,
    /// oidc, device_login: instead of discovery's.
    pub device_authorization_endpoint: Option<Spanned<String>>,
    /// oidc, device_login: instead of discovery's.
    pub token_endpoint: Option<Spanned<String>>,
    /// oidc, device_login: give up waiting for a sign-in after this (default 5m).
    pub device_timeout: Option<Spanned<String>>,
    /// oidc, device_login: at most this many pending sign-ins on this host
    /// (default 20), a quarter of them kept for local logins (sudo, su, the
    /// console); at most 2 per user for remote and 2 for local logins.
    pub device_max_pending: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssuerKind {
    CloudflareAccess,
    Oidc,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS document (Cloudflare's certs document is one, with extra fields).
    Jwks(String),
    /// OIDC discovery: this URL's `jwks_uri`, which must name the same issuer.
    Discovery(String),
}

/// One issuer, checked: what goes into the private file, and where its keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSpec {
    /// `zt_snapshot::format::issuer_kind`.
    pub kind: u32,
    pub iss: String,
    pub claim: String,
    pub audiences: Vec<String>,
    pub keys: KeySource,
    /// Tokens must show MFA (`amr` contains "mfa", or an `acr` of `mfa_acr`).
    pub require_mfa: bool,
    pub mfa_acr: Vec<String>,
    /// Device-code sign-ins through this issuer, if `device_login = true`.
    pub device: Option<DeviceSpec>,
}

/// Default `device_timeout`.
pub const DEVICE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default `device_max_pending` (per host).
pub const DEVICE_MAX_PENDING: u32 = 20;
/// Pending device sign-ins per user, whatever the host limit.
pub const DEVICE_MAX_PER_USER: usize = 2;

/// An issuer's device-code sign-in (RFC 8628), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    pub client_id: String,
    pub scopes: Vec<String>,
    /// `<iss>/.well-known/openid-configuration`: where the endpoints not
    /// configured come from.
    pub discovery: String,
    pub device_authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub timeout: Duration,
    pub max_pending: usize,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// Past this age of the last good sync, directory users cannot log in.
    /// None: no limit.
    #[serde(default, deserialize_with = "max_offline")]
    pub max_offline: Option<Duration>,
}

/// `[ssh]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// The principal forms a person's certificate may carry; each published
    /// user gets one principal per form. Default: the email's local part
    /// (what Cloudflare Access puts in its short-lived certificates).
    #[serde(default = "default_principals")]
    pub principals: Spanned<Vec<NameFrom>>,
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            principals: default_principals(),
        }
    }
}

fn default_principals() -> Spanned<Vec<NameFrom>> {
    Spanned::new(0..0, vec![NameFrom::EmailLocalPart])
}

/// `[[shared_accounts]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedAccountConfig {
    /// The login name: a local account or a directory user.
    pub name: Spanned<String>,
    /// IdP group ids (each one of the `[[groups]]` ids) whose members may log in as it.
    pub groups: Spanned<Vec<Spanned<String>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Extra CA certificates (PEM), trusted besides the system's.
    #[serde(default, deserialize_with = "optional_absolute_path")]
    pub ca_file: Option<PathBuf>,
}

/// The claims that may name the person behind a token.
pub const CLAIMS: [&str; 4] = ["email", "preferred_username", "upn", "sub"];

/// A URL keys or discovery may be fetched from: https, or http on a loopback
/// address (tests). No user info, no whitespace.
pub fn check_key_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) || authority.contains('@') {
        return Err(format!("{url:?} is not a plain URL"));
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        _ => Err(format!(
            "{url:?} must be https (plain http only on a loopback address, for tests)"
        )),
    }
}

/// A URL an issuer's discovery document names (its JWKS, its token or
/// device endpoint): `check_key_url`'s rules, and the loopback exception
/// (plain http, a local host) is for tests: a document may use it only when
/// the configured issuer `iss` is itself local.
pub fn check_discovered_url(url: &str, iss: &str) -> Result<(), String> {
    check_key_url(url)?;
    let https = url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    if (!https || is_loopback_url(url)) && !is_loopback_url(iss) {
        return Err(format!(
            "{url:?} must be https off loopback for issuer {iss:?}"
        ));
    }
    Ok(())
}

/// Whether `url` names a loopback host (any scheme); `false` for a non-URL.
pub fn is_loopback_url(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    is_loopback(host)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A Cloudflare team name: one DNS label.
fn check_team(team: &str) -> Result<(), String> {
    let ok = !team.is_empty()
        && team.len() <= 63
        && team
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !team.starts_with('-')
        && !team.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{team:?} is not a team name (lowercase letters, digits and '-', at most 63, the <team> of <team>.cloudflareaccess.com)"
        ))
    }
}

/// `[directory]`: one flat table for every kind (the keys of the other kinds
/// are refused by `parse`, naming the kind they belong to).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    pub kind: Spanned<DirectoryKind>,
    /// For `kind = "file"`: the JSON document.
    pub path: Option<PathBuf>,
    #[serde(default = "default_interval", deserialize_with = "sync_interval")]
    pub sync_interval: Duration,
    /// A sync that would remove more than this share of users is held back
    /// unless forced (`zt-agent sync --once --force`).
    #[serde(default = "default_max_removal", deserialize_with = "percent")]
    pub max_removal_percent: u8,
    /// entra: the tenant (directory) id or its primary domain.
    pub tenant_id: Option<Spanned<String>>,
    /// entra, keycloak: the application's client id; okta: a service app's.
    pub client_id: Option<Spanned<String>>,
    /// entra, keycloak: a file holding the client secret.
    pub client_secret_file: Option<Spanned<String>>,
    /// entra: a certificate (PEM) instead of a secret, with private_key_file.
    pub certificate_file: Option<Spanned<String>>,
    /// entra, okta: the private key of certificate / service-app credentials
    /// (okta's not yet supported).
    pub private_key_file: Option<Spanned<String>>,
    /// entra: the Microsoft Graph base (national clouds, proxies, tests).
    pub graph_url: Option<Spanned<String>>,
    /// entra: the Microsoft identity platform base.
    pub login_url: Option<Spanned<String>>,
    /// okta: the organisation's URL (https://acme.okta.com).
    pub org_url: Option<Spanned<String>>,
    /// scim, okta: a file holding the API token.
    pub token_file: Option<Spanned<String>>,
    /// google: the service account's JSON key file.
    pub service_account_file: Option<Spanned<String>>,
    /// google: the admin the service account acts as (domain-wide delegation).
    pub subject: Option<Spanned<String>>,
    /// google: the customer id (default "my_customer": the admin's own).
    pub customer: Option<Spanned<String>>,
    /// google: the Admin SDK base (tests, proxies).
    pub api_url: Option<Spanned<String>>,
    /// google: the token endpoint (tests, proxies).
    pub token_url: Option<Spanned<String>>,
    /// scim: the service's base (https://idp.example.com/scim/v2);
    /// keycloak: the server's base (https://sso.example.com).
    pub url: Option<Spanned<String>>,
    /// keycloak: the realm.
    pub realm: Option<Spanned<String>>,
    /// fleet: the publishers' Ed25519 public keys (base64; several for rotation).
    pub public_keys: Option<Spanned<Vec<Spanned<String>>>>,
    /// fleet with an s3:// url: the S3 endpoint (credentials from the environment).
    pub s3_endpoint: Option<Spanned<String>>,
    /// Where the people and groups come from, checked by `parse`.
    #[serde(skip, default)]
    pub source: DirectorySource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectoryKind {
    File,
    Scim,
    Entra,
    Keycloak,
    Okta,
    Google,
    Fleet,
}

impl DirectoryKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            DirectoryKind::File => "file",
            DirectoryKind::Scim => "scim",
            DirectoryKind::Entra => "entra",
            DirectoryKind::Keycloak => "keycloak",
            DirectoryKind::Okta => "okta",
            DirectoryKind::Google => "google",
            DirectoryKind::Fleet => "fleet",
        }
    }
}

/// `[directory]`, checked: the kind with exactly its settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DirectorySource {
    /// Only before `parse` has run.
    #[default]
    Unchecked,
    File {
        path: PathBuf,
    },
    Scim(ScimSource),
    Entra(EntraSource),
    Keycloak(KeycloakSource),
    Okta(OktaSource),
    Google(GoogleSource),
    Fleet(crate::fleet::FleetSource),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleSource {
    pub service_account_file: PathBuf,
    pub subject: String,
    pub customer: String,
    /// Without a trailing '/'.
    pub api_url: String,
    pub token_url: String,
}

pub const DEFAULT_GOOGLE_API_URL: &str = "https://admin.googleapis.com";
pub const DEFAULT_GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OktaSource {
    /// Without a trailing '/'.
    pub org_url: String,
    pub credential: OktaCredential,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OktaCredential {
    /// An API token in this file (sent as `SSWS <token>`).
    ApiToken(PathBuf),
    /// An API service app: its client id and the private key whose public
    /// half is registered with it (private_key_jwt client credentials).
    ServiceApp {
        client_id: String,
        private_key_file: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimSource {
    /// The base, without a trailing '/': `<url>/Users`, `<url>/Groups`.
    pub url: String,
    pub token_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraSource {
    pub tenant_id: String,
    pub client_id: String,
    pub credential: EntraCredential,
    /// Without a trailing '/'.
    pub graph_url: String,
    /// Without a trailing '/'.
    pub login_url: String,
}

/// How the agent proves it is the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntraCredential {
    /// A client secret, in this file.
    Secret(PathBuf),
    /// A certificate uploaded to the app registration (PEM) and its private
    /// key (PEM): a signed client assertion instead of a shared secret.
    Certificate {
        certificate_file: PathBuf,
        private_key_file: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeycloakSource {
    /// Without a trailing '/'.
    pub url: String,
    pub realm: String,
    pub client_id: String,
    pub client_secret_file: PathBuf,
}

pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";

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

fn max_offline<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    let v = humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "{s:?} is not a duration like \"3d\" or \"12h\": {e}"
        ))
    })?;
    if v < Duration::from_secs(60) || v > Duration::from_secs(366 * 86_400) {
        return Err(serde::de::Error::custom(format!(
            "max_offline {s:?} must be between 1m and 366d (leave it out for no limit)"
        )));
    }
    Ok(Some(v))
}

fn optional_absolute_path<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<PathBuf>, D::Error> {
    absolute_path(d).map(|s| Some(PathBuf::from(s)))
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
        let mut config: AgentConfig = toml::from_str(text).map_err(|e| {
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
        config.directory.source = directory_source(&config.directory).map_err(|e| match e {
            (Some(span), key, why) => fail(span, key, why),
            (None, key, why) => ConfigError(format!("{origin}: {key}: {why}")),
        })?;
        if let (Some(p), DirectorySource::Fleet(_)) = (&config.publish, &config.directory.source) {
            return Err(fail(
                p.to.span(),
                "publish.to",
                "a fleet host does not publish: [publish] belongs on a host that reads the IdP \
                 (any other [directory] kind)"
                    .into(),
            ));
        }
        if let Some(p) = &config.publish {
            config.publish_target = Some(p.check().map_err(|(span, key, why)| match span {
                Some(span) => fail(span, key, why),
                None => ConfigError(format!("{origin}: {key}: {why}")),
            })?);
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
            if g.id.get_ref().trim().is_empty() || g.id.get_ref().chars().any(char::is_control) {
                return Err(fail(
                    g.id.span(),
                    "groups.id",
                    "must be the IdP group's object id (no control characters)".into(),
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
        let forms = &config.ssh.principals;
        if forms.get_ref().is_empty() {
            return Err(fail(
                forms.span(),
                "ssh.principals",
                "list at least one of \"email-local-part\", \"email\", \"username\"".into(),
            ));
        }
        for (i, f) in forms.get_ref().iter().enumerate() {
            if forms.get_ref()[..i].contains(f) {
                return Err(fail(
                    forms.span(),
                    "ssh.principals",
                    format!("{f:?} is listed twice"),
                ));
            }
        }
        let mut shared_names = BTreeMap::new();
        for a in &config.shared_accounts {
            if let Err(why) = names::validate(a.name.get_ref(), false) {
                return Err(fail(a.name.span(), "shared_accounts.name", why));
            }
            if shared_names.insert(a.name.get_ref().clone(), ()).is_some() {
                return Err(fail(
                    a.name.span(),
                    "shared_accounts.name",
                    format!("{:?} is listed twice", a.name.get_ref()),
                ));
            }
            if a.groups.get_ref().is_empty() {
                return Err(fail(
                    a.groups.span(),
                    "shared_accounts.groups",
                    "list at least one IdP group id (one of the [[groups]] ids)".into(),
                ));
            }
            for g in a.groups.get_ref() {
                if !ids.contains_key(g.get_ref()) {
                    return Err(fail(
                        g.span(),
                        "shared_accounts.groups",
                        format!(
                            "{:?} is not the id of a configured [[groups]] entry",
                            g.get_ref()
                        ),
                    ));
                }
            }
        }
        let mut specs: Vec<IssuerSpec> = Vec::with_capacity(config.issuers.len());
        for i in &config.issuers {
            let spec = issuer_spec(i).map_err(|(span, key, why)| fail(span, key, why))?;
            if specs.iter().any(|s| s.iss == spec.iss) {
                return Err(fail(
                    i.kind.span(),
                    "issuers",
                    format!("{} is configured twice", spec.iss),
                ));
            }
            specs.push(spec);
        }
        let device_issuers: Vec<&IssuerConfig> = config
            .issuers
            .iter()
            .filter(|i| i.device_login.as_ref().is_some_and(|d| *d.get_ref()))
            .collect();
        if let [_, second, ..] = device_issuers.as_slice() {
            return Err(fail(
                second.kind.span(),
                "issuers.device_login",
                "only one issuer may answer device-code sign-ins (pam_zt would not know which \
                 one a person uses)"
                    .into(),
            ));
        }
        config.issuer_specs = specs;
        let at = |span: std::ops::Range<usize>| {
            let (l, _) = line_col(text, span.start);
            format!("{origin}:{l}")
        };
        let mut sudo_rules = Vec::with_capacity(config.sudo.len());
        for s in &config.sudo {
            let rights = sudo_rights(s).map_err(|(span, key, why)| fail(span, key, why))?;
            if !ids.contains_key(s.group.get_ref()) {
                return Err(fail(
                    s.group.span(),
                    "sudo.group",
                    format!(
                        "{:?} is not the id of a configured [[groups]] entry (sudoers names \
                         the group by its POSIX name there)",
                        s.group.get_ref()
                    ),
                ));
            }
            sudo_rules.push(SudoRule {
                at: at(s.group.span()),
                group_id: s.group.get_ref().clone(),
                rights,
            });
        }
        config.sudo_rules = sudo_rules;
        for l in config.local_groups.clone() {
            let l = &l;
            if !ids.contains_key(l.group.get_ref()) {
                return Err(fail(
                    l.group.span(),
                    "local_groups.group",
                    format!(
                        "{:?} is not the id of a configured [[groups]] entry",
                        l.group.get_ref()
                    ),
                ));
            }
            if l.grant.get_ref().is_empty() {
                return Err(fail(
                    l.grant.span(),
                    "local_groups.grant",
                    "list at least one existing local group, e.g. [\"adm\"]".into(),
                ));
            }
            for g in l.grant.get_ref() {
                let name = g.get_ref();
                if name.is_empty()
                    || name
                        .chars()
                        .any(|c| c.is_control() || c.is_whitespace() || c == ':' || c == ',')
                {
                    return Err(fail(
                        g.span(),
                        "local_groups.grant",
                        format!("{name:?} is not a group name"),
                    ));
                }
            }
            config.local_group_rules.push(LocalGroupRule {
                at: at(l.group.span()),
                group_id: l.group.get_ref().clone(),
                grant: l
                    .grant
                    .get_ref()
                    .iter()
                    .map(|g| g.get_ref().clone())
                    .collect(),
                allow_privileged: l.allow_privileged,
            });
        }
        config.origin = origin.to_string();
        Ok(config)
    }

    /// `[login] max_offline` in seconds; 0 = no limit.
    pub fn max_offline_secs(&self) -> u64 {
        self.login.max_offline.map_or(0, |d| d.as_secs())
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

type DirectoryError = (Option<std::ops::Range<usize>>, &'static str, String);

/// Checks `[directory]`: the kind's required keys are there, no key of
/// another kind is, URLs are https (http only on loopback, for tests),
/// secret files are absolute paths.
fn directory_source(d: &DirectoryConfig) -> Result<DirectorySource, DirectoryError> {
    let kind = *d.kind.get_ref();
    let here = Some(d.kind.span());
    let optional = [
        ("directory.tenant_id", &d.tenant_id),
        ("directory.client_id", &d.client_id),
        ("directory.client_secret_file", &d.client_secret_file),
        ("directory.certificate_file", &d.certificate_file),
        ("directory.private_key_file", &d.private_key_file),
        ("directory.graph_url", &d.graph_url),
        ("directory.login_url", &d.login_url),
        ("directory.org_url", &d.org_url),
        ("directory.token_file", &d.token_file),
        ("directory.service_account_file", &d.service_account_file),
        ("directory.subject", &d.subject),
        ("directory.customer", &d.customer),
        ("directory.api_url", &d.api_url),
        ("directory.token_url", &d.token_url),
        ("directory.url", &d.url),
        ("directory.realm", &d.realm),
        ("directory.s3_endpoint", &d.s3_endpoint),
    ];
    let allowed: &[&str] = match kind {
        DirectoryKind::File => &[],
        DirectoryKind::Scim => &["directory.url", "directory.token_file"],
        DirectoryKind::Entra => &[
            "directory.tenant_id",
            "directory.client_id",
            "directory.client_secret_file",
            "directory.certificate_file",
            "directory.private_key_file",
            "directory.graph_url",
            "directory.login_url",
        ],
        DirectoryKind::Keycloak => &[
            "directory.url",
            "directory.realm",
            "directory.client_id",
            "directory.client_secret_file",
        ],
        DirectoryKind::Okta => &[
            "directory.org_url",
            "directory.token_file",
            "directory.client_id",
            "directory.private_key_file",
        ],
        DirectoryKind::Google => &[
            "directory.service_account_file",
            "directory.subject",
            "directory.customer",
            "directory.api_url",
            "directory.token_url",
        ],
        DirectoryKind::Fleet => &["directory.url", "directory.s3_endpoint"],
    };
    for (key, value) in optional {
        if let Some(v) = value
            && !allowed.contains(&key)
        {
            return Err((
                Some(v.span()),
                key,
                format!("not a key of kind = \"{}\"", kind.name()),
            ));
        }
    }
    if let Some(keys) = &d.public_keys
        && kind != DirectoryKind::Fleet
    {
        return Err((
            Some(keys.span()),
            "directory.public_keys",
            format!("not a key of kind = \"{}\"", kind.name()),
        ));
    }
    if kind != DirectoryKind::File && d.path.is_some() {
        return Err((
            here,
            "directory.path",
            format!("not a key of kind = \"{}\"", kind.name()),
        ));
    }
    let required = |key: &'static str, v: &Option<Spanned<String>>, example: &str| {
        v.as_ref()
            .filter(|v| !v.get_ref().trim().is_empty())
            .cloned()
            .ok_or_else(|| {
                (
                    here.clone(),
                    key,
                    format!("kind = \"{}\" needs {example}", kind.name()),
                )
            })
    };
    let base_url = |key: &'static str, v: &Spanned<String>| {
        check_key_url(v.get_ref()).map_err(|why| (Some(v.span()), key, why))?;
        if v.get_ref().contains(['?', '#']) {
            return Err((
                Some(v.span()),
                key,
                "a base URL has no query or fragment".to_string(),
            ));
        }
        Ok(v.get_ref().trim_end_matches('/').to_string())
    };
    let file = |key: &'static str, v: &Spanned<String>| {
        let p = v.get_ref();
        if !p.starts_with('/') || p.contains(['\n', '\0']) {
            return Err((
                Some(v.span()),
                key,
                format!("{p:?} must be an absolute path"),
            ));
        }
        Ok(PathBuf::from(p))
    };
    // goes into a URL path: no '/', '?', '%' or spaces
    let path_segment = |key: &'static str, v: &Spanned<String>| {
        let s = v.get_ref();
        if s.is_empty()
            || s.len() > 255
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err((
                Some(v.span()),
                key,
                format!("{s:?} may only hold letters, digits, '.', '-' and '_'"),
            ));
        }
        Ok(s.clone())
    };
    match kind {
        DirectoryKind::File => {
            let path = d.path.clone().ok_or_else(|| {
                (
                    None,
                    "[directory]",
                    "kind = \"file\" needs path = \"/etc/zt/directory.json\"".to_string(),
                )
            })?;
            Ok(DirectorySource::File { path })
        }
        DirectoryKind::Scim => {
            let url = required(
                "directory.url",
                &d.url,
                "url = \"https://idp.example.com/scim/v2\" (the service's base)",
            )?;
            let token = required(
                "directory.token_file",
                &d.token_file,
                "token_file = \"/etc/zt/scim.token\"",
            )?;
            Ok(DirectorySource::Scim(ScimSource {
                url: base_url("directory.url", &url)?,
                token_file: file("directory.token_file", &token)?,
            }))
        }
        DirectoryKind::Entra => {
            let credential = match (
                &d.client_secret_file,
                &d.certificate_file,
                &d.private_key_file,
            ) {
                (Some(secret), None, None) => {
                    EntraCredential::Secret(file("directory.client_secret_file", secret)?)
                }
                (None, Some(cert), Some(key)) => EntraCredential::Certificate {
                    certificate_file: file("directory.certificate_file", cert)?,
                    private_key_file: file("directory.private_key_file", key)?,
                },
                (Some(_), Some(v), _) | (Some(_), _, Some(v)) => {
                    return Err((
                        Some(v.span()),
                        "directory.client_secret_file",
                        "either client_secret_file, or certificate_file with private_key_file: not both"
                            .to_string(),
                    ));
                }
                (None, Some(v), None) | (None, None, Some(v)) => {
                    return Err((
                        Some(v.span()),
                        "directory.certificate_file",
                        "certificate_file and private_key_file go together".to_string(),
                    ));
                }
                (None, None, None) => {
                    return Err((
                        here,
                        "directory.client_secret_file",
                        "kind = \"entra\" needs client_secret_file = \"/etc/zt/entra.secret\" (or certificate_file + private_key_file)"
                            .to_string(),
                    ));
                }
            };
            let tenant = required(
                "directory.tenant_id",
                &d.tenant_id,
                "tenant_id = \"<directory (tenant) id>\"",
            )?;
            let client = required(
                "directory.client_id",
                &d.client_id,
                "client_id = \"<application (client) id>\"",
            )?;
            let graph_url = match &d.graph_url {
                Some(v) => base_url("directory.graph_url", v)?,
                None => DEFAULT_GRAPH_URL.to_string(),
            };
            let login_url = match &d.login_url {
                Some(v) => base_url("directory.login_url", v)?,
                None => DEFAULT_LOGIN_URL.to_string(),
            };
            Ok(DirectorySource::Entra(EntraSource {
                tenant_id: path_segment("directory.tenant_id", &tenant)?,
                client_id: client.get_ref().trim().to_string(),
                credential,
                graph_url,
                login_url,
            }))
        }
        DirectoryKind::Keycloak => {
            let url = required(
                "directory.url",
                &d.url,
                "url = \"https://sso.example.com\" (the server's base)",
            )?;
            let realm = required("directory.realm", &d.realm, "realm = \"<realm>\"")?;
            let client = required(
                "directory.client_id",
                &d.client_id,
                "client_id = \"<client with view-users>\"",
            )?;
            let secret = required(
                "directory.client_secret_file",
                &d.client_secret_file,
                "client_secret_file = \"/etc/zt/keycloak.secret\"",
            )?;
            Ok(DirectorySource::Keycloak(KeycloakSource {
                url: base_url("directory.url", &url)?,
                realm: path_segment("directory.realm", &realm)?,
                client_id: client.get_ref().trim().to_string(),
                client_secret_file: file("directory.client_secret_file", &secret)?,
            }))
        }
        DirectoryKind::Okta => {
            let org = required(
                "directory.org_url",
                &d.org_url,
                "org_url = \"https://acme.okta.com\"",
            )?;
            let credential = match (&d.token_file, &d.client_id, &d.private_key_file) {
                (Some(token), None, None) => {
                    OktaCredential::ApiToken(file("directory.token_file", token)?)
                }
                (None, Some(client), Some(key)) => OktaCredential::ServiceApp {
                    client_id: client.get_ref().trim().to_string(),
                    private_key_file: file("directory.private_key_file", key)?,
                },
                (Some(_), Some(v), _) | (Some(_), _, Some(v)) => {
                    return Err((
                        Some(v.span()),
                        "directory.token_file",
                        "either token_file, or client_id with private_key_file: not both"
                            .to_string(),
                    ));
                }
                (None, Some(v), None) | (None, None, Some(v)) => {
                    return Err((
                        Some(v.span()),
                        "directory.client_id",
                        "client_id and private_key_file go together".to_string(),
                    ));
                }
                (None, None, None) => {
                    return Err((
                        here,
                        "directory.token_file",
                        "kind = \"okta\" needs token_file = \"/etc/zt/okta.token\" (or client_id + private_key_file)"
                            .to_string(),
                    ));
                }
            };
            Ok(DirectorySource::Okta(OktaSource {
                org_url: base_url("directory.org_url", &org)?,
                credential,
            }))
        }
        DirectoryKind::Google => {
            let account = required(
                "directory.service_account_file",
                &d.service_account_file,
                "service_account_file = \"/etc/zt/google.json\"",
            )?;
            let subject = required(
                "directory.subject",
                &d.subject,
                "subject = \"<an admin's email>\" (the admin the service account acts as)",
            )?;
            if !subject.get_ref().contains('@') || subject.get_ref().contains(char::is_whitespace) {
                return Err((
                    Some(subject.span()),
                    "directory.subject",
                    format!("{:?} is not an email", subject.get_ref()),
                ));
            }
            let customer = match &d.customer {
                Some(c) => path_segment("directory.customer", c)?,
                None => "my_customer".to_string(),
            };
            let api_url = match &d.api_url {
                Some(v) => base_url("directory.api_url", v)?,
                None => DEFAULT_GOOGLE_API_URL.to_string(),
            };
            let token_url = match &d.token_url {
                Some(v) => base_url("directory.token_url", v)?,
                None => DEFAULT_GOOGLE_TOKEN_URL.to_string(),
            };
            Ok(DirectorySource::Google(GoogleSource {
                service_account_file: file("directory.service_account_file", &account)?,
                subject: subject.get_ref().clone(),
                customer,
                api_url,
                token_url,
            }))
        }
        DirectoryKind::Fleet => {
            let url = required(
                "directory.url",
                &d.url,
                "url = \"https://zt.example.com/fleet/\" (or \"s3://bucket/prefix\")",
            )?;
            crate::fleet::check_source(
                &url,
                d.public_keys.as_ref(),
                d.s3_endpoint.as_ref(),
                here.clone(),
            )
            .map(DirectorySource::Fleet)
        }
    }
}

type SpanError = (std::ops::Range<usize>, &'static str, String);

/// Checks one `[[sudo]]` entry's rights: `rule`, or `commands` (with
/// `run_as` and `authenticate`), never both.
fn sudo_rights(s: &SudoConfig) -> Result<Rights, SpanError> {
    let here = s.group.span();
    match (&s.rule, &s.commands) {
        (Some(_), Some(c)) => Err((
            c.span(),
            "sudo.commands",
            "give either rule or commands, not both".into(),
        )),
        (None, None) => Err((
            here,
            "sudo",
            "needs rule = \"ALL=(ALL:ALL) ALL\" or commands = [\"/usr/bin/...\"]".into(),
        )),
        (Some(rule), None) => {
            for (key, span) in [
                ("sudo.run_as", s.run_as.as_ref().map(Spanned::span)),
                (
                    "sudo.authenticate",
                    s.authenticate.as_ref().map(Spanned::span),
                ),
            ] {
                if let Some(span) = span {
                    return Err((
                        span,
                        key,
                        "belongs with commands; with rule, write it in the rule \
                         (e.g. \"ALL=(root) NOPASSWD: /usr/bin/id\")"
                            .into(),
                    ));
                }
            }
            sudo_rule::check_line(rule.get_ref()).map_err(|why| (rule.span(), "sudo.rule", why))?;
            Ok(Rights::Line(rule.get_ref().clone()))
        }
        (None, Some(commands)) => {
            if commands.get_ref().is_empty() {
                return Err((
                    commands.span(),
                    "sudo.commands",
                    "list at least one command".into(),
                ));
            }
            for c in commands.get_ref() {
                sudo_rule::check_command(c.get_ref())
                    .map_err(|why| (c.span(), "sudo.commands", why))?;
            }
            let run_as = match &s.run_as {
                Some(r) => {
                    sudo_rule::check_run_as(r.get_ref())
                        .map_err(|why| (r.span(), "sudo.run_as", why))?;
                    r.get_ref().clone()
                }
                None => "root".into(),
            };
            Ok(Rights::Commands {
                run_as,
                commands: commands
                    .get_ref()
                    .iter()
                    .map(|c| c.get_ref().trim().to_string())
                    .collect(),
                authenticate: s.authenticate.as_ref().is_none_or(|a| *a.get_ref()),
            })
        }
    }
}

/// The MFA and device-code keys an entry sets: all are OIDC only.
fn oidc_only_keys(i: &IssuerConfig) -> Vec<(&'static str, std::ops::Range<usize>)> {
    let mut set = Vec::new();
    let mut add = |key, span: Option<std::ops::Range<usize>>| {
        if let Some(span) = span {
            set.push((key, span));
        }
    };
    add(
        "issuers.device_login",
        i.device_login.as_ref().map(Spanned::span),
    );
    add(
        "issuers.require_mfa",
        i.require_mfa.as_ref().map(Spanned::span),
    );
    add("issuers.mfa_acr", i.mfa_acr.as_ref().map(Spanned::span));
    add("issuers.client_id", i.client_id.as_ref().map(Spanned::span));
    add("issuers.scopes", i.scopes.as_ref().map(Spanned::span));
    add(
        "issuers.device_authorization_endpoint",
        i.device_authorization_endpoint.as_ref().map(Spanned::span),
    );
    add(
        "issuers.token_endpoint",
        i.token_endpoint.as_ref().map(Spanned::span),
    );
    add(
        "issuers.device_timeout",
        i.device_timeout.as_ref().map(Spanned::span),
    );
    add(
        "issuers.device_max_pending",
        i.device_max_pending.as_ref().map(Spanned::span),
    );
    set
}

/// `require_mfa` and `mfa_acr`, checked.
fn mfa_policy(i: &IssuerConfig) -> Result<(bool, Vec<String>), SpanError> {
    let required = i.require_mfa.as_ref().is_some_and(|r| *r.get_ref());
    let Some(acr) = &i.mfa_acr else {
        return Ok((required, Vec::new()));
    };
    if !required {
        return Err((
            acr.span(),
            "issuers.mfa_acr",
            "only with require_mfa = true".into(),
        ));
    }
    for a in acr.get_ref() {
        if a.is_empty() || a.len() > 256 || a.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err((
                acr.span(),
                "issuers.mfa_acr",
                format!("{a:?}: acr values are 1-256 characters without spaces"),
            ));
        }
    }
    Ok((true, acr.get_ref().clone()))
}

/// The device-code keys, checked; `None` without `device_login = true`.
fn device_spec(i: &IssuerConfig, iss: &str) -> Result<Option<DeviceSpec>, SpanError> {
    let enabled = i.device_login.as_ref().is_some_and(|d| *d.get_ref());
    if !enabled {
        let keys = oidc_only_keys(i);
        if let Some((key, span)) = keys.into_iter().find(|(k, _)| {
            !matches!(
                *k,
                "issuers.device_login" | "issuers.require_mfa" | "issuers.mfa_acr"
            )
        }) {
            return Err((span, key, "only with device_login = true".into()));
        }
        return Ok(None);
    }
    let here = i.device_login.as_ref().map_or(i.kind.span(), Spanned::span);
    let Some(client_id) = &i.client_id else {
        return Err((
            here,
            "issuers.client_id",
            "device_login = true needs client_id = \"<public client id>\" (an app registration \
             that allows the device code flow)"
                .into(),
        ));
    };
    let cid = client_id.get_ref();
    if cid.is_empty() || cid.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err((
            client_id.span(),
            "issuers.client_id",
            "not a client id".into(),
        ));
    }
    if !i.audiences.get_ref().contains(cid) {
        return Err((
            client_id.span(),
            "issuers.client_id",
            format!(
                "{cid:?} must also be one of audiences: the ID tokens of a device sign-in carry \
                 it as aud, and pam_zt verifies them like any other token"
            ),
        ));
    }
    let scopes = match &i.scopes {
        None => vec!["openid".into(), "email".into(), "profile".into()],
        Some(s) => {
            let list = s.get_ref();
            if !list.iter().any(|x| x == "openid")
                || list
                    .iter()
                    .any(|x| x.is_empty() || x.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                return Err((
                    s.span(),
                    "issuers.scopes",
                    "list \"openid\" (an ID token is what proves the person) and scopes without \
                     spaces"
                        .into(),
                ));
            }
            list.clone()
        }
    };
    let endpoint = |v: &Option<Spanned<String>>, key: &'static str| match v {
        None => Ok(None),
        Some(v) => check_key_url(v.get_ref())
            .map(|()| Some(v.get_ref().clone()))
            .map_err(|why| (v.span(), key, why)),
    };
    let timeout = match &i.device_timeout {
        None => DEVICE_TIMEOUT,
        Some(t) => {
            let v = humantime::parse_duration(t.get_ref()).map_err(|e| {
                (
                    t.span(),
                    "issuers.device_timeout",
                    format!("{:?}: {e} (e.g. \"5m\")", t.get_ref()),
                )
            })?;
            if v < Duration::from_secs(30) || v > Duration::from_secs(15 * 60) {
                return Err((
                    t.span(),
                    "issuers.device_timeout",
                    "between 30s and 15m".into(),
                ));
            }
            v
        }
    };
    let max_pending = match &i.device_max_pending {
        None => DEVICE_MAX_PENDING,
        Some(n) if (1..=1000).contains(n.get_ref()) => *n.get_ref(),
        Some(n) => {
            return Err((
                n.span(),
                "issuers.device_max_pending",
                "between 1 and 1000".into(),
            ));
        }
    };
    Ok(Some(DeviceSpec {
        client_id: cid.clone(),
        scopes,
        discovery: format!(
            "{}/.well-known/openid-configuration",
            iss.trim_end_matches('/')
        ),
        device_authorization_endpoint: endpoint(
            &i.device_authorization_endpoint,
            "issuers.device_authorization_endpoint",
        )?,
        token_endpoint: endpoint(&i.token_endpoint, "issuers.token_endpoint")?,
        timeout,
        max_pending: max_pending as usize,
    }))
}

/// Checks one `[[issuers]]` entry and resolves its iss and key source.
fn issuer_spec(i: &IssuerConfig) -> Result<IssuerSpec, SpanError> {
    let here = i.kind.span();
    let not_for = |key: &'static str, span: std::ops::Range<usize>, kind: &str| {
        Err((span, key, format!("not a key of kind = \"{kind}\"")))
    };
    if i.audiences.get_ref().is_empty() || i.audiences.get_ref().iter().any(|a| a.trim().is_empty())
    {
        return Err((
            i.audiences.span(),
            "issuers.audiences",
            "list at least one accepted audience (AUD tag or client id), none empty".into(),
        ));
    }
    let url = |v: &Spanned<String>, key: &'static str| -> Result<String, SpanError> {
        check_key_url(v.get_ref()).map_err(|why| (v.span(), key, why))?;
        Ok(v.get_ref().clone())
    };
    match i.kind.get_ref() {
        IssuerKind::CloudflareAccess => {
            let kind = "cloudflare-access";
            if let Some(v) = &i.issuer {
                return not_for("issuers.issuer", v.span(), kind);
            }
            if let Some(v) = &i.jwks_url {
                return not_for("issuers.jwks_url", v.span(), kind);
            }
            if let Some(v) = &i.claim {
                return Err((
                    v.span(),
                    "issuers.claim",
                    "Cloudflare Access tokens always name the person by email; leave claim out"
                        .into(),
                ));
            }
            if let Some((key, span)) = oidc_only_keys(i).into_iter().next() {
                return not_for(key, span, kind);
            }
            let Some(team) = &i.team else {
                return Err((here, "issuers.team", "kind = \"cloudflare-access\" needs team = \"<team>\" (of <team>.cloudflareaccess.com)".into()));
            };
            check_team(team.get_ref()).map_err(|why| (team.span(), "issuers.team", why))?;
            let domain = if i.fedramp {
                "fed.cloudflareaccess.com"
            } else {
                "cloudflareaccess.com"
            };
            let iss = format!("https://{}.{domain}", team.get_ref());
            let certs = match &i.certs_url {
                Some(v) => url(v, "issuers.certs_url")?,
                None => format!("{iss}/cdn-cgi/access/certs"),
            };
            Ok(IssuerSpec {
                kind: zt_snapshot::format::issuer_kind::CLOUDFLARE_ACCESS,
                iss,
                claim: "email".into(),
                audiences: i.audiences.get_ref().clone(),
                keys: KeySource::Jwks(certs),
                require_mfa: false,
                mfa_acr: Vec::new(),
                device: None,
            })
        }
        IssuerKind::Oidc => {
            let kind = "oidc";
            if let Some(v) = &i.team {
                return not_for("issuers.team", v.span(), kind);
            }
            if let Some(v) = &i.certs_url {
                return not_for("issuers.certs_url", v.span(), kind);
            }
            if i.fedramp {
                return Err((
                    here,
                    "issuers.fedramp",
                    "only for kind = \"cloudflare-access\"".into(),
                ));
            }
            let Some(issuer) = &i.issuer else {
                return Err((
                    here,
                    "issuers.issuer",
                    "kind = \"oidc\" needs issuer = \"https://...\" (exactly the tokens' iss)"
                        .into(),
                ));
            };
            let iss = url(issuer, "issuers.issuer")?;
            let claim = match &i.claim {
                Some(c) if !CLAIMS.contains(&c.get_ref().as_str()) => {
                    return Err((
                        c.span(),
                        "issuers.claim",
                        format!("{:?} is not one of {}", c.get_ref(), CLAIMS.join(", ")),
                    ));
                }
                Some(c) => c.get_ref().clone(),
                None => "email".into(),
            };
            let keys = match &i.jwks_url {
                Some(v) => KeySource::Jwks(url(v, "issuers.jwks_url")?),
                None => KeySource::Discovery(format!(
                    "{}/.well-known/openid-configuration",
                    iss.trim_end_matches('/')
                )),
            };
            let (require_mfa, mfa_acr) = mfa_policy(i)?;
            let device = device_spec(i, &iss)?;
            Ok(IssuerSpec {
                kind: zt_snapshot::format::issuer_kind::OIDC,
                iss,
                claim,
                audiences: i.audiences.get_ref().clone(),
                keys,
                require_mfa,
                mfa_acr,
                device,
            })
        }
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
    fn ssh_principals_and_shared_accounts() {
        let c = AgentConfig::parse(GOOD, "agent.toml").unwrap();
        assert_eq!(c.ssh.principals.get_ref(), &[NameFrom::EmailLocalPart]);
        assert!(c.shared_accounts.is_empty());
        let text = format!(
            "{GOOD}\n[ssh]\nprincipals = [\"email-local-part\", \"email\", \"username\"]\n\n\
             [[shared_accounts]]\nname = \"sysadmin\"\ngroups = [\"6b1f0d7e-aaaa\"]\n"
        );
        let c = AgentConfig::parse(&text, "agent.toml").unwrap();
        assert_eq!(c.ssh.principals.get_ref().len(), 3);
        assert_eq!(c.shared_accounts[0].name.get_ref(), "sysadmin");
        // a group id that is not a configured [[groups]] id
        let e = err(&text.replace("groups = [\"6b1f0d7e-aaaa\"]", "groups = [\"nope\"]"));
        assert!(
            e.starts_with("agent.toml:23:11: shared_accounts.groups:"),
            "{e}"
        );
        assert!(e.contains("\"nope\""), "{e}");
        let e = err(&text.replace("groups = [\"6b1f0d7e-aaaa\"]", "groups = []"));
        assert!(e.contains("shared_accounts.groups"), "{e}");
        let e = err(&text.replace("name = \"sysadmin\"", "name = \"Sys Admin\""));
        assert!(e.starts_with("agent.toml:22:"), "{e}");
        let e = err(&text.replace("\"username\"]", "\"uid\"]"));
        assert!(e.starts_with("agent.toml:19:"), "{e}");
        let e = err(&text.replace("\"username\"]", "\"email\"]"));
        assert!(e.contains("listed twice"), "{e}");
        let e = err(&format!(
            "{text}\n[[shared_accounts]]\nname = \"sysadmin\"\ngroups = [\"6b1f0d7e-aaaa\"]\n"
        ));
        assert!(e.contains("listed twice"), "{e}");
    }

    const DEVICE: &str = r#"
[[issuers]]
kind = "oidc"
issuer = "https://login.example.com/t/v2.0"
audiences = ["app-1"]
device_login = true
client_id = "app-1"
require_mfa = true
mfa_acr = ["urn:example:mfa"]
device_timeout = "2m"
device_max_pending = 5
"#;

    #[test]
    fn device_login_loads_with_its_defaults_and_limits() {
        let c = AgentConfig::parse(&format!("{GOOD}{DEVICE}"), "agent.toml").unwrap();
        let spec = &c.issuer_specs[0];
        assert!(spec.require_mfa);
        assert_eq!(spec.mfa_acr, vec!["urn:example:mfa".to_string()]);
        let d = spec.device.as_ref().unwrap();
        assert_eq!(d.client_id, "app-1");
        assert_eq!(d.scopes, vec!["openid", "email", "profile"]);
        assert_eq!(d.timeout, Duration::from_secs(120));
        assert_eq!(d.max_pending, 5);
        assert_eq!(
            d.discovery,
            "https://login.example.com/t/v2.0/.well-known/openid-configuration"
        );
        assert_eq!(d.device_authorization_endpoint, None);
        // defaults
        let plain = DEVICE
            .replace("device_timeout = \"2m\"\n", "")
            .replace("device_max_pending = 5\n", "");
        let c = AgentConfig::parse(&format!("{GOOD}{plain}"), "agent.toml").unwrap();
        let d = c.issuer_specs[0].device.as_ref().unwrap();
        assert_eq!(d.timeout, DEVICE_TIMEOUT);
        assert_eq!(d.max_pending, DEVICE_MAX_PENDING as usize);
        // MFA without device sign-in is fine (it governs pasted tokens too)
        let mfa_only = "\n[[issuers]]\nkind = \"oidc\"\nissuer = \"https://i\"\naudiences = [\"a\"]\nrequire_mfa = true\n";
        let c = AgentConfig::parse(&format!("{GOOD}{mfa_only}"), "agent.toml").unwrap();
        assert!(c.issuer_specs[0].require_mfa && c.issuer_specs[0].device.is_none());
    }

    #[test]
    fn bad_device_login_keys_are_refused_with_line_and_key() {
        let with = |from: &str, to: &str| err(&format!("{GOOD}{}", DEVICE.replace(from, to)));
        let e = with("client_id = \"app-1\"", "client_id = \"other\"");
        assert!(
            e.contains("issuers.client_id") && e.contains("one of audiences"),
            "{e}"
        );
        let e = with("client_id = \"app-1\"\n", "");
        assert!(e.contains("needs client_id"), "{e}");
        let e = with("\"2m\"", "\"10s\"");
        assert!(
            e.contains("issuers.device_timeout") && e.contains("between 30s and 15m"),
            "{e}"
        );
        let e = with("device_max_pending = 5", "device_max_pending = 0");
        assert!(e.contains("issuers.device_max_pending"), "{e}");
        let e = with("device_login = true", "device_login = false");
        assert!(
            e.contains("issuers.client_id") && e.contains("only with device_login"),
            "{e}"
        );
        let e = with("require_mfa = true", "require_mfa = false");
        assert!(
            e.contains("issuers.mfa_acr") && e.contains("only with require_mfa"),
            "{e}"
        );
        let e = with("mfa_acr = [\"urn:example:mfa\"]", "mfa_acr = [\"a b\"]");
        assert!(e.contains("issuers.mfa_acr"), "{e}");
        let e = with(
            "device_login = true",
            "device_login = true\nscopes = [\"email\"]",
        );
        assert!(e.contains("issuers.scopes") && e.contains("openid"), "{e}");
        let e = with(
            "device_login = true",
            "device_login = true\ntoken_endpoint = \"http://idp.example.com/token\"",
        );
        assert!(
            e.contains("issuers.token_endpoint") && e.contains("must be https"),
            "{e}"
        );
        // two device issuers
        let second = DEVICE.replace(
            "https://login.example.com/t/v2.0",
            "https://other.example.com",
        );
        let e = err(&format!("{GOOD}{DEVICE}{second}"));
        assert!(
            e.contains("issuers.device_login") && e.contains("only one issuer"),
            "{e}"
        );
        // Cloudflare Access: none of these keys
        let e = err(&format!(
            "{GOOD}\n[[issuers]]\nkind = \"cloudflare-access\"\nteam = \"acme\"\naudiences = [\"a\"]\ndevice_login = true\n"
        ));
        assert!(
            e.contains("issuers.device_login") && e.contains("not a key"),
            "{e}"
        );
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

    const ISSUERS: &str = r#"
[[issuers]]
kind = "cloudflare-access"
team = "acme"
audiences = ["4714c1358e65fe4b"]

[[issuers]]
kind = "oidc"
issuer = "https://id.example.com"
audiences = ["zt-ssh"]
claim = "preferred_username"

[login]
max_offline = "3d"

[http]
ca_file = "/etc/zt/ca.pem"
"#;

    #[test]
    fn issuers_login_and_http_load_and_resolve() {
        let c = AgentConfig::parse(&format!("{GOOD}{ISSUERS}"), "agent.toml").unwrap();
        let cf = &c.issuer_specs[0];
        assert_eq!(cf.iss, "https://acme.cloudflareaccess.com");
        assert_eq!(cf.claim, "email");
        assert_eq!(
            cf.keys,
            KeySource::Jwks("https://acme.cloudflareaccess.com/cdn-cgi/access/certs".into())
        );
        assert_eq!(cf.kind, zt_snapshot::format::issuer_kind::CLOUDFLARE_ACCESS);
        let oidc = &c.issuer_specs[1];
        assert_eq!(oidc.iss, "https://id.example.com");
        assert_eq!(oidc.claim, "preferred_username");
        assert_eq!(oidc.audiences, ["zt-ssh"]);
        assert_eq!(
            oidc.keys,
            KeySource::Discovery("https://id.example.com/.well-known/openid-configuration".into())
        );
        assert_eq!(c.max_offline_secs(), 3 * 86_400);
        assert_eq!(c.http.ca_file.as_deref(), Some(Path::new("/etc/zt/ca.pem")));
        // none of it is required
        let plain = AgentConfig::parse(GOOD, "agent.toml").unwrap();
        assert!(plain.issuer_specs.is_empty());
        assert_eq!(plain.max_offline_secs(), 0);
    }

    #[test]
    fn fedramp_teams_and_explicit_urls() {
        let text = format!(
            "{GOOD}\n[[issuers]]\nkind = \"cloudflare-access\"\nteam = \"gov-1\"\nfedramp = true\naudiences = [\"a\"]\n\n[[issuers]]\nkind = \"oidc\"\nissuer = \"http://127.0.0.1:8080/realm\"\njwks_url = \"http://[::1]:9/jwks\"\naudiences = [\"b\"]\n"
        );
        let c = AgentConfig::parse(&text, "agent.toml").unwrap();
        assert_eq!(
            c.issuer_specs[0].iss,
            "https://gov-1.fed.cloudflareaccess.com"
        );
        assert_eq!(
            c.issuer_specs[1].keys,
            KeySource::Jwks("http://[::1]:9/jwks".into())
        );
    }

    #[test]
    fn key_urls_must_be_https_except_on_loopback() {
        for ok in [
            "https://id.example.com",
            "http://127.0.0.1:8080/x",
            "http://127.9.9.9/x",
            "http://localhost:1/x",
            "http://[::1]:80/x",
        ] {
            assert_eq!(check_key_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://id.example.com/jwks",
            "http://10.0.0.1/jwks",
            "http://127.0.0.1.evil.com/jwks",
            "http://localhost@evil.com/jwks",
            "ftp://127.0.0.1/x",
            "id.example.com",
            "https:// x",
        ] {
            assert!(check_key_url(bad).is_err(), "{bad}");
        }
        let e = err(&format!(
            "{GOOD}\n[[issuers]]\nkind = \"oidc\"\nissuer = \"https://id.example.com\"\njwks_url = \"http://id.example.com/jwks\"\naudiences = [\"b\"]\n"
        ));
        assert!(
            e.starts_with("agent.toml:21:") && e.contains("must be https"),
            "{e}"
        );
        let e = err(&format!(
            "{GOOD}\n[[issuers]]\nkind = \"oidc\"\nissuer = \"http://id.example.com\"\naudiences = [\"b\"]\n"
        ));
        assert!(
            e.contains("issuers.issuer") && e.contains("must be https"),
            "{e}"
        );
    }

    #[test]
    fn bad_issuers_are_refused_with_line_and_key() {
        let with = |extra: &str| err(&format!("{GOOD}\n[[issuers]]\n{extra}\n"));
        let e = with("kind = \"cloudflare-access\"\nteam = \"Acme Corp\"\naudiences = [\"a\"]");
        assert!(
            e.starts_with("agent.toml:20:") && e.contains("issuers.team"),
            "{e}"
        );
        let e = with("kind = \"cloudflare-access\"\nteam = \"acme.evil\"\naudiences = [\"a\"]");
        assert!(e.contains("not a team name"), "{e}");
        let e = with("kind = \"cloudflare-access\"\naudiences = [\"a\"]");
        assert!(e.contains("needs team"), "{e}");
        let e = with("kind = \"cloudflare-access\"\nteam = \"acme\"\naudiences = []");
        assert!(e.contains("issuers.audiences"), "{e}");
        let e =
            with("kind = \"oidc\"\nissuer = \"https://i\"\naudiences = [\"a\"]\nclaim = \"name\"");
        assert!(
            e.contains("issuers.claim") && e.contains("preferred_username"),
            "{e}"
        );
        let e =
            with("kind = \"oidc\"\nteam = \"acme\"\nissuer = \"https://i\"\naudiences = [\"a\"]");
        assert!(e.contains("issuers.team") && e.contains("not a key"), "{e}");
        let e = with("kind = \"saml\"\naudiences = [\"a\"]");
        assert!(e.starts_with("agent.toml:19:"), "{e}");
        let e =
            with("kind = \"oidc\"\nissuer = \"https://i\"\naudiences = [\"a\"]\naudience = \"x\"");
        assert!(e.contains("unknown field `audience`"), "{e}");
        let e = err(&format!("{GOOD}\n[login]\nmax_offline = \"1s\"\n"));
        assert!(e.contains("between 1m and 366d"), "{e}");
        let e = err(&format!("{GOOD}\n[http]\nca_file = \"ca.pem\"\n"));
        assert!(e.contains("absolute path"), "{e}");
        let twice = format!(
            "{GOOD}\n[[issuers]]\nkind = \"cloudflare-access\"\nteam = \"acme\"\naudiences = [\"a\"]\n[[issuers]]\nkind = \"oidc\"\nissuer = \"https://acme.cloudflareaccess.com\"\naudiences = [\"b\"]\n"
        );
        assert!(err(&twice).contains("configured twice"));
    }

    fn with_directory(directory: &str) -> String {
        GOOD.replace(
            "kind = \"file\"\npath = \"/etc/zt/directory.json\"\n",
            directory,
        )
    }

    #[test]
    fn connector_kinds_load_with_their_keys() {
        let c = AgentConfig::parse(
            &with_directory(
                "kind = \"entra\"\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"app-1\"\nclient_secret_file = \"/etc/zt/entra.secret\"\n",
            ),
            "agent.toml",
        )
        .unwrap();
        assert_eq!(
            c.directory.source,
            DirectorySource::Entra(EntraSource {
                tenant_id: "contoso.onmicrosoft.com".into(),
                client_id: "app-1".into(),
                credential: EntraCredential::Secret("/etc/zt/entra.secret".into()),
                graph_url: DEFAULT_GRAPH_URL.into(),
                login_url: DEFAULT_LOGIN_URL.into(),
            })
        );
        let c = AgentConfig::parse(
            &with_directory(
                "kind = \"scim\"\nurl = \"https://idp.example.com/scim/v2/\"\ntoken_file = \"/etc/zt/scim.token\"\n",
            ),
            "agent.toml",
        )
        .unwrap();
        assert_eq!(
            c.directory.source,
            DirectorySource::Scim(ScimSource {
                url: "https://idp.example.com/scim/v2".into(),
                token_file: "/etc/zt/scim.token".into(),
            })
        );
        let c = AgentConfig::parse(
            &with_directory(
                "kind = \"keycloak\"\nurl = \"https://sso.example.com\"\nrealm = \"staff\"\nclient_id = \"zt\"\nclient_secret_file = \"/etc/zt/kc.secret\"\n",
            ),
            "agent.toml",
        )
        .unwrap();
        assert!(matches!(c.directory.source, DirectorySource::Keycloak(_)));
        let c = AgentConfig::parse(
            &with_directory(
                "kind = \"okta\"\norg_url = \"https://acme.okta.com/\"\ntoken_file = \"/etc/zt/okta.token\"\n",
            ),
            "agent.toml",
        )
        .unwrap();
        assert_eq!(
            c.directory.source,
            DirectorySource::Okta(OktaSource {
                org_url: "https://acme.okta.com".into(),
                credential: OktaCredential::ApiToken("/etc/zt/okta.token".into()),
            })
        );
        let c = AgentConfig::parse(
            &with_directory(
                "kind = \"okta\"\norg_url = \"https://acme.okta.com\"\nclient_id = \"0oa1\"\nprivate_key_file = \"/etc/zt/okta.key\"\n",
            ),
            "agent.toml",
        )
        .unwrap();
        let DirectorySource::Okta(source) = c.directory.source else {
            panic!("okta")
        };
        assert_eq!(
            source.credential,
            OktaCredential::ServiceApp {
                client_id: "0oa1".into(),
                private_key_file: "/etc/zt/okta.key".into(),
            }
        );
        let e = err(&with_directory(
            "kind = \"okta\"\norg_url = \"https://acme.okta.com\"\nclient_id = \"x\"\n",
        ));
        assert!(
            e.contains(
                "agent.toml:5:13: directory.client_id: client_id and private_key_file go together"
            ),
            "{e}"
        );
    }

    #[test]
    fn connector_mistakes_name_line_and_key() {
        // a key of another kind
        let e = err(&with_directory(
            "kind = \"scim\"\nurl = \"https://idp.example.com/scim/v2\"\ntoken_file = \"/t\"\ntenant_id = \"x\"\n",
        ));
        assert!(
            e.starts_with("agent.toml:6:13: directory.tenant_id: not a key of kind = \"scim\""),
            "{e}"
        );
        // a typo is an unknown field
        let e = err(&with_directory(
            "kind = \"scim\"\nurl = \"https://x\"\ntoken_fle = \"/t\"\n",
        ));
        assert!(
            e.contains("agent.toml:5:1") && e.contains("unknown field `token_fle`"),
            "{e}"
        );
        // a missing key says what to write
        let e = err(&with_directory("kind = \"scim\"\nurl = \"https://x\"\n"));
        assert!(
            e.contains("directory.token_file: kind = \"scim\" needs token_file"),
            "{e}"
        );
        // plain http only on loopback; a relative secret path
        let e = err(&with_directory(
            "kind = \"scim\"\nurl = \"http://idp.example.com/scim\"\ntoken_file = \"/t\"\n",
        ));
        assert!(
            e.contains("agent.toml:4:7: directory.url") && e.contains("must be https"),
            "{e}"
        );
        let e = err(&with_directory(
            "kind = \"scim\"\nurl = \"https://x\"\ntoken_file = \"t\"\n",
        ));
        assert!(e.contains("must be an absolute path"), "{e}");
        // a tenant that would change the token URL's path
        let e = err(&with_directory(
            "kind = \"entra\"\ntenant_id = \"../x\"\nclient_id = \"a\"\nclient_secret_file = \"/s\"\n",
        ));
        assert!(e.contains("directory.tenant_id"), "{e}");
        // a kind's required keys, and certificate credentials, say so
        let e = err(&with_directory("kind = \"google\"\n"));
        assert!(
            e.contains("agent.toml:3:8") && e.contains("needs service_account_file"),
            "{e}"
        );
        let e = err(&with_directory(
            "kind = \"google\"\nservice_account_file = \"/g.json\"\nsubject = \"not-an-email\"\n",
        ));
        assert!(e.contains("agent.toml:5:11: directory.subject"), "{e}");
        let e = err(&with_directory(
            "kind = \"entra\"\ntenant_id = \"t\"\nclient_id = \"a\"\ncertificate_file = \"/c\"\n",
        ));
        assert!(
            e.contains("agent.toml:6:20: directory.certificate_file: certificate_file and private_key_file go together"),
            "{e}"
        );
        let e = err(&with_directory(
            "kind = \"entra\"\ntenant_id = \"t\"\nclient_id = \"a\"\nclient_secret_file = \"/s\"\ncertificate_file = \"/c\"\nprivate_key_file = \"/k\"\n",
        ));
        assert!(e.contains("not both"), "{e}");
        let c = AgentConfig::parse(
            &with_directory(
                "kind = \"entra\"\ntenant_id = \"t\"\nclient_id = \"a\"\ncertificate_file = \"/c.pem\"\nprivate_key_file = \"/k.pem\"\n",
            ),
            "agent.toml",
        )
        .unwrap();
        let DirectorySource::Entra(source) = c.directory.source else {
            panic!("entra")
        };
        assert_eq!(
            source.credential,
            EntraCredential::Certificate {
                certificate_file: "/c.pem".into(),
                private_key_file: "/k.pem".into(),
            }
        );
        // file keys stay file keys
        let e = err(&with_directory(
            "kind = \"scim\"\nurl = \"https://x\"\ntoken_file = \"/t\"\npath = \"/d\"\n",
        ));
        assert!(
            e.contains("directory.path: not a key of kind = \"scim\""),
            "{e}"
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
