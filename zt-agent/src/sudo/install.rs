//! Installing /etc/sudoers.d/zt so that sudo only ever sees a whole, valid
//! file: the new text goes to a temp name sudo ignores (it skips names with a
//! `.`), is checked with `visudo -cf`, and replaces the old file by rename.
//! An agent killed at any point leaves the old file or the new one, and at
//! worst a stale temp file that sudo never reads (removed at the next sync).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use std::collections::HashSet;

use super::file::{self, Block, MARK, Rendered};

/// The installed file's name in the sudoers directory.
pub const FILE_NAME: &str = "zt";
/// Where the new text is checked before it replaces the file. The `.` makes
/// sudo's `@includedir` skip it.
pub const TEMP_NAME: &str = ".zt.new";
/// Where visudo is looked for (not PATH: the agent runs as root).
pub const VISUDO: [&str; 3] = ["/usr/sbin/visudo", "/usr/bin/visudo", "/sbin/visudo"];
/// Mode of the installed file (what sudo and visudo expect).
pub const MODE: u32 = 0o440;

/// Where the file goes and which visudo checks it.
#[derive(Debug, Clone)]
pub struct Target {
    /// /etc/sudoers.d
    pub dir: PathBuf,
    /// None: the first of [`VISUDO`] that exists.
    pub visudo: Option<PathBuf>,
}

impl Default for Target {
    fn default() -> Self {
        Target {
            dir: PathBuf::from("/etc/sudoers.d"),
            visudo: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The installed file already says this (or there is none and none is wanted).
    Unchanged,
    Installed,
    /// No rule applies any more: the agent's file was removed.
    Removed,
    /// sudo is not installed (no sudoers directory): nothing to do, not an error.
    NoSudo,
}

/// Makes the installed file say `rendered.text` (or removes the agent's file
/// when it is None). On any error the installed file is left as it was.
pub fn apply(target: &Target, rendered: &Rendered) -> Result<Outcome, String> {
    let dir = &target.dir;
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Outcome::NoSudo),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    let path = dir.join(FILE_NAME);
    // No rule and no file of ours: nothing to do, whatever the directory is
    // like (a host without [[sudo]] never depends on /etc/sudoers.d).
    if rendered.text.is_none() && std::fs::symlink_metadata(&path).is_err() {
        return Ok(Outcome::Unchanged);
    }
    check_dir(dir, &meta)?;
    let temp = dir.join(TEMP_NAME);
    remove_if_present(&temp)?;
    let installed = read_installed(&path)?;
    let ours = installed
        .as_ref()
        .is_none_or(|i| i.text.starts_with(MARK.as_bytes()));
    let Some(text) = &rendered.text else {
        if installed.is_some() && ours {
            std::fs::remove_file(&path)
                .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
            sync_dir(dir)?;
            return Ok(Outcome::Removed);
        }
        return Ok(Outcome::Unchanged);
    };
    if let Some(i) = &installed {
        if !ours {
            return Err(format!(
                "{} exists and was not written by zt-agent (its first line is not \"{MARK}...\"); \
                 move it away so the [[sudo]] rules can be installed",
                path.display()
            ));
        }
        if i.text == text.as_bytes() && i.mode == MODE && i.uid == 0 {
            return Ok(Outcome::Unchanged);
        }
    }
    let visudo = match &target.visudo {
        Some(v) => v.clone(),
        None => match VISUDO.iter().map(Path::new).find(|p| p.exists()) {
            Some(v) => v.to_path_buf(),
            // sudo removed but not purged: its directory stays behind. zt's
            // own file goes (removing needs no check), so a sudo installed
            // later starts from the rules of that day, not these.
            None if !SUDO.iter().any(|p| Path::new(p).exists()) => {
                if installed.is_some() && ours {
                    std::fs::remove_file(&path)
                        .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
                }
                return Ok(Outcome::NoSudo);
            }
            None => {
                return Err(format!(
                    "{} exists but visudo was not found ({}): the rules cannot be checked, so \
                     they are not installed",
                    dir.display(),
                    VISUDO.join(", ")
                ));
            }
        },
    };
    let Err(why) = install_checked(&visudo, &temp, &path, text, rendered) else {
        return Ok(Outcome::Installed);
    };
    // Which rules does visudo refuse? Checked one by one, only on this path.
    let refused: Vec<&Block> = rendered
        .blocks
        .iter()
        .filter(|b| {
            let alone = format!("{}{}", rendered.header, b.text);
            write_temp(&temp, &alone).is_err() || {
                let bad = check(&visudo, &temp, &Rendered::default()).is_err();
                let _ = std::fs::remove_file(&temp);
                bad
            }
        })
        .collect();
    let unchanged = || {
        Err(format!(
            "{why}; {} is unchanged (the previous rules stay in force)",
            path.display()
        ))
    };
    if refused.is_empty() {
        // only the combination fails: nothing to single out
        return unchanged();
    }
    // Everything else applies now, withdrawals included; the groups of refused
    // rules keep what the installed file gave them until the config is fixed.
    let previous = installed
        .as_ref()
        .and_then(|i| file::parse(&i.text))
        .map(|(_, blocks)| blocks)
        .unwrap_or_default();
    let mut kept_groups = HashSet::new();
    let mut fallback = rendered.header.clone();
    for b in &rendered.blocks {
        if !refused.iter().any(|r| std::ptr::eq(*r, b)) {
            fallback.push_str(&b.text);
        } else if kept_groups.insert(b.group.as_str()) {
            for p in previous.iter().filter(|p| p.group == b.group) {
                if !fallback.contains(&p.text) {
                    fallback.push_str(&p.text);
                }
            }
        }
    }
    if installed
        .as_ref()
        .is_some_and(|i| i.text == fallback.as_bytes())
    {
        return unchanged();
    }
    match install_checked(&visudo, &temp, &path, &fallback, &Rendered::default()) {
        Ok(()) => Err(format!(
            "{why}; the other rules were installed in {}, and the refused rules' groups keep \
             the rules the previous file gave them",
            path.display()
        )),
        Err(_) => unchanged(),
    }
}

/// How many rules zt's installed file holds (0 when there is none, or it is
/// not zt's): what is in force, whatever the last attempt did.
pub fn installed_rule_count(target: &Target) -> usize {
    match read_installed(&target.dir.join(FILE_NAME)) {
        Ok(Some(i)) if i.text.starts_with(MARK.as_bytes()) => i
            .text
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"%"))
            .count(),
        _ => 0,
    }
}

/// Where sudo itself may be (a sudoers directory without sudo is a leftover).
const SUDO: [&str; 2] = ["/usr/bin/sudo", "/bin/sudo"];

/// Writes `text` to the temp name, checks it with visudo and renames it over
/// `path`. On error the installed file is as it was.
fn install_checked(
    visudo: &Path,
    temp: &Path,
    path: &Path,
    text: &str,
    rendered: &Rendered,
) -> Result<(), String> {
    write_temp(temp, text)?;
    if let Err(why) = check(visudo, temp, rendered) {
        let _ = std::fs::remove_file(temp);
        return Err(why);
    }
    std::fs::rename(temp, path).map_err(|e| {
        let _ = std::fs::remove_file(temp);
        format!("cannot install {}: {e}", path.display())
    })?;
    if let Some(dir) = path.parent()
        && let Err(e) = sync_dir(dir)
    {
        // installed all the same: say so rather than "unchanged"
        tracing::warn!("{} installed, but {e}", path.display());
    }
    Ok(())
}

/// The sudoers directory must be a real directory only root can write to
/// (sudo itself refuses to read one that others can write).
fn check_dir(dir: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    if !meta.is_dir() {
        return Err(format!(
            "{} is not a directory (a symlink?); not writing sudo rules into it",
            dir.display()
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} must be owned by root and not group/other writable (owner uid {}, mode {:o})",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

struct Installed {
    text: Vec<u8>,
    mode: u32,
    uid: u32,
}

/// The installed file, if any; a symlink is refused, never followed.
fn read_installed(path: &Path) -> Result<Option<Installed>, String> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let mut f = match f {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(format!(
                "{} is a symlink; not replacing it (remove it so the [[sudo]] rules can be installed)",
                path.display()
            ));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let mut text = Vec::new();
    Read::by_ref(&mut f)
        .take(16 << 20)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Some(Installed {
        text,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
    }))
}

fn remove_if_present(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove the stale {}: {e}", path.display())),
    }
}

/// Writes the temp file root:root 0440 and flushes it to disk, so the rename
/// can only ever expose complete text.
fn write_temp(temp: &Path, text: &str) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", temp.display());
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(temp)
        .map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::fchown(&f, Some(0), Some(0)).map_err(fail)?;
    }
    // explicit: the umask may have taken bits away, never add any
    f.set_permissions(std::fs::Permissions::from_mode(MODE))
        .map_err(fail)?;
    f.sync_all().map_err(fail)
}

/// `visudo -cf TEMP`; on refusal, says which config entry the failing line
/// came from.
fn check(visudo: &Path, temp: &Path, rendered: &Rendered) -> Result<(), String> {
    let o = Command::new(visudo)
        .arg("-cf")
        .arg(temp)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", visudo.display()))?;
    if o.status.success() {
        return Ok(());
    }
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    Err(explain(&said, &temp.display().to_string(), rendered))
}

/// visudo's message, with the temp file's line numbers turned into the config
/// entries they came from.
fn explain(said: &str, temp: &str, rendered: &Rendered) -> String {
    let mut places = Vec::new();
    let mut details = Vec::new();
    for line in said.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix(temp).and_then(|r| r.strip_prefix(':')) {
            let n: Option<usize> = rest.split(':').next().and_then(|n| n.parse().ok());
            let what = rest.splitn(3, ':').nth(2).unwrap_or(rest).trim();
            match n.and_then(|n| rendered.rule_at(n)) {
                Some(at) => places.push(format!("the [[sudo]] rule at {at}: {what}")),
                None => places.push(format!("line {}: {what}", n.unwrap_or(0))),
            }
        } else if !line.contains(temp) && !line.starts_with('^') {
            details.push(line.to_string());
        }
    }
    let mut msg = String::from("visudo refused the generated sudo rules");
    if places.is_empty() {
        msg.push_str(&format!(": {}", said.trim().replace('\n', " | ")));
    } else {
        msg.push_str(&format!(": {}", places.join("; ")));
        if !details.is_empty() {
            msg.push_str(&format!(" (near: {})", details.join(" | ")));
        }
    }
    msg
}

/// Makes a rename or unlink in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sudo::file::{self, SudoRule};
    use crate::sudo::rule::Rights;
    use std::collections::{HashMap, HashSet};

    fn visudo() -> Option<PathBuf> {
        VISUDO
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .filter(|_| unsafe { libc::geteuid() } == 0)
    }

    fn rendered(rule: &str) -> Rendered {
        file::render(
            "/etc/zt/agent.toml",
            &[SudoRule {
                at: "agent.toml:9".into(),
                group_id: "g".into(),
                rights: Rights::Line(rule.into()),
            }],
            &HashMap::from([("g".to_string(), "sre".to_string())]),
            &HashSet::new(),
        )
    }

    fn target(dir: &Path) -> Target {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Target {
            dir: dir.to_path_buf(),
            visudo: visudo(),
        }
    }

    #[test]
    fn a_host_without_sudo_is_not_an_error() {
        let t = Target {
            dir: PathBuf::from("/nonexistent/sudoers.d"),
            visudo: None,
        };
        assert_eq!(apply(&t, &rendered("ALL=(ALL) ALL")), Ok(Outcome::NoSudo));
    }

    #[test]
    fn installs_checks_replaces_and_removes() {
        let Some(_) = visudo() else {
            eprintln!("skipped: needs root and visudo (the e2e sudo tests cover this too)");
            return;
        };
        let d = tempfile::tempdir().unwrap();
        let t = target(d.path());
        let path = d.path().join(FILE_NAME);
        assert_eq!(
            apply(&t, &rendered("ALL=(ALL:ALL) ALL")),
            Ok(Outcome::Installed)
        );
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o440, 0));
        assert_eq!(
            apply(&t, &rendered("ALL=(ALL:ALL) ALL")),
            Ok(Outcome::Unchanged)
        );

        // visudo refuses: the old file stays, the message names the config line
        let before = std::fs::read(&path).unwrap();
        let e = apply(&t, &rendered("ALL=(ALL:ALL) NOPASSWD ALL")).unwrap_err();
        assert!(e.contains("agent.toml:9"), "{e}");
        assert!(e.contains("unchanged"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(!d.path().join(TEMP_NAME).exists());

        // a stale temp file from a killed agent is cleaned up
        std::fs::write(d.path().join(TEMP_NAME), "garbage").unwrap();
        assert_eq!(
            apply(&t, &rendered("ALL=(root) /usr/bin/id")),
            Ok(Outcome::Installed)
        );
        assert!(!d.path().join(TEMP_NAME).exists());
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("%sre ALL=(root) /usr/bin/id")
        );

        assert_eq!(apply(&t, &Rendered::default()), Ok(Outcome::Removed));
        assert!(!path.exists());
        assert_eq!(apply(&t, &Rendered::default()), Ok(Outcome::Unchanged));
    }

    /// `rules`: (group id, rule) pairs, rendered for groups g -> sre, h -> ops, i -> dev.
    fn rendered_rules(rules: &[(&str, &str)]) -> Rendered {
        let rules: Vec<SudoRule> = rules
            .iter()
            .enumerate()
            .map(|(n, (group, rule))| SudoRule {
                at: format!("agent.toml:{}", 10 + n),
                group_id: group.to_string(),
                rights: Rights::Line(rule.to_string()),
            })
            .collect();
        file::render(
            "/etc/zt/agent.toml",
            &rules,
            &HashMap::from([
                ("g".to_string(), "sre".to_string()),
                ("h".to_string(), "ops".to_string()),
                ("i".to_string(), "dev".to_string()),
            ]),
            &HashSet::new(),
        )
    }

    const BROKEN: &str = "ALL=(ALL) NOPASSWD ALL";

    #[test]
    fn a_refused_rule_never_holds_back_the_other_changes() {
        let Some(_) = visudo() else {
            eprintln!("skipped: needs root and visudo");
            return;
        };
        let d = tempfile::tempdir().unwrap();
        let t = target(d.path());
        let path = d.path().join(FILE_NAME);
        let read = || std::fs::read_to_string(&path).unwrap();
        let first = rendered_rules(&[
            ("g", "ALL=(ALL:ALL) ALL"),
            ("g", "ALL=(root) /usr/bin/id"),
            ("h", "ALL=(root) /usr/bin/uptime"),
        ]);
        assert_eq!(apply(&t, &first), Ok(Outcome::Installed));

        // sre's broad rule is removed and dev gets a broken one: the removal applies
        // at once, dev gets nothing, ops is as it was
        let e = apply(
            &t,
            &rendered_rules(&[
                ("g", "ALL=(root) /usr/bin/id"),
                ("h", "ALL=(root) /usr/bin/uptime"),
                ("i", BROKEN),
            ]),
        )
        .unwrap_err();
        assert!(
            e.contains("agent.toml:12") && e.contains("other rules were installed"),
            "{e}"
        );
        let now = read();
        assert!(now.starts_with(MARK), "{now}");
        assert!(!now.contains("(ALL:ALL) ALL"), "{now}");
        assert!(now.contains("%sre ALL=(root) /usr/bin/id"), "{now}");
        assert!(now.contains("%ops ALL=(root) /usr/bin/uptime"), "{now}");
        assert!(!now.contains("%dev"), "{now}");

        // ops' rule is edited into a broken one while sre's is narrowed further:
        // sre's edit applies, ops keeps its previous rule
        let e = apply(
            &t,
            &rendered_rules(&[("g", "ALL=(root) /usr/bin/id -u"), ("h", BROKEN)]),
        )
        .unwrap_err();
        assert!(e.contains("agent.toml:11"), "{e}");
        let now = read();
        assert!(now.contains("%sre ALL=(root) /usr/bin/id -u\n"), "{now}");
        assert!(!now.contains("/usr/bin/id\n"), "{now}");
        assert!(now.contains("%ops ALL=(root) /usr/bin/uptime"), "{now}");
        let o = Command::new(visudo().unwrap())
            .arg("-cf")
            .arg(&path)
            .output()
            .unwrap();
        assert!(o.status.success());

        // the same again: nothing to change, the file stays byte for byte
        let e = apply(
            &t,
            &rendered_rules(&[("g", "ALL=(root) /usr/bin/id -u"), ("h", BROKEN)]),
        )
        .unwrap_err();
        assert!(e.contains("unchanged"), "{e}");
        assert_eq!(read(), now);
    }

    #[test]
    fn a_file_the_agent_did_not_write_is_never_replaced_or_removed() {
        let d = tempfile::tempdir().unwrap();
        let t = target(d.path());
        let path = d.path().join(FILE_NAME);
        std::fs::write(&path, "%admins ALL=(ALL) ALL\n").unwrap();
        let e = apply(&t, &rendered("ALL=(ALL) ALL")).unwrap_err();
        assert!(e.contains("not written by zt-agent"), "{e}");
        assert_eq!(apply(&t, &Rendered::default()), Ok(Outcome::Unchanged));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "%admins ALL=(ALL) ALL\n"
        );
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
        let e = apply(&t, &rendered("ALL=(ALL) ALL")).unwrap_err();
        assert!(e.contains("symlink"), "{e}");
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let t = Target {
            dir: d.path().to_path_buf(),
            visudo: None,
        };
        let e = apply(&t, &rendered("ALL=(ALL) ALL")).unwrap_err();
        assert!(e.contains("not group/other writable"), "{e}");
        // with no rule configured and no file of ours, the directory is not our business
        assert_eq!(apply(&t, &Rendered::default()), Ok(Outcome::Unchanged));
    }

    #[test]
    fn visudo_messages_point_at_the_config() {
        let r = rendered("ALL=(ALL) NOPASSWD ALL");
        let line = r.lines[0].0;
        let said = format!(
            "/d/.zt.new:{line}:29: syntax error\n%sre ALL=(ALL) NOPASSWD ALL\n        ^~~\n"
        );
        let m = explain(&said, "/d/.zt.new", &r);
        assert!(
            m.contains("the [[sudo]] rule at agent.toml:9: syntax error"),
            "{m}"
        );
        assert!(m.contains("%sre ALL=(ALL) NOPASSWD ALL"), "{m}");
    }
}
