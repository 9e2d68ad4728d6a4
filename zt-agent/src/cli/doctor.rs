//! `zt-agent doctor`: checks the host end to end and says what to fix.
//!
//! Each check gives findings: OK, WARN (works, but worth knowing) or FAIL
//! (something a login, a lookup or a sudo rule depends on is missing or
//! wrong). Exit 0 only without a FAIL. The checks read the host's files and
//! run the host's own tools (`sshd -T`, `visudo -c`): what they report is
//! what sshd, sudo and glibc will do, not what zt believes it configured.
//! Nothing here changes the host: where a setting belongs to another package
//! (sudo.conf is sudo's conffile) doctor says what to add.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, SystemTime};

use crate::config::{AgentConfig, DirectorySource, KeySource};
use crate::http::Http;
use crate::status::now;
use crate::sync::{Paths, load_status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub text: String,
}

fn ok(text: impl Into<String>) -> Finding {
    Finding {
        level: Level::Ok,
        text: text.into(),
    }
}
fn warn(text: impl Into<String>) -> Finding {
    Finding {
        level: Level::Warn,
        text: text.into(),
    }
}
fn fail(text: impl Into<String>) -> Finding {
    Finding {
        level: Level::Fail,
        text: text.into(),
    }
}

/// Tokens accepted this far off the host's clock (pam_zt's leeway): a larger
/// skew refuses good tokens or accepts expired ones.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Where the package puts the modules, and where a hand install might.
const NSS_MODULE_DIRS: [&str; 2] = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"];
const PAM_MODULE_DIRS: [&str; 2] = [
    "/lib/x86_64-linux-gnu/security",
    "/usr/lib/x86_64-linux-gnu/security",
];

pub fn doctor(config_path: &Path, paths: &Paths) -> ExitCode {
    let root = Path::new("/");
    let mut findings = Vec::new();
    let config = match AgentConfig::load(config_path) {
        Ok(c) => {
            findings.push(ok(format!("config: {} is valid", config_path.display())));
            Some(c)
        }
        Err(e) => {
            findings.push(fail(format!("config: {e}")));
            None
        }
    };
    findings.push(nsswitch(&read(root, "etc/nsswitch.conf")));
    findings.push(module_present(
        "libnss_zt.so.2",
        &NSS_MODULE_DIRS,
        "NSS module",
    ));
    findings.push(module_present("pam_zt.so", &PAM_MODULE_DIRS, "PAM module"));
    let pam_d = |name: &str| std::fs::read_to_string(root.join("etc/pam.d").join(name)).ok();
    findings.extend(pam_stacks(&pam_d));
    if let Some(config) = &config {
        findings.extend(device_stacks(config, &pam_d));
    }
    findings.extend(sshd(root));
    findings.extend(snapshot(paths));
    findings.extend(sudoers(root, paths));
    if let Some(config) = &config {
        findings.extend(endpoints(config));
    }
    let mut failed = false;
    for f in &findings {
        let tag = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => {
                failed = true;
                "FAIL"
            }
        };
        crate::say!("{tag}  {}", f.text);
    }
    if failed {
        crate::say!("zt-agent doctor: something needs fixing (FAIL above)");
        ExitCode::FAILURE
    } else {
        crate::say!("zt-agent doctor: all is well");
        ExitCode::SUCCESS
    }
}

fn read(root: &Path, path: &str) -> Option<String> {
    std::fs::read_to_string(root.join(path)).ok()
}

fn module_present(file: &str, dirs: &[&str], what: &str) -> Finding {
    match dirs
        .iter()
        .map(|d| Path::new(d).join(file))
        .find(|p| p.exists())
    {
        Some(p) => ok(format!("{what}: {}", p.display())),
        None => fail(format!(
            "{what}: {file} is in none of {}; reinstall the zt package",
            dirs.join(", ")
        )),
    }
}

/// The services of nsswitch.conf's `db` line, if there is one.
fn services<'a>(nsswitch: &'a str, db: &str) -> Option<Vec<&'a str>> {
    nsswitch.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let (name, rest) = line.split_once(':')?;
        (name.trim() == db).then(|| rest.split_whitespace().collect())
    })
}

/// passwd and group name zt after files (or compat): local accounts win.
pub fn nsswitch(text: &Option<String>) -> Finding {
    let Some(text) = text else {
        return fail("nsswitch: /etc/nsswitch.conf is missing");
    };
    let mut wrong = Vec::new();
    for db in ["passwd", "group"] {
        let Some(list) = services(text, db) else {
            wrong.push(format!("no {db} line"));
            continue;
        };
        let local = list.iter().position(|s| *s == "files" || *s == "compat");
        let zt = list.iter().position(|s| *s == "zt");
        match (local, zt) {
            (_, None) => wrong.push(format!("{db}: does not name zt")),
            (None, Some(_)) => wrong.push(format!("{db}: names zt but not files")),
            (Some(l), Some(z)) if z < l => wrong.push(format!(
                "{db}: zt before files (directory users could shadow local ones)"
            )),
            _ => {}
        }
    }
    if wrong.is_empty() {
        ok("nsswitch: passwd and group name zt after files")
    } else {
        fail(format!(
            "nsswitch: {}; the lines should read `passwd: files zt` and `group: files zt` (plus anything else you use)",
            wrong.join("; ")
        ))
    }
}

/// One line of a PAM stack after includes: type (auth, account...), control, module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamLine {
    pub kind: String,
    pub control: String,
    pub module: String,
    /// The module's arguments.
    pub args: Vec<String>,
}

/// The lines of PAM service `service` with `@include`, `include` and
/// `substack` followed (at most 8 deep: a loop is a broken config anyway).
pub fn pam_stack(service: &str, read: &dyn Fn(&str) -> Option<String>) -> Option<Vec<PamLine>> {
    fn walk(
        service: &str,
        read: &dyn Fn(&str) -> Option<String>,
        depth: u8,
        out: &mut Vec<PamLine>,
    ) -> Option<()> {
        let text = read(service)?;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(included) = line.strip_prefix("@include") {
                if depth < 8 {
                    walk(included.trim(), read, depth + 1, out);
                }
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(kind), Some(first)) = (words.next(), words.next()) else {
                continue;
            };
            let kind = kind.trim_start_matches('-').to_string();
            // a bracketed control may contain spaces: [success=1 default=ignore]
            let control = if first.starts_with('[') && !first.ends_with(']') {
                let mut c = first.to_string();
                for w in words.by_ref() {
                    c.push(' ');
                    c.push_str(w);
                    if w.ends_with(']') {
                        break;
                    }
                }
                c
            } else {
                first.to_string()
            };
            let Some(module) = words.next() else { continue };
            if (control == "include" || control == "substack") && depth < 8 {
                let mut inner = Vec::new();
                walk(module, read, depth + 1, &mut inner);
                out.extend(inner.into_iter().filter(|l| l.kind == kind));
                continue;
            }
            out.push(PamLine {
                kind,
                control,
                module: module.rsplit('/').next().unwrap_or(module).to_string(),
                args: words.map(str::to_string).collect(),
            });
        }
        Some(())
    }
    let mut out = Vec::new();
    walk(service, read, 0, &mut out)?;
    Some(out)
}

/// sshd needs pam_zt in auth (tokens) and account (login policy); sudo needs
/// it in account, or max_offline and the login groups do not reach sudo.
pub fn pam_stacks(read: &dyn Fn(&str) -> Option<String>) -> Vec<Finding> {
    let has = |stack: &[PamLine], kind: &str| {
        stack
            .iter()
            .any(|l| l.kind == kind && l.module == "pam_zt.so")
    };
    let mut findings = Vec::new();
    for (service, kinds, why) in [
        (
            "sshd",
            &["auth", "account"][..],
            "token logins and the login policy over SSH",
        ),
        (
            "sudo",
            &["account"][..],
            "the login policy (login groups, max_offline) for sudo",
        ),
    ] {
        let Some(stack) = pam_stack(service, read) else {
            findings.push(ok(format!("PAM {service}: not installed")));
            continue;
        };
        let missing: Vec<&str> = kinds.iter().copied().filter(|k| !has(&stack, k)).collect();
        if missing.is_empty() {
            findings.push(ok(format!(
                "PAM {service}: pam_zt in {}",
                kinds.join(" and ")
            )));
        } else {
            findings.push(fail(format!(
                "PAM {service}: no pam_zt in its {} stack ({why}); run `pam-auth-update --enable zt`, or add it to /etc/pam.d/{service}",
                missing.join(" and ")
            )));
        }
    }
    findings
}

/// The PAM services a person signs in through, where `device` makes sense.
const DEVICE_SERVICES: [&str; 4] = ["sshd", "sudo", "su", "login"];

/// Device-code sign-in needs both halves: an issuer with `device_login` and
/// `pam_zt.so device` in some auth stack. One without the other is a
/// configuration that does nothing.
pub fn device_stacks(config: &AgentConfig, read: &dyn Fn(&str) -> Option<String>) -> Vec<Finding> {
    let issuer = config
        .issuer_specs
        .iter()
        .find(|s| s.device.is_some())
        .map(|s| s.iss.clone());
    let with_device: Vec<&str> = DEVICE_SERVICES
        .iter()
        .copied()
        .filter(|service| {
            pam_stack(service, read).is_some_and(|stack| {
                stack.iter().any(|l| {
                    l.kind == "auth"
                        && l.module == "pam_zt.so"
                        && l.args.iter().any(|a| a == "device")
                })
            })
        })
        .collect();
    // `device` in a stack every service includes reaches services that no
    // person sits at (mail, ftp): keep it in sshd, sudo, su, login
    let shared: Vec<&str> = ["common-auth", "system-auth", "password-auth"]
        .into_iter()
        .filter(|file| {
            read(file).is_some_and(|text| {
                text.lines().any(|l| {
                    let l = l.split('#').next().unwrap_or("");
                    l.contains("pam_zt.so") && l.split_whitespace().any(|w| w == "device")
                })
            })
        })
        .collect();
    let mut findings: Vec<Finding> = shared
        .iter()
        .map(|file| {
            warn(format!(
                "device sign-in: /etc/pam.d/{file} passes `device` to pam_zt: every service that includes it offers browser sign-in, also those no person sits at; put it in the sshd, sudo, su or login stack instead"
            ))
        })
        .collect();
    findings.extend(match (issuer, with_device.is_empty()) {
        (None, true) => Vec::new(),
        (Some(iss), true) => vec![warn(format!(
            "device sign-in: issuer {iss} has device_login = true, but no PAM stack ({}) passes `device` to pam_zt: nobody is offered a browser sign-in",
            DEVICE_SERVICES.join(", ")
        ))],
        (None, false) => vec![warn(format!(
            "device sign-in: PAM {} pass `device` to pam_zt, but no [[issuers]] entry has device_login = true: an empty answer is refused (\"Browser sign-in is unavailable\")",
            with_device.join(", ")
        ))],
        (Some(iss), false) => vec![ok(format!(
            "device sign-in: through {iss} for PAM {}",
            with_device.join(", ")
        ))],
    });
    findings
}

/// `sshd -T` as `key value` pairs (keys lowercase, as sshd prints them).
fn sshd_setting<'a>(effective: &'a str, key: &str) -> Option<&'a str> {
    effective.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then_some(v.trim())
    })
}

/// What sshd's effective configuration means for zt.
pub fn sshd_effective(effective: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    let setting = |k| sshd_setting(effective, k).unwrap_or("");
    if setting("usepam") != "yes" {
        findings.push(fail(
            "sshd: UsePAM is not yes: pam_zt never sees an SSH login (/etc/ssh/sshd_config.d/zt.conf sets it)",
        ));
    }
    if setting("authorizedprincipalscommand").contains("zt-agent principals") {
        findings.push(ok(
            "sshd: AuthorizedPrincipalsCommand is zt-agent principals",
        ));
    } else {
        findings.push(fail(
            "sshd: AuthorizedPrincipalsCommand is not `zt-agent principals %u`: certificate logins of directory users fail; is /etc/ssh/sshd_config.d/zt.conf there and included by sshd_config?",
        ));
    }
    // OpenSSH before 8.7 prints both, and keyboard-interactive reaches PAM
    // only when ChallengeResponseAuthentication is yes too; later releases
    // print only kbdinteractiveauthentication
    let kbd = setting("kbdinteractiveauthentication") == "yes"
        && matches!(setting("challengeresponseauthentication"), "" | "yes");
    if !kbd {
        findings.push(fail(
            "sshd: keyboard-interactive is off: tokens cannot be typed at an SSH prompt",
        ));
    } else if setting("passwordauthentication") == "no" {
        findings.push(warn(
            "sshd: PasswordAuthentication no, but keyboard-interactive (for tokens) also lets pam_unix ask local accounts for their password; if local passwords must stay off over SSH, use a Match block or take pam_unix out of sshd's auth stack",
        ));
    }
    findings
}

fn sshd(root: &Path) -> Vec<Finding> {
    let sshd = root.join("usr/sbin/sshd");
    if !sshd.exists() {
        return vec![ok("sshd: not installed")];
    }
    let out = match Command::new(&sshd).arg("-T").output() {
        Ok(o) => o,
        Err(e) => return vec![fail(format!("sshd: cannot run sshd -T: {e}"))],
    };
    if !out.status.success() {
        return vec![sshd_t_failed(&String::from_utf8_lossy(&out.stderr))];
    }
    let effective = String::from_utf8_lossy(&out.stdout);
    let mut findings = sshd_effective(&effective);
    findings.push(match sshd_setting(&effective, "trustedusercakeys") {
        None | Some("none") => warn(
            "sshd: no TrustedUserCAKeys: SSH certificates are not accepted (tokens and keys still are)",
        ),
        Some(path) => ca_file(Path::new(path)),
    });
    findings
}

/// `sshd -T` refused to run. Without /run/sshd (sshd stopped, or started by
/// socket activation, which makes it only per connection) sshd -T stops
/// before reading the config, which says nothing about whether sshd would
/// start: ssh.service makes the directory first. That is a note, not a FAIL;
/// doctor does not make the directory itself (it changes nothing on the host).
pub fn sshd_t_failed(stderr: &str) -> Finding {
    let stderr = stderr.trim();
    if stderr.contains("Missing privilege separation directory") {
        warn(format!(
            "sshd: `sshd -T` could not check the config: {stderr} (sshd is not running; ssh.service makes it at start). \
             To check now: install -d -m 0755 /run/sshd && zt-agent doctor"
        ))
    } else {
        fail(format!(
            "sshd: `sshd -T` fails, sshd would not start: {stderr}"
        ))
    }
}

/// The CA file sshd trusts for user certificates: root-owned, not writable by
/// others (anyone who can add a line can log in as anyone), at least one key.
pub fn ca_file(path: &Path) -> Finding {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return fail(format!(
                "CA file {}: {e}; add your CA's public key (README, \"SSH certificates\")",
                path.display()
            ));
        }
    };
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return fail(format!(
            "CA file {}: must be root-owned and not group/other writable (chown root: && chmod 0644)",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let keys = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    if keys == 0 {
        fail(format!(
            "CA file {}: holds no key; add your CA's public key line",
            path.display()
        ))
    } else {
        ok(format!("CA file {}: {keys} key(s)", path.display()))
    }
}

fn snapshot(paths: &Paths) -> Vec<Finding> {
    let mut findings = Vec::new();
    match zt_published::open_pair(&paths.state_dir) {
        Ok(pair) => match pair.snapshot() {
            Ok(s) => findings.push(ok(format!(
                "snapshot: {} users, {} groups, content from {} s ago",
                s.user_count(),
                s.group_count(),
                now().saturating_sub(s.synced_at())
            ))),
            Err(e) => findings.push(fail(format!("snapshot: unreadable: {e}"))),
        },
        Err(e) => findings.push(fail(format!(
            "snapshot: none usable in {} ({e}); directory users do not resolve: see `zt-agent status`",
            paths.state_dir.display()
        ))),
    }
    let status = zt_snapshot::StateDir::open(&paths.state_dir)
        .map(|s| load_status(&s))
        .unwrap_or_default();
    if let Some(why) = crate::status::frozen(&status, now()) {
        findings.push(fail(format!("sync: {why}")));
    } else if let Some(e) = &status.last_error {
        findings.push(fail(format!("sync: the last one failed: {e}")));
    } else if let Some(t) = status.last_success {
        findings.push(ok(format!(
            "sync: last good one {} s ago",
            now().saturating_sub(t)
        )));
    }
    findings
}

fn sudoers(root: &Path, paths: &Paths) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Some(visudo) = ["usr/sbin/visudo", "usr/bin/visudo"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.exists())
    else {
        return vec![ok("sudo: not installed")];
    };
    match Command::new(&visudo).arg("-c").output() {
        Ok(o) if o.status.success() => {
            findings.push(ok("sudo: `visudo -c` accepts the sudoers files"))
        }
        Ok(o) => findings.push(fail(format!(
            "sudo: `visudo -c` refuses the sudoers files: {}",
            String::from_utf8_lossy(&o.stdout).trim()
        ))),
        Err(e) => findings.push(fail(format!("sudo: cannot run visudo -c: {e}"))),
    }
    let dir = &paths.sudoers.dir;
    if crate::sudo::includes_dir(&root.join("etc/sudoers"), dir) {
        findings.push(ok(format!("sudo: /etc/sudoers reads {}", dir.display())));
    } else {
        findings.push(fail(format!(
            "sudo: /etc/sudoers does not read {} (`@includedir {}`): zt's sudo rules are inert",
            dir.display(),
            dir.display()
        )));
    }
    let sudo_conf = root.join("etc/sudo.conf");
    if crate::sudo::group_source_dynamic(&sudo_conf) {
        findings.push(ok("sudo: sudo.conf has Set group_source dynamic"));
    } else {
        findings.push(fail(format!(
            "sudo: {} (zt does not edit sudo.conf: it is sudo's own file)",
            crate::sudo::group_source_problem(&sudo_conf)
        )));
    }
    findings
}

/// Parses an HTTP `Date` (IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn http_date(text: &str) -> Option<SystemTime> {
    let mut w = text.split_whitespace().skip(1);
    let day: u64 = w.next()?.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| Some(*m) == w.clone().next())? as u64
        + 1;
    w.next();
    let year: u64 = w.next()?.parse().ok()?;
    let mut hms = w.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if w.next()? != "GMT" || !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // days from civil (Howard Hinnant's algorithm)
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + m * 60 + s))
}

/// The server's clock: the `Date` header of its answer to a GET of `url`.
fn server_date(http: &Http, url: &str) -> Option<SystemTime> {
    let response = http.agent().get(url).call().ok()?;
    let date = response.headers().get("date")?.to_str().ok()?;
    http_date(date)
}

/// An API connector's directory (entra, okta, google, scim, keycloak), read
/// once through the agent's own connector code: the token, every page, the
/// read deadline, as the next sync will meet them. Nothing is saved (no delta
/// link, no snapshot). The error is the connector's, credentials redacted.
pub fn directory_read(config: &AgentConfig) -> Finding {
    let kind = config.directory.kind.get_ref().name();
    match crate::sync::load_directory(config, None) {
        Ok(read) => ok(format!(
            "directory: {kind}: read {} user(s) and {} group(s)",
            read.directory.users.len(),
            read.directory.groups.len()
        )),
        Err(e) => fail(format!("directory: {kind}: {e}")),
    }
}

/// A publisher's `[publish]`: the signing key loads, and a folder
/// destination exists and is a directory (an S3 bucket is checked by the
/// next publication: doctor writes nothing).
fn publish_check(target: &crate::fleet::PublishTarget) -> Finding {
    let key = match crate::fleet::sign::load(&target.signing_key_file) {
        Ok(k) => k,
        Err(e) => return fail(format!("publish: signing key: {e}")),
    };
    let public = crate::fleet::sign::encode_public(key.verifying_key().as_bytes());
    match &target.to {
        crate::fleet::Location::Folder(p) if !p.is_dir() => fail(format!(
            "publish: {} is not a folder (create it, and serve it with a web server)",
            p.display()
        )),
        _ => ok(format!(
            "publish: signing key loads; hosts need public_keys = [\"{public}\"]"
        )),
    }
}

/// The directory source and every issuer's keys, fetched as the agent does,
/// and the host's clock against the key servers' `Date`.
fn endpoints(config: &AgentConfig) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Some(path) = &config.directory.path {
        findings.push(if path.exists() {
            ok(format!("directory: {} is there", path.display()))
        } else {
            fail(format!(
                "directory: {} does not exist: the agent is not configured yet",
                path.display()
            ))
        });
    }
    if !matches!(
        config.directory.source,
        DirectorySource::File { .. } | DirectorySource::Unchecked
    ) {
        findings.push(directory_read(config));
    }
    if let Some(target) = &config.publish_target {
        findings.push(publish_check(target));
    }
    if config.issuer_specs.is_empty() {
        findings.push(warn("issuers: none configured: pam_zt accepts no token"));
        return findings;
    }
    let http = match Http::new(&config.http) {
        Ok(h) => h,
        Err(e) => {
            findings.push(fail(format!("issuers: no HTTP client: {e}")));
            return findings;
        }
    };
    for spec in &config.issuer_specs {
        if let Some(device) = &spec.device {
            findings.push(
                match crate::device::idp::endpoints(&http, &spec.iss, device) {
                    Ok((d, t)) => ok(format!(
                        "issuer {}: device sign-in at {d}, tokens from {t}",
                        spec.iss
                    )),
                    Err(e) => fail(format!("issuer {}: device sign-in: {e}", spec.iss)),
                },
            );
        }
        match crate::keys::fetch(&http, spec) {
            Ok(keys) => findings.push(ok(format!(
                "issuer {}: {} key(s) fetched",
                spec.iss,
                keys.len()
            ))),
            Err(e) => findings.push(fail(format!("issuer {}: {e}", spec.iss))),
        }
        let url = match &spec.keys {
            KeySource::Jwks(u) | KeySource::Discovery(u) => u,
        };
        if let Some(date) = server_date(&http, url) {
            let skew = match SystemTime::now().duration_since(date) {
                Ok(d) => d,
                Err(e) => e.duration(),
            };
            // Date has whole seconds: one second of skew is rounding
            findings.push(if skew > MAX_CLOCK_SKEW {
                fail(format!(
                    "clock: {} s off {url}'s clock (more than {} s: tokens are misjudged); check NTP (timedatectl)",
                    skew.as_secs(),
                    MAX_CLOCK_SKEW.as_secs()
                ))
            } else {
                ok(format!("clock: within {} s of {url}", skew.as_secs().max(1)))
            });
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn nsswitch_wants_zt_after_files_on_both_lines() {
        let check = |t: &str| nsswitch(&Some(t.to_string())).level;
        assert_eq!(
            check("passwd: files zt\ngroup: files zt systemd\n"),
            Level::Ok
        );
        assert_eq!(check("passwd: compat zt\ngroup:\tcompat zt\n"), Level::Ok);
        assert_eq!(check("passwd: files sss zt\ngroup: files zt\n"), Level::Ok);
        assert_eq!(check("passwd: files zt\ngroup: files\n"), Level::Fail);
        assert_eq!(check("passwd: zt files\ngroup: files zt\n"), Level::Fail);
        assert_eq!(check("# passwd: files zt\ngroup: files zt\n"), Level::Fail);
        assert_eq!(check("passwd: files # zt\ngroup: files zt\n"), Level::Fail);
        assert_eq!(nsswitch(&None).level, Level::Fail);
    }

    fn files(entries: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn pam_stacks_follow_includes_to_pam_zt() {
        // Debian's layout after pam-auth-update with zt's profile
        let debian = files(&[
            (
                "sshd",
                "@include common-auth\naccount required pam_nologin.so\n@include common-account\n",
            ),
            (
                "sudo",
                "session required pam_limits.so\n@include common-auth\n@include common-account\n",
            ),
            (
                "common-auth",
                "auth\t[success=2 default=ignore]\tpam_zt.so\nauth [success=1 default=ignore] pam_unix.so nullok try_first_pass\nauth requisite pam_deny.so\n",
            ),
            (
                "common-account",
                "account [success=1 new_authtok_reqd=done default=ignore] pam_unix.so\naccount required pam_zt.so\n",
            ),
        ]);
        let findings = pam_stacks(&debian);
        assert!(
            findings.iter().all(|f| f.level == Level::Ok),
            "{findings:?}"
        );
        // RHEL style `include` and an absolute module path count too
        let rhel = files(&[
            (
                "sshd",
                "auth substack password-auth\naccount include password-auth\n",
            ),
            ("sudo", "account include system-auth\n"),
            (
                "password-auth",
                "auth sufficient /usr/lib64/security/pam_zt.so\naccount required pam_zt.so\n",
            ),
            ("system-auth", "account required pam_unix.so\n"),
        ]);
        let findings = pam_stacks(&rhel);
        assert_eq!(findings[0].level, Level::Ok, "{findings:?}");
        assert_eq!(findings[1].level, Level::Fail, "sudo lacks pam_zt account");
        assert!(findings[1].text.contains("account"), "{}", findings[1].text);
    }

    #[test]
    fn device_sign_in_needs_an_issuer_and_a_pam_argument() {
        let config = |device: bool| {
            let extra = if device {
                "\n[[issuers]]\nkind = \"oidc\"\nissuer = \"https://id.example.com\"\naudiences = [\"zt\"]\ndevice_login = true\nclient_id = \"zt\"\n"
            } else {
                ""
            };
            AgentConfig::parse(
                &format!(
                    "[directory]\nkind = \"file\"\npath = \"/d.json\"\n[users]\nname_from = \"username\"\n{extra}"
                ),
                "agent.toml",
            )
            .unwrap()
        };
        let with = files(&[(
            "sshd",
            "auth [success=done ignore=ignore default=die] pam_zt.so device\naccount required pam_zt.so\n",
        )]);
        let without = files(&[("sshd", "auth required pam_zt.so\n")]);
        let f = device_stacks(&config(true), &with);
        assert_eq!(f[0].level, Level::Ok, "{f:?}");
        assert!(f[0].text.contains("sshd"), "{f:?}");
        let f = device_stacks(&config(true), &without);
        assert!(
            f[0].level == Level::Warn && f[0].text.contains("nobody is offered"),
            "{f:?}"
        );
        let f = device_stacks(&config(false), &with);
        assert!(
            f[0].level == Level::Warn && f[0].text.contains("device_login"),
            "{f:?}"
        );
        assert!(device_stacks(&config(false), &without).is_empty());
        let shared = files(&[
            ("sshd", "@include common-auth\n"),
            ("common-auth", "auth sufficient pam_zt.so device\n"),
        ]);
        let f = device_stacks(&config(true), &shared);
        assert!(
            f.iter()
                .any(|f| f.level == Level::Warn && f.text.contains("common-auth")),
            "{f:?}"
        );
    }

    #[test]
    fn pam_stack_survives_an_include_loop() {
        let looped = files(&[("sshd", "@include sshd\nauth required pam_zt.so\n")]);
        let stack = pam_stack("sshd", &looped).expect("stack");
        assert!(stack.iter().any(|l| l.module == "pam_zt.so"));
        assert_eq!(pam_stack("absent", &looped), None);
    }

    #[test]
    fn sshd_effective_config_is_judged() {
        let good = "usepam yes\nauthorizedprincipalscommand /usr/sbin/zt-agent principals %u\nkbdinteractiveauthentication yes\npasswordauthentication yes\n";
        assert!(!sshd_effective(good).is_empty());
        assert!(sshd_effective(good).iter().all(|f| f.level == Level::Ok));
        let no_pam = good.replace("usepam yes", "usepam no");
        assert!(
            sshd_effective(&no_pam)
                .iter()
                .any(|f| f.level == Level::Fail)
        );
        let passwords_off = good.replace("passwordauthentication yes", "passwordauthentication no");
        assert!(
            sshd_effective(&passwords_off)
                .iter()
                .any(|f| f.level == Level::Warn)
        );
        // OpenSSH before 8.7 prints both names; PAM needs both yes
        let old = format!("{good}challengeresponseauthentication yes\n");
        assert!(
            sshd_effective(&old).iter().all(|f| f.level == Level::Ok),
            "OpenSSH 8.4 with both on"
        );
        let old_off = format!("{good}challengeresponseauthentication no\n");
        assert!(
            sshd_effective(&old_off)
                .iter()
                .any(|f| f.level == Level::Fail),
            "OpenSSH 8.4 with ChallengeResponseAuthentication no: no PAM prompt"
        );
        let no_kbd = good.replace(
            "kbdinteractiveauthentication yes",
            "kbdinteractiveauthentication no",
        );
        assert!(
            sshd_effective(&no_kbd)
                .iter()
                .any(|f| f.level == Level::Fail)
        );
    }

    #[test]
    fn ca_file_must_be_safe_and_hold_a_key() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("ca");
        assert_eq!(ca_file(&p).level, Level::Fail, "missing");
        std::fs::write(&p, "# nothing yet\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        // the tests run as root: the file is root-owned
        assert_eq!(ca_file(&p).level, Level::Fail, "no key");
        std::fs::write(
            &p,
            "ecdsa-sha2-nistp256 AAAA open-ssh-ca@cloudflareaccess.org\n",
        )
        .expect("write");
        assert_eq!(ca_file(&p).level, Level::Ok);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        assert_eq!(ca_file(&p).level, Level::Fail, "world writable");
    }

    #[test]
    fn sshd_t_without_its_runtime_directory_is_a_note() {
        let f = sshd_t_failed("Missing privilege separation directory: /run/sshd\n");
        assert!(matches!(f.level, Level::Warn), "{}", f.text);
        assert!(
            f.text.contains("install -d -m 0755 /run/sshd"),
            "{}",
            f.text
        );
        let f = sshd_t_failed("/etc/ssh/sshd_config line 3: Bad configuration option: Nope\n");
        assert!(matches!(f.level, Level::Fail), "{}", f.text);
        assert!(f.text.contains("sshd would not start"), "{}", f.text);
    }

    #[test]
    fn an_api_directory_is_read_through_the_connector() {
        // a SCIM service nothing listens on, its token in a trusted file: the
        // read fails as the agent's would, named, and the token is not shown
        let d = tempfile::tempdir().expect("tempdir");
        let token = d.path().join("scim.token");
        std::fs::write(&token, "test-only-doctor-token-91c2\n").expect("write");
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let config = AgentConfig::parse(
            &format!(
                "[directory]\nkind = \"scim\"\nurl = \"https://127.0.0.1:9/scim/v2\"\ntoken_file = \"{}\"\n\n\
                 [users]\ndomains = [\"example.com\"]\n\n[[groups]]\nid = \"g1\"\nname = \"sre\"\nlogin = true\n",
                token.display()
            ),
            "agent.toml",
        )
        .expect("config");
        let f = directory_read(&config);
        assert!(matches!(f.level, Level::Fail), "{}", f.text);
        assert!(
            f.text.starts_with("directory: scim: directory unavailable"),
            "{}",
            f.text
        );
        assert!(!f.text.contains("test-only-doctor-token"), "{}", f.text);
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(
            http_date("Wed, 25 Nov 2026 12:00:00 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_608_000))
        );
        assert_eq!(http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(http_date("yesterday"), None);
        assert_eq!(http_date("Sun, 32 Nov 1994 08:49:37 GMT"), None);
    }
}
