//! Sudo rights from IdP groups: `[[sudo]]` in agent.toml becomes the one
//! file /etc/sudoers.d/zt.
//!
//! - `rule`: checks one entry and renders it as a sudoers line;
//! - `file`: the whole file's text from the rules whose group is published;
//! - `install`: temp file, `visudo -cf`, atomic rename, root:root 0440.
//!
//! The file is made from the groups the *published* snapshot has (what sudo's
//! `%group` will resolve to through libnss_zt), after every sync attempt,
//! good or failed: a rule removed from the config is withdrawn even while the
//! IdP is unreachable. Past `[login] max_offline` every rule is withdrawn, so
//! directory users lose sudo along with their logins even where sudo's PAM
//! stack has no pam_zt account line.

pub mod file;
pub mod install;
pub mod rule;

use std::collections::{HashMap, HashSet};

use zt_snapshot::Pair;

use crate::config::AgentConfig;

/// What the sudoers step did, for status.json and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SudoReport {
    pub outcome: Result<install::Outcome, String>,
    /// Rules left out (group not published, case clash, offline).
    pub problems: Vec<String>,
    /// Rules in the installed (or attempted) file.
    pub rules: usize,
}

/// IdP group id -> POSIX name, for every configured group the pair publishes.
pub fn published_groups(pair: Option<&Pair<'_>>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Some(pair) = pair else {
        return out;
    };
    for i in 0..pair.public.group_count() {
        if let (Ok(g), Ok(p)) = (pair.public.group(i), pair.private.group(i))
            && !p.idp_id.is_empty()
            && let (Ok(name), Ok(id)) = (std::str::from_utf8(g.name), std::str::from_utf8(p.idp_id))
        {
            out.insert(id.to_string(), name.to_string());
        }
    }
    out
}

/// Does sudo.conf (at `path`) make sudo ask NSS for the invoking user's
/// groups? By default sudo takes them from the process, so a session opened
/// before someone left an IdP group keeps the group's sudo rules until it ends.
pub fn group_source_dynamic(path: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    // as sudo reads it: keywords and values in any case, exactly three words,
    // an unknown value ignored, the last valid setting wins
    text.lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [set, key, value]
                if set.eq_ignore_ascii_case("set") && key.eq_ignore_ascii_case("group_source") =>
            {
                let value = value.to_ascii_lowercase();
                ["static", "dynamic", "adaptive"]
                    .contains(&value.as_str())
                    .then(|| value == "dynamic")
            }
            _ => None,
        })
        .next_back()
        .unwrap_or(false)
}

/// Does the main sudoers file (`main`) read `dir` (`@includedir` or the older
/// `#includedir`)? Debian and Ubuntu's does; without it the rules are inert.
pub fn includes_dir(main: &std::path::Path, dir: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(main) else {
        return false;
    };
    let dir = dir.to_string_lossy();
    text.lines().any(|l| {
        let mut words = l.split_whitespace();
        matches!(words.next(), Some("@includedir" | "#includedir"))
            && words.next().map(|d| d.trim_end_matches('/')) == Some(dir.trim_end_matches('/'))
    })
}

/// The problem reported while sudo.conf lacks `Set group_source dynamic`.
pub fn group_source_problem(path: &std::path::Path) -> String {
    format!(
        "{} does not say \"Set group_source dynamic\": sudo takes a user's groups from \
         their process, so sessions opened before a removal in the IdP keep its sudo rules \
         until they end; add that line",
        path.display()
    )
}

/// Renders the config's rules for the published groups and installs them.
/// `offline`: why the host is past `max_offline`, if it is (then no rule is
/// installed).
pub fn apply(
    config: &AgentConfig,
    published: &HashMap<String, String>,
    local_groups: &HashSet<String>,
    offline: Option<&str>,
    target: &install::Target,
) -> SudoReport {
    let mut rendered = file::render(&config.origin, &config.sudo_rules, published, local_groups);
    if let Some(why) = offline
        && rendered.text.is_some()
    {
        rendered = file::Rendered {
            problems: vec![format!(
                "every [[sudo]] rule withdrawn: {why}; they return with the next good sync"
            )],
            ..file::Rendered::default()
        };
    }
    let outcome = install::apply(target, &rendered);
    match &outcome {
        Ok(install::Outcome::Installed) => tracing::info!(
            "installed {} with {} sudo rules",
            target.dir.join(install::FILE_NAME).display(),
            rendered.lines.len()
        ),
        Ok(install::Outcome::Removed) => tracing::info!(
            "removed {}: no sudo rule applies",
            target.dir.join(install::FILE_NAME).display()
        ),
        Ok(install::Outcome::NoSudo) if !config.sudo_rules.is_empty() => tracing::info!(
            "sudo is not installed ({} missing): the [[sudo]] rules apply once it is",
            target.dir.display()
        ),
        Ok(_) => {}
        Err(e) => tracing::error!("sudo rules not updated: {e}"),
    }
    SudoReport {
        outcome,
        rules: rendered.lines.len(),
        problems: rendered.problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_conf_and_sudoers_settings_are_recognised() {
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("sudo.conf");
        std::fs::write(
            &conf,
            "#Set group_source dynamic\nSet group_source adaptive\n",
        )
        .unwrap();
        assert!(!group_source_dynamic(&conf));
        std::fs::write(&conf, "Set  group_source   dynamic\n").unwrap();
        assert!(group_source_dynamic(&conf));
        std::fs::write(&conf, "Set group_source dynamic\nSet group_source static\n").unwrap();
        assert!(!group_source_dynamic(&conf), "the last one wins");
        std::fs::write(&conf, "set GROUP_SOURCE Dynamic\nSet group_source bogus\n").unwrap();
        assert!(
            group_source_dynamic(&conf),
            "case-insensitive; a bad value ignored"
        );
        std::fs::write(&conf, "Set group_source dynamic extra\n").unwrap();
        assert!(
            !group_source_dynamic(&conf),
            "sudo ignores a line with extra words"
        );
        assert!(!group_source_dynamic(&d.path().join("missing")));

        let main = d.path().join("sudoers");
        let dir = std::path::Path::new("/etc/sudoers.d");
        std::fs::write(&main, "# includedir /etc/sudoers.d\nroot ALL=(ALL) ALL\n").unwrap();
        assert!(!includes_dir(&main, dir));
        for line in ["@includedir /etc/sudoers.d", "#includedir /etc/sudoers.d/"] {
            std::fs::write(&main, format!("{line}\n")).unwrap();
            assert!(includes_dir(&main, dir), "{line}");
        }
    }
}
